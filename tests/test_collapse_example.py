"""examples/collapse.py's bookkeeping: R-DARTS(L2) selected from its grid, run directories, option parsing."""

import argparse
import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "examples" / "collapse.py"
_spec = importlib.util.spec_from_file_location("collapse_example", _PATH)
collapse = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(collapse)


def _run(method, seed, wd, val_acc, skips, retrain=None):
    run = {"method": method, "seed": seed, "weight_decay": wd, "val_acc": [0.1, val_acc],
           "skip_normal": [0, skips], "eigenvalue": {0: 0.1, 29: 1.0 + wd}, "eigenvalue_settled": 0.5 + wd}
    if retrain is not None:
        run["retrain"] = {"valid_acc": retrain[0], "test_acc": retrain[1]}
    return run


def test_rdarts_l2_selects_by_the_retrained_valid_acc_never_by_test_or_one_shot():
    results = [_run("darts", 2, 3e-4, 0.90, 8, retrain=(0.70, 0.99)),      # best one-shot and best test
               _run("rdarts-l2", 2, 9e-4, 0.80, 4, retrain=(0.75, 0.71)),  # best held-out accuracy
               _run("rdarts-l2", 2, 27e-4, 0.85, 7, retrain=(0.74, 0.80))]
    [selected] = collapse.select_l2(results, "retrain")
    assert selected["weight_decay"] == 9e-4 and selected["selected_by"] == "retrain"
    assert selected["grid"]["0.0003"]["retrain"] == {"valid_acc": 0.70, "test_acc": 0.99}
    [oneshot] = collapse.select_l2(results, "oneshot")
    assert oneshot["weight_decay"] == 3e-4


def test_rdarts_l2_is_the_grid_point_with_the_best_final_val_acc_darts_included():
    results = [_run("darts", 2, 3e-4, 0.811, 7), _run("rdarts-l2", 2, 9e-4, 0.823, 5),
               _run("rdarts-l2", 2, 27e-4, 0.796, 8), _run("lambda-darts", 2, 3e-4, 0.90, 1),  # not in the grid
               _run("darts", 3, 3e-4, 0.85, 2), _run("rdarts-l2", 3, 9e-4, 0.80, 6)]
    selected = {r["seed"]: r for r in collapse.select_l2(results, "oneshot")}
    assert selected[2]["weight_decay"] == 9e-4 and selected[2]["skip_normal"][-1] == 5
    assert selected[2]["method"] == "rdarts-l2"
    assert set(selected[2]["grid"]) == {"0.0003", "0.0009", "0.0027"}
    assert selected[2]["grid"]["0.0027"] == {"val_acc": 0.796, "skip_normal": 8, "eigenvalue": 1.0 + 27e-4,
                                            "eigenvalue_settled": 0.5 + 27e-4}
    # DARTS' own 3e-4 run wins seed 3: R-DARTS(L2) is then DARTS' architecture, reported as such.
    assert selected[3]["weight_decay"] == 3e-4 and selected[3]["skip_normal"][-1] == 2


def test_no_grid_run_no_selection():
    assert collapse.select_l2([_run("darts", 2, 3e-4, 0.8, 7)], "oneshot") == []


def test_run_directories_are_distinct_per_search():
    names = {collapse.run_dir_name("darts", None, {}), collapse.run_dir_name("rdarts-l2", 9e-4, {}),
             collapse.run_dir_name("rdarts-l2", 27e-4, {}), collapse.run_dir_name("lambda-darts", None, {}),
             collapse.run_dir_name("lambda-darts", None, {"reg": "signcorr"}),
             collapse.run_dir_name("lambda-darts", None, {"lambda": 0.25, "epsilon_0": 1e-3})}
    assert len(names) == 6
    assert collapse.run_dir_name("rdarts-l2", 27e-4, {}) == "rdarts-l2-wd0.0027"
    assert collapse.run_dir_name("lambda-darts", None, {"lambda": 0.25, "epsilon_0": 1e-3}) == \
        "lambda-darts-epsilon_0=0.001-lambda=0.25"


def test_option_parsing():
    assert collapse._option("lambda=0.25") == ("lambda", 0.25)
    assert collapse._option("epsilon_0=1e-3") == ("epsilon_0", 1e-3)  # YAML 1.1 alone reads "1e-3" as text
    assert collapse._option("reg=signcorr") == ("reg", "signcorr")
    with pytest.raises(argparse.ArgumentTypeError, match="KEY=VALUE"):
        collapse._option("lambda")


def test_grid_parsing():
    assert collapse._grid("9e-4,27e-4") == [9e-4, 27e-4]
    with pytest.raises(argparse.ArgumentTypeError, match="comma-separated"):
        collapse._grid("9e-4;27e-4")


def test_end_eigenvalue_is_arch_hessian_over_more_batches_cached_and_leaves_the_rng(tmp_path):
    import json

    import torch

    from robustdarts.analysis.hessian import arch_hessian
    from robustdarts.config import SearchConfig
    from robustdarts.data.stream import BatchStream
    from robustdarts.search.loop import Search

    torch.set_num_threads(1)
    cfg = SearchConfig(space="s3", method="darts", dataset="synthetic", epochs=1, batch_size=4, init_channels=4,
                       layers=3, image_size=8, limit_images=32, hessian_every=0, seed=0)
    search = Search(cfg, tmp_path / "run", progress=False)
    search.run()
    rng = torch.get_rng_state()
    value = collapse.settled_eigenvalue(search, 2)
    assert torch.equal(rng, torch.get_rng_state())
    stream = BatchStream(search.val_set, 4, search.augment, 7919, search.device)
    expected = arch_hessian(search.supernet, search.arch, [next(stream) for _ in range(2)])["eigenvalue"]
    assert value == pytest.approx(expected, rel=1e-5)
    cache = tmp_path / "run" / "eigenvalue-2batches.json"
    assert json.loads(cache.read_text()) == {"batches": 2, "epoch": 1, "eigenvalue": value}
    cache.write_text(json.dumps({"batches": 2, "epoch": 1, "eigenvalue": -1.0}))
    assert collapse.settled_eigenvalue(search, 2) == -1.0  # read back, not measured again
    cache.write_text(json.dumps({"batches": 2, "epoch": 0, "eigenvalue": -1.0}))
    assert collapse.settled_eigenvalue(search, 2) == pytest.approx(expected, rel=1e-5)  # stale: measured again


def test_op_mass_is_the_mean_over_the_edges_that_offer_the_op():
    import torch

    weights = torch.tensor([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    mass = collapse.op_mass(weights, [["none", "skip_connect"], ["none", "skip_connect", "sep_conv_3x3"]])
    assert mass == pytest.approx({"none": 0.35, "skip_connect": 0.4, "sep_conv_3x3": 0.5})
