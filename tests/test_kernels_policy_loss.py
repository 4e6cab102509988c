"""Tests of the fused PPO policy loss (findcli.kernels.policy_loss) against a float64 reference.

Oracles: `policy_loss_torch` run in float64 with autograd (forward values, stats and both gradients
under the same non-unit upstream gradient), itself checked against torch.distributions (Gaussian
log-density, closed-form KL) and against a hand-written PPO surrogate. Cases cover awkward shapes,
both ratio references (behaviour: min-clip; initial: hard clamp), both KL forms, both signs of the
advantage, and ratios inside and outside the clip range; and, through the public `policy_loss` on a
GaussianPolicy, which samples carry gradient in closed-form cases. Triton runs compiled on CUDA where
a GPU is present, else under TRITON_INTERPRET=1 on CPU (conftest.py chooses).
"""

import importlib
import math

import pytest
import torch
from _kernel_target import DEVICE, requires_triton

from findcli.kernels import policy_loss, set_backend
from findcli.kernels.policy_loss import policy_loss_torch, policy_loss_triton
from findcli.kernels.sample import sample_policy_triton
from findcli.policy import GaussianPolicy

pytestmark = pytest.mark.usefixtures("fresh_backend")  # conftest.py: no set_backend, no FIND_KERNELS

# The module (the package attribute `findcli.kernels.policy_loss` is the public function).
PL = importlib.import_module("findcli.kernels.policy_loss")

CLIP = 0.2
KL_WEIGHT = 0.3
UPSTREAM = 1.7  # non-unit upstream gradient: the backward must scale by it
STAT_KEYS = {"approx_kl", "clipfrac", "ratio_mean", "kl", "surrogate"}


def _force_tiles(monkeypatch, blocks):
    """Both passes use the tile (BLOCK_K, BLOCK_D) = blocks (small tiles: several row and column
    blocks to reduce over); (None, None) keeps the launchers' defaults."""
    if blocks != (None, None):
        monkeypatch.setattr(PL, "_fwd_tiles", lambda k, d: blocks)
        monkeypatch.setattr(PL, "_bwd_tiles", lambda k, d: blocks)


def _case(k: int, d: int, ratio_ref: str, seed: int = 0):
    """fp32 inputs with ratios spread inside and outside [1 - ε, 1 + ε] and advantages of both signs.

    behaviour: logp_old_k = log p_θ(z_k) (float64) - log ρ*_k, so ρ_k = ρ*_k by construction.
    initial: ρ is set by the data; with log σ ≈ 0.3 and rows of z scaled by a_k,
    log ρ_k ≈ a_k²(1 - e^{-0.6})/2 - 0.3, i.e. ρ ≈ 0.75, 0.93, 1.08, 1.32, 2.2 for a = 0.3 … 2.2.
    """
    g = torch.Generator().manual_seed(seed)
    targets = torch.tensor([0.5, 0.93, 1.0, 1.1, 1.6, 0.7, 1.35, 2.5])
    signs = torch.tensor([1.0, -1.0, 1.0, 1.0, -1.0, -1.0, 1.0, 1.0, -1.0, 1.0, -1.0, 1.0, -1.0])
    rows = torch.arange(k)
    adv = signs[rows % len(signs)] * (0.5 + torch.rand(k, generator=g))
    mu = 0.05 * torch.randn(d, generator=g)
    if ratio_ref == "behaviour":
        log_sigma = -0.2 + 0.3 * torch.randn(d, generator=g)
        z = mu + log_sigma.exp() * torch.randn(k, d, generator=g)
    else:
        log_sigma = 0.3 + 0.02 * torch.randn(d, generator=g)
        scale = torch.tensor([0.3, 1.0, 1.3, 1.6, 2.2])[rows % 5]
        z = scale[:, None] * torch.randn(k, d, generator=g)
    e = (z.double() - mu.double()) / log_sigma.double().exp()
    logp = (-0.5 * e.square() - log_sigma.double()).mean(-1) - 0.5 * math.log(2 * math.pi)
    logp_old = (logp - targets[rows % len(targets)].double().log()).float()
    return [t.to(DEVICE) for t in (z, mu, log_sigma, logp_old, adv)]


def _float64_reference(z, mu, log_sigma, logp_old, adv, ratio_ref, kl):
    m = mu.detach().double().cpu().requires_grad_()
    s = log_sigma.detach().double().cpu().requires_grad_()
    loss, stats = policy_loss_torch(z.double().cpu(), m, s, logp_old.double().cpu(), adv.double().cpu(),
                                    CLIP, KL_WEIGHT, ratio_ref, kl)
    (UPSTREAM * loss).backward()
    return loss.detach(), stats, m.grad, s.grad


def _ratios_float64(z, mu, log_sigma, logp_old, ratio_ref):
    z, mu, ls = z.double().cpu(), mu.double().cpu(), log_sigma.double().cpu()
    logp = (-0.5 * ((z - mu) / ls.exp()).square() - ls).mean(-1)
    ref = logp_old.double().cpu() + 0.5 * math.log(2 * math.pi) if ratio_ref == "behaviour" else (-0.5 * z.square()).mean(-1)
    return (logp - ref).exp()


def _run_triton(z, mu, log_sigma, logp_old, adv, ratio_ref, kl):
    m = mu.clone().requires_grad_()
    s = log_sigma.clone().requires_grad_()
    loss, stats = policy_loss_triton(z, m, s, logp_old, adv, CLIP, KL_WEIGHT, ratio_ref, kl)
    (UPSTREAM * loss).backward()
    return loss.detach(), stats, m.grad, s.grad


def _assert_matches_reference(got, ref, rho):
    loss, stats, dmu, dls = got
    loss_r, stats_r, dmu_r, dls_r = ref
    # Forward values are O(1) combinations of per-row means: log ρ_k is a difference of two
    # fp32 means over D, each good to ~1e-7·(a few) absolute, so ρ, s_k and the KL carry ≲ 1e-6
    # relative error; 1e-5 absolute is ≥ 5× that, and any wrong term is off by O(1e-2) or more.
    torch.testing.assert_close(loss.double().cpu(), loss_r, rtol=0, atol=1e-5)
    assert set(stats) == STAT_KEYS
    for key in STAT_KEYS:
        assert stats[key].ndim == 0 and not stats[key].requires_grad
        # approx_kl = (ρ-1) - log ρ cancels for ρ ≈ 1; its absolute error is still that of ρ (≲ 1e-6).
        torch.testing.assert_close(stats[key].double().cpu(), stats_r[key], rtol=0, atol=1e-5, msg=key)
    # Gradients: Σ_k c_k e_kd/(σ D) and Σ_k c_k (e² - 1)/D in fp32, where c_k carries ρ's ≲ 1e-6
    # relative error and each term a few more roundings; per dimension the error is ≲ 1e-6 × the
    # largest terms, which are bounded by the gradient's largest entry (mixed signs can cancel in one
    # entry, never everywhere). Tolerance: 1e-5 × max|∇|, plus 1e-5 relative.
    for got_g, ref_g in ((dmu, dmu_r), (dls, dls_r)):
        torch.testing.assert_close(got_g.double().cpu(), ref_g, rtol=1e-5, atol=1e-5 * ref_g.abs().max().item())
    # No ρ within 1e-4 of a clip boundary: there the fp32 and float64 paths could take different
    # branches, which would be a test artefact, not a kernel error.
    assert ((rho - (1 - CLIP)).abs() > 1e-4).all() and ((rho - (1 + CLIP)).abs() > 1e-4).all()


# Awkward shapes: one row; D not a multiple of the (forced small) block with several row and column
# blocks; default tiles with D = 3001; large D with few rows (two column blocks under the interpreter).
SHAPES = [
    pytest.param(1, 7, (None, None), id="K1-D7"),
    pytest.param(13, 1000, (4, 128), id="K13-D1000-tiles4x128"),
    pytest.param(6, 3001, (None, None), id="K6-D3001-default"),
    pytest.param(2, 70001, (None, None), id="K2-D70001-default"),
]


@requires_triton
@pytest.mark.parametrize("kl", ["exact", "l2"])
@pytest.mark.parametrize("ratio_ref", ["behaviour", "initial"])
@pytest.mark.parametrize("k, d, blocks", SHAPES)
def test_triton_policy_loss_matches_float64_reference(k, d, blocks, ratio_ref, kl, monkeypatch):
    inputs = _case(k, d, ratio_ref)
    rho = _ratios_float64(*inputs[:4], ratio_ref)
    _force_tiles(monkeypatch, blocks)
    got = _run_triton(*inputs, ratio_ref, kl)
    ref = _float64_reference(*inputs, ratio_ref, kl)
    _assert_matches_reference(got, ref, rho)


@requires_triton
@pytest.mark.parametrize("ratio_ref", ["behaviour", "initial"])
def test_triton_policy_loss_covers_both_advantage_signs_inside_and_outside_the_clip(ratio_ref, monkeypatch):
    """The case generator's claims, checked: every (sign of A) × (below, inside, above the clip range)
    combination occurs, so the reference comparison exercises every branch of the surrogate."""
    z, mu, log_sigma, logp_old, adv = _case(40, 2000, ratio_ref, seed=5)
    rho = _ratios_float64(z, mu, log_sigma, logp_old, ratio_ref)
    region = torch.where(rho < 1 - CLIP, 0, torch.where(rho > 1 + CLIP, 2, 1))
    combos = {(int(r), bool(a > 0)) for r, a in zip(region, adv.cpu())}
    assert combos == {(r, s) for r in (0, 1, 2) for s in (False, True)}
    _force_tiles(monkeypatch, (8, 256))
    _assert_matches_reference(_run_triton(z, mu, log_sigma, logp_old, adv, ratio_ref, "exact"),
                              _float64_reference(z, mu, log_sigma, logp_old, adv, ratio_ref, "exact"), rho)


@requires_triton
def test_ratio_is_one_on_fresh_samples_from_the_triton_sampler():
    """Sampler and loss compute log p the same way: at unchanged parameters ρ = 1 up to fp32 summation
    order (|log ρ| ≲ 1e-6), so nothing is clipped and the k3 estimate is ≈ (log ρ)²/2 ≈ 0."""
    g = torch.Generator().manual_seed(2)
    mu = (0.3 * torch.randn(5000, generator=g)).to(DEVICE)
    log_sigma = (-0.1 + 0.2 * torch.randn(5000, generator=g)).to(DEVICE)
    z, logp_old = sample_policy_triton(mu, log_sigma, seed=4, k=9)
    adv = torch.linspace(-1, 1, 9, device=DEVICE)
    _, stats = policy_loss_triton(z, mu.clone().requires_grad_(), log_sigma.clone().requires_grad_(),
                                  logp_old, adv, CLIP, KL_WEIGHT)
    assert abs(stats["ratio_mean"].item() - 1.0) < 1e-5
    assert stats["clipfrac"].item() == 0.0
    assert abs(stats["approx_kl"].item()) < 1e-5


def test_torch_reference_log_density_and_kl_match_torch_distributions():
    """The oracle's own oracle: torch.distributions' Normal log-density and closed-form KL."""
    g = torch.Generator().manual_seed(3)
    k, d = 4, 50
    mu = 0.4 * torch.randn(d, generator=g, dtype=torch.float64)
    log_sigma = 0.3 * torch.randn(d, generator=g, dtype=torch.float64)
    z = torch.randn(k, d, generator=g, dtype=torch.float64)
    adv = torch.tensor([1.0, -0.5, 2.0, -1.5], dtype=torch.float64)
    normal = torch.distributions.Normal(mu, log_sigma.exp())
    std = torch.distributions.Normal(torch.zeros(d, dtype=torch.float64), torch.ones(d, dtype=torch.float64))
    logp = normal.log_prob(z).mean(-1)
    logp_old = logp - torch.tensor([0.5, 0.9, 1.1, 1.5], dtype=torch.float64).log()
    kl_exact = torch.distributions.kl_divergence(normal, std).mean()
    kl_l2 = (mu.square() + (log_sigma.exp() - 1).square()).mean()
    for ratio_ref in ("behaviour", "initial"):
        rho = (logp - (logp_old if ratio_ref == "behaviour" else std.log_prob(z).mean(-1))).exp()
        clipped = rho.clamp(1 - CLIP, 1 + CLIP)
        surr = -torch.minimum(rho * adv, clipped * adv) if ratio_ref == "behaviour" else -adv * clipped
        for kl, kl_value in (("exact", kl_exact), ("l2", kl_l2)):
            loss, stats = policy_loss_torch(z, mu, log_sigma, logp_old, adv, CLIP, KL_WEIGHT, ratio_ref, kl)
            # float64 throughout: only summation order differs
            torch.testing.assert_close(stats["kl"], kl_value, rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(loss, surr.mean() + KL_WEIGHT * kl_value, rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(stats["ratio_mean"], rho.mean(), rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(stats["approx_kl"], (rho - 1 - rho.log()).mean(), rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(stats["clipfrac"], ((rho - 1).abs() > CLIP).double().mean())


def test_kl_to_gaussian_matches_torch_distributions_and_is_flat_at_its_reference():
    """kl_to_gaussian (the KL to --init's policy, kl_to "start"): torch.distributions' closed form in float64
    (exact), the L2 proxy written out (l2); with the standard normal as reference it is kl_to_standard_normal;
    at the reference its value and gradient are exactly zero (Adam would turn rounding into lr-sized steps)."""
    from findcli.kernels.gaussian import kl_to_gaussian, kl_to_standard_normal

    g = torch.Generator().manual_seed(4)
    d = 50
    mu, ls, mr, lr = (s * torch.randn(d, generator=g, dtype=torch.float64) for s in (0.5, 0.3, 0.5, 0.4))
    want = torch.distributions.kl_divergence(torch.distributions.Normal(mu, ls.exp()),
                                             torch.distributions.Normal(mr, lr.exp())).mean()
    torch.testing.assert_close(kl_to_gaussian(mu, ls, mr, lr), want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(kl_to_gaussian(mu, ls, mr, lr, "l2"),
                               ((mu - mr).square() + (ls.exp() - lr.exp()).square()).mean(), rtol=1e-12, atol=1e-12)
    zero = torch.zeros(d, dtype=torch.float64)
    for kind in ("exact", "l2"):
        torch.testing.assert_close(kl_to_gaussian(mu, ls, zero, zero, kind), kl_to_standard_normal(mu, ls, kind),
                                   rtol=1e-12, atol=1e-12)
    m, s_ = mr.float().clone().requires_grad_(True), lr.float().clone().requires_grad_(True)
    for kind in ("exact", "l2"):
        value = kl_to_gaussian(m, s_, mr.float(), lr.float(), kind)
        gm, gs = torch.autograd.grad(value, (m, s_))
        assert value.item() == 0.0 and not gm.any() and not gs.any(), kind


def test_initial_ratio_hard_clamp_passes_no_surrogate_gradient():
    """Official variant: with every ρ clamped, only the KL term moves μ and log σ (closed form)."""
    k, d = 3, 20
    mu = torch.zeros(d, dtype=torch.float64, requires_grad=True)
    log_sigma = torch.full((d,), 0.5, dtype=torch.float64, requires_grad=True)
    z = torch.zeros(k, d, dtype=torch.float64)  # log ρ = -mean log σ = -0.5: ρ = 0.61 < 0.8, clamped
    loss, stats = policy_loss_torch(z, mu, log_sigma, torch.zeros(k, dtype=torch.float64),
                                    torch.ones(k, dtype=torch.float64), CLIP, KL_WEIGHT, "initial", "exact")
    loss.backward()
    assert stats["clipfrac"].item() == 1.0
    torch.testing.assert_close(mu.grad, torch.zeros(d, dtype=torch.float64))
    # ∂/∂log σ of β·mean_d[(σ² - 1)/2 - log σ] = β (σ² - 1)/D
    torch.testing.assert_close(log_sigma.grad, KL_WEIGHT * (math.exp(1.0) - 1) / d * torch.ones(d, dtype=torch.float64))


@pytest.mark.parametrize("backend", ["torch", pytest.param("triton", marks=requires_triton)])
def test_public_policy_loss_dispatches_and_matches_reference(backend):
    set_backend(backend)
    inputs = _case(5, 600, "behaviour", seed=9)
    z, mu, log_sigma, logp_old, adv = inputs
    m, s = mu.clone().requires_grad_(), log_sigma.clone().requires_grad_()
    loss, stats = policy_loss(z, m, s, logp_old, adv, CLIP, KL_WEIGHT)
    assert loss.ndim == 0 and loss.requires_grad
    (UPSTREAM * loss).backward()
    _assert_matches_reference((loss.detach(), stats, m.grad, s.grad),
                              _float64_reference(*inputs, "behaviour", "exact"),
                              _ratios_float64(z, mu, log_sigma, logp_old, "behaviour"))


def test_policy_loss_rejects_unknown_modes():
    z, mu, log_sigma, logp_old, adv = (t.cpu() for t in _case(2, 8, "behaviour"))
    with pytest.raises(ValueError):
        policy_loss(z, mu, log_sigma, logp_old, adv, CLIP, KL_WEIGHT, ratio_ref="old")
    with pytest.raises(ValueError):
        policy_loss(z, mu, log_sigma, logp_old, adv, CLIP, KL_WEIGHT, kl="reverse")


# ----------------------------------------------------------------------------------------------
# The PPO clipped surrogate as the engine calls it (public `policy_loss` on a GaussianPolicy, the
# backend's default): which samples carry gradient, closed-form cases.
# ----------------------------------------------------------------------------------------------


def _closed_form_case(ratio: float, adv: float, k: int = 3, d: int = 40):
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
    p, z, logp_old, a = _closed_form_case(ratio, adv)
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
