"""A new user's round through the CLI and the Python API: each test pins one defect that round found (plot writing
before it checked, a run whose plugin op is not installed, train --resume without its positional, Preset objects
and space dicts handed to the API, show on a run's own data, derive's policy and condition messages, a bench script
without a main guard, plugin warnings where nothing lists plugins, text for numbers in the API). Tiny sizes only."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

import robustdarts
from robustdarts import plugins
from robustdarts.cli import run_cli
from robustdarts.errors import RobustDartsError
from robustdarts.genotype import Genotype
from robustdarts.methods import Preset
from robustdarts.methods.darts import Darts

TINY_FIELDS = dict(dataset="synthetic", epochs=1, batch_size=8, init_channels=4, layers=3, image_size=8,
                   limit_images=32, leakage_every=0, hessian_every=0, seed=0)
TINY = ["--epochs", "1", "--batch-size", "8", "--channels", "4", "--layers", "3", "--set", "image_size=8",
        "--set", "limit_images=32", "--set", "leakage_every=0", "--no-progress"]
# A module-level Preset, as a user's script defines one: the API records it as MODULE:ATTRIBUTE.
ROUND_PRESET = Preset("rd-round", Darts, "Liu et al., DARTS (ICLR 2019)", "plain DARTS under another name")
OP = "rd_round_conv"


def rd(*args) -> int:
    return run_cli([str(a) for a in args])


def one_sentence(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert 1 <= len(lines) <= 3 and "Traceback" not in text, text
    return " ".join(text.split())


def _conv(C, stride, affine):
    return torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Conv2d(C, C, 3, stride, 1, bias=False),
                               torch.nn.BatchNorm2d(C, affine=affine))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two tiny searches on different spaces (s3, s2) and one on a space dict whose plugin op is then taken out of
    the registry again, as on a machine without the plugin."""
    from robustdarts.spaces.ops import register_op, unregister_op
    from robustdarts.spaces.registry import SPACES

    root = tmp_path_factory.mktemp("round")
    for space in ("s3", "s2"):
        robustdarts.search(space=space, out=root / space, **TINY_FIELDS)
    register_op(OP, _conv)
    try:
        definition = {"name": "rd-round-space", "ops": ["none", "skip_connect", OP], "nodes": 2,
                      "inputs_per_node": 2}
        result = robustdarts.search(space=definition, out=root / "plugin-op", **TINY_FIELDS)
    finally:
        unregister_op(OP)
        SPACES.pop("rd-round-space", None)
    assert result.config.space == "rd-round-space"
    assert yaml.safe_load((root / "plugin-op" / "space.yaml").read_text())["edges"]["normal"][0] == \
        ["none", "skip_connect", OP]
    yield root
    SPACES.pop("rd-round-space", None)  # registered again by the commands that read the run's space.yaml


# ---- 1: plot checks before it writes; a run whose plugin op is missing derives and plots ---------------------
def test_plot_of_runs_on_different_spaces_writes_nothing(runs, tmp_path, capsys):
    out = tmp_path / "cmp.png"
    assert rd("plot", runs / "s3", runs / "s2", "--out", out) == 2
    assert "different spaces (s2, s3)" in one_sentence(capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == []


def test_a_run_whose_plugin_op_is_not_installed_derives_and_plots_but_does_not_build(runs, tmp_path, capsys):
    run = runs / "plugin-op"
    assert rd("derive", run, "--out", tmp_path / "g.json") == 0
    # the same archive, the same rule: the genotype the search itself derived at its last epoch
    assert Genotype.load(tmp_path / "g.json") == Genotype.load(run / "genotype.json")
    assert OP in json.dumps(Genotype.load(run / "genotype.json").to_dict())  # the missing op is really chosen
    assert rd("plot", run, "--out", tmp_path / "c.png") == 0
    assert (tmp_path / "c.png").is_file() and (tmp_path / "c-alpha.png").is_file()
    capsys.readouterr()
    for command in (["show", run], ["train", run, "--dataset", "synthetic", "--out", tmp_path / "t", *TINY[:8]]):
        assert rd(*command) == 2
        text = one_sentence(capsys.readouterr().err)
        assert f"unknown op for the darts family '{OP}'" in text and "needs its plugin installed" in text, text
    assert not (tmp_path / "t").exists()


def test_a_run_of_a_plugin_method_not_installed_says_so_and_plot_writes_nothing(runs, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(runs / "s3", run)
    config = yaml.safe_load((run / "config.yaml").read_text())
    (run / "config.yaml").write_text(yaml.safe_dump({**config, "method": "rd-not-installed"}, sort_keys=False))
    for command in (["derive", run], ["plot", run]):
        assert rd(*command) == 2
        assert "method 'rd-not-installed' of this run is not installed here" in one_sentence(capsys.readouterr().err)
    assert not (run / "curves.png").exists() and not (run / "alpha.png").exists()


# ---- 2: train --resume DIR needs no positional ---------------------------------------------------------------
def test_train_resume_needs_no_genotype_and_the_hints_use_the_short_form(runs, tmp_path, capsys):
    from robustdarts.config import TrainConfig, build
    from robustdarts.runs import release
    from robustdarts.train import Train
    from robustdarts.zoo import get_genotype

    cfg = build(TrainConfig, dict(genotype="darts_v2", dataset="synthetic", epochs=2, batch_size=16, init_channels=4,
                                  layers=3, image_size=8, limit_images=48, limit_test=16, seed=1))
    Train(cfg, get_genotype("darts_v2"), tmp_path / "cut", progress=False).run(stop_after=0)
    release(tmp_path / "cut")
    assert rd("train", "--resume", tmp_path / "cut", "--json") == 0
    assert json.loads(capsys.readouterr().out)["epochs"] == 2
    assert rd("train") == 2
    assert "train needs a GENOTYPE" in one_sentence(capsys.readouterr().err)
    assert rd("search", "--resume", tmp_path / "cut") == 2  # a training run given to search: the short command
    assert f"robustdarts train --resume {tmp_path / 'cut'}" in one_sentence(capsys.readouterr().err)


def test_the_ctrl_c_hint_of_a_training_run_is_the_short_form(tmp_path, monkeypatch):
    from robustdarts import cli

    (tmp_path / "checkpoint.pt").write_bytes(b"")
    monkeypatch.setattr("robustdarts.runs.held_runs", lambda: {str(tmp_path): "train"})
    assert cli._resume_hint().endswith(f"continue with robustdarts train --resume {tmp_path}")


# ---- 3: Preset objects and space definitions handed to the API -----------------------------------------------
def test_the_api_takes_preset_objects_and_space_dicts(runs):
    from robustdarts.api import resolve_search_config
    from robustdarts.methods import get_preset

    assert resolve_search_config(method=get_preset("sdarts-rs"), **TINY_FIELDS).method == "sdarts-rs"
    cfg = resolve_search_config(method=ROUND_PRESET, **TINY_FIELDS)
    assert cfg.method.endswith(":ROUND_PRESET")  # recorded so that another process imports it again
    assert get_preset(cfg.method).family is Darts
    # the space dict of the module fixture was registered and recorded (checked there); a bad one is one sentence
    with pytest.raises(RobustDartsError, match="unknown op 'nope'"):
        resolve_search_config(space={"name": "bad", "ops": ["none", "nope"], "nodes": 2, "inputs_per_node": 2})
    local = Preset("rd-local", Darts, "paper", "summary")  # no module holds it: a resume could not find it
    with pytest.raises(RobustDartsError, match="define it at module level"):
        robustdarts.search(method=local, **TINY_FIELDS)
    for bad in ([1], {1, 2}):
        with pytest.raises(RobustDartsError, match="pass a method name"):
            robustdarts.search(method=bad, **TINY_FIELDS)
        with pytest.raises(RobustDartsError, match="pass a space name"):
            robustdarts.search(space=bad, **TINY_FIELDS)


# ---- 4: show RUN_DIR builds the network for the run's own data -----------------------------------------------
def test_show_of_a_run_on_own_data_uses_its_classes_and_channels(tmp_path, capsys, own_data_isolated):
    from robustdarts.evalnet import EvalNetwork

    rng = np.random.default_rng(0)
    path = tmp_path / "arrays.npz"  # 5 classes of grayscale 8x8 images
    np.savez(path, x_train=rng.integers(0, 256, (40, 8, 8), dtype=np.uint8), y_train=np.arange(40) % 5,
             x_test=rng.integers(0, 256, (10, 8, 8), dtype=np.uint8), y_test=np.arange(10) % 5)
    run = tmp_path / "run"
    fields = {**TINY_FIELDS, "dataset": f"npz:{path}", "limit_images": None}
    robustdarts.search(space="s3", out=run, **fields)
    path.unlink()  # the counts come from the run's data.json: the arrays need not exist any more
    assert rd("show", run, "--layers", "3", "--channels", "4", "--json") == 0
    info = json.loads(capsys.readouterr().out)
    geno = Genotype.load(run / "genotype.json")
    assert info["dataset"] == f"npz:{path.resolve()}"
    assert info["params"] == EvalNetwork(geno, 4, 3, 5, 1).num_parameters() != \
        EvalNetwork(geno, 4, 3, 10, 3).num_parameters()  # not CIFAR-10's 10 classes, 3 channels


# ---- 5: derive's policy and condition messages ---------------------------------------------------------------
def test_derive_names_every_policy_that_fits_and_the_lhd_only_condition(runs, capsys):
    assert rd("derive", runs / "s3", "--policy", "nb201") == 2
    text = one_sentence(capsys.readouterr().err)
    assert "use one of: darts, selective-stop, darts-pt" in text, text
    assert rd("derive", runs / "s3", "--policy", "selective-stop", "--json") == 0  # as offered
    capsys.readouterr()
    assert rd("derive", runs / "s3", "--condition", "3ops") == 2
    assert "--condition applies to LHD runs only" in one_sentence(capsys.readouterr().err)


# ---- 6: a bench script without a main guard ------------------------------------------------------------------
@pytest.mark.parametrize("guarded", [False, True])
def test_bench_run_in_an_unguarded_script_says_to_guard_it(tmp_path, guarded):
    body = "check_main_guarded()\nprint('checked')\n"
    script = "from robustdarts.bench.backends import check_main_guarded\n\n\ndef main():\n" + \
        "".join(f"    {line}\n" for line in body.splitlines()) + \
        ("\nif __name__ == '__main__':\n    main()\n" if guarded else "\nmain()\n")
    (tmp_path / "script.py").write_text(script)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, str(tmp_path / "script.py")], capture_output=True, text=True, env=env,
                       timeout=300)
    if guarded:
        assert r.returncode == 0 and "checked" in r.stdout, r.stderr
    else:
        assert r.returncode == 1 and "checked" not in r.stdout
        assert "RobustDartsError" in r.stderr and 'guard the call with `if __name__ == "__main__":`' in r.stderr


def test_bench_run_refuses_an_unguarded_call_before_writing(tmp_path, monkeypatch):
    """The check runs in the driver before the store is created (the grid's workers would die at their start)."""
    from robustdarts.bench import backends

    def unguarded(what="robustdarts.bench.run"):
        raise RobustDartsError(f"{what}: guard it")

    monkeypatch.setattr(backends, "check_main_guarded", unguarded)
    grid = {"name": "g", "methods": ["darts"], "spaces": ["s3"], "datasets": ["synthetic"], "seeds": [0],
            "search": {k: v for k, v in TINY_FIELDS.items() if k not in ("dataset", "seed")}, "train": False}
    with pytest.raises(RobustDartsError, match="guard it"):
        robustdarts.bench.run(grid, out=tmp_path / "out", workers=1, threads=1)
    assert not (tmp_path / "out").exists()


# ---- 7: broken plugins warn only where plugins are listed ----------------------------------------------------
@pytest.fixture
def broken_site(tmp_path, monkeypatch):
    site = tmp_path / "site"
    info = site / "rd_round_broken-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rd-round-broken\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[robustdarts.methods]\nbroken-method = rd_round_missing:PRESET\n\n"
                                           "[robustdarts.ops]\nbad_op = rd_round_missing:factory\n")
    monkeypatch.syspath_prepend(str(site))
    plugins.reset()
    yield site
    plugins.reset()


def test_a_broken_plugin_warns_only_where_plugins_are_listed(broken_site, tmp_path, capsys):
    assert rd("search", "--method", "darts", "--dataset", "synthetic", "--dry-run", "--json") == 0
    assert "warning" not in capsys.readouterr().err
    assert rd("methods") == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "entry point 'broken-method'" in warnings[0], warnings
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"name": "rd-bad-op", "ops": ["none", "bad_op", "skip_connect"], "nodes": 2,
                                     "inputs_per_node": 2}))
    assert rd("spaces", space) == 2
    text = one_sentence(capsys.readouterr().err)
    assert "names op 'bad_op', but op plugin entry point 'bad_op'" in text and "failed to import" in text, text


# ---- 8: the API takes Python values; the text paths read numbers from text -----------------------------------
def test_the_api_refuses_text_for_numbers_while_yaml_and_the_cli_read_it(tmp_path, capsys):
    from robustdarts.api import resolve_search_config

    for field, value in (("epochs", "2"), ("lr", "0.1"), ("limit_images", "32")):
        with pytest.raises(RobustDartsError, match=f"config field '{field}' is the text '{value}'.*without quotes"):
            robustdarts.search(out=tmp_path / "s", **{**TINY_FIELDS, field: value})
    with pytest.raises(RobustDartsError, match="'epochs' is the text"):
        robustdarts.train("darts_v2", dataset="synthetic", epochs="1", out=tmp_path / "t")
    assert not (tmp_path / "s").exists() and not (tmp_path / "t").exists()
    assert resolve_search_config(**{**TINY_FIELDS, "epochs": 1.0}).epochs == 1  # an exact conversion stays
    config = tmp_path / "cfg.yaml"
    config.write_text("lr: '0.1'\nepochs: '2'\n")  # text in YAML is read as a number
    assert rd("search", "--config", config, "--dataset", "synthetic", "--dry-run", "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["lr"] == 0.1 and out["epochs"] == 2
