"""The PPO clipped surrogate used by the engine: which samples carry gradient (closed-form cases)."""

import math

import pytest
import torch

from findcli.kernels import policy_loss
from findcli.policy import GaussianPolicy


def _setup(ratio: float, adv: float, k: int = 3, d: int = 40):
    g = torch.Generator().manual_seed(0)
    p = GaussianPolicy((d,), 0.2 * torch.randn(d, generator=g), 0.1 * torch.randn(d, generator=g))
    z = torch.randn(k, d, generator=g)
    logp_old = (p.log_prob(z) - math.log(ratio)).detach()  # so that ρ = exp(logp_θ − logp_old) = ratio
    return p, z, logp_old, torch.full((k,), adv)


@pytest.mark.parametrize("ratio,adv,carries_gradient", [
    (1.5, +1.0, False),  # A > 0 and ρ > 1 + ε: clipped, no push further up
    (0.5, -1.0, False),  # A < 0 and ρ < 1 − ε: clipped, no push further down
    (1.5, -1.0, True),   # A < 0 and ρ > 1 + ε: the unclipped term is the min, gradient flows
    (0.5, +1.0, True),   # A > 0 and ρ < 1 − ε: gradient flows
    (1.05, +1.0, True),  # inside the range: gradient flows either way
    (1.05, -1.0, True),
])
def test_clipped_surrogate_gradient_is_zero_outside_the_range_for_the_right_sign(ratio, adv, carries_gradient):
    p, z, logp_old, a = _setup(ratio, adv)
    loss, stats = policy_loss(z, p.mu, p.log_sigma, logp_old, a, 0.2, 0.0)
    loss.backward()
    gnorm = p.mu.grad.norm() + p.log_sigma.grad.norm()
    assert stats["ratio_mean"].item() == pytest.approx(ratio, rel=1e-5)
    if carries_gradient:
        # Closed form: d/dμ of −ρA/K summed over rows = −(A/K) Σ_k ρ ∂logπ(z_k)/∂μ, ∂logπ/∂μ = (z−μ)/(σ² D).
        expected = -(a[:, None] * ratio * (z - p.mu) / (p.log_sigma.exp() ** 2 * z.shape[1])).mean(0)
        torch.testing.assert_close(p.mu.grad, expected.detach(), rtol=1e-4, atol=1e-7)
        assert gnorm > 0
    else:
        assert gnorm == 0
    assert stats["clipfrac"].item() == (1.0 if abs(ratio - 1) > 0.2 else 0.0)


def test_initial_mode_hard_clamp_has_no_gradient_when_clamped():
    """Official variant: ρ against N(0, I), hard-clamped; a far-moved policy gives ρ out of range."""
    d = 40
    p = GaussianPolicy((d,), torch.full((d,), 2.0), torch.zeros(d))
    z = p.mu.detach() + torch.randn(3, d, generator=torch.Generator().manual_seed(1))
    loss, stats = policy_loss(z, p.mu, p.log_sigma, torch.zeros(3), torch.ones(3), 0.2, 0.0, ratio_ref="initial")
    loss.backward()
    assert stats["clipfrac"].item() == 1.0
    assert p.mu.grad.abs().max() == 0 and p.log_sigma.grad.abs().max() == 0
