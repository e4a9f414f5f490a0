"""Dominant eigenvalue of the Hessian of the validation loss w.r.t. the architecture (RobustDARTS, spec D §2.3).

Follows Zela et al., "Understanding and Robustifying DARTS" (ICLR 2020), code automl/RobustDARTS
``src/search/analyze.py`` (``compute_Hw``, ``_hessian``), with these deliberate differences:

- **One batched pass instead of n double-backward passes.** The reference differentiates each of the n gradient
  entries again (``autograd.grad(..., retain_graph=True)``), one backward pass per α coordinate. Here all n
  Hessian-vector products run in one ``torch.func.vmap`` over the identity of a forward-over-reverse HVP
  (``jvp(grad(loss))``), so each conv runs once on a batch of n tangents instead of n times
  (``benchmarks/hessian.py`` measures the gain).
- **Only the directions the loss can see.** A softmax relaxation is invariant to adding a constant to all logits
  of one distribution (an edge's row; an LHD node's block; LHD's β_sum), so H·1_g = 0 for each such group g: the
  Hessian lives in the complement of those indicator vectors. We run the HVPs on an orthonormal basis of that
  complement only (196 of the darts space's 224 directions) and rebuild H = (HQ)Qᵀ, exact, after checking the
  invariance on the relaxation at hand (a relaxation without it gets all n directions).
- **By cell type, in the order the cells use them.** The reduce α's directions are differentiated through the loss
  as a function of the reduce α alone (normal α held constant), which gives H[reduce, reduce]; H[normal, reduce]
  is the transpose of what the normal directions gave. Those passes skip the cells before the first reduction
  cell, forward tangents and backward alike (``hessian_matrix``'s ``blocks``).
- **Symmetric solver.** The reference calls ``numpy.linalg.eigvals`` and takes ``max`` of a complex array (a
  lexicographic comparison); we symmetrise H and call ``torch.linalg.eigvalsh``.
- **Lanczos for large n.** Past ``EXACT_MAX_N`` coordinates (or on request) the largest *algebraic* eigenvalue comes
  from Lanczos with full reorthogonalization. Plain power iteration finds the largest |λ|, which can be a negative
  eigenvalue at initialization; it is offered (``method="power"``) only as a cheap option with that caveat.
- **The loss.** Mean cross-entropy over the validation batches handed in (the reference used exactly one: the
  last validation batch of the epoch, leaked from the training loop), plus ``0.5·arch_weight_decay·‖θ‖²``: the
  reference's gradient already contains the Adam L2 term, so its H = ∇²L + wd·I (wd = 1e-3). We add wd·I exactly
  instead of differentiating it.
- **BN.** Default ``bn_mode="train"``: batch statistics, as the reference (its model is in train mode). Unlike the
  reference, the measurement never updates the running statistics (BN modules stop tracking for its duration), and
  it restores every module's train/eval flag afterwards. It never touches ``.grad`` of any parameter or any
  optimizer state: the network weights enter as detached constants through ``torch.func.functional_call``.
- **No drop path, fixed randomness.** The forward uses no drop path (the reference kept it on if configured). Every
  loss evaluation runs under a forked RNG seeded with ``seed`` (plus the batch index), so a stochastic op (S4's
  ``noise``) gives one fixed draw: H is a proper symmetric matrix, all HVPs of Lanczos see the same operator, and
  the caller's RNG stream is not advanced (a resumed search draws the same numbers).

Zero-weight skip: the supernet drops an op whose mixing weight is exactly 0 when the weights do not require grad.
Inside ``torch.func.grad`` (and so inside every HVP here) the traced weights report ``requires_grad=True``, so
every op is computed. Under a forward-mode-only transform (``jvp`` without ``grad``) they report ``False``, and an
exactly-zero weight with a non-zero tangent would be dropped wrongly; nothing here does that.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from typing import Callable, Iterator, Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call, grad, jvp, vmap

from ..errors import RobustDartsError, unknown
from ..preserve import preserved
from ..relax import mixing_weights

EXACT_MAX_N = 512  # "auto" builds the full Hessian up to this many coordinates (n HVPs), Lanczos beyond
# Batching more HVP directions per pass stops paying off once the tangents outgrow the caches: on the darts space
# (C=4, 16x16, batch 16, CPU) chunks of 28-56 took 30-32 s, 15 took 46 s and 112 took 46 s (benchmarks/hessian.py).
MAX_CHUNK = 64
METHODS = ("auto", "exact", "lanczos", "power")
BN_MODES = ("train", "eval")
# torch.func has no batching rule for the in-place as_strided_ in adaptive_avg_pool2d's backward on channels_last
# activations (the search's layout), so vmap's fallback runs that one op direction by direction (the rest stays
# batched; the values are the same) and warns, asking to "file us an issue on GitHub": a note for PyTorch's
# developers, not for our user, who saw it at every λ_max measurement. Only that warning, only around the vmap call.
VMAP_FALLBACK_WARNING = (r"There is a performance drop because we have not yet implemented the batching rule for "
                         r"aten::as_strided_\.")

ScalarFn = Callable[[torch.Tensor], torch.Tensor]
Hvp = Callable[[torch.Tensor], torch.Tensor]


# ----------------------------------------------------------------------------------------------- generic core


def make_hvp(fn: ScalarFn, theta: torch.Tensor) -> Hvp:
    """v ↦ ∇²fn(theta)·v, forward-over-reverse (a jvp of the gradient: one forward + one backward, both with
    tangents). It composes with ``vmap`` and, batched, was ~2x faster than batched reverse-over-reverse here.
    Not reverse-over-forward (``grad`` of a ``jvp``): with train-mode BN that gave wrong HVPs in torch 2.13
    (off by half the Hessian's scale against autograd on a tiny supernet; exact in eval mode)."""
    grad_fn = grad(fn)

    def hvp(v: torch.Tensor) -> torch.Tensor:
        return jvp(grad_fn, (theta,), (v,))[1]

    return hvp


def hessian_matrix(fn: ScalarFn, theta: torch.Tensor, *, chunk_size: int | None = None,
                   blocks: Sequence[Sequence[int]] | None = None,
                   bases: Sequence[torch.Tensor | None] | None = None) -> torch.Tensor:
    """The symmetrised Hessian of a scalar function of a flat vector, from HVPs run in batched passes.

    ``blocks`` partition the coordinates (default: one block of all n). Block i's directions are differentiated
    through ``fn`` restricted to blocks i, i+1, … (earlier blocks held constant): that gives H[≥i, i], and
    H[<i, i] is the transpose of what the earlier blocks gave. Exact in any order; cheap in the order in which
    the network first uses the blocks, because a restricted pass neither carries tangents through nor
    backpropagates into the layers before block i's first use (the cells ahead of the first reduction cell, for
    the reduce α).

    ``bases[i]`` (|block i| × m_i, orthonormal columns, or None for the identity) says which directions of block i
    to probe: all, or a basis of a subspace containing H's range there (``complement_basis``), in which case
    H[:, i] = (H Q)Qᵀ exactly with m_i HVPs. ``chunk_size`` bounds memory (tangent activations scale with the
    number of directions batched together); None batches a block's directions all at once; chunks are balanced
    (98 directions at 64 run as 2×49, not 64+34). Random ops inside ``fn`` see one draw shared by all directions
    (``randomness="same"``), as the reference's single retained graph does; seed inside ``fn`` if chunks must
    agree too.
    """
    if theta.dim() != 1:
        raise ValueError(f"theta must be a flat vector, got shape {tuple(theta.shape)}")
    n = theta.numel()
    blocks = [list(range(n))] if blocks is None else [list(b) for b in blocks]
    bases = [None] * len(blocks) if bases is None else list(bases)
    if sorted(i for b in blocks for i in b) != list(range(n)) or len(bases) != len(blocks):
        raise ValueError("blocks must partition range(n), with one basis (or None) per block")
    H = theta.new_zeros(n, n)
    for i, block in enumerate(blocks):
        later = [j for b in blocks[i:] for j in b]  # block i first
        earlier = [j for b in blocks[:i] for j in b]
        order = torch.tensor(earlier + later, device=theta.device)
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(n, device=theta.device)
        fixed = theta[earlier]

        def restricted(sub: torch.Tensor, fixed=fixed, inverse=inverse) -> torch.Tensor:
            return fn(torch.cat([fixed, sub])[inverse])

        Q = bases[i] if bases[i] is not None else torch.eye(len(block), dtype=theta.dtype, device=theta.device)
        m = Q.shape[1]
        if m == 0:
            continue
        directions = theta.new_zeros(m, len(later))
        directions[:, :len(block)] = Q.T
        chunk = None if chunk_size is None else math.ceil(m / math.ceil(m / max(1, chunk_size)))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=VMAP_FALLBACK_WARNING, category=UserWarning)
            hq = vmap(make_hvp(restricted, theta[later]), chunk_size=chunk, randomness="same")(directions)  # (HQ)ᵀ
        cols = hq.T @ Q.T  # H[later, block]
        rows_idx = torch.tensor(later, device=theta.device)
        block_idx = torch.tensor(block, device=theta.device)
        H[rows_idx[:, None], block_idx] = cols
        H[block_idx[:, None], rows_idx] = cols.T
    return 0.5 * (H + H.T)  # float round-off makes forward-over-reverse rows very slightly asymmetric


def complement_basis(n: int, groups: Sequence[Sequence[int]], *, dtype=torch.float32, device=None) -> torch.Tensor:
    """An orthonormal basis (n × (n − len(groups))) of the vectors orthogonal to every group's indicator.

    ``groups`` are disjoint index lists; the basis is the eigenvectors of the projector I − Σ_g u_g u_gᵀ with
    eigenvalue 1 (u_g the normalized indicator of g), computed in float64.
    """
    P = torch.eye(n, dtype=torch.float64, device="cpu")  # host-side linear algebra, moved at the end
    for g in groups:
        u = torch.zeros(n, dtype=torch.float64, device="cpu")
        u[list(g)] = 1.0 / math.sqrt(len(g))
        P -= torch.outer(u, u)
    values, vectors = torch.linalg.eigh(P)
    return vectors[:, values > 0.5].to(dtype=dtype, device=device)


def estimate_chunk_size(fn: ScalarFn, theta: torch.Tensor, memory_budget: int = 4 << 30) -> int:
    """How many HVP directions to batch so their tangents fit in ``memory_budget`` bytes.

    One direction of forward-over-reverse costs about twice the bytes a plain forward saves for backward
    (measured on the darts supernet: ~125 MiB per direction for 67 MiB saved), so one forward under a
    saved-tensors hook sizes the chunk. At full search sizes (C=16, 8 cells, batch 64) that is ~15 GB per
    direction: the chunk is 1 and memory is what it is, as for the reference's retained double-backward graph.
    """
    saved = 0

    def count(t: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        saved += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(count, lambda t: t), torch.enable_grad():
        fn(theta.detach().requires_grad_())
    per_direction = max(2 * saved, 1)
    return int(min(theta.numel(), MAX_CHUNK, max(1, memory_budget // per_direction)))


def _unit_start(n: int, generator: torch.Generator | None, device) -> torch.Tensor:
    # Drawn on the CPU so a CPU generator works for any device; float64 keeps the recurrence orthogonal.
    q = torch.randn(n, generator=generator, dtype=torch.float64, device="cpu")
    return (q / q.norm()).to(device)


def lanczos_top_eigenvalue(hvp: Hvp, n: int, iters: int = 50, generator: torch.Generator | None = None, *,
                           tol: float = 1e-6, dtype: torch.dtype = torch.float32, device=None) -> float:
    """Largest algebraic eigenvalue of the symmetric operator ``hvp`` (n×n) by Lanczos with full
    reorthogonalization (Gram–Schmidt twice, so the basis stays orthogonal in float32 HVPs too).

    Stops after ``min(iters, n)`` HVPs, at an invariant subspace, or once the residual bound |β_j·s_j| of the top
    Ritz pair is ≤ tol·|θ| (then an eigenvalue lies within that bound of θ). The recurrence runs in float64; HVPs
    get vectors of ``dtype``.
    """
    m = min(iters, n)
    basis = [_unit_start(n, generator, device)]
    diag: list[float] = []
    off: list[float] = []
    top = float("nan")
    for j in range(m):
        w = hvp(basis[j].to(dtype)).to(torch.float64)
        diag.append(float(w @ basis[j]))
        Q = torch.stack(basis)
        for _ in range(2):
            w = w - Q.T @ (Q @ w)
        beta = float(w.norm())
        T = torch.diag(torch.tensor(diag, dtype=torch.float64))
        if off:
            offd = torch.tensor(off, dtype=torch.float64)
            T = T + torch.diag(offd, 1) + torch.diag(offd, -1)
        ritz, vecs = torch.linalg.eigh(T)
        top = float(ritz[-1])
        residual = beta * abs(float(vecs[-1, -1]))
        scale = max(abs(top), float(ritz.abs().max()), 1e-30)
        if residual <= tol * scale or beta <= 1e-12 * scale:
            break
        off.append(beta)
        basis.append(w / beta)
    return top


def power_top_eigenvalue(hvp: Hvp, n: int, iters: int = 100, generator: torch.Generator | None = None, *,
                         tol: float = 1e-6, dtype: torch.dtype = torch.float32, device=None) -> float:
    """Rayleigh quotient of plain power iteration. CAVEAT: this converges to the eigenvalue of largest |λ|, which
    is not the largest algebraic one when a negative eigenvalue dominates (common at initialization), and it
    converges slowly when the top two |λ| are close. Prefer Lanczos; kept as the cheap textbook option."""
    v = _unit_start(n, generator, device)
    rayleigh = float("nan")
    for _ in range(iters):
        w = hvp(v.to(dtype)).to(torch.float64)
        new = float(w @ v)
        norm = w.norm()
        if norm == 0:
            return 0.0
        v = w / norm
        if abs(new - rayleigh) <= tol * max(abs(new), 1e-30):
            return new
        rayleigh = new
    return rayleigh


def _resolve_method(method: str, n: int, exact_max_n: int) -> str:
    if method not in METHODS:
        raise unknown("eigenvalue method", method, METHODS)
    if method == "auto":
        return "exact" if n <= exact_max_n else "lanczos"
    return method


def dominant_eigenvalue(fn: ScalarFn, theta: torch.Tensor, method: str = "auto", *, exact_max_n: int = EXACT_MAX_N,
                        iters: int = 50, tol: float = 1e-6, generator: torch.Generator | None = None,
                        chunk_size: int | None = None) -> float:
    """Largest algebraic eigenvalue of ∇²fn(theta) (``power``: the largest-|λ| one, see its caveat)."""
    method = _resolve_method(method, theta.numel(), exact_max_n)
    if method == "exact":
        return float(torch.linalg.eigvalsh(hessian_matrix(fn, theta, chunk_size=chunk_size))[-1])
    solver = lanczos_top_eigenvalue if method == "lanczos" else power_top_eigenvalue
    return solver(make_hvp(fn, theta), theta.numel(), iters, generator, tol=tol, dtype=theta.dtype,
                  device=theta.device)


# --------------------------------------------------------------------------------------------- supernet wrapper


@contextlib.contextmanager
def measurement_mode(module: nn.Module, bn_mode: str) -> Iterator[None]:
    """Put ``module`` in train or eval mode for a measurement without letting BN write its running statistics,
    then restore every submodule's flags and buffers exactly (a module tree may mix train and eval submodules).
    The RNG is the caller's business: the loss functions fork it themselves."""
    if bn_mode not in BN_MODES:
        raise unknown("BN mode", bn_mode, BN_MODES)
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    tracking = [(m, m.track_running_stats) for m in bns]
    with preserved(module, rng=False):
        try:
            module.train(bn_mode == "train")
            if bn_mode == "train":
                # Train-mode BN with tracking off normalizes by batch statistics and writes nothing (an in-place
                # buffer update would also be illegal for the batched tangents of vmap).
                for m in bns:
                    m.track_running_stats = False
            yield
        finally:
            for m, flag in tracking:
                m.track_running_stats = flag


def _arch_shapes(arch) -> tuple[list[tuple[str, torch.Size]], list[tuple[str, torch.Size]]]:
    return ([(c, p.shape) for c, p in arch.alphas.items()], [(c, p.shape) for c, p in arch.betas.items()])


def flatten_arch(arch) -> torch.Tensor:
    """α of every cell type (in the space's order), then β: the order of ``ArchParams.parameters()``; detached."""
    return torch.cat([p.detach().reshape(-1) for p in [*arch.alphas.values(), *arch.betas.values()]])


def unflatten_arch(theta: torch.Tensor, arch) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Inverse of ``flatten_arch``: views of ``theta`` shaped like ``arch``'s α and β (so gradients flow)."""
    alpha_shapes, beta_shapes = _arch_shapes(arch)
    out: list[dict[str, torch.Tensor]] = [{}, {}]
    offset = 0
    for d, shapes in zip(out, (alpha_shapes, beta_shapes)):
        for c, shape in shapes:
            size = math.prod(shape)
            d[c] = theta[offset:offset + size].reshape(shape)
            offset += size
    return out[0], out[1]


def cell_type_blocks(arch, order: Sequence[str] | None = None) -> list[list[int]]:
    """Indices of the flat θ that belong to each cell type (its α, then its β), in ``order`` (the order in which
    the supernet's cells first use the types; default the space's order)."""
    offset, owned = 0, {c: [] for c in arch.alphas}
    for params in (arch.alphas, arch.betas):
        for c, p in params.items():
            owned[c].extend(range(offset, offset + p.numel()))
            offset += p.numel()
    order = [c for c in dict.fromkeys(order or ()) if c in owned]
    return [owned[c] for c in order + [c for c in owned if c not in order]]


def softmax_groups(arch) -> list[list[int]]:
    """Index groups of the flat θ (``flatten_arch`` order) that a softmax relaxation normalizes together: each
    edge's row of α (DARTS, NB201), each node's block of edges (LHD's node-joint softmax), and each LHD β_sum row.
    The loss is invariant to adding one constant to all entries of a group (for the relaxations that are softmaxes
    of those groups; ``shift_invariant`` checks that)."""
    groups: list[list[int]] = []
    offset = 0
    space = arch.space
    for p in arch.alphas.values():
        rows, cols = p.shape
        if space.kind == "lhd":
            for node in range(space.steps):
                r = space.node_edges(node)
                groups.append(list(range(offset + r.start * cols, offset + r.stop * cols)))
        else:
            groups.extend(list(range(offset + e * cols, offset + (e + 1) * cols)) for e in range(rows))
        offset += p.numel()
    for p in arch.betas.values():  # (2, steps): row 0 is softmaxed over the nodes, row 1 goes through sigmoids
        groups.append(list(range(offset, offset + p.shape[1])))
        offset += p.numel()
    return groups


def shift_invariant(fn: ScalarFn, theta: torch.Tensor, groups: Sequence[Sequence[int]], seed: int = 0) -> bool:
    """Whether ``fn`` is unchanged when each group of θ is shifted by its own random constant (of size ~1): two
    forward passes. A softmax over each group passes (to float round-off); a relaxation that is not a function of
    the differences within a group (sigmoids, Dirichlet concentrations) changes the loss by far more."""
    if not groups:
        return False
    shift = torch.zeros_like(theta)
    draws = torch.randn(len(groups), generator=torch.Generator().manual_seed(seed), dtype=torch.float64, device="cpu")
    for g, c in zip(groups, draws.tolist()):
        shift[list(g)] = 1.0 + c
    with torch.no_grad():
        base, moved = float(fn(theta)), float(fn(theta + shift))
    return math.isfinite(base) and abs(moved - base) <= 1e-5 * max(1.0, abs(base))


Relax = Callable[..., Mapping[str, torch.Tensor]]


def validation_loss_fn(supernet: nn.Module, arch, batch: tuple[torch.Tensor, torch.Tensor], *, tau: float = 1.0,
                       relax: Relax | None = None, seed: int = 0) -> ScalarFn:
    """θ ↦ CE(supernet(x, relax(θ)), y) for one batch, with the network weights as detached constants."""
    relax = relax or mixing_weights
    x, y = batch
    # Detached copies of the weights: no autograd graph is recorded for them and their .grad is never reached.
    tensors = {name: t.detach() for name, t in supernet.named_parameters()}
    tensors.update(dict(supernet.named_buffers()))
    rng_devices = [x.device] if x.device.type == "cuda" else []

    def loss(theta: torch.Tensor) -> torch.Tensor:
        alphas, betas = unflatten_arch(theta, arch)
        with torch.random.fork_rng(devices=rng_devices):
            # Same draws (relaxation noise, S4 noise) in every evaluation; the caller's RNG is untouched.
            torch.manual_seed(seed)
            weights = relax(arch.space, alphas, betas, tau)
            logits = functional_call(supernet, tensors, (x, weights))
        return F.cross_entropy(logits, y)

    return loss


def arch_hessian(supernet: nn.Module, arch, batches: Sequence[tuple[torch.Tensor, torch.Tensor]], *,
                 tau: float = 1.0, bn_mode: str = "train", arch_weight_decay: float = 1e-3, method: str = "auto",
                 relax: Relax | None = None, exact_max_n: int = EXACT_MAX_N, iters: int = 50, tol: float = 1e-6,
                 chunk_size: int | None = None, memory_budget: int = 4 << 30, seed: int = 0) -> dict:
    """Dominant eigenvalue of H = ∇²_θ L_val(θ) + arch_weight_decay·I at the current architecture θ.

    ``arch`` is an ``ArchParams`` (or anything with ``space``, ``alphas`` and ``betas`` dicts); θ is its flat
    vector (α of every cell type, then β for LHD). L_val is the mean over ``batches`` (a list of (x, y)) of the mean
    cross-entropy of ``supernet(x, relax(space, α, β, tau))``; ``relax`` defaults to ``mixing_weights`` (softmax).
    The Hessian is linear in the loss, so it is accumulated batch by batch (memory of one batch at a time).
    The exact method batches ``chunk_size`` HVP directions per pass; None sizes the chunk to ``memory_budget``
    bytes (``estimate_chunk_size``, at most ``MAX_CHUNK``). When the loss is invariant to shifting each softmax
    group (``softmax_groups``, checked by ``shift_invariant``) it probes only the complement of those shifts
    (``reduced``: True in the result), n − #groups HVPs instead of n. ``seed`` fixes the draw of random ops (S4
    ``noise``) and the Lanczos start.

    Returns ``{"eigenvalue", "eigenvalues" (all of them, ascending, for the exact method; else None), "n",
    "method", "chunk_size", "hvps" (directions probed by the exact method), "reduced", "seconds"}``.
    """
    if not batches:
        raise RobustDartsError("arch_hessian needs at least one validation batch; got an empty list.")
    start = time.perf_counter()
    theta = flatten_arch(arch)
    n = theta.numel()
    method = _resolve_method(method, n, exact_max_n)
    generator = torch.Generator().manual_seed(seed)
    with measurement_mode(supernet, bn_mode):
        fns = [validation_loss_fn(supernet, arch, b, tau=tau, relax=relax, seed=seed + i)
               for i, b in enumerate(batches)]
        eigenvalues, reduced, hvps = None, False, None
        if method == "exact":
            if chunk_size is None:
                largest = max(range(len(batches)), key=lambda i: batches[i][0].shape[0])
                chunk_size = estimate_chunk_size(fns[largest], theta, memory_budget)
            blocks = cell_type_blocks(arch, getattr(supernet, "cell_types", None))
            groups = softmax_groups(arch)
            bases = [None] * len(blocks)
            if shift_invariant(fns[0], theta, groups, seed):  # a property of the relaxation: one batch decides
                local = [{j: k for k, j in enumerate(block)} for block in blocks]
                bases = [complement_basis(len(block), [[where[j] for j in g] for g in groups if g[0] in where],
                                          dtype=theta.dtype, device=theta.device)
                         for block, where in zip(blocks, local)]
            reduced = bases[0] is not None
            hvps = sum(len(b) if q is None else q.shape[1] for b, q in zip(blocks, bases))
            H = sum(hessian_matrix(fn, theta, chunk_size=chunk_size, blocks=blocks, bases=bases)
                    for fn in fns) / len(fns)
            H = H + arch_weight_decay * torch.eye(n, dtype=H.dtype, device=H.device)
            eigenvalues = torch.linalg.eigvalsh(H).cpu()
            top = float(eigenvalues[-1])
        else:
            hvps = [make_hvp(fn, theta) for fn in fns]

            def hvp(v: torch.Tensor) -> torch.Tensor:
                return sum(h(v) for h in hvps) / len(hvps) + arch_weight_decay * v

            solver = lanczos_top_eigenvalue if method == "lanczos" else power_top_eigenvalue
            top = solver(hvp, n, iters, generator, tol=tol, dtype=theta.dtype, device=theta.device)
    return {"eigenvalue": top, "eigenvalues": eigenvalues, "n": n, "method": method, "chunk_size": chunk_size,
            "hvps": hvps, "reduced": reduced, "seconds": time.perf_counter() - start}
