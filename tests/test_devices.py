"""GPU readiness, checked on the CPU: nothing in a search step is created on a device nobody asked for, the zero-weight
mask costs one host sync per α update, bf16 autocast keeps the loss and α in float32, samples reach their device.

The main check runs whole epochs (steps, evaluation, derivation, eigenvalue and leakage diagnostics) with torch's
default device pointed at ``meta``: a tensor made without an explicit device lands there, and the step fails on it
(meta tensors hold no data). A search on a GPU has the default device on the CPU and its data on the GPU — the same
mistake the other way round.
"""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_config
from robustdarts import supernet as supernet_module
from robustdarts.devices import make_generator, sample_on, to_device
from robustdarts.relax import mixing_weights, sample_gumbels
from robustdarts.search.loop import Search
from robustdarts.spaces import get_space

CASES = [  # method, space, overrides: every sampler, the second-order and perturbed steps, every option
    ("darts", "s3", {}),
    ("darts-2nd", "s3", dict(recompute="edge", amp="bf16")),
    ("gdas", "nb201", {}),
    ("drnas", "lhd", dict(recompute="cell")),
    ("sdarts-adv", "s3", {}),
    ("sp-darts", "darts", dict(skip_zero_ops=False, channels_last=True)),
    ("lambda-darts", "s3", {}),
    ("pc-darts", "darts", dict(init_channels=8)),
    ("darts", "s4", {}),  # the noise op
]


@pytest.mark.parametrize("method,space,extra", CASES, ids=[f"{m}-{s}" for m, s, _ in CASES])
def test_an_epoch_creates_nothing_on_the_default_device(method, space, extra):
    search = Search(tiny_config(method, space, hessian_every=1, leakage_every=1, **extra), None, progress=False)
    with torch.device("meta"):
        record = search.train_epoch()
        record.update(search.evaluate())
        search.genotype = search.derive()
        search.diagnostics(record)
    assert all(torch.isfinite(torch.tensor([record["train_loss"], record["val_loss"], record["eigenvalue"]])))
    assert all(p.device.type == "cpu" for p in list(search.supernet.parameters()) + list(search.arch.parameters()))


def test_the_zero_weight_mask_is_one_host_sync_per_alpha_update(monkeypatch):
    search = Search(tiny_config("gdas", "s3"), None, progress=False)
    calls = []
    real = supernet_module._active_masks
    monkeypatch.setattr(supernet_module, "_active_masks", lambda ts, skip=True: calls.append(len(ts)) or real(ts, skip))
    ctx, _ = search.begin_epoch()
    x, y = next(search.train_stream)
    weights = search.relaxed(ctx, "weight")
    for _ in range(3):  # several passes with the same weights (SDARTS-ADV, Λ-DARTS, evaluation batches)
        search.forward(x, weights)
    assert calls == [2]  # one call for both cell types, once
    with torch.no_grad():
        weights["normal"].mul_(1.0)  # changed in place: the mask is taken again
    search.forward(x, weights)
    search.forward(x, search.relaxed(ctx, "weight"))  # new weights (a new α update): again
    assert calls == [2, 2, 2]


def test_bf16_autocast_keeps_the_loss_alpha_and_parameters_in_float32():
    search = Search(tiny_config("darts", "s3", amp="bf16"), None, progress=False)
    ctx, lr = search.begin_epoch()
    x, y = next(search.train_stream)
    logits = search.forward(x, search.relaxed(ctx, "weight"))
    assert logits.dtype == torch.float32
    search.arch_step(ctx, (x, y), next(search.val_stream), lr)
    loss, _ = search.weight_step(ctx, x, y)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert all(a.dtype == torch.float32 and a.grad.dtype == torch.float32 for a in search.arch.parameters())
    assert all(p.dtype == torch.float32 for p in search.supernet.parameters())
    with search.autocast():  # the convolutions themselves ran in bfloat16
        cell_out = search.supernet.stem(x)
    assert cell_out.dtype == torch.bfloat16


def test_samples_reach_the_device_of_their_tensor_whatever_the_generator():
    gen, again = make_generator(5, "cpu"), torch.Generator().manual_seed(5)
    assert gen.device.type == "cpu"
    # On the CPU exactly the draws of before (a plain CPU generator), so CPU runs are unchanged.
    assert torch.equal(sample_gumbels((3, 4), gen, torch.float32, "cpu"),
                       -torch.empty(3, 4).exponential_(generator=again).clamp_min(torch.finfo().tiny).log())
    drawn = sample_on(lambda d: torch.randn(2, generator=gen, device=d), gen, "meta")  # another device: moved
    assert drawn.device.type == "meta"
    t = torch.ones(3)
    assert to_device(t, "cpu") is t  # nothing copied on the CPU; CUDA targets go through pinned memory


def test_mixing_weights_follow_alpha_onto_its_device():
    # The relaxation makes nothing of its own: with α on meta, the weights are on meta (and so on CUDA).
    alphas = {"normal": torch.zeros(14, 8, device="meta"), "reduce": torch.zeros(14, 8, device="meta")}
    weights = mixing_weights(get_space("darts"), alphas, {}, 1.0)
    assert all(w.device.type == "meta" for w in weights.values())
