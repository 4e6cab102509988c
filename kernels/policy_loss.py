"""Fused PPO clipped-ratio policy loss for a diagonal Gaussian policy N(mu, sigma^2), with its gradient.

Layout (one file per fused op): private Triton kernels, plain launchers, a thin autograd Function, the
PyTorch reference `policy_loss_torch` (CPU fallback and test oracle) and the public `policy_loss`.

Notation: mu -> μ, log_sigma -> log σ, ratio -> ρ, adv -> A, clip_range -> ε_c, kl_weight -> β,
K rows (stored samples z_k), D columns (latent dimensions), e_kd = (z_kd - μ_d)/σ_d.

The math (per-dimension MEAN log-density, as the official FIND code; a sum over D would make ρ explode;
the log-density and KL formulas, PyTorch and Triton, live once in `gaussian.py`):
  log p_θ(z_k) = mean_d [ -e_kd²/2 - log σ_d ] - log(2π)/2
  behaviour:  log ρ_k = log p_θ(z_k) - logp_old_k;   s_k = -min(ρ_k A_k, clip(ρ_k, 1-ε_c, 1+ε_c) A_k)
  initial:    log ρ_k = log p_θ(z_k) - log N(z_k; 0, I) (also a per-dimension mean; logp_old ignored)
              s_k = -A_k clip(ρ_k, 1-ε_c, 1+ε_c)   (hard clamp: no gradient when clamped)
  KL exact:   mean_d [ (σ_d² + μ_d² - 1)/2 - log σ_d ]      KL l2: mean_d [ μ_d² + (σ_d - 1)² ]
  loss = mean_k s_k + β KL

Gradient: with c_k = ∂(mean_k s_k)/∂ log p_θ(z_k) (a per-row scalar),
  ∂loss/∂μ_d     = Σ_k c_k e_kd / (σ_d D)        + β ∂KL/∂μ_d
  ∂loss/∂log σ_d = Σ_k c_k (e_kd² - 1) / D       + β ∂KL/∂log σ_d
c_k needs the full row sum over D, and the gradient needs column sums over K, so two passes over z
are the minimum: pass 1 (forward) reads z once for the row sums; pass 2 (backward) reads z once more
for the column sums. Bytes: 2·4·K·D (134 MB at K=64, D=4×16×64×64: ≈ 45 µs at 2.98 TB/s) against
about twenty K×D-sized reads and writes for the eager PyTorch chain (see `policy_loss_torch`).
Launches: forward two (the tile pass, then one program for the per-row scalars), backward one.
"""

from __future__ import annotations

import torch

from findcli.kernels import dispatch
from findcli.kernels.dispatch import get_backend, tl, triton
from findcli.kernels.gaussian import kl_to_standard_normal, log_density_from_sums, mean_log_density, sum_row_blocks

from findcli.config import CHOICES  # (the choices are defined once, beside the settings)

RATIO_REFS = CHOICES["clip_ref"]  # ("behaviour", "initial")
KL_KINDS = CHOICES["kl"]  # ("exact", "l2")
# Layout of the small stats vector written by the rows kernel.
STAT_NAMES = ("surrogate", "kl", "approx_kl", "clipfrac", "ratio_mean")


# ----------------------------------------------------------------------------------------------
# Triton kernels
# ----------------------------------------------------------------------------------------------


@triton.jit
def _policy_loss_fwd_kernel(
    z_ptr,  # (K, D) float32, row-major: stored samples
    mu_ptr,  # (D,) float32: μ
    log_sigma_ptr,  # (D,) float32: log σ
    row_partial_ptr,  # (NB_D, K) float32, written: per-row partial Σ_d of e² (behaviour) or e² - z² (initial)
    col_partial_ptr,  # (NB_D, 2) float32, written by the pid_k == 0 programs: Σ_d log σ_d, Σ_d kl_d
    K,  # int: rows
    D,  # int: columns
    RATIO_INITIAL: tl.constexpr,  # True: ratio against N(0, I)
    KL_L2: tl.constexpr,  # True: the official code's L2 proxy instead of the exact KL
    BLOCK_K: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    pid_k = tl.program_id(0)
    pid_d = tl.program_id(1)
    rows = pid_k * BLOCK_K + tl.arange(0, BLOCK_K)
    cols = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    row_mask = rows < K
    col_mask = cols < D
    mask = row_mask[:, None] & col_mask[None, :]

    mu = tl.load(mu_ptr + cols, mask=col_mask, other=0.0)
    log_sigma = tl.load(log_sigma_ptr + cols, mask=col_mask, other=0.0)
    inv_sigma = tl.exp(-log_sigma)

    # -- pass 1 over z: per-row partial sums of the log-density terms that depend on z
    offs = rows.to(tl.int64)[:, None] * D + cols[None, :]  # 64-bit: K·D may pass 2^31
    z = tl.load(z_ptr + offs, mask=mask, other=0.0)
    e = (z - mu[None, :]) * inv_sigma[None, :]
    if RATIO_INITIAL:
        # log ρ needs Σ(e² - z²): one accumulator, so the near-cancellation happens per element
        term = e * e - z * z
    else:
        term = e * e
    term = tl.where(mask, term, 0.0)
    tl.store(row_partial_ptr + pid_d * K + rows, tl.sum(term, axis=1), mask=row_mask)

    # -- the (D,)-only sums, once per column block: Σ log σ and Σ of the per-dimension KL
    if pid_k == 0:
        sigma = tl.exp(log_sigma)
        if KL_L2:
            kl = mu * mu + (sigma - 1.0) * (sigma - 1.0)
        else:
            kl = 0.5 * (sigma * sigma + mu * mu - 1.0) - log_sigma
        kl = tl.where(col_mask, kl, 0.0)
        tl.store(col_partial_ptr + pid_d * 2, tl.sum(log_sigma, axis=0))  # masked columns loaded as 0
        tl.store(col_partial_ptr + pid_d * 2 + 1, tl.sum(kl, axis=0))


@triton.jit
def _policy_loss_rows_kernel(
    row_partial_ptr,  # (NB_D, K) float32: from the forward kernel
    col_partial_ptr,  # (NB_D, 2) float32: from the forward kernel
    logp_old_ptr,  # (K,) float32: behaviour log-probs (unused when RATIO_INITIAL)
    adv_ptr,  # (K,) float32: advantages A
    coef_ptr,  # (K,) float32, written: c_k = ∂(mean_k s_k)/∂ log p_θ(z_k)
    loss_ptr,  # () float32, written: mean_k s_k + β KL
    stats_ptr,  # (5,) float32, written: surrogate, kl, approx_kl, clipfrac, ratio_mean
    K,
    D,
    NB_D,  # int: number of column blocks of the forward kernel
    clip_range,  # float: ε_c
    kl_weight,  # float: β
    RATIO_INITIAL: tl.constexpr,
    BLOCK_K: tl.constexpr,  # rows per step of the loop over K
    BLOCK_NB: tl.constexpr,  # column blocks per step of the loop over NB_D
):
    # One program: every step here is O(K + NB_D), negligible next to the K×D passes.
    # -- phase 1: the (D,)-only sums, both in one loop over the column blocks
    nb = tl.arange(0, BLOCK_NB)
    ls_acc = tl.zeros([BLOCK_NB], dtype=tl.float32)
    kl_acc = tl.zeros([BLOCK_NB], dtype=tl.float32)
    for j0 in range(0, NB_D, BLOCK_NB):
        m = (j0 + nb) < NB_D
        ls_acc += tl.load(col_partial_ptr + (j0 + nb) * 2, mask=m, other=0.0)
        kl_acc += tl.load(col_partial_ptr + (j0 + nb) * 2 + 1, mask=m, other=0.0)
    mean_log_sigma = tl.sum(ls_acc, axis=0) / D
    kl = tl.sum(kl_acc, axis=0) / D

    # -- phase 2: per-row ratio, surrogate and coefficient, accumulating the diagnostics
    r = tl.arange(0, BLOCK_K)
    surr_acc = tl.zeros([BLOCK_K], dtype=tl.float32)
    akl_acc = tl.zeros([BLOCK_K], dtype=tl.float32)
    clip_acc = tl.zeros([BLOCK_K], dtype=tl.float32)
    rho_acc = tl.zeros([BLOCK_K], dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        rows = k0 + r
        row_mask = rows < K
        # finish the row sums: Σ over column blocks of the partials
        t = sum_row_blocks(row_partial_ptr, K, rows, row_mask, NB_D, BLOCK_NB, BLOCK_K)  # (BLOCK_K,)
        adv = tl.load(adv_ptr + rows, mask=row_mask, other=0.0)
        if RATIO_INITIAL:
            log_rho = -0.5 * t / D - mean_log_sigma
        else:
            logp_old = tl.load(logp_old_ptr + rows, mask=row_mask, other=0.0)
            log_rho = log_density_from_sums(t, mean_log_sigma, D) - logp_old
        log_rho = tl.where(row_mask, log_rho, 0.0)  # padding rows: ρ = 1, and A = 0 zeroes their terms
        rho = tl.exp(log_rho)
        rho_clipped = tl.minimum(tl.maximum(rho, 1.0 - clip_range), 1.0 + clip_range)
        if RATIO_INITIAL:
            surr = -adv * rho_clipped
            live = (rho >= 1.0 - clip_range) & (rho <= 1.0 + clip_range)  # hard clamp passes no gradient
        else:
            surr = -tl.minimum(rho * adv, rho_clipped * adv)
            live = rho * adv <= rho_clipped * adv  # the unclipped term is the minimum
        coef = tl.where(live, -adv * rho / K, 0.0)  # ∂s_k/∂ρ_k · ∂ρ_k/∂log p_k / K
        tl.store(coef_ptr + rows, coef, mask=row_mask)
        surr_acc += tl.where(row_mask, surr, 0.0)
        akl_acc += tl.where(row_mask, (rho - 1.0) - log_rho, 0.0)
        clip_acc += tl.where(row_mask & (tl.abs(rho - 1.0) > clip_range), 1.0, 0.0)
        rho_acc += tl.where(row_mask, rho, 0.0)

    # -- phase 3: the loss and the diagnostics
    surrogate = tl.sum(surr_acc, axis=0) / K
    tl.store(loss_ptr, surrogate + kl_weight * kl)
    tl.store(stats_ptr + 0, surrogate)
    tl.store(stats_ptr + 1, kl)
    tl.store(stats_ptr + 2, tl.sum(akl_acc, axis=0) / K)
    tl.store(stats_ptr + 3, tl.sum(clip_acc, axis=0) / K)
    tl.store(stats_ptr + 4, tl.sum(rho_acc, axis=0) / K)


@triton.jit
def _policy_loss_bwd_kernel(
    z_ptr,  # (K, D) float32, row-major: stored samples
    mu_ptr,  # (D,) float32: μ
    log_sigma_ptr,  # (D,) float32: log σ
    coef_ptr,  # (K,) float32: c_k from the rows kernel
    grad_loss_ptr,  # () float32: upstream gradient g of the loss
    dmu_ptr,  # (D,) float32, written: g ∂loss/∂μ
    dlog_sigma_ptr,  # (D,) float32, written: g ∂loss/∂log σ
    K,
    D,
    kl_weight,  # float: β
    KL_L2: tl.constexpr,
    BLOCK_K: tl.constexpr,  # rows per step of the loop over K
    BLOCK_D: tl.constexpr,  # columns per program
):
    pid_d = tl.program_id(0)
    cols = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    col_mask = cols < D
    mu = tl.load(mu_ptr + cols, mask=col_mask, other=0.0)
    log_sigma = tl.load(log_sigma_ptr + cols, mask=col_mask, other=0.0)
    sigma = tl.exp(log_sigma)
    inv_sigma = tl.exp(-log_sigma)

    # -- pass 2 over z: column sums Σ_k c_k e_kd and Σ_k c_k (e_kd² - 1)
    r = tl.arange(0, BLOCK_K)
    acc_mu = tl.zeros([BLOCK_K, BLOCK_D], dtype=tl.float32)
    acc_ls = tl.zeros([BLOCK_K, BLOCK_D], dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        rows = k0 + r
        row_mask = rows < K
        mask = row_mask[:, None] & col_mask[None, :]
        c = tl.load(coef_ptr + rows, mask=row_mask, other=0.0)  # padding rows get c = 0
        z = tl.load(z_ptr + rows.to(tl.int64)[:, None] * D + cols[None, :], mask=mask, other=0.0)
        e = (z - mu[None, :]) * inv_sigma[None, :]
        acc_mu += c[:, None] * e
        acc_ls += c[:, None] * (e * e - 1.0)
    s_mu = tl.sum(acc_mu, axis=0)  # (BLOCK_D,)
    s_ls = tl.sum(acc_ls, axis=0)

    # -- the KL gradient, analytic, per dimension (the KL is a mean over D, hence the 1/D)
    if KL_L2:
        dkl_mu = 2.0 * mu
        dkl_ls = 2.0 * (sigma - 1.0) * sigma
    else:
        dkl_mu = mu
        dkl_ls = sigma * sigma - 1.0
    g = tl.load(grad_loss_ptr)
    dmu = g * (s_mu * inv_sigma + kl_weight * dkl_mu) / D
    dls = g * (s_ls + kl_weight * dkl_ls) / D
    tl.store(dmu_ptr + cols, dmu, mask=col_mask)
    tl.store(dlog_sigma_ptr + cols, dls, mask=col_mask)


# ----------------------------------------------------------------------------------------------
# Launchers
# ----------------------------------------------------------------------------------------------


def _fwd_tiles(k: int, d: int) -> tuple[int, int]:
    """(BLOCK_K, BLOCK_D) for the forward pass: 4096-element tiles on a GPU (4 warps, 32 fp32 per
    thread); big tiles under the interpreter, where every program costs Python overhead."""
    cap_d, cap_tile = ((1 << 16), (1 << 16)) if dispatch._kernels_interpreted() else (1024, 4096)
    block_d = min(triton.next_power_of_2(d), cap_d)
    block_k = min(triton.next_power_of_2(k), max(1, cap_tile // block_d))
    return block_k, block_d


def _bwd_tiles(k: int, d: int) -> tuple[int, int]:
    """(BLOCK_K, BLOCK_D) for the column-reduction pass: one program per column block, looping over K.
    On a GPU, narrow enough column blocks that there are a few hundred programs for the 132 SMs of an
    H100 (64..1024 columns), with BLOCK_K·BLOCK_D ≤ 4096 so the two accumulators stay in registers."""
    if dispatch._kernels_interpreted():
        block_d = min(triton.next_power_of_2(d), 1 << 14)
        return min(triton.next_power_of_2(k), max(1, (1 << 16) // block_d)), block_d
    block_d = min(max(triton.next_power_of_2(max(d // 256, 1)), 64), 1024)
    block_d = min(block_d, triton.next_power_of_2(d))
    block_k = min(triton.next_power_of_2(k), max(1, 4096 // block_d))
    return block_k, block_d


def policy_loss_fwd(z, mu, log_sigma, logp_old, adv, clip_range, kl_weight, ratio_initial, kl_l2):
    """Pass 1 plus the per-row kernel. Returns loss (), stats (5,), coef (K,). Tiles: `_fwd_tiles`
    (tests monkeypatch it, and `_bwd_tiles`, to force small tiles and multi-block reductions)."""
    k, d = z.shape
    bk, bd = _fwd_tiles(k, d)
    nb_d = triton.cdiv(d, bd)
    dev = z.device
    row_partial = torch.empty((nb_d, k), device=dev, dtype=torch.float32)
    col_partial = torch.empty((nb_d, 2), device=dev, dtype=torch.float32)
    _policy_loss_fwd_kernel[(triton.cdiv(k, bk), nb_d)](
        z, mu, log_sigma, row_partial, col_partial, k, d,
        RATIO_INITIAL=ratio_initial, KL_L2=kl_l2, BLOCK_K=bk, BLOCK_D=bd, num_warps=4)
    coef = torch.empty((k,), device=dev, dtype=torch.float32)
    loss = torch.empty((), device=dev, dtype=torch.float32)
    stats = torch.empty((len(STAT_NAMES),), device=dev, dtype=torch.float32)
    _policy_loss_rows_kernel[(1,)](
        row_partial, col_partial, logp_old, adv, coef, loss, stats, k, d, nb_d,
        float(clip_range), float(kl_weight), RATIO_INITIAL=ratio_initial,
        BLOCK_K=min(triton.next_power_of_2(k), 128), BLOCK_NB=min(triton.next_power_of_2(nb_d), 32), num_warps=4)
    return loss, stats, coef


def policy_loss_bwd(z, mu, log_sigma, coef, grad_loss, kl_weight, kl_l2):
    """Pass 2: the column reductions. Returns (dmu, dlog_sigma), each (D,), scaled by grad_loss."""
    k, d = z.shape
    bk, bd = _bwd_tiles(k, d)
    dmu = torch.empty((d,), device=z.device, dtype=torch.float32)
    dls = torch.empty((d,), device=z.device, dtype=torch.float32)
    _policy_loss_bwd_kernel[(triton.cdiv(d, bd),)](
        z, mu, log_sigma, coef, grad_loss, dmu, dls, k, d, float(kl_weight),
        KL_L2=kl_l2, BLOCK_K=bk, BLOCK_D=bd, num_warps=4)
    return dmu, dls


# ----------------------------------------------------------------------------------------------
# Autograd Function
# ----------------------------------------------------------------------------------------------


class PolicyLossFunction(torch.autograd.Function):
    """Saves z, μ, log σ and the per-row coefficients; the launchers do all the work."""

    @staticmethod
    def forward(ctx, z, mu, log_sigma, logp_old, adv, clip_range, kl_weight, ratio_initial, kl_l2):
        z, mu, log_sigma = z.contiguous(), mu.contiguous(), log_sigma.contiguous()
        loss, stats, coef = policy_loss_fwd(z, mu, log_sigma, logp_old.contiguous(), adv.contiguous(),
                                            clip_range, kl_weight, ratio_initial, kl_l2)
        ctx.save_for_backward(z, mu, log_sigma, coef)
        ctx.kl_weight, ctx.kl_l2 = kl_weight, kl_l2
        ctx.mark_non_differentiable(stats)
        return loss, stats

    @staticmethod
    def backward(ctx, grad_loss, _grad_stats):
        z, mu, log_sigma, coef = ctx.saved_tensors
        grad_loss = grad_loss.to(torch.float32).contiguous()
        dmu, dls = policy_loss_bwd(z, mu, log_sigma, coef, grad_loss, ctx.kl_weight, ctx.kl_l2)
        return None, dmu, dls, None, None, None, None, None, None


def policy_loss_triton(z, mu, log_sigma, logp_old, adv, clip_range: float, kl_weight: float,
                       ratio_ref: str = "behaviour", kl: str = "exact"):
    """The fused path; same contract as `policy_loss`."""
    loss, stats = PolicyLossFunction.apply(z, mu, log_sigma, logp_old, adv, float(clip_range), float(kl_weight),
                                           ratio_ref == "initial", kl == "l2")
    return loss, dict(zip(STAT_NAMES, stats.unbind(0)))


# ----------------------------------------------------------------------------------------------
# PyTorch reference (fallback and oracle)
# ----------------------------------------------------------------------------------------------


def policy_loss_torch(z, mu, log_sigma, logp_old, adv, clip_range: float, kl_weight: float,
                      ratio_ref: str = "behaviour", kl: str = "exact"):
    """Reference PPO loss, differentiable by autograd, in the inputs' dtype (float64 for the oracle).

    1. e = (z - μ)/σ                                                   # (K, D)
    2. log p_θ(z_k) = mean_d[-e²/2] - mean_d[log σ] - log(2π)/2        # (K,)  per-dimension mean
    3. log ρ_k = log p_θ(z_k) - logp_old_k  (behaviour)  or  - log N(z_k; 0, I), the same mean (initial)
    4. s_k = -min(ρA, clip(ρ)A) (behaviour)  or  -A clip(ρ) (initial, hard clamp)       # (K,)
    5. loss = mean_k s_k + β KL, KL exact or l2 (see module docstring)
    Steps 1-2 and the KL are `gaussian.mean_log_density` and `gaussian.kl_to_standard_normal`.

    Bytes, eager, fp32: steps 1-2 make four K×D intermediates (sub, mul, square, scale), each
    written once and read once, plus the read of z and the mean: ≈ 9 K×D transfers forward, and
    autograd's backward about as many again, i.e. ~18·4·K·D bytes against the fused 2·4·K·D (z read
    once per pass); at K=64, D=262144 that is ≈ 1.2 GB against 134 MB.
    """
    _check_modes(ratio_ref, kl)
    eps_c = float(clip_range)
    logp = mean_log_density(z, mu, log_sigma)  # (K,)
    if ratio_ref == "behaviour":
        log_rho = logp - logp_old
    else:
        log_rho = logp - mean_log_density(z)
    rho = torch.exp(log_rho)  # (K,)
    rho_clipped = rho.clamp(1.0 - eps_c, 1.0 + eps_c)
    if ratio_ref == "behaviour":
        surr = -torch.minimum(rho * adv, rho_clipped * adv)
    else:
        surr = -adv * rho_clipped
    kl_term = kl_to_standard_normal(mu, log_sigma, kl)
    surrogate = surr.mean()
    loss = surrogate + kl_weight * kl_term
    with torch.no_grad():
        log_rho_d = log_rho.detach()
        rho_d = rho.detach()
        stats = {
            "surrogate": surrogate.detach(),
            "kl": kl_term.detach(),
            "approx_kl": ((rho_d - 1.0) - log_rho_d).mean(),
            "clipfrac": ((rho_d - 1.0).abs() > eps_c).to(rho_d.dtype).mean(),
            "ratio_mean": rho_d.mean(),
        }
    return loss, stats


# ----------------------------------------------------------------------------------------------
# Public entry point
# ----------------------------------------------------------------------------------------------


def _check_modes(ratio_ref: str, kl: str) -> None:
    if ratio_ref not in RATIO_REFS:
        raise ValueError(f"ratio_ref must be one of {RATIO_REFS}, got {ratio_ref!r}")
    if kl not in KL_KINDS:
        raise ValueError(f"kl must be one of {KL_KINDS}, got {kl!r}")


def policy_loss(z, mu, log_sigma, logp_old, adv, clip_range: float, kl_weight: float,
                ratio_ref: str = "behaviour", kl: str = "exact"):
    """PPO clipped surrogate + β·KL for the policy N(μ, σ²) on stored samples z, in one forward.

    z (K, D) float32; mu, log_sigma (D,) float32 leaves requiring grad; logp_old, adv (K,) float32.
    Returns (loss, stats): loss is a 0-dim tensor with gradients to mu and log_sigma; stats maps
    "approx_kl" (k3 estimator, mean (ρ-1) - log ρ), "clipfrac" (fraction with |ρ-1| > ε_c),
    "ratio_mean", "kl" (unweighted) and "surrogate" to 0-dim detached tensors.
    """
    _check_modes(ratio_ref, kl)
    if z.ndim != 2 or mu.shape != (z.shape[1],) or log_sigma.shape != mu.shape:
        raise ValueError(f"need z (K, D) and mu, log_sigma (D,), got {tuple(z.shape)}, {tuple(mu.shape)}, {tuple(log_sigma.shape)}")
    if logp_old.shape != (z.shape[0],) or adv.shape != (z.shape[0],):
        raise ValueError(f"logp_old and adv must be (K,) = ({z.shape[0]},), got {tuple(logp_old.shape)}, {tuple(adv.shape)}")
    if get_backend(z.device) == "triton":
        if any(t.dtype != torch.float32 for t in (z, mu, log_sigma, logp_old, adv)):
            raise ValueError("the Triton policy loss takes float32 tensors")
        return policy_loss_triton(z, mu, log_sigma, logp_old.detach(), adv.detach(), clip_range, kl_weight, ratio_ref, kl)
    return policy_loss_torch(z, mu, log_sigma, logp_old.detach(), adv.detach(), clip_range, kl_weight, ratio_ref, kl)
