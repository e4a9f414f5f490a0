"""The doors for a user's pieces: methods and ops as plugins (entry points, MODULE:ATTRIBUTE), spaces as YAML files.

The plugin is the package of examples/plugin (docs/recipes.md's worked example): its entry points are declared in
its pyproject.toml, and here a ``*.dist-info`` with the same entry points (read from that file) on ``sys.path``
stands in for ``pip install`` (which takes a minute). Every size is tiny: 8x8 synthetic images, C=4, 3 cells.
"""

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch
import yaml

from robustdarts import plugins
from robustdarts.cli import run_cli
from robustdarts.errors import RobustDartsError
from robustdarts.genotype import Genotype

from conftest import tiny_config

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "plugin"
TINY = ["--dataset", "synthetic", "--epochs", "1", "--batch-size", "8", "--channels", "4", "--layers", "3",
        "--set", "image_size=8", "--set", "limit_images=32", "--set", "leakage_every=0", "--no-progress"]
SPEC = "robustdarts_entropy:ENTROPY_DARTS"


def _dist_info(site: Path, name: str, groups: dict[str, dict[str, str]]) -> None:
    """An installed distribution as importlib.metadata sees one: METADATA and entry_points.txt."""
    info = site / f"{name.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in entries.items()) + "\n"
        for group, entries in groups.items()))


def _forget_plugins():
    plugins.reset()
    for name in [m for m in sys.modules if m.startswith(("robustdarts_entropy", "rd_broken"))]:
        del sys.modules[name]


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A site directory on sys.path (and PYTHONPATH, for subprocesses and spawned bench workers) plus the example
    plugin's source folder; plugins read in this test are forgotten afterwards."""
    site = tmp_path / "site"
    site.mkdir()
    for path in (EXAMPLE, site):
        monkeypatch.syspath_prepend(str(path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), str(EXAMPLE), os.environ.get("PYTHONPATH", "")]))
    _forget_plugins()
    yield site
    _forget_plugins()


@pytest.fixture
def installed(site):
    """The example plugin 'installed': its pyproject's entry points in a dist-info on the path."""
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    _dist_info(site, project["name"], project["entry-points"])
    plugins.reset()
    return site


def rd(args: list) -> int:
    """The CLI in this process (what a user sees: exit code, stdout, one-sentence stderr)."""
    return run_cli([str(a) for a in args])


def fresh(*commands: list) -> list[int]:
    """Run CLI commands one after another in one new Python process (nothing registered yet: what a user's next
    command meets), stopping at the first failure; their exit codes."""
    script = ("import json, sys\nfrom robustdarts.cli import run_cli\ncodes = []\n"
              "for args in json.loads(sys.argv[1]):\n    codes.append(run_cli(args))\n    if codes[-1]:\n        break\n"
              "print('CODES', json.dumps(codes))\n")
    env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", script, json.dumps([[str(a) for a in c] for c in commands])],
                       capture_output=True, text=True, env=env, timeout=600)
    lines = [line for line in r.stdout.splitlines() if line.startswith("CODES ")]
    assert lines, r.stderr + r.stdout
    codes = json.loads(lines[-1][len("CODES "):])
    assert codes == [0] * len(commands), r.stderr + r.stdout
    return codes


def one_sentence(text: str) -> str:
    """``text`` (stderr) as one line of words, after checking it is a short error without a traceback."""
    lines = [line for line in text.splitlines() if line.strip()]
    assert 1 <= len(lines) <= 3 and "Traceback" not in text, text
    return " ".join(text.split())


# ---- methods as plugins ----------------------------------------------------------------------------------------
def test_an_installed_method_is_listed_with_its_distribution_and_offered_in_help(installed, capsys):
    assert rd(["methods", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["entropy-darts"]["plugin"] == "robustdarts-entropy"
    assert rows["entropy-darts"]["family"] == "EntropyDarts"
    assert rows["entropy-darts"]["defaults"]["nb201"]["epochs"] == 100  # the preset's own row, as ours
    assert rows["darts"]["plugin"] is None and len(rows) >= 29
    assert rd(["methods"]) == 0
    listing = capsys.readouterr().out
    assert "[plugin robustdarts-entropy]" in listing
    from robustdarts import choices  # what every --help lists (the CLI expands its tokens from here)
    assert "entropy-darts" in choices.expand(choices.one_of("method")).split("one of: ")[1].split(", ")


def _alphas(run_dir: Path) -> dict:
    from robustdarts.runs import RunDir
    archive, _ = RunDir(run_dir).load_archive()
    return archive[max(archive)]


@pytest.mark.parametrize("space", ["s3", "nb201"])
def test_an_installed_method_searches_on_two_spaces_with_its_own_arch_penalty(installed, tmp_path, space):
    """The plugin's recipe runs: its entropy penalty moves α away from plain DARTS' at the same seed, and with
    its weight at 0 the two searches are the same to the bit."""
    from robustdarts.search.loop import Search

    def search(method, name, **options):
        cfg = tiny_config(method, space, arch_lr=0.05, method_options=options)
        Search(cfg, tmp_path / name, progress=False).run()
        return cfg, _alphas(tmp_path / name)

    cfg, penalized = search("entropy-darts", "penalized", weight=5.0)
    assert cfg.method == "entropy-darts" and cfg.method_options == {"weight": 5.0}
    assert cfg.epochs == 1  # the tiny sizes win over the preset's 100 epochs on nb201
    _, off = search("entropy-darts", "off", weight=0.0)
    _, darts = search("darts", "darts")
    for cell in darts:
        assert torch.equal(off[cell], darts[cell])
        assert not torch.allclose(penalized[cell], darts[cell])
    assert Genotype.load(tmp_path / "penalized" / "genotype.json").space == space


def test_module_attribute_is_recorded_so_a_fresh_process_derives_and_resumes(site, tmp_path):
    from robustdarts.runs import RunDir, release
    from robustdarts.search.loop import Search

    out = tmp_path / "run"
    Search(tiny_config(SPEC, "s2", epochs=2), out, progress=False).run(stop_after=0)  # interrupted after epoch 0
    release(out)  # this process's lock on the run, as its exit would
    assert yaml.safe_load((out / "config.yaml").read_text())["method"] == SPEC  # how to import it again
    # a new process imports the plugin from the run's config alone, derives, and finishes the search
    fresh(["derive", out, "--out", tmp_path / "g.json"], ["search", "--resume", out, "--json"])
    assert Genotype.load(tmp_path / "g.json").space == "s2"
    assert [r["epoch"] for r in RunDir(out).read_metrics()] == [0, 1]


def test_an_installed_method_runs_in_a_bench_grid(installed, tmp_path):
    from robustdarts.bench import Store, load_grid, make_plan
    from robustdarts.bench.backends import run_grid

    grid = {"name": "plugin-grid", "methods": ["entropy-darts", {"method": SPEC, "label": "by-spec"}],
            "spaces": ["s3"], "datasets": ["synthetic"], "seeds": [0], "conditions": ["default"],
            "search": {"epochs": 1, "batch_size": 8, "init_channels": 4, "layers": 3, "image_size": 8,
                       "limit_images": 32, "leakage_every": 0, "hessian_every": 0},
            "measure": {"eigenvalue_batches": 0}}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    plan = make_plan(load_grid(path))
    assert sorted(c.method for c in plan.cells) == ["by-spec", "entropy-darts"]
    summary = run_grid(plan, tmp_path / "out", workers=1, threads=1)  # a spawned worker finds both again
    assert summary.done == 2 and summary.failed == 0, summary.failures
    with Store(tmp_path / "out") as store:
        assert {c["status"] for c in store.cells()} == {"done"}


def test_a_broken_plugin_is_one_warning_and_the_built_ins_keep_working(site, capsys):
    _dist_info(site, "rd-broken", {"robustdarts.methods": {"broken-method": "rd_broken_missing:PRESET",
                                                           "not-a-preset": "json:dumps",
                                                           "clash": "rd_broken_clash:PRESETS"},
                                   "robustdarts.ops": {"broken_op": "rd_broken_missing:factory"}})
    (site / "rd_broken_clash.py").write_text(
        "from robustdarts.methods import Preset\nfrom robustdarts.methods.darts import Darts\n"
        "PRESETS = [Preset('rd-fine', Darts, 'paper', 'summary'), Preset('darts', Darts, 'paper', 'summary')]\n")
    plugins.reset()
    assert rd(["methods", "--filter", "darts*"]) == 0
    out, err = capsys.readouterr()
    assert "darts-2nd" in out
    warnings = err.strip().splitlines()  # one line per bad entry point, each naming it and why
    assert len(warnings) == 3 and all(w.startswith("warning: method plugin entry point") for w in warnings), err
    [missing] = [w for w in warnings if "entry point 'broken-method'" in w]
    [wrong_type] = [w for w in warnings if "entry point 'not-a-preset'" in w]
    [clash] = [w for w in warnings if "entry point 'clash'" in w]
    assert "failed to import (ModuleNotFoundError" in missing and "(from rd-broken)" in missing
    assert "must be a robustdarts Preset or a list of them, not function" in wrong_type
    assert "declares 'darts', which is a built-in method" in clash
    from robustdarts.methods.presets import BUILTIN_PRESETS, PRESETS
    assert "rd-fine" not in PRESETS and PRESETS["darts"] is BUILTIN_PRESETS["darts"]  # left out whole; ours stays
    # asking for the broken plugin is its one sentence; a built-in method resolves as before
    assert rd(["search", "--method", "broken-method", "--dataset", "synthetic", "--dry-run"]) == 2
    text = one_sentence(capsys.readouterr().err)
    assert "method plugin entry point 'broken-method'" in text and "rd_broken_missing" in text
    assert rd(["search", "--method", "darts", "--dataset", "synthetic", "--dry-run", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["method"] == "darts"
    # a space naming the broken op: one sentence naming the op plugin
    with pytest.raises(RobustDartsError, match="op plugin entry point 'broken_op'.*failed to import"):
        from robustdarts.spaces import make_op
        make_op("broken_op", 4, 1)
    # a genotype naming it (a genotype file taken out of its run): the same sentence, not "not a darts op"
    import dataclasses

    from robustdarts.genotype import validate
    from robustdarts.zoo import get_genotype
    darts_v2 = get_genotype("darts_v2")
    taken_out = dataclasses.replace(darts_v2, space=None, normal=(("broken_op", 0), *darts_v2.normal[1:]))
    with pytest.raises(RobustDartsError, match="op plugin entry point 'broken_op'.*failed to import"):
        validate(taken_out)


@pytest.mark.parametrize("spec, fragment", [
    ("rd_nowhere:PRESET", "method plugin 'rd_nowhere:PRESET' failed to import"),
    ("json:nothing", "module json has no attribute 'nothing'"),
    ("json:dumps", "must be a robustdarts Preset"),
    ("robustdarts.methods.presets:PRESETS", "must be a robustdarts Preset"),
])
def test_a_bad_module_attribute_is_one_sentence_naming_it(spec, fragment, tmp_path, capsys):
    assert rd(["search", "--method", spec, *TINY, "--out", tmp_path / "run"]) == 2
    assert fragment in one_sentence(capsys.readouterr().err)
    assert not (tmp_path / "run").exists()


def test_a_module_attribute_preset_may_not_take_a_built_in_name(site):
    (site / "rd_broken_clash.py").write_text("from robustdarts.methods import Preset\n"
                                             "from robustdarts.methods.darts import Darts\n"
                                             "P = Preset('darts', Darts, 'paper', 'summary')\n")
    with pytest.raises(RobustDartsError, match="declares 'darts', which is a built-in method"):
        tiny_config("rd_broken_clash:P")


# ---- ops as plugins and spaces as data -------------------------------------------------------------------------
def test_register_op_refuses_built_in_names_and_non_modules():
    from robustdarts.spaces import make_op, register_op
    from robustdarts.spaces.ops import unregister_op

    with pytest.raises(RobustDartsError, match="'sep_conv_3x3', which is a built-in op"):
        register_op("sep_conv_3x3", lambda C, stride, affine: torch.nn.Identity())
    with pytest.raises(RobustDartsError, match="must be a Python identifier"):
        register_op("bad name", lambda C, stride, affine: torch.nn.Identity())
    register_op("rd_test_not_module", lambda C, stride, affine: 3)
    try:
        with pytest.raises(RobustDartsError, match="returned int, not an nn.Module"):
            make_op("rd_test_not_module", 4, 1)
    finally:
        unregister_op("rd_test_not_module")


def _space_file(path: Path, **fields) -> Path:
    data = {"name": "tiny-conv", "ops": ["none", "skip_connect", "sep_conv_3x3", "max_pool_3x3"], "nodes": 3,
            "inputs_per_node": 2, **fields}
    path.write_text(yaml.safe_dump({k: v for k, v in data.items() if v is not None}, sort_keys=False))
    return path


def test_a_plugin_op_in_a_yaml_space_is_searched_derived_drawn_and_trained_from_the_run_alone(installed, tmp_path,
                                                                                                 capsys):
    """The file is deleted after the search: derive, show, train and --resume, in a new process, read the space
    from the run directory."""
    space_file = _space_file(tmp_path / "space.yaml", ops=["none", "skip_connect", "sep_conv_3x3", "conv_3x3"])
    run = tmp_path / "run"
    assert rd(["search", "--space", space_file, "--method", "entropy-darts", *TINY, "--out", run,
               "--draw", tmp_path / "search.png", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["space"] == "tiny-conv"
    assert yaml.safe_load((run / "config.yaml").read_text())["space"] == "tiny-conv"
    recorded = yaml.safe_load((run / "space.yaml").read_text())
    assert recorded["nodes"] == 3 and len(recorded["edges"]["normal"]) == 2 + 3 + 4
    space_file.unlink()
    from robustdarts.runs import release
    release(run)  # this process's lock on the run, as its exit would

    # α with conv_3x3 winning every edge: the derived genotype must name the plugin op
    from robustdarts.runs import save_tensors
    archive = torch.load(run / "archive.pt", weights_only=True)
    last = max(archive["epochs"], key=int)
    for cell, alpha in archive["epochs"][last].items():
        alpha.zero_()
        alpha[:, 3] = 1.0
    save_tensors(run / "archive.pt", archive)
    drawing = tmp_path / "cells.png"
    fresh(["derive", run, "--out", tmp_path / "g.json"],
          ["show", tmp_path / "g.json", "--layers", "3", "--channels", "4", "--draw", drawing],
          ["train", tmp_path / "g.json", "--dataset", "synthetic", "--epochs", "1", "--batch-size", "8",
           "--channels", "4", "--layers", "3", "--set", "image_size=8", "--set", "limit_images=32",
           "--set", "limit_test=16", "--out", tmp_path / "train", "--no-progress"],
          ["search", "--resume", run, "--json"])
    genotype = Genotype.load(tmp_path / "g.json")
    assert genotype.space == "tiny-conv" and genotype.num_nodes == 3
    assert {g[0] for c in genotype.cells for g in genotype.genes(c)} == {"conv_3x3"}
    assert all(len(g) == 2 for g in genotype.normal) and len(genotype.normal) == 6
    assert genotype.normal_concat == (2, 3, 4)
    from robustdarts.viz.cells import _cell_graph
    assert {op for _, _, op in _cell_graph(genotype, "reduce")[2]} == {"conv_3x3"}  # what the drawing labels
    assert drawing.stat().st_size > 1000 and (tmp_path / "search.png").stat().st_size > 1000
    trained = [json.loads(line) for line in (tmp_path / "train" / "metrics.jsonl").read_text().splitlines()]
    assert len(trained) == 1 and 0.0 <= trained[-1]["test_acc"] <= 1.0

    from robustdarts.evalnet import EvalNetwork
    net = EvalNetwork(genotype, 4, 3, 10, 3)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)
             and m.groups == 1 and m.in_channels == m.out_channels]
    assert len(convs) == 3 * 6  # every kept gene of every cell is the plugin's plain 3x3 conv


def test_one_input_per_node_derives_the_best_edge_of_each_node(tmp_path):
    """inputs_per_node 1 on a 2-node space, against the rule worked by hand: per node the edge whose best
    non-none op is strongest, genes naming their node."""
    from robustdarts.discretize import derive
    from robustdarts.evalnet import EvalNetwork
    from robustdarts.spaces import get_space

    space = get_space(str(_space_file(tmp_path / "one.yaml", name="one-input", nodes=2, inputs_per_node=1,
                                      ops=["none", "skip_connect", "sep_conv_3x3"])))
    assert space.num_edges == 5 and space.keep == 1
    # rows: node 0 <- s0, s1; node 1 <- s0, s1, n0. Columns: none, skip, sep.
    normal = torch.tensor([[0.9, 0.05, 0.05], [0.1, 0.2, 0.7], [0.0, 0.6, 0.4], [0.1, 0.3, 0.6], [0.2, 0.1, 0.7]])
    reduce = torch.tensor([[0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.0, 0.5, 0.5], [0.3, 0.3, 0.4], [0.9, 0.1, 0.0]])
    genotype = derive(space, {"normal": normal, "reduce": reduce})
    # normal n0: s0 scores 0.05, s1 0.7 -> sep(s1); n1: 0.6, 0.6, 0.7 -> sep(n0)
    assert genotype.normal == (("sep_conv_3x3", 1, 0), ("sep_conv_3x3", 2, 1))
    # reduce n0: s0 0.8 (skip), s1 0.8 (sep): the tie goes to the lower input; n1: 0.5, 0.4, 0.1 -> s0, first max
    assert genotype.reduce == (("skip_connect", 0, 0), ("skip_connect", 0, 1))
    assert genotype.normal_concat == (2, 3)
    assert Genotype.from_json(genotype.to_json()) == genotype
    text = Genotype.parse(genotype.to_darts_text())  # darts text too: the concat fields say darts, not lhd
    assert (text.kind, text.normal, text.reduce) == ("darts", genotype.normal, genotype.reduce)
    net = EvalNetwork(genotype, 4, 3, 10, 3)
    assert net(torch.randn(2, 3, 8, 8))[0].shape == (2, 10)


@pytest.mark.parametrize("method", ["darts", "gdas", "sp-darts"])
def test_a_yaml_space_with_one_input_per_node_searches_under_other_methods(tmp_path, method):
    from robustdarts.search.loop import Search

    space = _space_file(tmp_path / "one.yaml", name="one-input-m", nodes=2, inputs_per_node=1,
                        ops=["none", "max_pool_3x3", "skip_connect", "sep_conv_3x3"])
    genotype = Search(tiny_config(method, str(space)), tmp_path / "run", progress=False).run()
    assert genotype.space == "one-input-m" and len(genotype.normal) == 2 and len(genotype.normal[0]) == 3


@pytest.mark.parametrize("change, field", [
    ({"ops": ["none", "conv_9x9"]}, "names unknown op 'conv_9x9'"),
    ({"nodes": 0}, "field 'nodes' is 0"),
    ({"inputs_per_node": 3}, "field 'inputs_per_node' is 3"),
    ({"ops": []}, "field 'ops' must be a non-empty list"),
    ({"ops": None, "edges": {"normal": [["skip_connect"]] * 8, "reduce": [["skip_connect"]] * 9}},
     "field 'edges.normal' has 8 edge lists, but 3 nodes make 9 edges"),
    ({"colour": "red"}, "unknown field 'colour'"),
    ({"nodes": "four"}, "field 'nodes' is 'four'"),
    ({"name": "darts"}, "field 'name' is 'darts', which is a built-in space"),
    ({"ops": ["none"]}, "offers only 'none'"),
])
def test_a_malformed_space_file_is_one_sentence_naming_the_field(tmp_path, change, field, capsys):
    space = _space_file(tmp_path / "bad.yaml", **change)
    assert rd(["search", "--space", space, *TINY, "--out", tmp_path / "run"]) == 2
    assert field in one_sentence(capsys.readouterr().err)
    assert not (tmp_path / "run").exists()


def test_a_space_file_that_is_not_a_mapping_is_one_sentence(tmp_path, capsys):
    for text, fragment in (("- a\n- b\n", "must hold a mapping"), ("name: [\n", "is not valid YAML")):
        space = tmp_path / "bad.yaml"
        space.write_text(text)
        assert rd(["spaces", space]) == 2
        assert fragment in one_sentence(capsys.readouterr().err)
    assert rd(["spaces", tmp_path / "missing.yaml"]) == 2
    assert "does not exist" in one_sentence(capsys.readouterr().err)
