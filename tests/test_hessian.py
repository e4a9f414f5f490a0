"""Dominant Hessian eigenvalue: checked against torch.autograd.functional.hessian (an independent, row-by-row
double-backward computation) on tiny float64 supernets, and against closed forms on quadratics."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from robustdarts.analysis.hessian import (arch_hessian, complement_basis, dominant_eigenvalue, flatten_arch,
                                          hessian_matrix, lanczos_top_eigenvalue, measurement_mode,
                                          power_top_eigenvalue, shift_invariant, softmax_groups, unflatten_arch,
                                          validation_loss_fn)
from robustdarts.archparams import ArchParams
from robustdarts.errors import RobustDartsError
from robustdarts.relax import mixing_weights
from robustdarts.supernet import Supernet

WD = 1e-3


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the CPU is shared; tiny nets gain nothing from more
    yield
    torch.set_num_threads(threads)


def tiny(space: str, dtype=torch.float64, seed: int = 0):
    """A 3-cell C=4 supernet on 8x8 inputs, α spread out (std 0.5) so the Hessian is not near-degenerate."""
    torch.manual_seed(seed)
    net = Supernet(space, C=4, layers=3, num_classes=5).to(dtype)
    arch = ArchParams(space).to(dtype)
    with torch.no_grad():
        for p in arch.parameters():
            p.normal_(0.0, 0.5)
    x = torch.randn(4, 3, 8, 8, dtype=dtype)
    y = torch.randint(0, 5, (4,))
    with torch.no_grad():  # give BN running statistics that differ from their init
        net(x, mixing_weights(arch.space, dict(arch.alphas), dict(arch.betas)))
    return net, arch, (x, y)


def autograd_hessian(net, arch, batch, train: bool, seed: int = 0) -> torch.Tensor:
    """H = ∇²(CE + ½·wd·‖θ‖²) by torch.autograd.functional.hessian, on a deep copy (its BN may update freely)."""
    net = copy.deepcopy(net).train(train)
    x, y = batch

    def loss(theta):
        alphas, betas = unflatten_arch(theta, arch)
        torch.manual_seed(seed)  # arch_hessian's noise draw for batch 0
        logits = net(x, mixing_weights(arch.space, alphas, betas))
        return F.cross_entropy(logits, y) + 0.5 * WD * theta.pow(2).sum()

    H = torch.autograd.functional.hessian(loss, flatten_arch(arch))
    return 0.5 * (H + H.T)


@pytest.mark.parametrize("space", ["s2", "s3"])
def test_exact_matches_autograd_hessian(space):
    net, arch, batch = tiny(space)
    result = arch_hessian(net, arch, [batch], method="exact", arch_weight_decay=WD)
    reference = torch.linalg.eigvalsh(autograd_hessian(net, arch, batch, train=True))
    assert result["n"] == arch.space.num_alpha == reference.numel()
    assert result["method"] == "exact"
    assert math.isclose(result["eigenvalue"], float(reference[-1]), rel_tol=1e-4)
    assert torch.allclose(result["eigenvalues"], reference, rtol=1e-4, atol=1e-8)


def test_exact_probes_only_the_directions_a_softmax_can_see():
    # Softmax is blind to adding a constant to one edge's row, so H·1_edge = 0: 84 − 28 = 56 HVPs rebuild all of
    # H. The autograd reference computes every row, zeros included; all 84 eigenvalues must agree.
    net, arch, batch = tiny("s3", seed=3)
    result = arch_hessian(net, arch, [batch], method="exact", arch_weight_decay=WD, chunk_size=9)
    assert result["reduced"] and result["hvps"] == 84 - 2 * 14
    reference = torch.linalg.eigvalsh(autograd_hessian(net, arch, batch, train=True))
    assert torch.allclose(result["eigenvalues"], reference, rtol=1e-4, atol=1e-8)
    # The 28 null directions show up as eigenvalue wd (the ½·wd·‖θ‖² term) in both.
    assert int(((reference - WD).abs() < 1e-9).sum()) >= 28


def test_a_relaxation_that_is_not_a_softmax_gets_every_direction():
    # Sigmoid gates (FairDARTS-like) depend on each logit itself: shifting a row changes the loss, so the
    # reduction must not apply, and the full Hessian must still match autograd.
    net, arch, batch = tiny("s2", seed=4)

    def sigmoid_relax(space, alphas, betas=None, tau=1.0):
        return {c: torch.sigmoid(a / tau) for c, a in alphas.items()}

    result = arch_hessian(net, arch, [batch], method="exact", relax=sigmoid_relax, arch_weight_decay=0.0)
    assert not result["reduced"] and result["hvps"] == arch.space.num_alpha

    x, y = batch
    frozen = copy.deepcopy(net).train()  # autograd on a copy in train mode (BN batch statistics), as measured

    def loss(theta):
        alphas, betas = unflatten_arch(theta, arch)
        return F.cross_entropy(frozen(x, sigmoid_relax(arch.space, alphas)), y)

    H = torch.autograd.functional.hessian(loss, flatten_arch(arch))
    assert math.isclose(result["eigenvalue"], float(torch.linalg.eigvalsh(0.5 * (H + H.T))[-1]), rel_tol=1e-4)


def test_softmax_groups_of_lhd_are_node_blocks_and_the_sum_betas():
    net, arch, batch = tiny("lhd", dtype=torch.float32)
    theta = flatten_arch(arch)
    fn = validation_loss_fn(net, arch, batch)
    groups = softmax_groups(arch)
    space = arch.space
    assert len(groups) == 2 * space.steps + 2  # one per node and cell type, plus each cell type's β_sum row
    assert sorted(i for g in groups for i in g) == sorted(set(i for g in groups for i in g))  # disjoint
    with measurement_mode(net, "train"):
        assert shift_invariant(fn, theta, groups)
        # Per-edge rows are the wrong grouping for a node-joint softmax; the β_cat row feeds sigmoids.
        cols = arch.alphas["normal"].shape[1]
        rows = [list(range(e * cols, (e + 1) * cols)) for e in range(2 * arch.alphas["normal"].shape[0])]
        assert not shift_invariant(fn, theta, rows)
        beta_cat = list(range(theta.numel() - space.steps, theta.numel()))
        assert not shift_invariant(fn, theta, [beta_cat])


def test_complement_basis_and_the_reduced_hessian_of_an_invariant_quadratic():
    groups = [[0, 1, 2], [3, 4], [6, 7, 8, 9]]
    Q = complement_basis(10, groups, dtype=torch.float64)
    assert Q.shape == (10, 7)
    assert torch.allclose(Q.T @ Q, torch.eye(7, dtype=torch.float64), atol=1e-12)
    for g in groups:
        ones = torch.zeros(10, dtype=torch.float64)
        ones[g] = 1.0
        assert torch.allclose(Q.T @ ones, torch.zeros(7, dtype=torch.float64), atol=1e-12)
    # f(θ) = ½ (Pθ)ᵀ A (Pθ), P removing each group's mean: blind to the group shifts, so 7 HVPs give all of H.
    P = torch.eye(10, dtype=torch.float64) - sum(
        torch.outer(u, u) for u in (torch.zeros(10, dtype=torch.float64).index_fill(0, torch.tensor(g), 1.0)
                                    / math.sqrt(len(g)) for g in groups))
    A, _ = _quadratic([-2.0, -1.0, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0], seed=1)
    fn = lambda theta: 0.5 * (P @ theta) @ A @ (P @ theta)  # noqa: E731
    theta = torch.randn(10, dtype=torch.float64)
    assert shift_invariant(fn, theta, groups)
    assert not shift_invariant(lambda t: 0.5 * t @ A @ t, theta, groups)
    full = hessian_matrix(fn, theta)
    assert torch.allclose(full, P @ A @ P, atol=1e-12)
    assert torch.allclose(hessian_matrix(fn, theta, bases=[Q], chunk_size=3), full, atol=1e-12)
    # By blocks: the second block's directions see fn with the first block held constant; H[first, second] is
    # the transpose of what the first block gave. Any order is exact.
    blocks = [[6, 7, 8, 9, 5], [3, 0, 4, 1, 2]]
    bases = [complement_basis(5, [[0, 1, 2, 3]], dtype=torch.float64),
             complement_basis(5, [[1, 3, 4], [0, 2]], dtype=torch.float64)]
    assert torch.allclose(hessian_matrix(fn, theta, blocks=blocks, bases=bases, chunk_size=2), full, atol=1e-12)
    assert torch.allclose(hessian_matrix(fn, theta, blocks=blocks[::-1]), full, atol=1e-12)
    with pytest.raises(ValueError, match="partition"):
        hessian_matrix(fn, theta, blocks=[[0, 1], [1, 2]])


def test_eval_mode_bn_matches_autograd_hessian():
    net, arch, batch = tiny("s2", seed=1)
    result = arch_hessian(net, arch, [batch], bn_mode="eval", arch_weight_decay=WD)
    reference = torch.linalg.eigvalsh(autograd_hessian(net, arch, batch, train=False))
    assert math.isclose(result["eigenvalue"], float(reference[-1]), rel_tol=1e-4)


def test_noise_space_is_one_fixed_draw():
    # S4's noise op: H is the Hessian of one seeded draw, the same in every HVP, chunk and call.
    net, arch, batch = tiny("s4")
    state = torch.get_rng_state()
    a = arch_hessian(net, arch, [batch], method="exact", chunk_size=20)
    assert torch.equal(torch.get_rng_state(), state), "the measurement advanced the caller's RNG"
    b = arch_hessian(net, arch, [batch], method="lanczos")
    reference = torch.linalg.eigvalsh(autograd_hessian(net, arch, batch, train=True))
    assert math.isclose(a["eigenvalue"], float(reference[-1]), rel_tol=1e-4)
    assert math.isclose(a["eigenvalue"], b["eigenvalue"], rel_tol=1e-6)


@pytest.mark.parametrize("space", ["s2", "s3"])
def test_lanczos_agrees_with_exact_in_float32(space):
    net, arch, batch = tiny(space, dtype=torch.float32, seed=2)
    exact = arch_hessian(net, arch, [batch], method="exact")
    lanczos = arch_hessian(net, arch, [batch], method="lanczos", iters=40)
    assert lanczos["eigenvalues"] is None
    assert math.isclose(lanczos["eigenvalue"], exact["eigenvalue"], rel_tol=1e-3)


def test_several_batches_average_the_loss():
    net, arch, batch = tiny("s2")
    x, y = batch
    halves = [(x[:2], y[:2]), (x[2:], y[2:])]
    both = arch_hessian(net, arch, halves, bn_mode="eval", method="exact")
    H0 = autograd_hessian(net, arch, halves[0], train=False)
    H1 = autograd_hessian(net, arch, halves[1], train=False)
    expected = float(torch.linalg.eigvalsh(0.5 * (H0 + H1))[-1])
    assert math.isclose(both["eigenvalue"], expected, rel_tol=1e-4)


def test_measurement_leaves_the_model_untouched():
    net, arch, batch = tiny("s3", dtype=torch.float32)
    net.train()
    net.cells[1].eval()  # a mixed tree: every flag must come back as it was
    for p in list(net.parameters())[:3] + list(arch.parameters()):
        p.grad = torch.full_like(p, 7.0)
    grads = {id(p): (p.grad.clone() if p.grad is not None else None) for p in [*net.parameters(), *arch.parameters()]}
    buffers = {k: v.clone() for k, v in net.state_dict().items()}
    alphas = flatten_arch(arch)
    flags = [(m, m.training) for m in net.modules()]
    tracking = [getattr(m, "track_running_stats", None) for m in net.modules()]

    for bn_mode in ("train", "eval"):
        arch_hessian(net, arch, [batch], bn_mode=bn_mode, method="lanczos", iters=5)

    for k, v in net.state_dict().items():
        assert torch.equal(v, buffers[k]), f"{k} changed"
    for p in [*net.parameters(), *arch.parameters()]:
        before = grads[id(p)]
        assert (p.grad is None and before is None) or torch.equal(p.grad, before)
    assert torch.equal(flatten_arch(arch), alphas)
    assert all(m.training == flag for m, flag in flags)
    assert [getattr(m, "track_running_stats", None) for m in net.modules()] == tracking


def test_flat_order_matches_archparams_and_lhd_betas():
    arch = ArchParams("lhd")
    theta = flatten_arch(arch)
    parts = [arch.alphas["normal"], arch.alphas["reduce"], arch.betas["normal"], arch.betas["reduce"]]
    assert torch.equal(theta, torch.cat([p.detach().reshape(-1) for p in parts]))
    assert torch.equal(theta, torch.cat([p.detach().reshape(-1) for p in arch.parameters()]))
    alphas, betas = unflatten_arch(theta, arch)
    for c in arch.space.cell_types:
        assert torch.equal(alphas[c], arch.alphas[c]) and torch.equal(betas[c], arch.betas[c])


def _quadratic(eigenvalues: list[float], seed: int = 0):
    """f(θ) = ½ θᵀAθ with A = Q diag(λ) Qᵀ for a random orthogonal Q: its Hessian is A everywhere."""
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(len(eigenvalues), len(eigenvalues), generator=g, dtype=torch.float64))
    A = Q @ torch.diag(torch.tensor(eigenvalues, dtype=torch.float64)) @ Q.T
    return A, (lambda theta: 0.5 * theta @ A @ theta)


def test_generic_core_on_a_quadratic_with_a_dominant_negative_eigenvalue():
    eigenvalues = [-5.0, -1.0, 0.3, 1.0, 2.0, 2.5]
    A, fn = _quadratic(eigenvalues)
    theta = torch.randn(6, dtype=torch.float64)
    assert torch.allclose(hessian_matrix(fn, theta), A, atol=1e-12)
    assert math.isclose(dominant_eigenvalue(fn, theta, "exact"), 2.5, rel_tol=1e-12)
    assert math.isclose(dominant_eigenvalue(fn, theta, "lanczos"), 2.5, rel_tol=1e-9)
    # Power iteration finds the largest |λ| = the negative one: why Lanczos is the default iterative method.
    assert math.isclose(dominant_eigenvalue(fn, theta, "power", iters=500), -5.0, rel_tol=1e-6)


def test_lanczos_on_a_large_spectrum_and_auto_threshold(monkeypatch):
    n = 600
    g = torch.Generator().manual_seed(1)
    eigenvalues = torch.linspace(-3.0, 1.0, n, dtype=torch.float64)
    eigenvalues[-1] = 4.0  # a gap, as a sharp minimum direction gives
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    A = Q @ torch.diag(eigenvalues) @ Q.T
    top = lanczos_top_eigenvalue(lambda v: A @ v, n, iters=60, generator=torch.Generator().manual_seed(0),
                                 dtype=torch.float64)
    assert math.isclose(top, 4.0, rel_tol=1e-6)
    assert math.isclose(power_top_eigenvalue(lambda v: A @ v, n, iters=500, dtype=torch.float64), 4.0, rel_tol=1e-4)
    # n > 512: "auto" must not build the 600x600 Hessian.
    import robustdarts.analysis.hessian as hessian

    def no_full_matrix(*args, **kwargs):
        raise AssertionError("auto built the full Hessian above the threshold")

    monkeypatch.setattr(hessian, "hessian_matrix", no_full_matrix)
    fn = lambda theta: 0.5 * theta @ A @ theta  # noqa: E731
    assert math.isclose(dominant_eigenvalue(fn, torch.zeros(n, dtype=torch.float64), iters=60), 4.0, rel_tol=1e-6)


def test_bad_method_and_bn_mode_are_one_sentence_errors():
    net, arch, batch = tiny("s2", dtype=torch.float32)
    with pytest.raises(RobustDartsError, match="eigenvalue method 'qr'"):
        arch_hessian(net, arch, [batch], method="qr")
    with pytest.raises(RobustDartsError, match="BN mode 'frozen'"):
        arch_hessian(net, arch, [batch], bn_mode="frozen")
    with pytest.raises(RobustDartsError, match="at least one validation batch"):
        arch_hessian(net, arch, [])
