"""The LHD protocol: the 1M condition's network, LHD's evaluation recipe chosen by the genotype's space, and the
conditions as one-sentence errors when unknown (spec L §2.2–§2.3; code chaoji90/LHD eval/<ds>/train.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import yaml

from conftest import LHD_RESULTS
from robustdarts.config import TrainConfig, build
from robustdarts.eval_recipe import train_defaults
from robustdarts.lhd_pl import genotype_from_pl
from robustdarts.train import Train
from robustdarts.zoo import get_genotype

CLASSES = {"cifar10": 10, "cifar100": 100, "svhn": 10}


def lhd_params(genotype, C: int, layers: int, classes: int, with_aux: bool = False) -> int:
    """Parameters of LHD's evaluation network, worked out from the reference's modules (eval/
    multi_path_concat_sum.py, operations.py), independently of our builder:

    - stems: conv 3x3 3→C + BN(C) = 27C + 2C; conv 3x3 3→3C + BN(3C) = 81C + 6C;
    - cell with C_pp, C_p → C: preprocess0 ReLU-conv1x1-BN(affine) = C_pp·C + 2C unless C_pp == C (identity),
      preprocess1 = C_p·C + 2C; reductions at L//3 and 2L//3 double C;
    - ops at C channels (affine BN): sep/dil k×k = one depthwise conv C·k² + BN 2C; pools carry a non-affine BN
      (0); skip at stride 1 = 0, at stride 2 (input of a reduction cell) FactorizedReduce = 2·(C·C/2) + 2C;
    - next cell: C_pp, C_p = C, |concat|·C; classifier (C_pp + C_p)·classes + classes;
    - auxiliary head after cell 2L//3 on C_pp + C_p channels: conv1x1 →128 + BN, conv2x2 128→768 + BN, linear.
    """
    kernel = {"sep_conv_3x3": 9, "sep_conv_5x5": 25, "dil_conv_3x3": 9, "dil_conv_5x5": 25}

    def op(name, c, stride):
        if name in kernel:
            return c * kernel[name] + 2 * c
        if name == "skip_connect":
            return 0 if stride == 1 else c * c + 2 * c
        return 0  # pools

    total = 27 * C + 2 * C + 81 * C + 6 * C
    c_pp, c_p, c = C, 3 * C, C
    aux = 0
    for i in range(layers):
        red = i in (layers // 3, 2 * layers // 3)
        c = 2 * c if red else c
        genes, output = (genotype.reduce, genotype.reduce_output) if red else (genotype.normal, genotype.normal_output)
        total += (0 if c_pp == c else c_pp * c + 2 * c) + c_p * c + 2 * c
        total += sum(op(name, c, 2 if red and inp < 2 else 1) for name, inp, _ in genes)
        c_pp, c_p = c, len(output["concat"]) * c
        if i == 2 * layers // 3:
            aux_c = c_pp + c_p
            aux = aux_c * 128 + 256 + 128 * 768 * 4 + 1536 + 768 * classes + classes
    total += (c_pp + c_p) * classes + classes
    return total + (aux if with_aux else 0)


def reference_width(genotype, classes: int) -> int:
    """The reference's loop: C from 36, += 2 until count_parameters_in_MB(model) >= 1.5, 25 layers."""
    C = 36
    while lhd_params(genotype, C, 25, classes) / 1e6 < 1.5:
        C += 2
    return C


def _files(dataset: str, n: int = 2):
    files = sorted(LHD_RESULTS.glob(f"{dataset}/*/*.pl"))
    return files[:: max(1, len(files) // n)][:n]


@pytest.mark.parametrize("dataset", list(CLASSES))
def test_show_1m_reproduces_the_references_width_and_counts(dataset):
    for path in _files(dataset):
        geno = genotype_from_pl(path, "1m")
        width = reference_width(geno, CLASSES[dataset])
        result = subprocess.run([sys.executable, "-m", "robustdarts.cli", "show", str(path), "--condition", "1m",
                                 "--dataset", dataset, "--json"], capture_output=True, text=True, check=True)
        info = json.loads(result.stdout)
        assert (info["layers"], info["channels"]) == (25, width), path.name
        assert info["params"] == lhd_params(geno, width, 25, CLASSES[dataset]) >= 1_500_000
        assert info["params_with_aux"] == lhd_params(geno, width, 25, CLASSES[dataset], with_aux=True)
        assert 40 <= width <= 82  # the range the spec computed over all released files (L §2.2)
        base = genotype_from_pl(path, "base")
        assert base == geno  # 1M discretizes as Base: only the network differs


def test_lhd_training_recipe_by_dataset_and_condition():
    geno = genotype_from_pl(_files("cifar10", 1)[0])
    concat = len(geno.normal_output["concat"])
    c10 = train_defaults(geno, "cifar10", "base")
    assert (c10["batch_size"], c10["epochs"], c10["layers"], c10["init_channels"]) == (64, 600, 20, 36)
    assert c10["drop_path"] == pytest.approx(0.01 * concat) and c10["cutout"] == 16 and c10["augment"]
    assert c10["adaptive_drop_path"] is None and c10["report_best_after"] == 400
    svhn = train_defaults(geno, "svhn", "3ops")
    assert svhn["cutout"] == 0 and svhn["augment"] is False  # no crop, flip or cutout on SVHN
    assert svhn["drop_path"] == pytest.approx(0.02 * concat) and svhn["adaptive_drop_path"][1] == 0.97
    c100 = train_defaults(geno, "cifar100", "1m")
    assert c100["drop_path"] == pytest.approx(0.03 * concat) and c100["layers"] == 25
    assert c100["adaptive_drop_path"] == (400, 0.75, 5e-4, 0.85, 1e-4)
    # A DARTS genotype keeps DARTS' recipe (the TrainConfig defaults); --set still wins over LHD's.
    assert train_defaults(get_genotype("darts_v2"), "cifar10") == {"condition": "base"}
    cfg = build(TrainConfig, {"batch_size": 32}, "train", base=c10)
    assert cfg.batch_size == 32 and cfg.drop_path == c10["drop_path"]


def test_adaptive_drop_path_follows_the_reference_rule():
    """eval/svhn/train.py: epoch <= 400 and train acc > 97 % → max += 5e-4; epoch > 400 and > 99 % → += 1e-4."""
    trainer = Train.__new__(Train)
    trainer.cfg = TrainConfig(adaptive_drop_path=(400, 0.97, 5e-4, 0.99, 1e-4), report_best_after=400,
                              drop_path=0.1)
    trainer.drop_max, trainer.best_late = 0.1, None
    for epoch, acc, test, expected in [(0, 0.98, 0.5, 0.1005), (400, 0.96, 0.6, 0.1005), (401, 0.985, 0.7, 0.1005),
                                       (402, 0.995, 0.65, 0.1006)]:
        trainer.epoch = epoch
        trainer.after_epoch({"train_acc": acc, "test_acc": test})
        assert trainer.drop_max == pytest.approx(expected)
    assert trainer.best_late == 0.7  # best test accuracy over epochs > 400 only


def test_train_on_an_lhd_genotype_records_lhds_recipe(tmp_path):
    from typer.testing import CliRunner

    from robustdarts.cli import app

    path = _files("cifar10", 1)[0]
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", str(path), "--dataset", "synthetic", "--out", str(out), "--json",
                                      "--no-progress", "--set", "epochs=2", "--set", "init_channels=4",
                                      "--set", "layers=3", "--set", "image_size=8", "--set", "limit_images=64",
                                      "--set", "limit_test=32", "--set", "report_best_after=0"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    concat = len(genotype_from_pl(path).normal_output["concat"])
    assert cfg["batch_size"] == 64 and cfg["drop_path"] == pytest.approx(0.01 * concat)
    assert cfg["condition"] == "base" and cfg["lr_min"] == 0.0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert summary["reference_best_test_acc"] == records[1]["test_acc"]  # epochs > 0 here
    assert summary["final_test_acc"] == records[-1]["test_acc"] and "chosen on the test set" in \
        summary["reference_metric"]


@pytest.mark.parametrize("args", [["show", "{pl}", "--condition", "2m"], ["show", "darts_v2", "--condition", "1m"],
                                  ["train", "{pl}", "--condition", "5ops", "--dataset", "synthetic"]])
def test_a_bad_condition_is_one_sentence(args):
    path = str(_files("cifar10", 1)[0])
    result = subprocess.run([sys.executable, "-m", "robustdarts.cli", *[a.format(pl=path) for a in args]],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "condition" in result.stderr and len(result.stderr.strip().splitlines()) <= 3


def test_meta_build_matches_a_real_build():
    geno = genotype_from_pl(_files("svhn", 1)[0], "1m")
    from robustdarts.evalnet import EvalNetwork
    from robustdarts.layers import count_parameters
    with torch.device("meta"):
        meta = EvalNetwork(geno, 40, 25, 10, 3)
    assert count_parameters(meta) == count_parameters(EvalNetwork(geno, 40, 25, 10, 3))


# ---- PC-DARTS and SurgeNAS ------------------------------------------------------------------------------------------
def test_pc_darts_computes_every_op_on_a_quarter_of_the_channels():
    from conftest import tiny_config
    from robustdarts.methods import StepContext
    from robustdarts.search.loop import Search

    from robustdarts.speed import REFERENCE_ORDER

    # Whole ops are hooked: the NCHW path (mix_in_bn and share_pools run an op layer by layer).
    search = Search(tiny_config("pc-darts", "darts", init_channels=8, **REFERENCE_ORDER), None, progress=False)
    assert search.cfg.partial_channels == 4 and search.cfg.batch_size == 8
    seen = []
    hooks = [op.register_forward_hook(lambda m, inp, out, cell=cell: seen.append((cell.C, inp[0].shape[1])))
             for cell in search.supernet.cells for edge in cell.edges for op in edge.ops]
    ctx, _ = search.begin_epoch()
    x, y = next(search.train_stream)
    search.weight_step(ctx, x, y)
    for h in hooks:
        h.remove()
    assert len(seen) == 3 * 14 * 7  # every op but none, dense
    assert all(channels == C // 4 for C, channels in seen)
    # Edge normalization: β per edge, softmax over each node's inputs, scaling whole edges and the derivation.
    weights = search.relaxed(ctx, "eval")
    assert weights["normal_edge"].shape == (14,)
    torch.testing.assert_close(weights["normal_edge"][:2].sum(), torch.tensor(1.0))
    derive = search.relaxed(ctx, "derive")
    expected = torch.softmax(search.arch.alphas["normal"].detach(), -1)[2:5] * \
        torch.softmax(search.arch.edges["normal"].detach()[2:5], 0).unsqueeze(-1)
    torch.testing.assert_close(derive["normal"][2:5], expected)


def test_channel_shuffle_and_bypass_match_the_reference_layout():
    from robustdarts.supernet import EdgeOptions, MixedEdge, channel_shuffle

    x = torch.arange(8.0).view(1, 8, 1, 1).expand(1, 8, 2, 2).contiguous()
    # Groups of 4: channel i·(8/4)+j goes to j·4+i (ShuffleNet's view-transpose-view).
    assert channel_shuffle(x, 4)[0, :, 0, 0].tolist() == [0, 2, 4, 6, 1, 3, 5, 7]
    edge = MixedEdge(("skip_connect", "avg_pool_3x3"), 8, 2, "darts", EdgeOptions(partial=4)).eval()
    x = torch.arange(8.0).view(1, 8, 1, 1).expand(2, 8, 4, 4).contiguous()
    out = edge(x, torch.relu(x), torch.tensor([1.0, 0.0]), [True, False])
    assert out.shape == (2, 8, 2, 2)  # stride 2: ops on 2 channels, 6 bypassed channels max-pooled 2x2
    # cat([op output (2), bypass x[2:8] (6)]) shuffled in 4 groups: out = cat[[0, 2, 4, 6, 1, 3, 5, 7]], so output
    # channels 1, 2, 3, 5, 6, 7 are x's channels 2, 4, 6, 3, 5, 7 and 0, 4 come from the ops.
    for out_c, x_c in zip((1, 2, 3, 5, 6, 7), (2, 4, 6, 3, 5, 7)):
        assert torch.equal(out[:, out_c], torch.full((2, 2, 2), float(x_c)))
    assert edge.ops[0].conv_1.in_channels == 2  # the skip's FactorizedReduce sees C/K channels


def test_pc_darts_warmup_takes_no_arch_step_and_draws_no_val_batch(tmp_path):
    from conftest import tiny_config
    from robustdarts.search.loop import Search

    cfg = tiny_config("pc-darts", "s2", init_channels=8, epochs=2, method_options={"arch_warmup": 1})
    search = Search(cfg, tmp_path / "run", progress=False)
    alpha0 = search.arch.as_dict()
    search.run(stop_after=0)
    assert all(torch.equal(v, search.arch.as_dict()[k]) for k, v in alpha0.items())  # epoch 0: warmup
    assert (search.val_stream.epoch, search.val_stream.position) == (0, 0)  # no validation batch drawn
    resumed = Search.resume(tmp_path / "run", progress=False)
    resumed.run()
    full = Search(cfg, None, progress=False)
    full.run()
    for k, v in full.arch.as_dict().items():  # resumable exactly (no random channel draws to restore)
        assert torch.equal(v, resumed.arch.as_dict()[k]), k
    assert not torch.equal(full.arch.as_dict()["alpha/normal"], alpha0["alpha/normal"])  # epoch 1 stepped α


def test_surgenas_weights_its_auxiliary_skip_by_alpha():
    from conftest import tiny_config
    from robustdarts.methods import StepContext
    from robustdarts.search.loop import Search

    search = Search(tiny_config("surgenas", "lhd"), None, progress=False)
    assert search.cfg.arch_order == "single" and search.cfg.weights_on_all_data and search.cfg.batch_size == 8
    assert len(search.train_stream.images) == 32  # the whole training set
    ctx = StepContext(0, 0, 1, search.train_stream.steps_per_epoch)
    weights = search.relaxed(ctx, "arch")
    torch.testing.assert_close(weights["normal_extra"], weights["normal"].sum(-1))
    assert weights["normal_extra"].requires_grad  # α learns through the skip too
    alpha = search.arch.as_dict()["alpha/normal"]
    search.run()
    assert not torch.equal(alpha, search.arch.as_dict()["alpha/normal"])  # single level: α stepped
