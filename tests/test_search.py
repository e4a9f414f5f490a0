"""The search loop: second-order gradient against exact autograd, resume exactness, run artefacts, bad input."""

import json
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
import yaml

from robustdarts.archparams import ArchParams
from robustdarts.config import SearchConfig, build
from robustdarts.errors import RobustDartsError
from robustdarts.relax import arch_weights
from conftest import tiny_config
from robustdarts.runs import RunDir, load_tensors, numerics_drift
from robustdarts.search import architect
from robustdarts.search.loop import Search
from robustdarts.supernet import Supernet


def tiny_cfg(**kw):
    return tiny_config(**{"epochs": 3, "batch_size": 16, "limit_images": 96, "seed": 3, **kw})


def test_search_lr_follows_the_closed_form_cosine_of_the_reference_logs():
    # Spec D §1.4 / §6.4, through the loop's own schedule.
    search = Search(tiny_cfg(epochs=50, lr=0.025, lr_min=0.001))
    assert search.lr_at(0) == pytest.approx(0.025)
    assert search.lr_at(1) == pytest.approx(0.02497632, abs=1e-8)
    assert search.lr_at(25) == pytest.approx(0.013)
    assert search.lr_at(49) == pytest.approx(0.0010237, abs=1e-7)
    assert Search(tiny_cfg(lr_schedule="constant", lr=0.05)).lr_at(30) == 0.05


def test_second_order_gradient_equals_exact_double_backward():
    """The finite-difference unrolled gradient against autograd through the virtual step (float64)."""
    torch.manual_seed(0)
    net = Supernet("s2", C=4, layers=3, num_classes=10).double()
    arch = ArchParams("s2").double()
    with torch.no_grad():
        for p in arch.parameters():
            p.normal_(0, 0.5)
    xt, yt = torch.randn(4, 3, 8, 8, dtype=torch.float64), torch.randint(0, 10, (4,))
    xv, yv = torch.randn(4, 3, 8, 8, dtype=torch.float64), torch.randint(0, 10, (4,))
    params = list(net.parameters())
    momentum = [0.1 * torch.randn_like(p) for p in params]
    lr, mu, wd = 0.05, 0.9, 3e-4
    net.eval()  # fixed BN statistics make the loss a smooth function of w (train mode works too, see below)

    arch_params = list(arch.parameters())

    def unrolled_grad(r):
        for p in arch_params:
            p.grad = None
        architect.unrolled(net, arch_params, lambda: arch_weights(arch), xt, yt, xv, yv, lr=lr, momentum=mu,
                           weight_decay=wd, momentum_buffers=momentum, r=r)
        return [p.grad.clone() for p in arch_params]

    # The central difference errs by O(ε²): tight at a small step, within 1% at DARTS' ε = 0.01/‖v‖.
    fd_tight, fd_default = unrolled_grad(1e-5), unrolled_grad(0.01)

    # exact: d/dα L_val(w − ξ(μm + ∇w L_train(w, α) + λw), α), through the inner gradient
    from torch.func import functional_call
    names = [n for n, _ in net.named_parameters()]
    buffers = dict(net.named_buffers())
    # ∇w L_train is a function of α too: that dependence is the Hessian-vector term.
    weights2 = arch_weights(arch)
    loss_t2 = F.cross_entropy(functional_call(net, {**dict(zip(names, params)), **buffers}, (xt, weights2)), yt)
    g = torch.autograd.grad(loss_t2, params, create_graph=True)
    w_virtual = [p - lr * (mu * m + gi + wd * p) for p, m, gi in zip(params, momentum, g)]
    loss_v = F.cross_entropy(functional_call(net, {**dict(zip(names, w_virtual)), **buffers}, (xv, arch_weights(arch))), yv)
    exact = torch.autograd.grad(loss_v, arch_params)
    for tight, default, b in zip(fd_tight, fd_default, exact):
        assert torch.allclose(tight, b, rtol=1e-6, atol=1e-11), (tight - b).abs().max()
        assert (default - b).norm() < 0.01 * b.norm()


def test_second_order_leaves_weights_buffers_and_weight_grads_alone():
    torch.manual_seed(0)
    net, arch = Supernet("s3", C=4, layers=3), ArchParams("s3")
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 10, (4,))
    architect.unrolled(net, list(arch.parameters()), lambda: arch_weights(arch), x, y, x, y, lr=0.025, momentum=0.9,
                       weight_decay=3e-4, momentum_buffers=[None] * len(list(net.parameters())))
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None for p in net.parameters())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in arch.parameters())


@pytest.mark.parametrize("order", ["first", "second"])
def test_resume_gives_exactly_the_uninterrupted_result(tmp_path, order):
    cfg = tiny_cfg(arch_order=order, drop_path=0.2)
    full = Search(cfg, tmp_path / "full", progress=False)
    full.run()
    cut = Search(cfg, tmp_path / "cut", progress=False)
    cut.run(stop_after=0)  # interrupted after epoch 0
    assert cut.epoch == 1
    resumed = Search.resume(tmp_path / "cut", progress=False)
    assert resumed.epoch == 1
    resumed.run()
    for c in full.arch.alphas:
        assert torch.equal(full.arch.alphas[c], resumed.arch.alphas[c])
    assert full.genotype == resumed.genotype
    a = [r["val_acc"] for r in RunDir(tmp_path / "full").read_metrics()]
    b = [r["val_acc"] for r in RunDir(tmp_path / "cut").read_metrics()]
    assert a == b and len(a) == 3
    # Resuming a finished run does no work and still hands back the run's genotype.
    again = Search.resume(tmp_path / "full", progress=False)
    assert again.epoch == 3 and again.run() == full.genotype


def test_resume_under_other_numerics_warns_and_records_each_session(tmp_path, monkeypatch):
    """On CPU a run is bit-exact only under the torch version, thread count and kernel ISA it started with; a resumed
    run that goes on under another says so in one sentence, and environment.json keeps every session's. Reading a
    run (Search.resume without run(), as derive does) and resuming a finished one change nothing."""
    cut = Search(tiny_cfg(epochs=3), tmp_path / "cut", progress=False)
    cut.run(stop_after=0)
    env_path = tmp_path / "cut" / "environment.json"
    env = json.loads(env_path.read_text())
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability() and env["threads"] == 1
    Search.resume(tmp_path / "cut", progress=False)
    assert json.loads(env_path.read_text()) == env
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same numerics: no warning
        Search.resume(tmp_path / "cut", progress=False).run(stop_after=1)
    env = json.loads(env_path.read_text())
    assert [s["threads"] for s in env["resumed"]] == [1]
    env["cpu_capability"] = "AVX2" if env["cpu_capability"] != "AVX2" else "AVX512"  # as if started elsewhere
    env_path.write_text(json.dumps(env))
    torch.set_num_threads(2)
    monkeypatch.setattr("robustdarts.speed.SMALL_WORK", 0)  # as if the work were large: the process's 2 threads
    monkeypatch.setattr("robustdarts.speed._GIVEN", [2])  # as if the process had been given 2 (speed.given_threads)
    try:
        with pytest.warns(UserWarning, match=r"different numerics .*cpu_capability .*threads 1 → 2"):
            Search.resume(tmp_path / "cut", progress=False).run()
    finally:
        torch.set_num_threads(1)
    monkeypatch.undo()
    sessions = json.loads(env_path.read_text())["resumed"]
    assert [s["threads"] for s in sessions] == [1, 2] and sessions[-1]["cpu_capability"] != env["cpu_capability"]
    Search.resume(tmp_path / "cut", progress=False).run()  # finished: nothing to continue, nothing recorded
    assert json.loads(env_path.read_text())["resumed"] == sessions
    assert numerics_drift(env, {**env, "threads": 4}) == {"threads": (1, 4)}
    assert numerics_drift({"torch": env["torch"]}, {**env, "threads": 4}) == {}  # a record without the key


def test_run_directory_holds_every_artefact(tmp_path):
    run = Search(tiny_cfg(epochs=2), tmp_path / "r", progress=False)
    run.run()
    d = RunDir(tmp_path / "r")
    cfg = yaml.safe_load(d.config_path.read_text())
    assert cfg["space"] == "s3" and cfg["epochs"] == 2
    env = json.loads((tmp_path / "r" / "environment.json").read_text())
    assert env["torch"] == torch.__version__
    records = d.read_metrics()
    assert [r["epoch"] for r in records] == [0, 1]
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "entropy_normal", "skip_normal",
                "epoch_seconds", "wall_seconds"):
        assert key in records[0]
    archive, meta = d.load_archive()
    assert sorted(archive) == [-1, 0, 1] and meta["space"] == "s3"
    assert torch.equal(archive[1]["alpha/normal"], run.arch.alphas["normal"].detach())
    ckpt = torch.load(d.checkpoint_path, weights_only=True)
    assert ckpt["epoch"] == 2
    assert json.loads(d.genotype_path.read_text())["kind"] == "darts"


def test_corrupted_or_foreign_checkpoint_is_a_clear_error_and_nothing_is_overwritten(tmp_path):
    Search(tiny_cfg(epochs=1), tmp_path / "r", progress=False).run()
    d = RunDir(tmp_path / "r")
    d.checkpoint_path.write_bytes(b"garbage")
    with pytest.raises(RobustDartsError, match="corrupted"):
        Search.resume(tmp_path / "r", progress=False)
    assert d.checkpoint_path.read_bytes() == b"garbage"
    torch.save({"weights": torch.zeros(3)}, d.checkpoint_path)
    with pytest.raises(RobustDartsError, match="not written by robustdarts"):
        Search.resume(tmp_path / "r", progress=False)
    with pytest.raises(RobustDartsError, match="already holds a run"):
        Search(tiny_cfg(epochs=1), tmp_path / "r", progress=False)
    with pytest.raises(RobustDartsError, match="not a robustdarts run directory"):
        Search.resume(tmp_path / "nothing", progress=False)


def test_interrupted_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    d = RunDir(tmp_path)
    d.save_checkpoint({"epoch": 1, "x": torch.ones(2)})
    import robustdarts.runs as runs

    def failing_save(obj, f):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(runs.torch, "save", failing_save)
    with pytest.raises(KeyboardInterrupt):
        d.save_checkpoint({"epoch": 2, "x": torch.zeros(2)})
    monkeypatch.undo()
    assert load_tensors(d.checkpoint_path)["epoch"] == 1
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_nan_loss_stops_with_epoch_and_step_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    search = Search(tiny_cfg(epochs=3), tmp_path / "r", progress=False)
    original = search.recipe.weight_backward

    def poisoned(supernet, forward, x, y, w, ctx):
        loss, logits = original(supernet, forward, x, y, w, ctx)
        if ctx.epoch == 1 and ctx.step == 2:
            loss = loss * float("nan")
        return loss, logits

    monkeypatch.setattr(search.recipe, "weight_backward", poisoned)
    with pytest.raises(RobustDartsError, match="epoch 1, step 2"):
        search.run()
    assert load_tensors(RunDir(tmp_path / "r").checkpoint_path)["epoch"] == 1


def test_config_errors_are_one_sentence():
    with pytest.raises(RobustDartsError, match="unknown config field 'epochz'"):
        build(SearchConfig, {"epochz": 3})
    with pytest.raises(RobustDartsError, match="needs a value of type"):
        build(SearchConfig, {"epochs": "many"})
    with pytest.raises(RobustDartsError, match="unknown preset"):
        build(SearchConfig, {"preset": "huge"})
    with pytest.raises(RobustDartsError, match="unknown method"):
        Search(tiny_cfg(method="dartz"))
    with pytest.raises(RobustDartsError, match="unknown dataset"):
        Search(tiny_cfg(dataset="mnist-ish"))


def test_tiny_preset_changes_sizes_only():
    paper, tiny = build(SearchConfig, {}), build(SearchConfig, {"preset": "tiny"})
    changed = {k for k in paper.__dataclass_fields__ if getattr(paper, k) != getattr(tiny, k)}
    assert changed <= {"preset", "epochs", "batch_size", "init_channels", "layers", "image_size", "limit_images"}
    assert not math.isclose(tiny.init_channels, paper.init_channels)


def test_augmentation_lengths_scale_with_the_image_size():
    from robustdarts.data import scaled_augment

    at32, at16 = scaled_augment((0.5,), (0.25,), 32, True, 16), scaled_augment((0.5,), (0.25,), 16, True, 16)
    assert (at32.crop_padding, at32.cutout) == (4, 16) and (at16.crop_padding, at16.cutout) == (2, 8)
    assert scaled_augment((0.5,), (0.25,), 16, False, 0).crop_padding == 0
