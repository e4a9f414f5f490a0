"""The command line as a user meets it: JSON outputs tied to published counts, one-sentence errors with exit 2."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from robustdarts.config import TrainConfig, build
from robustdarts.runs import RunDir
from robustdarts.train import Train
from robustdarts.zoo import get_genotype

from conftest import LHD_EXAMPLE
FASHION = Path("/usr/share/datasets/fashion-mnist")


def cli(*args, cwd=None):
    env = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "robustdarts.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=1800)


def assert_user_error(result, *fragments):
    assert result.returncode == 2, result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    text = " ".join(result.stderr.split())
    for f in fragments:
        assert f in text, text


def test_show_json_reports_published_parameter_counts(tmp_path):
    out = json.loads(cli("show", "darts_v2", "--json").stdout)
    assert out["params"] == 3_349_342 and out["params_with_aux"] == 3_349_342 + 476_426
    lhd = json.loads(cli("show", LHD_EXAMPLE, "--json").stdout)
    assert lhd["params"] == 710_218 and lhd["params_with_aux"] == 1_186_644
    # the same genotype from DARTS text and from JSON
    text = tmp_path / "g.txt"
    text.write_text(get_genotype("darts_v2").to_darts_text())
    assert json.loads(cli("show", text, "--json").stdout)["params"] == 3_349_342
    js = tmp_path / "g.json"
    get_genotype("darts_v2").save(js)
    assert json.loads(cli("show", js, "--json").stdout)["params"] == 3_349_342
    drawing = tmp_path / "cells.png"
    r = cli("show", "darts_v2", "--draw", drawing)
    assert r.returncode == 0 and drawing.stat().st_size > 1000
    assert "3,349,342" in r.stdout


def test_spaces_and_methods_listings():
    spaces = {s["name"]: s for s in json.loads(cli("spaces", "--json").stdout)}
    assert spaces["darts"]["supernet_params_c10"] == 1_930_618 and spaces["s1"]["supernet_params_c10"] == 405_146
    assert spaces["s1"]["ops"]["normal"][12] == ["dil_conv_3x3", "dil_conv_5x5"]
    assert {"darts", "darts-7", "s1", "s2", "s3", "s4", "lhd", "nb201"} <= set(spaces)
    methods = {m["name"]: m for m in json.loads(cli("methods", "--json").stdout)}
    assert all(methods["darts-2nd"]["defaults"][kind]["arch_order"] == "second" for kind in ("darts", "lhd"))
    assert methods["lambda-darts"]["defaults"]["nb201"]["epochs"] == 100
    assert methods["lambda-darts"]["options"]["nb201"]["lambda"] == 0.25
    assert "DARTS" in methods["darts"]["paper"]


def test_bad_input_is_one_sentence_with_exit_code_2(tmp_path):
    assert_user_error(cli("show", "dartz_v9"), "unknown genotype 'dartz_v9'", "darts_v2")
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"kind": "darts", "normal": [')
    assert_user_error(cli("show", bad_json))
    bad_text = tmp_path / "bad.txt"
    bad_text.write_text("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3'")
    assert_user_error(cli("show", bad_text))
    evil = tmp_path / "evil.pl"
    evil.write_bytes(b"cos\nsystem\n(S'echo pwned'\ntR.")
    assert_user_error(cli("show", evil), "only")
    assert_user_error(cli("search", "--space", "s9", "--dataset", "synthetic"), "unknown search space 's9'", "s3")
    assert_user_error(cli("search", "--method", "dartz", "--dataset", "synthetic"), "unknown method 'dartz'")
    assert_user_error(cli("search", "--dataset", "imagenet-22k"), "unknown dataset")
    assert_user_error(cli("search", "--dataset", "cifar10", "--data-dir", tmp_path, "--out", tmp_path / "r"),
                      "cifar10")
    assert_user_error(cli("search", "--resume", tmp_path / "nothing"), "not a robustdarts run directory")
    assert_user_error(cli("show", "darts_v2", "--draw", tmp_path / "x.gif"), ".png or .svg")


def test_genotype_that_does_not_fit_its_space_is_refused(tmp_path):
    g = get_genotype("darts_v2").to_dict()
    g["space"] = "s1"  # sep_conv_3x3 is not allowed on every S1 edge
    path = tmp_path / "g.json"
    path.write_text(json.dumps(g))
    r = cli("show", path)
    assert_user_error(r, "s1")


def test_train_resume_is_exact(tmp_path):
    cfg = build(TrainConfig, dict(genotype="darts_v2", dataset="synthetic", epochs=2, batch_size=16, init_channels=4,
                                  layers=3, image_size=8, limit_images=80, valid_images=16, limit_test=64, seed=1))
    geno = get_genotype("darts_v2")
    full = Train(cfg, geno, tmp_path / "full", progress=False).run()
    Train(cfg, geno, tmp_path / "cut", progress=False).run(stop_after=0)
    resumed = Train.resume(tmp_path / "cut", progress=False).run()
    assert full["final_test_acc"] == resumed["final_test_acc"]
    assert full["final_valid_acc"] == resumed["final_valid_acc"] is not None
    a, b = RunDir(tmp_path / "full").read_metrics(), RunDir(tmp_path / "cut").read_metrics()
    assert [r["train_loss"] for r in a] == [r["train_loss"] for r in b]
    assert [r["valid_loss"] for r in a] == [r["valid_loss"] for r in b]
    ckpt = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 2
    sessions = json.loads((tmp_path / "cut" / "environment.json").read_text())["resumed"]  # one resumed session
    assert [s["cpu_capability"] for s in sessions] == [torch.backends.cpu.get_cpu_capability()]


def test_train_holds_validation_images_out_of_training():
    cfg = build(TrainConfig, dict(genotype="darts_v2", dataset="synthetic", epochs=1, batch_size=16, init_channels=4,
                                  layers=3, image_size=8, limit_images=80, valid_images=16, limit_test=32, seed=1))
    run = Train(cfg, get_genotype("darts_v2"), None, progress=False)
    assert len(run.train_set) == 64 and len(run.valid_set) == 16
    valid_images = {bytes(x.numpy()) for x in run.valid_set.images}
    # The weight steps draw from the 64 kept images only, never from the 16 held out.
    assert len(run.stream.images) == 64 and run.stream.steps_per_epoch == 4
    assert not valid_images & {bytes(x.numpy()) for x in run.stream.images}
    record = run.test()
    assert set(record) == {"test_acc", "test_loss", "valid_acc", "valid_loss"}
    assert (16 * record["valid_acc"]).is_integer() and (32 * record["test_acc"]).is_integer()  # over 16 and 32 images
    # Scored by the test set's procedure: pointed at the test images, the valid numbers are the test numbers.
    run.valid_set = run.test_set
    again = run.test()
    assert (again["valid_acc"], again["valid_loss"]) == (again["test_acc"], again["test_loss"])


@pytest.mark.slow
@pytest.mark.skipif(not FASHION.exists(), reason="Debian's dataset-fashion-mnist is not installed")
def test_end_to_end_search_derive_train_on_fashion_mnist(tmp_path):
    run = tmp_path / "s3"
    r = cli("search", "--space", "s3", "--dataset", "fashion-mnist", "--preset", "tiny", "--out", run, "--json",
            "--draw", tmp_path / "cell.png")
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["val_acc"] > 0.5  # 10 classes: chance is 0.1
    for name in ("config.yaml", "environment.json", "metrics.jsonl", "archive.pt", "genotype.json", "checkpoint.pt"):
        assert (run / name).exists(), name
    assert (tmp_path / "cell.png").stat().st_size > 1000
    derived = json.loads(cli("derive", run, "--epoch", "0", "--json").stdout)
    assert derived["epoch"] == 0 and derived["genotype"]["kind"] == "darts"
    t = cli("train", run, "--dataset", "fashion-mnist", "--preset", "tiny", "--out", tmp_path / "t", "--json")
    assert t.returncode == 0, t.stderr[-2000:]
    result = json.loads(t.stdout.strip().splitlines()[-1])
    assert result["final_test_acc"] > 0.5 and result["params"] > 0


def test_search_config_file_fields_win_over_unset_flags_and_leave_preset_defaults(tmp_path):
    """A YAML file sets only its own fields: a flag left out does not overwrite them (space/method used to fall
    back to the flag defaults), and a field the file omits keeps the method preset's value."""
    from robustdarts.cli import search_config

    path = tmp_path / "cfg.yaml"
    path.write_text("space: s3\nmethod: rdarts-l2\nepochs: 7\nseed: 4\n")
    cfg = search_config(path, None)
    assert (cfg.space, cfg.method, cfg.epochs, cfg.seed) == ("s3", "rdarts-l2", 7, 4)
    assert cfg.weight_decay == 27e-4 and cfg.arch_order == "second"  # R-DARTS(L2)'s preset, not the dataclass's
    assert cfg.dataset == "fashion-mnist"
    # Flags given win over the file; --set wins over both.
    cfg = search_config(path, ["weight_decay=9e-4"], space="s2", epochs=None)
    assert (cfg.space, cfg.epochs, cfg.weight_decay) == ("s2", 7, 9e-4)
    # A run's own config.yaml (every field) reproduces that run's config.
    from robustdarts.config import to_yaml
    full = tmp_path / "full.yaml"
    full.write_text(to_yaml(search_config(path, ["lr=0.2"])))
    assert search_config(full, None) == search_config(path, ["lr=0.2"])


def test_set_values_in_exponent_notation_are_numbers():
    from robustdarts.cli import _parse_sets

    assert _parse_sets(["weight_decay=1e-3", "method.epsilon_0=1e-3", "method.reg=signcorr", "epochs=3"]) == \
        {"weight_decay": 1e-3, "method_options": {"epsilon_0": 1e-3, "reg": "signcorr"}, "epochs": 3}


def test_parse_value_reads_numbers_yaml_leaves_as_text_and_nothing_else():
    from robustdarts.config import parse_value

    assert parse_value("1e-3") == 1e-3 and isinstance(parse_value("1e-3"), float)  # YAML 1.1: the string "1e-3"
    assert parse_value("3") == 3 and isinstance(parse_value("3"), int)
    assert parse_value("signcorr") == "signcorr"
    assert parse_value("nan") == "nan" and parse_value("inf") == "inf"  # float() would take these words
    assert parse_value("true") is True and parse_value("") is None
