"""Relaxations checked against hand-worked values and independent references (torch.distributions, a row loop)."""

import math

import pytest
import torch

from robustdarts.errors import RobustDartsError
from robustdarts.relax import (dirichlet_sample, drnas_weights, gaea_eg_update, gdas_weights, gumbel_hard,
                               mixing_weights, project_linf, sdarts_rs_perturb, simplex_clip, simplex_uniform,
                               sparse_mixing_weights, tempered_softmax)
from robustdarts.spaces import get_space


def _softmax_list(z):
    exps = [math.exp(v) for v in z]
    total = sum(exps)
    return [v / total for v in exps]


def _jacobian_t_times(p, g, scale):
    # Softmax Jacobian J = (diag(p) − p pᵀ)·scale is symmetric, so Jᵀg = scale·(p ⊙ g − p (p·g)).
    dot = sum(pi * gi for pi, gi in zip(p, g))
    return [scale * pi * (gi - dot) for pi, gi in zip(p, g)]


# ---------------------------------------------------------------------------------------------------- surrogate


def test_surrogate_gradient_matches_hand_worked_jacobians():
    alpha_values, g, tau = [0.3, -0.2, 0.1], [1.0, -2.0, 0.5], 0.5
    alpha = torch.tensor(alpha_values, dtype=torch.float64, requires_grad=True)
    weights = tempered_softmax(alpha, tau, surrogate=True)

    p_tau = _softmax_list([a / tau for a in alpha_values])
    p_one = _softmax_list(alpha_values)
    assert weights.tolist() == pytest.approx(p_tau, abs=1e-15)  # the forward is softmax(α/τ) alone

    (weights * torch.tensor(g, dtype=torch.float64)).sum().backward()
    expected = [a + b for a, b in zip(_jacobian_t_times(p_tau, g, 1 / tau), _jacobian_t_times(p_one, g, 1.0))]
    assert alpha.grad.tolist() == pytest.approx(expected, abs=1e-12)


def test_surrogate_off_gives_plain_tempered_gradient_and_tau_one_is_not_doubled():
    alpha_values, g = [0.3, -0.2, 0.1], [1.0, -2.0, 0.5]
    for tau, surrogate in ((0.5, False), (1.0, True)):
        alpha = torch.tensor(alpha_values, dtype=torch.float64, requires_grad=True)
        (tempered_softmax(alpha, tau, surrogate=surrogate) * torch.tensor(g, dtype=torch.float64)).sum().backward()
        p = _softmax_list([a / tau for a in alpha_values])
        assert alpha.grad.tolist() == pytest.approx(_jacobian_t_times(p, g, 1 / tau), abs=1e-12)


def test_surrogate_keeps_saturated_weights_exact_and_alpha_learning():
    alpha = torch.tensor([[0.02, 0.0, -0.01]], requires_grad=True)
    weights = tempered_softmax(alpha, 1e-4, surrogate=True)
    assert weights[0, 0] == 1.0 and (weights[0, 1:] == 0).all()  # underflowed entries stay exact zeros
    weights[0, 1].backward()
    assert alpha.grad.abs().sum() > 1e-3  # only the τ = 1 path can give this


def test_surrogate_on_node_joint_lhd_layout():
    space = get_space("lhd")
    alpha = (0.01 * torch.randn(space.alpha_shape(), generator=torch.Generator().manual_seed(0))).double()
    alpha.requires_grad_(True)
    upstream = torch.randn(space.alpha_shape(), generator=torch.Generator().manual_seed(1)).double()
    weights = tempered_softmax(alpha, 0.01, space=space, surrogate=True)
    for node in range(space.steps):  # node-joint: each node's block sums to 1
        rows = space.node_edges(node)
        assert float(weights[rows.start:rows.stop].detach().sum()) == pytest.approx(1.0)
    (weights * upstream).sum().backward()

    # Reference: each node block by hand, J_τᵀg + J_1ᵀg with the flattened block as one softmax.
    expected = torch.empty_like(alpha)
    for node in range(space.steps):
        rows = space.node_edges(node)
        block = alpha.detach()[rows.start:rows.stop].reshape(-1).tolist()
        g = upstream[rows.start:rows.stop].reshape(-1).tolist()
        grad = [a + b for a, b in zip(_jacobian_t_times(_softmax_list([v / 0.01 for v in block]), g, 100.0),
                                      _jacobian_t_times(_softmax_list(block), g, 1.0))]
        expected[rows.start:rows.stop] = torch.tensor(grad, dtype=torch.float64).reshape(len(rows), -1)
    assert torch.allclose(alpha.grad, expected, atol=1e-9)


def test_sparse_mixing_weights_defaults_equal_mixing_weights_and_surrogate_cells():
    space = get_space("lhd")
    gen = torch.Generator().manual_seed(0)
    alphas = {c: 0.1 * torch.randn(space.alpha_shape(c), generator=gen) for c in space.cell_types}
    betas = {c: 0.1 * torch.randn(2, space.steps, generator=gen) for c in space.cell_types}
    plain, sparse = mixing_weights(space, alphas, betas, 0.5), sparse_mixing_weights(space, alphas, betas, 0.5)
    assert plain.keys() == sparse.keys()
    assert all(torch.equal(plain[k], sparse[k]) for k in plain)

    leaf = {c: a.clone().requires_grad_(True) for c, a in alphas.items()}
    weights = sparse_mixing_weights(space, leaf, None, 1e-4, surrogate=True, surrogate_cells=("normal",))
    (weights["normal"][0, 1] + weights["reduce"][0, 1]).backward()
    assert leaf["normal"].grad.abs().sum() > 0
    assert leaf["reduce"].grad.abs().sum() < leaf["normal"].grad.abs().sum() * 1e-6  # reference: normal only


def test_logit_noise_is_seeded_and_optional():
    alpha = torch.zeros(4, 5)
    a = tempered_softmax(alpha, 0.1, noise_std=1.0, generator=torch.Generator().manual_seed(3))
    b = tempered_softmax(alpha, 0.1, noise_std=1.0, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and not torch.allclose(a, torch.full_like(a, 0.2))
    assert torch.allclose(a.sum(-1), torch.ones(4))
    gen = torch.Generator().manual_seed(3)
    state = gen.get_state()
    assert torch.equal(tempered_softmax(alpha, 0.1, generator=gen), torch.full_like(a, 0.2))
    assert torch.equal(gen.get_state(), state)  # no noise, no draw


# ---------------------------------------------------------------------------------------------------- GDAS


def test_gumbel_hard_is_exact_one_hot_per_edge():
    alpha = torch.randn(14, 8, generator=torch.Generator().manual_seed(0))
    hard = gumbel_hard(alpha, 1.0, generator=torch.Generator().manual_seed(1))
    assert ((hard == 0) | (hard == 1)).all()
    assert ((hard == 1).sum(-1) == 1).all()


@pytest.mark.parametrize("mode", ["all", "sampled"])
def test_gumbel_straight_through_gradient(mode):
    gen = torch.Generator().manual_seed(0)
    alpha_values, gumbels = torch.randn(6, 5, generator=gen).double(), torch.randn(6, 5, generator=gen).double()
    upstream, tau = torch.randn(6, 5, generator=gen).double(), 0.7

    alpha = alpha_values.clone().requires_grad_(True)
    hard = gumbel_hard(alpha, tau, gumbels=gumbels, straight_through=mode)
    soft_ref = torch.softmax((torch.log_softmax(alpha_values, -1) + gumbels) / tau, -1)
    assert torch.equal(hard, torch.nn.functional.one_hot(soft_ref.argmax(-1), 5).double())
    (hard * upstream).sum().backward()

    alpha_soft = alpha_values.clone().requires_grad_(True)
    soft = torch.softmax((torch.log_softmax(alpha_soft, -1) + gumbels) / tau, -1)
    # "all": the soft sample's gradient; "sampled": the same with g masked to the sampled entry.
    (soft * (upstream if mode == "all" else upstream * hard.detach())).sum().backward()
    assert torch.allclose(alpha.grad, alpha_soft.grad, atol=1e-12)


def test_gumbel_samples_follow_softmax_of_alpha():
    alpha = torch.tensor([1.0, 0.0, -1.0]).expand(4000, 3)
    hard = gumbel_hard(alpha, 1.0, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(hard.mean(0), torch.softmax(alpha[0], -1), atol=0.03)


def test_gdas_node_joint_on_lhd_and_per_edge_on_nb201():
    lhd = get_space("lhd")
    gen = torch.Generator().manual_seed(0)
    alphas = {c: torch.randn(lhd.alpha_shape(c), generator=gen) for c in lhd.cell_types}
    betas = {c: torch.randn(2, lhd.steps, generator=gen) for c in lhd.cell_types}
    weights = gdas_weights(lhd, alphas, betas, 1.0, generator=torch.Generator().manual_seed(1))
    for node in range(lhd.steps):
        rows = lhd.node_edges(node)
        block = weights["normal"][rows.start:rows.stop]
        assert float(block.sum()) == 1.0 and int((block == 1).sum()) == 1
        assert int((block == 0).sum()) == block.numel() - 1
    assert int((weights["normal"].sum(-1) == 0).sum()) >= lhd.num_edges - lhd.steps  # whole edges exactly off
    assert int((weights["normal_sum"] == 1).sum()) == 1 and float(weights["normal_sum"].sum()) == 1.0
    assert torch.equal(weights["normal_cat"], torch.sigmoid(betas["normal"][1]))

    nb = get_space("nb201")
    w = gdas_weights(nb, {"normal": torch.randn(6, 5, generator=gen)}, generator=gen)["normal"]
    assert ((w == 1).sum(-1) == 1).all()


def test_gumbel_bad_mode_is_a_user_error():
    with pytest.raises(RobustDartsError, match="straight-through"):
        gumbel_hard(torch.zeros(2, 3), straight_through="soft")


# ---------------------------------------------------------------------------------------------------- DrNAS


def test_dirichlet_matches_torch_distributions_values_and_gradients():
    conc_values = torch.tensor([[0.5, 1.0, 2.0], [3.0, 1.5, 0.7]], dtype=torch.float64)
    mine = conc_values.clone().requires_grad_(True)
    ref = conc_values.clone().requires_grad_(True)
    torch.manual_seed(11)
    sample = dirichlet_sample(mine)  # no generator: the global stream, like torch.distributions
    torch.manual_seed(11)
    expected = torch.distributions.Dirichlet(ref).rsample()
    assert torch.equal(sample, expected)
    weights = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    (sample * weights).sum().backward()
    (expected * weights).sum().backward()
    assert torch.allclose(mine.grad, ref.grad)


def test_drnas_rows_on_simplex_seeded_and_mean_matches_concentration():
    space = get_space("lhd")
    alphas = {c: torch.zeros(space.alpha_shape(c), requires_grad=True) for c in space.cell_types}
    betas = {c: torch.zeros(2, space.steps) for c in space.cell_types}
    a = drnas_weights(space, alphas, betas, generator=torch.Generator().manual_seed(0))
    b = drnas_weights(space, alphas, betas, generator=torch.Generator().manual_seed(0))
    for key in a:
        assert torch.equal(a[key], b[key])
        assert (a[key] >= 0).all() and torch.allclose(a[key].sum(-1), torch.ones(a[key].shape[:-1]))
    assert a["normal"].shape == space.alpha_shape() and a["normal_cat"].shape == (space.steps,)
    a["normal"][0, 0].backward()
    assert torch.isfinite(alphas["normal"].grad).all() and alphas["normal"].grad.abs().sum() > 0
    kept = drnas_weights(space, alphas, betas, generator=torch.Generator().manual_seed(0), sigmoid_cat=True)
    assert torch.equal(kept["normal_cat"], torch.full((space.steps,), 0.5))

    # elu(α) + 1: α = [1, 0, -1] → concentration [2, 1, e^-1]; E[x] = c / Σc.
    alpha = torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64).expand(4000, 3)
    samples = drnas_weights(get_space("nb201"), {"normal": alpha}, generator=torch.Generator().manual_seed(1))
    conc = torch.tensor([2.0, 1.0, math.exp(-1)], dtype=torch.float64)
    assert torch.allclose(samples["normal"].mean(0), conc / conc.sum(), atol=0.02)


# ---------------------------------------------------------------------------------------------------- SDARTS


def _clip_row_loop(p):
    # The SDARTS reference loop, row by row.
    out = p.clone()
    for line in out:
        max_index = line.argmax()
        line.clamp_(0, 1)
        if line.sum() == 0.0:
            line[max_index] = 1.0
        line.div_(line.sum())
    return out


def test_simplex_clip_matches_row_loop():
    gen = torch.Generator().manual_seed(0)
    p = torch.randn(40, 7, generator=gen) * 0.6
    p[3] = torch.tensor([-0.5, -0.1, -0.3, -0.2, -0.9, -0.4, -0.6])  # all negative: argmax (index 1) gets 1
    p[4] = torch.tensor([1.5, 0.2, -0.1, 0.0, 0.0, 0.3, 0.0])
    clipped = simplex_clip(p)
    assert torch.allclose(clipped, _clip_row_loop(p))
    assert clipped[3].tolist() == [0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert torch.allclose(clipped.sum(-1), torch.ones(40)) and (clipped >= 0).all()


@pytest.mark.parametrize("space_name", ["s3", "darts", "lhd"])
def test_sdarts_rs_perturb_bounds_seed_and_groups(space_name):
    """U[−ε, ε] on every edge probability, then the clip of each distribution (rows; LHD node blocks), checked
    against a per-row loop of the reference's clip; LHD's output weights are left alone."""
    space = get_space(space_name)
    gen = torch.Generator().manual_seed(0)
    alphas = {c: torch.randn(space.alpha_shape(c), generator=gen).requires_grad_(True) for c in space.cell_types}
    betas = {c: torch.randn(2, space.steps, generator=gen) for c in space.cell_types} if space.kind == "lhd" else {}
    probs = mixing_weights(space, alphas, betas)
    a = sdarts_rs_perturb(space, probs, 0.1, torch.Generator().manual_seed(5))
    b = sdarts_rs_perturb(space, probs, 0.1, torch.Generator().manual_seed(5))
    for c in space.cell_types:
        assert torch.equal(a[c], b[c]) and not a[c].requires_grad and (a[c] >= 0).all()
    noise_gen = torch.Generator().manual_seed(5)
    for c in space.cell_types:
        p = probs[c].detach()
        noisy = p + (torch.rand(p.shape, generator=noise_gen) * 0.2 - 0.1)
        if space.kind == "lhd":
            expected = torch.cat([_clip_row_loop(noisy[r.start:r.stop].reshape(1, -1)).reshape(r.stop - r.start, -1)
                                  for r in map(space.node_edges, range(space.steps))])
        else:
            expected = _clip_row_loop(noisy)
        assert torch.allclose(a[c], expected)
    for key in set(probs) - set(space.cell_types):
        assert a[key] is probs[key]


def test_project_linf_then_clip():
    center = torch.tensor([[0.5, 0.3, 0.2], [0.9, 0.05, 0.05]])
    p = torch.tensor([[0.9, 0.0, 0.3], [0.0, 0.5, 0.5]])
    projected = project_linf(p, center, 0.1)
    expected = _clip_row_loop(torch.tensor([[0.6, 0.2, 0.3], [0.8, 0.15, 0.15]]))
    assert torch.allclose(projected, expected)


# ---------------------------------------------------------------------------------------------------- GAEA


def test_gaea_exponentiated_gradient_step():
    alpha = simplex_uniform((2, 4), dtype=torch.float64)
    assert torch.equal(alpha, torch.full((2, 4), 0.25, dtype=torch.float64))
    grad = torch.tensor([[1.0, 0.0, -1.0, 0.0], [200.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    updated = gaea_eg_update(alpha, grad, lr=0.1)
    row0 = [0.25 * math.exp(-0.1 * g) for g in (1.0, 0.0, -1.0, 0.0)]
    assert updated[0].tolist() == pytest.approx([v / sum(row0) for v in row0])
    # 0.25·e^-20 ≈ 5e-10 is clamped up to 1e-5 before renormalizing.
    assert updated[1].tolist() == pytest.approx([1e-5 / (0.75 + 1e-5)] + [0.25 / (0.75 + 1e-5)] * 3)
