"""Every registered method × every space: two steps of a tiny search on CPU end in a valid genotype.

Fast by default: every method on s1 (DARTS kind with per-edge op lists), nb201 and a user's YAML space (3 nodes,
one input kept per node; spaces/fromfile.py), and plain DARTS on every space.
The other combinations (the darts, darts-7 and lhd supernets cost ~1-7 s each here) carry the ``slow`` marker.
On the large spaces the dominant eigenvalue (DARTS-ES/ADA measure it at epoch 0) is replaced by a stub: an exact
Hessian over 224-280 α coordinates takes ~40 s on this CPU and is tested on its own in test_hessian.py; on the
small spaces the real one runs.
"""

from __future__ import annotations

import pytest

from conftest import tiny_config
from robustdarts.genotype import Genotype, validate
from robustdarts.methods import METHODS
from robustdarts.search.loop import Search

SPACES = ("darts", "darts-7", "s1", "s2", "s3", "s4", "lhd", "nb201", "yaml")
FAST_SPACES = ("s1", "nb201", "yaml")
YAML_SPACE = "name: yaml-matrix\nops: [none, max_pool_3x3, skip_connect, sep_conv_3x3]\nnodes: 3\ninputs_per_node: 1\n"
LARGE_SPACES = ("darts", "darts-7", "lhd")


def _combos():
    for method in sorted(METHODS):
        for space in SPACES:
            fast = space in FAST_SPACES or method == "darts"
            yield pytest.param(method, space, id=f"{method}-{space}", marks=() if fast else pytest.mark.slow)


@pytest.mark.parametrize("method,space", list(_combos()))
def test_method_runs_two_steps_on_space(method, space, tmp_path, monkeypatch):
    if space in LARGE_SPACES:
        import robustdarts.analysis.hessian as hessian
        monkeypatch.setattr(hessian, "arch_hessian", lambda *args, **kwargs: {"eigenvalue": 0.1})
    if space == "yaml":
        (tmp_path / "space.yaml").write_text(YAML_SPACE)
        space = str(tmp_path / "space.yaml")
    cfg = tiny_config(method, space, **({"init_channels": 8} if method == "pc-darts" else {}))  # C/K even
    search = Search(cfg, tmp_path / "run", progress=False)
    assert search.train_stream.steps_per_epoch == (4 if cfg.weights_on_all_data else 2)  # LHD single level: all
    genotype = search.run()
    validate(genotype, space)
    assert Genotype.load(tmp_path / "run" / "genotype.json") == genotype
    records = search.run_dir.read_metrics()
    assert records and records[-1]["epoch"] == 0
    if search.recipe.trains_weights:
        assert all(map(lambda r: r["train_loss"] == r["train_loss"], records))  # not NaN
