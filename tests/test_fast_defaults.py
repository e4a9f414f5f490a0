"""Fast by default (issue 28): the "auto" speed settings are chosen in one place (speed.py, memory.py), recorded
resolved in config.yaml, overridable with --set, and kept by a resumed run; memory picks a recomputation level
instead of refusing; the thread count follows the work's size.

The truths here are the rules themselves, worked by hand: which layout a CPU config gets (the measured choice of
benchmarks/README.md), which level a machine of a given size must take (the estimates memory.py documents, with a
patched machine memory between them), and the thread counts of the two measured sizes.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import pytest
import torch
import yaml

from conftest import invoke, tiny_config
from robustdarts import memory
from robustdarts.config import SearchConfig, build
from robustdarts.memory import search_estimate
from robustdarts.search.loop import Search
from robustdarts import speed
from robustdarts.speed import REFERENCE_ORDER, choose_threads, resolve_layout, threads_for

TINY = ["--dataset", "synthetic", "--layers", "3", "--channels", "4", "--batch-size", "8", "--epochs", "1",
        "--set", "image_size=8", "--set", "limit_images=32", "--set", "leakage_every=0", "--no-progress"]


def recorded(run: Path) -> dict:
    return yaml.safe_load((run / "config.yaml").read_text())


# ---- defaults resolved and recorded ------------------------------------------------------------------------------
def test_a_default_cpu_search_records_its_resolved_settings(tmp_path):
    code, out = invoke(["search", *TINY, "--out", tmp_path / "run"], tmp_path)
    assert code == 0, out
    cfg = recorded(tmp_path / "run")
    # On the CPU: NHWC, mix_in_bn (first order), share_pools and the direct depthwise gradients, no recomputation
    # where the memory suffices.
    assert (cfg["channels_last"], cfg["mix_in_bn"], cfg["share_pools"], cfg["fast_depthwise"], cfg["recompute"]) == \
        (True, True, True, True, "none")
    assert cfg["threads"] == "auto"  # chosen per session; the count used is in environment.json
    assert json.loads((tmp_path / "run" / "environment.json").read_text())["threads"] == 1  # tiny work: one
    assert "note:" not in out


def test_explicit_settings_are_honoured(tmp_path):
    code, out = invoke(["search", *TINY, "--out", tmp_path / "run", "--set", "channels_last=false",
                        "--set", "mix_in_bn=true"], tmp_path)
    assert code == 0, out
    cfg = recorded(tmp_path / "run")
    # mix_in_bn as given; share_pools and fast_depthwise follow channels_last (auto): the NCHW path without them.
    assert (cfg["channels_last"], cfg["share_pools"], cfg["fast_depthwise"], cfg["mix_in_bn"]) == \
        (False, False, False, True)


@pytest.mark.parametrize("fields,expected", [
    ({}, (True, True, True, True)),
    (dict(arch_order="second"), (True, False, True, True)),  # the unrolled step measured faster without the fold
    (dict(channels_last=False), (False, False, False, False)),  # fold, pools, depthwise rules: measured on NHWC
    (dict(compile="ops"), (False, False, False, False)),  # compiled whole ops: measured NCHW, the two split ops
    (dict(mix_in_bn=False), (True, False, True, True)),
    (dict(fast_depthwise=False), (True, True, True, False)),
    (dict(device="meta"), (False, False, False, False)),  # not a CPU: nothing measured, the plain build
])
def test_layout_rule_per_device_and_case(fields, expected):
    cfg = SearchConfig(**fields)
    resolved = resolve_layout(cfg)
    assert (resolved.channels_last, resolved.mix_in_bn, resolved.share_pools, resolved.fast_depthwise) == expected
    assert resolve_layout(resolved) is resolved  # resolving twice changes nothing


def test_auto_is_a_value_of_the_speed_fields_and_bad_values_are_one_sentence():
    cfg = build(SearchConfig, dict(channels_last="AUTO", threads="auto", recompute="auto"))
    assert (cfg.channels_last, cfg.threads, cfg.recompute) == ("auto", "auto", "auto")
    for field, value, words in (("channels_last", "maybe", "true or false or auto"), ("threads", -1, "[0, 4096]"),
                                ("recompute", "sometimes", "auto, none, edge, cell")):
        with pytest.raises(Exception) as e:
            build(SearchConfig, {field: value})
        assert type(e.value).__name__ == "RobustDartsError" and words in str(e.value), str(e.value)


def test_a_resumed_run_keeps_its_own_settings(tmp_path, monkeypatch):
    # A run recorded with the original float order (as every run before these defaults was) resumes in it, though
    # a new run now resolves otherwise, and ends where an uninterrupted run in that order ends.
    cfg = tiny_config(epochs=2, **REFERENCE_ORDER)
    full = Search(cfg, tmp_path / "full", progress=False)
    full.run()
    cut = Search(cfg, tmp_path / "cut", progress=False)
    cut.run(stop_after=0)
    assert recorded(tmp_path / "cut")["channels_last"] is False
    resumed = Search.resume(tmp_path / "cut", progress=False)
    assert not resumed.supernet.channels_last and resumed.cfg.recompute == "none"
    assert resumed.run() == full.genotype
    for key, value in full.arch.as_dict().items():
        assert torch.equal(value, resumed.arch.as_dict()[key]), key


def test_a_run_recorded_before_a_speed_field_existed_resumes_without_it(tmp_path):
    """A config.yaml written by a version that had no fast_depthwise (or no layout fields at all) resumes on the
    stock path it ran on, not on what "auto" now chooses — and ends where an uninterrupted stock run ends."""
    cfg = tiny_config("darts", "darts", epochs=2, **REFERENCE_ORDER)
    full = Search(cfg, tmp_path / "full", progress=False)
    full.run()
    Search(cfg, tmp_path / "cut", progress=False).run(stop_after=0)
    path = tmp_path / "cut" / "config.yaml"
    lines = path.read_text().splitlines()
    old = [line for line in lines if line.split(":")[0] not in REFERENCE_ORDER]
    assert len(old) == len(lines) - len(REFERENCE_ORDER)
    path.write_text("\n".join(old) + "\n")
    resumed = Search.resume(tmp_path / "cut", progress=False)
    assert {k: getattr(resumed.cfg, k) for k in REFERENCE_ORDER} == REFERENCE_ORDER
    assert resumed.run() == full.genotype
    for key, value in full.arch.as_dict().items():
        assert torch.equal(value, resumed.arch.as_dict()[key]), key


# ---- memory: chosen, not refused ----------------------------------------------------------------------------------
def _machine(monkeypatch, nbytes: int) -> None:
    monkeypatch.setattr(memory, "machine_memory", lambda device="cpu": (nbytes, "this machine's"))


def test_a_search_too_big_without_recomputation_starts_with_edge_and_one_note(tmp_path, monkeypatch):
    cfg = tiny_config()
    dense, edge = search_estimate(cfg, "none").total, search_estimate(cfg, "edge").total
    assert edge < dense
    _machine(monkeypatch, (dense + edge) // 2)  # refused before this issue; fits recomputing each edge
    code, out = invoke(["search", *TINY, "--space", "s3", "--out", tmp_path / "run"], tmp_path)
    assert code == 0, out
    notes = [line for line in out.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "recompute=edge" in notes[0], out
    assert recorded(tmp_path / "run")["recompute"] == "edge"
    # Resumed on a machine with room to spare, it keeps its own level (and, asked for none, none is refused).
    monkeypatch.undo()
    search = Search.resume(tmp_path / "run", progress=False)
    assert search.cfg.recompute == "edge" and search.supernet.recompute == "edge"


def test_the_first_level_that_fits_is_chosen(monkeypatch):
    def sizes(cfg):
        return {level: search_estimate(cfg, level).total for level in ("none", "edge", "cell")}

    cfg = tiny_config()
    tiny = sizes(cfg)
    assert tiny["edge"] < tiny["cell"] < tiny["none"]  # 3 cells: a whole recomputed cell holds more than an edge
    _machine(monkeypatch, tiny["none"])
    assert memory.choose_recompute(cfg)[0::2] == ("none", None)  # fits: no recomputation, no note
    _machine(monkeypatch, tiny["none"] - 1)
    level, estimate, note = memory.choose_recompute(cfg)
    assert level == "edge" and estimate.total == tiny["edge"] and note.startswith("recompute=edge: ")
    assert memory.choose_recompute(tiny_config(recompute="cell"))[0::2] == ("cell", None)  # explicit, fits: kept
    with pytest.raises(Exception, match=r"with recompute=none, .*; use recompute=edge \(or auto\)\.$"):
        memory.choose_recompute(tiny_config(recompute="none"))  # asked for none: told which level fits
    deep = tiny_config(layers=30)
    many = sizes(deep)
    assert many["cell"] < many["edge"]  # 30 cells: under cell each keeps only its output
    _machine(monkeypatch, many["edge"] - 1)
    assert memory.choose_recompute(deep)[0] == "cell"


def test_a_search_that_fits_in_no_level_is_refused_before_any_data_or_network(tmp_path, monkeypatch):
    cfg = tiny_config()
    least = min(search_estimate(cfg, level).total for level in ("none", "edge", "cell"))
    _machine(monkeypatch, least - 1)

    def must_not_run(*args, **kwargs):
        raise AssertionError("loaded data or built a network for a search that cannot fit")

    loop = importlib.import_module("robustdarts.search.loop")  # (robustdarts.search is also a function's name)
    monkeypatch.setattr(loop, "load_dataset", must_not_run)
    monkeypatch.setattr(loop, "Supernet", must_not_run)
    code, out = invoke(["search", *TINY, "--space", "s3", "--out", tmp_path / "run"], tmp_path)
    assert code == 2 and len(out.strip().splitlines()) <= 3 and "Traceback" not in out, out
    assert "even with recomputation" in out and not (tmp_path / "run").exists()


# ---- threads ------------------------------------------------------------------------------------------------------
def test_threads_follow_the_work_and_never_exceed_what_the_process_has():
    assert choose_threads(32, 8, 16, available=2) == 1  # the tiny preset: measured no gain from a second thread
    assert choose_threads(64, 16, 32, available=2) == 2  # the standard size: ~1.8x from two
    assert choose_threads(64, 16, 32, available=1) == 1  # a bench cell's or a spawned rank's share
    assert choose_threads(8, 4, 8, available=16) == 1
    standard = SearchConfig(batch_size=64, init_channels=16, nproc=1)
    assert threads_for(standard, 32, available=2) == 2
    assert threads_for(SearchConfig(batch_size=64, init_channels=16, nproc=8), 32, available=2) == 1  # 8 a rank
    assert threads_for(SearchConfig(threads=3), 32, available=2) == 3  # the field overrides
    assert threads_for(SearchConfig(threads=0), 32, available=2) == threads_for(standard, 32, available=2)


def test_the_threads_field_sets_the_sessions_count_and_environment_records_it(tmp_path):
    try:
        Search(tiny_config(threads=2), tmp_path / "run", progress=False)
        assert torch.get_num_threads() == 2
        assert json.loads((tmp_path / "run" / "environment.json").read_text())["threads"] == 2
        torch.set_num_threads(2)
        Search(tiny_config(), None, progress=False)  # tiny work, auto: one thread, whatever the process had
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(1)


def test_importing_robustdarts_makes_openmp_wait_passively_unless_the_user_chose():
    import subprocess
    import sys

    code = "import os, robustdarts; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    for given, expected in ((None, "PASSIVE"), ("ACTIVE", "ACTIVE")):
        run_env = env if given is None else {**env, "OMP_WAIT_POLICY": given}
        done = subprocess.run([sys.executable, "-c", code], env=run_env, capture_output=True, text=True, check=True)
        assert done.stdout.strip() == expected


def test_a_small_search_does_not_lower_the_threads_a_later_search_is_given(monkeypatch):
    """The tiny search runs on one thread; a standard-size search after it in the same process (the Python API)
    still gets the threads the process was given, not the one the tiny search left set."""
    monkeypatch.setattr(speed, "_GIVEN", [])
    torch.set_num_threads(2)
    try:
        Search(tiny_config(), None, progress=False)
        assert torch.get_num_threads() == 1  # tiny work: one thread
        standard = SearchConfig(batch_size=64, init_channels=16)
        assert threads_for(standard, 32, speed.given_threads()) == 2
    finally:
        torch.set_num_threads(1)


# ---- training from scratch: the same speed defaults ----------------------------------------------------------------
def _train(tmp_path, name, **fields):
    from robustdarts.config import TrainConfig
    from robustdarts.train import Train
    from robustdarts.zoo import get_genotype

    cfg = TrainConfig(genotype="darts_v2", dataset="synthetic", epochs=1, batch_size=8, init_channels=4, layers=3,
                      image_size=8, limit_images=16, limit_test=8, **fields)
    return Train(cfg, get_genotype("darts_v2"), tmp_path / name, progress=False)


def test_training_records_resolved_speed_settings_and_agrees_with_the_stock_path(tmp_path):
    fast = _train(tmp_path, "fast")
    assert (fast.cfg.channels_last, fast.cfg.fast_depthwise, fast.threads) == (True, True, 1)  # CPU, tiny work
    assert recorded(tmp_path / "fast")["channels_last"] is True and fast.net.channels_last
    stock = _train(tmp_path, "stock", channels_last=False, fast_depthwise=False)
    assert recorded(tmp_path / "stock")["fast_depthwise"] is False
    stock.net.load_state_dict(fast.net.state_dict())
    x, y = next(fast.stream)
    grads = []
    for t in (fast, stock):
        t.net.train()
        torch.manual_seed(0)  # drop path draws
        logits, aux = t.net(x, 0.2)
        loss = torch.nn.functional.cross_entropy(logits, y) + 0.4 * torch.nn.functional.cross_entropy(aux, y)
        grads.append(torch.autograd.grad(loss, list(t.net.parameters())))
    for a, b in zip(*grads):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-5), (a - b).abs().max()
