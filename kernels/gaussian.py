"""The diagonal-Gaussian math, written once: for the PyTorch references, the Triton kernels and the policy.

Notation: mu -> μ, log_sigma -> log σ, K rows (samples z_k), D columns, e_kd = (z_kd - μ_d)/σ_d.

Log-density, a per-dimension MEAN (as the official FIND code; `findcli.policy` says why not a sum):

    log p(z_k) = mean_d[-e_kd²/2] - mean_d[log σ_d] - log(2π)/2

KL(N(μ, σ²) ‖ N(0, I)), also a mean over d: exact  mean_d[(σ_d² + μ_d² - 1)/2 - log σ_d];
the official code's L2 proxy  mean_d[μ_d² + (σ_d - 1)²].

PyTorch: `mean_log_density`, `kl_to_standard_normal`, differentiable, in the inputs' dtype.
Triton (inlined into the kernels): `log_density_from_sums` finishes a row's log-density from Σ_d e²,
`sum_row_blocks` adds up, per row, the per-column-block partial sums the tile kernels write.
The kernels' backward passes keep their own analytic gradients of these formulas.
"""

from __future__ import annotations

import math

import torch

from findcli.kernels.dispatch import HAS_TRITON, tl, triton

HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)  # log(2π)/2 = 0.9189385332046727
# Triton kernels read module globals only when they are constexpr (no Triton: a plain float, unused).
_HALF_LOG_2PI_TL = tl.constexpr(HALF_LOG_2PI) if HAS_TRITON else HALF_LOG_2PI


# ----------------------------------------------------------------------------------------------
# PyTorch
# ----------------------------------------------------------------------------------------------


def mean_log_density(z: torch.Tensor, mu: torch.Tensor | None = None,
                     log_sigma: torch.Tensor | None = None) -> torch.Tensor:
    """log p(z_k) = mean_d[-e_kd²/2] - mean_d[log σ_d] - log(2π)/2 for z (K, D) -> (K,).

    mu, log_sigma (D,); both None: the standard normal N(0, I) (e = z). Differentiable in all three.
    """
    e = z if mu is None else (z - mu) * torch.exp(-log_sigma)  # (K, D)
    logp = (-0.5 * e.square()).mean(-1)  # (K,)
    if log_sigma is not None:
        logp = logp - log_sigma.mean()
    return logp - HALF_LOG_2PI


def kl_to_gaussian(mu: torch.Tensor, log_sigma: torch.Tensor, mu_ref: torch.Tensor, log_sigma_ref: torch.Tensor,
                    kind: str = "exact") -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(μ_ref, σ_ref²)) of diagonal Gaussians averaged over the last dim (kind "exact"),
    or the L2 proxy mean((μ − μ_ref)² + (σ − σ_ref)²) (kind "l2"); with μ_ref = 0, σ_ref = 1 these are
    kl_to_standard_normal's. Exact: log σ_ref − log σ + (σ² + (μ − μ_ref)²) / (2 σ_ref²) − 1/2, written in
    d = log σ − log σ_ref so that at the reference both the value and the gradient are exactly zero (Adam
    would otherwise turn rounding-level gradients into lr-sized steps)."""
    if kind == "exact":
        d = log_sigma - log_sigma_ref
        return ((torch.exp(2 * d) + (mu - mu_ref) ** 2 * torch.exp(-2 * log_sigma_ref)) / 2 - d - 0.5).mean(-1)
    if kind == "l2":
        return ((mu - mu_ref).square() + (torch.exp(log_sigma) - torch.exp(log_sigma_ref)).square()).mean(-1)
    raise ValueError(f"unknown KL kind {kind!r}")


def kl_to_standard_normal(mu: torch.Tensor, log_sigma: torch.Tensor, kind: str = "exact") -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, I)) averaged over dimensions (kind "exact"), or the L2 proxy (kind "l2"). () tensor."""
    sigma = torch.exp(log_sigma)
    if kind == "exact":
        return (0.5 * (sigma.square() + mu.square() - 1.0) - log_sigma).mean()
    if kind == "l2":
        return (mu.square() + (sigma - 1.0).square()).mean()
    raise ValueError(f"unknown KL kind {kind!r}")


# ----------------------------------------------------------------------------------------------
# Triton helpers
# ----------------------------------------------------------------------------------------------


@triton.jit
def log_density_from_sums(sq_sum, mean_log_sigma, D):
    """mean_d[-e²/2] - mean_d[log σ] - log(2π)/2 of a row, from its Σ_d e² (fp32, any shape)."""
    return -0.5 * sq_sum / D - mean_log_sigma - _HALF_LOG_2PI_TL


@triton.jit
def sum_row_blocks(ptr, stride, rows, row_mask, NB_D, BLOCK_NB: tl.constexpr, BLOCK_K: tl.constexpr):
    """Σ_j ptr[j·stride + row] for each of `rows` (BLOCK_K,): per-row sums finished over the NB_D column
    blocks, as a (BLOCK_NB, BLOCK_K) tile per step. Masked rows give 0."""
    nb = tl.arange(0, BLOCK_NB)
    acc = tl.zeros([BLOCK_NB, BLOCK_K], dtype=tl.float32)
    for j0 in range(0, NB_D, BLOCK_NB):
        m = ((j0 + nb) < NB_D)[:, None] & row_mask[None, :]
        acc += tl.load(ptr + (j0 + nb)[:, None] * stride + rows[None, :], mask=m, other=0.0)
    return tl.sum(acc, axis=0)  # (BLOCK_K,)
