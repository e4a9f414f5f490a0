"""The speed and memory options change how the supernet computes, never what: the same logits, gradients (of the
weights and of α) and batch-norm statistics as the plain forward, in every kind of space and with every method.

- ``recompute`` (edge, cell): torch.utils.checkpoint of each mixed edge or each cell; the recomputation must use the
  weights of the pass that saved nothing (the unrolled step's virtual weights), replay its random draws and not
  move the running statistics a second time;
- ``channels_last``: NHWC activations and conv weights (float summation order changes: 1e-5 tolerance);
- ``mix_in_bn``: the mixing weight as the affine scale of each op's final batch norm; ``share_pools``: the edges
  leaving one state pool it once; ``fast_depthwise``: the depthwise gradients as forward convolutions (dwconv.py);
- ``compile``: each op compiled in place, falling back to eager with a note where compilation fails.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_config
from robustdarts.archparams import ArchParams
from robustdarts.methods import METHODS
from robustdarts.relax import mixing_weights
from robustdarts.search.loop import Search
from robustdarts.speed import REFERENCE_ORDER
from robustdarts.spaces.ops import make_op
from robustdarts.supernet import Supernet

OPTIONS = {"edge": dict(recompute="edge"), "cell": dict(recompute="cell"), "nhwc": dict(channels_last=True),
           "fold": dict(mix_in_bn=True), "pools": dict(share_pools=True), "dw": dict(fast_depthwise=True),
           "all": dict(recompute="cell", channels_last=True, mix_in_bn=True, share_pools=True, fast_depthwise=True)}
NETS = {  # space, layers, supernet options, extra mixing weights
    "darts": ("darts", 3, {}, False),
    "lhd": ("lhd", 3, {}, False),
    "nb201": ("nb201", 1, {}, False),
    "partial+extra": ("s2", 3, dict(partial_channels=2, edge_extra=lambda C, s: make_op("skip_connect", C, s,
                                                                                          affine=False)), True),
}


def _one_pass(net, arch, extra_weights, options, x, y, drop_prob):
    net.configure(**options)
    net.train()
    for p in list(net.parameters()) + list(arch.parameters()):
        p.grad = None
    before = [b.clone() for b in net.buffers()]
    weights = mixing_weights(net.space, dict(arch.alphas), dict(arch.betas), 1.0)
    if extra_weights:  # PC-DARTS' edge scale and SurgeNAS' extra-op weight, with a graph to α
        for c in net.space.cell_types:
            weights[f"{c}_edge"] = torch.sigmoid(arch.alphas[c].sum(-1))
            weights[f"{c}_extra"] = torch.sigmoid(arch.alphas[c].mean(-1))
    torch.manual_seed(3)  # drop path draws the same masks in every pass
    logits = net(x, weights, drop_prob=drop_prob, extra_scale=0.5)
    F.cross_entropy(logits, y).backward()
    after = [b.clone() for b in net.buffers()]
    with torch.no_grad():
        for b, b0 in zip(net.buffers(), before):
            b.copy_(b0)
    net.configure()
    net.to(memory_format=torch.contiguous_format)
    grads = [p.grad.clone() for p in list(net.parameters()) + list(arch.parameters())]
    return [logits.detach()] + grads + after


@pytest.mark.parametrize("option", sorted(OPTIONS))
@pytest.mark.parametrize("name", sorted(NETS))
def test_options_give_the_plain_logits_gradients_and_statistics(name, option):
    space, layers, kwargs, extra = NETS[name]
    torch.manual_seed(0)
    net = Supernet(space, 4, layers, 10, 3, **kwargs)
    arch = ArchParams(space, generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 3, 8, 8, generator=gen), torch.randint(0, 10, (8,), generator=gen)
    plain = _one_pass(net, arch, extra, {}, x, y, drop_prob=0.2)
    other = _one_pass(net, arch, extra, OPTIONS[option], x, y, drop_prob=0.2)
    assert len(plain) == len(other)
    for a, b in zip(plain, other):
        assert torch.allclose(a.float(), b.float(), rtol=1e-4, atol=1e-5), (a - b).abs().max()


def _one_step(method: str, space: str, options: dict, out=None) -> list[torch.Tensor]:
    """One arch step and one weight step from the same state; the α and weight gradients they left."""
    # The plain step is the NCHW path (the defaults choose NHWC and more on the CPU: speed.py); options go over it.
    cfg = tiny_config(method, space, **({"init_channels": 8} if method == "pc-darts" else {}),
                      **{**REFERENCE_ORDER, **options})
    search = Search(cfg, out, progress=False)
    ctx, lr = search.begin_epoch()
    search.supernet.train()
    train, val = next(search.train_stream), next(search.val_stream)
    search.arch_step(ctx, train, val, lr)
    search.weight_step(dataclasses.replace(ctx, step=0), *train)
    return [p.grad.clone() for p in search.arch.parameters() if p.grad is not None] + \
           [p.grad.clone() for p in search.supernet.parameters()]


def _assert_same_step(plain, other):
    assert len(plain) == len(other)
    for a, b in zip(plain, other):
        scale = max(a.abs().max().item(), 1e-6)
        assert (a - b).abs().max().item() <= 1e-4 * scale + 1e-6, ((a - b).abs().max().item(), scale)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_takes_the_same_step_with_recomputed_channels_last_edges(method, tmp_path):
    options = dict(recompute="edge", channels_last=True, mix_in_bn=True, fast_depthwise=True)  # run dirs: rollbacks
    _assert_same_step(_one_step(method, "s1", {}, tmp_path / "a"), _one_step(method, "s1", options, tmp_path / "b"))


@pytest.mark.parametrize("method,space", [("darts-2nd", "darts"), ("drnas", "lhd"), ("gdas", "nb201"),
                                          ("surgenas", "lhd"), ("sdarts-rs", "s4")])
def test_recomputed_cells_take_the_same_step_on_the_large_spaces(method, space):
    options = dict(recompute="cell", share_pools=True, mix_in_bn=True, fast_depthwise=True)
    _assert_same_step(_one_step(method, space, {}), _one_step(method, space, options))


def test_a_failing_compiler_leaves_the_supernet_eager_with_a_note(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(torch, "compile", broken)
    net = Supernet("s1", 4, 3, 10, 3)
    notes = net.configure(compile="ops")
    assert len(notes) == 1 and "runs eagerly" in notes[0] and "no C++ compiler" in notes[0]
    assert net.compiled == "off"
    arch = ArchParams("s1")
    net(torch.randn(2, 3, 8, 8), mixing_weights(net.space, dict(arch.alphas), {}, 1.0))


@pytest.mark.slow
def test_compiled_ops_give_the_plain_logits_and_gradients():
    torch.manual_seed(0)
    net = Supernet("s3", 4, 3, 10, 3)
    arch = ArchParams("s3", generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 3, 8, 8, generator=gen), torch.randint(0, 10, (8,), generator=gen)
    plain = _one_pass(net, arch, False, {}, x, y, drop_prob=0.0)
    notes = net.configure(compile="ops")
    if notes:
        pytest.skip(notes[0])
    compiled = _one_pass(net, arch, False, dict(compile="ops"), x, y, drop_prob=0.0)
    for a, b in zip(plain, compiled):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5), (a - b).abs().max()
