"""Fused reparameterised sampling of K latents from N(mu, sigma^2) and their per-dimension mean log-density.

Layout (one file per fused op): the private Triton kernel, its launcher, the PyTorch reference
(`sample_policy_torch`, the CPU fallback and the test oracle) and the public `sample_policy`, which
dispatches between them (see `dispatch.py`).

Notation: mu -> μ, log_sigma -> log σ, eps -> ε, K samples (rows), D latent dimensions (columns).

Why fuse: the PyTorch chain draws ε (writes K×D), multiplies and adds (reads ε, writes z), then
recomputes (z - μ)/σ, squares and averages for the log-density (several more K×D intermediates):
about a dozen K×D fp32 transfers, ≈ 12·4·K·D bytes. The kernel generates ε in registers from (seed,
element offset) with Philox (`tl.randn`), writes z once and reduces the log-density in the same pass:
4·K·D bytes, the floor for producing z. ε is never stored: it is regenerable from the seed. A second,
one-program kernel finishes the per-row sums over column blocks (O(K·D/BLOCK_D) bytes).
"""

from __future__ import annotations

import torch

from findcli.kernels import dispatch
from findcli.kernels.dispatch import get_backend, tl, triton
from findcli.kernels.gaussian import HALF_LOG_2PI  # noqa: F401 - re-exported: the kernel benchmark imports it from here
from findcli.kernels.gaussian import log_density_from_sums, mean_log_density, sum_row_blocks

SEED_MASK = (1 << 63) - 1  # both paths take the seed modulo 2^63 so any Python int is accepted


# ----------------------------------------------------------------------------------------------
# Triton kernel
# ----------------------------------------------------------------------------------------------


@triton.jit
def _sample_fwd_kernel(
    mu_ptr,  # (D,) float32: μ
    log_sigma_ptr,  # (D,) float32: log σ
    z_ptr,  # (K, D) float32, row-major, written: z = μ + σ ε
    sq_partial_ptr,  # (NB_D, K + 1) float32, written: per row Σ of ε² over this program's columns;
    #                  column K: Σ log σ over them (by the pid_k == 0 programs)
    seed,  # int: Philox key; ε_kd = randn(seed, k*D + d)
    K,  # int: rows
    D,  # int: columns
    BLOCK_K: tl.constexpr,  # rows per program
    BLOCK_D: tl.constexpr,  # columns per program
):
    pid_k = tl.program_id(0)
    pid_d = tl.program_id(1)
    rows = pid_k * BLOCK_K + tl.arange(0, BLOCK_K)  # (BLOCK_K,)
    cols = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)  # (BLOCK_D,)
    row_mask = rows < K
    col_mask = cols < D
    mask = row_mask[:, None] & col_mask[None, :]  # (BLOCK_K, BLOCK_D)

    # -- parameters of this column block, shared by every row of the tile
    mu = tl.load(mu_ptr + cols, mask=col_mask, other=0.0)
    log_sigma = tl.load(log_sigma_ptr + cols, mask=col_mask, other=0.0)
    sigma = tl.exp(log_sigma)
    inv_sigma = tl.exp(-log_sigma)

    # -- noise from (seed, element offset); 64-bit offsets: K·D passes 2^31 at video scale with large K
    offs = rows.to(tl.int64)[:, None] * D + cols[None, :]  # (BLOCK_K, BLOCK_D) int64
    eps = tl.randn(seed, offs)
    z = mu[None, :] + sigma[None, :] * eps
    tl.store(z_ptr + offs, z, mask=mask)

    # -- log-density terms, recomputing ε = (z - μ)/σ from the stored z exactly as the policy-loss
    #    kernel does, so that the ratio at unchanged parameters is 1 up to summation order
    e = (z - mu[None, :]) * inv_sigma[None, :]
    e = tl.where(mask, e, 0.0)
    sq = tl.sum(e * e, axis=1)  # (BLOCK_K,) fp32
    tl.store(sq_partial_ptr + pid_d * (K + 1) + rows, sq, mask=row_mask)
    # -- the row-independent Σ log σ of this column block, once (masked columns were loaded as 0)
    if pid_k == 0:
        tl.store(sq_partial_ptr + pid_d * (K + 1) + K, tl.sum(log_sigma, axis=0))


@triton.jit
def _sample_logp_kernel(
    sq_partial_ptr,  # (NB_D, K + 1) float32: per-row Σ ε² per column block; last column Σ log σ
    logp_ptr,  # (K,) float32, written: mean_d[-ε²/2 - log σ_d] - log(2π)/2
    K,
    D,
    NB_D,  # int: column blocks of the sampling kernel
    BLOCK_K: tl.constexpr,
    BLOCK_NB: tl.constexpr,
):
    # One program finishes the reductions: O(K·NB_D) reads, a few KB, instead of 4 torch launches.
    nb = tl.arange(0, BLOCK_NB)
    ls_acc = tl.zeros([BLOCK_NB], dtype=tl.float32)
    for j0 in range(0, NB_D, BLOCK_NB):
        ls_acc += tl.load(sq_partial_ptr + (j0 + nb) * (K + 1) + K, mask=(j0 + nb) < NB_D, other=0.0)
    mean_log_sigma = tl.sum(ls_acc, axis=0) / D
    r = tl.arange(0, BLOCK_K)
    for k0 in range(0, K, BLOCK_K):
        rows = k0 + r
        row_mask = rows < K
        sq = sum_row_blocks(sq_partial_ptr, K + 1, rows, row_mask, NB_D, BLOCK_NB, BLOCK_K)  # (BLOCK_K,)
        tl.store(logp_ptr + rows, log_density_from_sums(sq, mean_log_sigma, D), mask=row_mask)


# ----------------------------------------------------------------------------------------------
# Launcher
# ----------------------------------------------------------------------------------------------


def _sample_tiles(k: int, d: int) -> tuple[int, int, int]:
    """(BLOCK_K, BLOCK_D, num_warps). On a GPU: 4096-element tiles, 4 warps (32 fp32 per thread).
    Under the interpreter each program costs Python overhead, so the tiles are as large as is sane."""
    if dispatch._kernels_interpreted():
        block_d = min(triton.next_power_of_2(d), 1 << 20)
        block_k = min(triton.next_power_of_2(k), max(1, (1 << 16) // block_d))
        return block_k, block_d, 4
    block_d = min(triton.next_power_of_2(d), 1024)
    block_k = min(triton.next_power_of_2(k), max(1, 4096 // block_d))
    return block_k, block_d, 4


def sample_policy_triton(
    mu: torch.Tensor, log_sigma: torch.Tensor, seed: int, k: int, block_k: int | None = None, block_d: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Launch the fused sampler. `block_k` / `block_d` override the tile (tests use small tiles to
    exercise multi-block reductions)."""
    mu = mu.detach().contiguous()
    log_sigma = log_sigma.detach().contiguous()
    d = mu.numel()
    bk, bd, warps = _sample_tiles(k, d)
    bk, bd = block_k or bk, block_d or bd
    nb_d = triton.cdiv(d, bd)
    z = torch.empty((k, d), device=mu.device, dtype=torch.float32)
    sq_partial = torch.empty((nb_d, k + 1), device=mu.device, dtype=torch.float32)
    logp = torch.empty((k,), device=mu.device, dtype=torch.float32)
    grid = (triton.cdiv(k, bk), nb_d)
    _sample_fwd_kernel[grid](mu, log_sigma, z, sq_partial, int(seed) & SEED_MASK, k, d,
                             BLOCK_K=bk, BLOCK_D=bd, num_warps=warps)
    _sample_logp_kernel[(1,)](sq_partial, logp, k, d, nb_d, BLOCK_K=min(triton.next_power_of_2(k), 128),
                              BLOCK_NB=min(triton.next_power_of_2(nb_d), 32), num_warps=4)
    return z, logp


# ----------------------------------------------------------------------------------------------
# PyTorch reference (fallback and oracle)
# ----------------------------------------------------------------------------------------------


def sample_policy_torch(mu: torch.Tensor, log_sigma: torch.Tensor, seed: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference sampler with the same contract as `sample_policy` (runs in mu's dtype).

    1. ε ~ N(0, I) of shape (K, D) from a torch.Generator seeded with `seed`.
    2. z = μ + σ ε, σ = exp(log σ).                                         # (K, D)
    3. log p(z_k) = mean_d [ -ε_kd²/2 - log σ_d - log(2π)/2 ] with ε = (z - μ)/σ   # (K,)
       (`gaussian.mean_log_density`, the one copy of this formula).
       A per-dimension MEAN, as the official FIND code does: a sum over 16k dimensions would make
       the importance ratios of the policy loss explode.
    """
    mu = mu.detach()
    log_sigma = log_sigma.detach()
    gen = torch.Generator(device=mu.device).manual_seed(int(seed) & SEED_MASK)
    eps = torch.randn((k, mu.numel()), generator=gen, device=mu.device, dtype=torch.float32).to(mu.dtype)
    z = mu + torch.exp(log_sigma) * eps  # (K, D)
    return z, mean_log_density(z, mu, log_sigma)  # (K,)


# ----------------------------------------------------------------------------------------------
# Public entry point
# ----------------------------------------------------------------------------------------------


def sample_policy(mu: torch.Tensor, log_sigma: torch.Tensor, seed: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw K latents z (K, D) = μ + σ ε and their log-probabilities logp (K,) under (μ, σ).

    mu, log_sigma: (D,) float32 on any device. ε is deterministic in `seed` for a given backend
    (Triton: Philox on (seed, k*D + d); PyTorch: torch.Generator(seed)); the two backends draw
    different ε. `sample_policy(zeros, zeros, seed, k)[0]` is exactly the ε used by
    `sample_policy(mu, log_sigma, seed, k)`, which gives the engine its paired baseline. No autograd.
    """
    if mu.ndim != 1 or mu.shape != log_sigma.shape:
        raise ValueError(f"mu and log_sigma must be matching 1-D tensors, got {tuple(mu.shape)} and {tuple(log_sigma.shape)}")
    if mu.dtype != torch.float32 or log_sigma.dtype != torch.float32:
        raise ValueError(f"mu and log_sigma must be float32, got {mu.dtype} and {log_sigma.dtype}")
    if int(k) < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    with torch.no_grad():
        if get_backend(mu.device) == "triton":
            return sample_policy_triton(mu, log_sigma, seed, int(k))
        return sample_policy_torch(mu, log_sigma, seed, int(k))
