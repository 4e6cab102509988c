"""Tests of the fused sampler (findcli.kernels.sample) against a float64 reference and N(0, 1) statistics.

Oracles: the float64 log-density recomputed from the returned z; torch.distributions.Normal for the
PyTorch reference; torch.Generator for the reference's noise; the moments of N(0, 1) for Triton's.
Triton kernels run compiled on CUDA where a GPU is present, else under TRITON_INTERPRET=1 on CPU
(conftest.py chooses, before triton is imported).
"""

import math

import pytest
import torch
from _kernel_target import DEVICE, requires_triton

from findcli.kernels import sample_policy, set_backend
from findcli.kernels.sample import sample_policy_torch, sample_policy_triton

pytestmark = pytest.mark.usefixtures("fresh_backend")  # conftest.py: no set_backend, no FIND_KERNELS

U = 2.0**-24  # fp32 unit roundoff


def _params(d: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    mu = 0.5 * torch.randn(d, generator=g)
    # mean log σ ≈ -0.2, so dropping the log σ term or using σ for log σ fails by O(0.1)
    log_sigma = -0.2 + 0.3 * torch.randn(d, generator=g)
    return mu.to(DEVICE), log_sigma.to(DEVICE)


def _logp_float64(z, mu, log_sigma):
    """mean_d log N(z_kd; μ_d, σ_d²) in float64 from the fp32 tensors."""
    z, mu, ls = z.double().cpu(), mu.double().cpu(), log_sigma.double().cpu()
    e = (z - mu) / ls.exp()
    return (-0.5 * e.square() - ls).mean(-1) - 0.5 * math.log(2 * math.pi)


# Awkward shapes: one row; D not a multiple of the block (forced small tiles make several column
# and row blocks); K not a multiple of BLOCK_K; large D with few rows (default tiles).
SHAPES = [
    pytest.param(1, 1, None, None, id="K1-D1"),
    pytest.param(1, 300, 1, 128, id="K1-D300-3colblocks"),
    pytest.param(5, 1000, 2, 128, id="K5-D1000-tiles2x128"),
    pytest.param(3, 70001, None, None, id="K3-D70001-default"),
]


@requires_triton
@pytest.mark.parametrize("k, d, block_k, block_d", SHAPES)
def test_triton_sample_logp_matches_float64_reference(k, d, block_k, block_d):
    mu, log_sigma = _params(d)
    z, logp = sample_policy_triton(mu, log_sigma, seed=1234, k=k, block_k=block_k, block_d=block_d)
    assert z.shape == (k, d) and logp.shape == (k,)
    assert z.dtype == logp.dtype == torch.float32
    ref = _logp_float64(z, mu, log_sigma)
    # Each term -e²/2 - log σ carries a few fp32 roundings (|e| ≲ 6, so ≲ 20 absolute·u), and the
    # blocked fp32 sums of D terms add ≲ log2(D)·u relative in practice; the mean is O(1), so 1e-5
    # absolute is ≥ 10× the expected error while any wrong term (a missing log σ, a sum in place of
    # a mean) shows up at O(0.1) or more.
    torch.testing.assert_close(logp.double().cpu(), ref, rtol=0, atol=1e-5)


@requires_triton
@pytest.mark.parametrize("k, d, block_k, block_d", SHAPES)
def test_triton_zero_params_give_the_eps_of_any_params(k, d, block_k, block_d):
    """The engine's paired baseline: sample(0, 0) returns ε, and sample(μ, log σ) = μ + σ ε."""
    mu, log_sigma = _params(d, seed=1)
    zeros = torch.zeros(d, device=DEVICE)
    eps, logp0 = sample_policy_triton(zeros, zeros, seed=99, k=k, block_k=block_k, block_d=block_d)
    z, _ = sample_policy_triton(mu, log_sigma, seed=99, k=k, block_k=block_k, block_d=block_d)
    expected = mu.double() + log_sigma.double().exp() * eps.double()
    # z = μ + σ ε in fp32: the product and the sum round once each (2u), and σ = exp(log σ) is off
    # by ≤ 1 ulp under the interpreter (numpy) and ≲ 2^-22 + |log σ|·u on a GPU (ex2.approx after
    # a rounded multiply by log2 e), so |Δ| ≤ ~8u·(|μ| + |σ ε|); take 16u for headroom.
    bound = 16 * U * (mu.double().abs() + (log_sigma.double().exp() * eps.double()).abs())
    assert ((z.double() - expected).abs() <= bound).all()
    # and the zero-parameter log-density is the standard normal one of ε
    torch.testing.assert_close(logp0.double().cpu(), _logp_float64(eps, zeros, zeros), rtol=0, atol=1e-5)


@requires_triton
def test_triton_noise_is_deterministic_in_the_seed():
    zeros = torch.zeros(4099, device=DEVICE)
    a, _ = sample_policy_triton(zeros, zeros, seed=7, k=3)
    b, _ = sample_policy_triton(zeros, zeros, seed=7, k=3)
    c, _ = sample_policy_triton(zeros, zeros, seed=8, k=3)
    assert torch.equal(a, b)
    # Different keys give independent streams: coincident fp32 values are vanishingly rare.
    assert (a == c).float().mean() < 1e-3
    # The tile does not change the noise: ε depends on (seed, k·D + d) only.
    d, _ = sample_policy_triton(zeros, zeros, seed=7, k=3, block_k=1, block_d=64)
    assert torch.equal(a, d)
    # Rows are not copies of each other (the row index enters the offset).
    assert (a[0] == a[1]).float().mean() < 1e-3


@requires_triton
def test_triton_noise_moments_match_standard_normal():
    """1 row × 10^6 draws in one big-block launch; compare moments to N(0, 1).

    Standard errors of the sample statistics for n i.i.d. N(0,1) draws: mean 1/√n, variance √(2/n),
    skewness √(6/n), excess kurtosis √(24/n), lag-1 correlation 1/√n. We allow 5 standard errors
    (a false failure has probability < 1e-6 per statistic; the seed is fixed, so the test is
    deterministic anyway). tl.randn is Box–Muller with u1 ≥ 1e-7, which truncates |ε| at 5.68; the
    lost tail mass (~1e-8) moves these moments by far less than their standard errors.
    """
    n = 1_000_000
    zeros = torch.zeros(n, device=DEVICE)
    eps, _ = sample_policy_triton(zeros, zeros, seed=20240, k=1)
    x = eps[0].double().cpu()
    m = x.mean()
    c = x - m
    var = c.square().mean()
    skew = c.pow(3).mean() / var.pow(1.5)
    kurt = c.pow(4).mean() / var.square() - 3.0
    lag1 = (c[1:] * c[:-1]).mean() / var
    se = 1.0 / math.sqrt(n)
    assert abs(m) < 5 * se
    assert abs(var - 1.0) < 5 * math.sqrt(2.0) * se
    assert abs(skew) < 5 * math.sqrt(6.0) * se
    assert abs(kurt) < 5 * math.sqrt(24.0) * se
    assert abs(lag1) < 5 * se


def test_torch_reference_uses_the_seeded_torch_generator():
    mu, log_sigma = _params(257)
    mu, log_sigma = mu.cpu(), log_sigma.cpu()
    z, logp = sample_policy_torch(mu, log_sigma, seed=5, k=4)
    eps = torch.randn((4, 257), generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(z, mu + log_sigma.exp() * eps)  # default fp32 tolerances: one mul-add
    # Oracle: stock torch.distributions in float64, averaged over dimensions.
    normal = torch.distributions.Normal(mu.double(), log_sigma.double().exp())
    torch.testing.assert_close(logp.double(), normal.log_prob(z.double()).mean(-1), rtol=0, atol=1e-5)


@pytest.mark.parametrize("backend", ["torch", pytest.param("triton", marks=requires_triton)])
def test_public_sample_paired_baseline_and_determinism(backend):
    set_backend(backend)
    mu, log_sigma = _params(333, seed=3)
    zeros = torch.zeros_like(mu)
    z, logp = sample_policy(mu, log_sigma, 11, 4)
    eps, _ = sample_policy(zeros, zeros, 11, 4)
    assert torch.equal(sample_policy(mu, log_sigma, 11, 4)[0], z)
    bound = 16 * U * (mu.double().abs() + (log_sigma.double().exp() * eps.double()).abs())  # as above
    assert ((z.double() - (mu.double() + log_sigma.double().exp() * eps.double())).abs() <= bound).all()
    torch.testing.assert_close(logp.double().cpu(), _logp_float64(z, mu, log_sigma), rtol=0, atol=1e-5)


def test_auto_on_cpu_runs_the_torch_reference():
    mu, log_sigma = _params(64)
    if mu.device.type != "cpu":
        pytest.skip("this checks the CPU default")
    z, _ = sample_policy(mu, log_sigma, 3, 2)
    torch.testing.assert_close(z, sample_policy_torch(mu, log_sigma, 3, 2)[0], rtol=0, atol=0)


def test_sample_rejects_bad_shapes():
    with pytest.raises(ValueError):
        sample_policy(torch.zeros(2, 3), torch.zeros(2, 3), 0, 1)
    with pytest.raises(ValueError):
        sample_policy(torch.zeros(3), torch.zeros(3), 0, 0)
