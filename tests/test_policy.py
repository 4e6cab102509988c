"""GaussianPolicy math against torch.distributions in float64, and the policy file format."""

import math

import pytest
import torch

from findcli.errors import FindError
from findcli.policy import FORMAT_VERSION, GaussianPolicy, load_policy, save_policy


def _policy(shape=(3, 5, 7), seed=0):
    g = torch.Generator().manual_seed(seed)
    d = math.prod(shape)
    return GaussianPolicy(shape, 0.5 * torch.randn(d, generator=g), 0.3 * torch.randn(d, generator=g))


def test_log_prob_matches_float64_torch_distributions():
    p = _policy()
    z = torch.randn(6, 3, 5, 7, generator=torch.Generator().manual_seed(1))
    ref = torch.distributions.Normal(p.mu.double(), p.log_sigma.double().exp()).log_prob(z.reshape(6, -1).double())
    # fp32 evaluation of ~105 terms of magnitude ≤ ~10: rounding ≲ 1e-6 relative on the mean.
    torch.testing.assert_close(p.log_prob(z).double(), ref.mean(dim=1), rtol=1e-6, atol=1e-6)


def test_log_prob_gradients_match_float64_autograd():
    p = _policy()
    z = torch.randn(4, 3, 5, 7, generator=torch.Generator().manual_seed(2))
    w = torch.randn(4, generator=torch.Generator().manual_seed(3))  # the same upstream gradient for both
    (p.log_prob(z) * w).sum().backward()
    mu64 = p.mu.detach().double().requires_grad_()
    ls64 = p.log_sigma.detach().double().requires_grad_()
    lp = torch.distributions.Normal(mu64, ls64.exp()).log_prob(z.reshape(4, -1).double()).mean(dim=1)
    (lp * w.double()).sum().backward()
    torch.testing.assert_close(p.mu.grad.double(), mu64.grad, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(p.log_sigma.grad.double(), ls64.grad, rtol=1e-5, atol=1e-7)


def test_kl_and_gradient_match_float64_closed_form_of_torch_distributions():
    p = _policy()
    p.kl_to_standard().backward()
    mu64 = p.mu.detach().double().requires_grad_()
    ls64 = p.log_sigma.detach().double().requires_grad_()
    kl = torch.distributions.kl_divergence(torch.distributions.Normal(mu64, ls64.exp()),
                                           torch.distributions.Normal(torch.zeros_like(mu64), torch.ones_like(mu64)))
    kl.mean().backward()
    torch.testing.assert_close(p.kl_to_standard().double(), kl.mean(), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(p.mu.grad.double(), mu64.grad, rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(p.log_sigma.grad.double(), ls64.grad, rtol=1e-5, atol=1e-8)


def test_kl_is_zero_at_the_prior():
    assert GaussianPolicy((4, 8, 8)).kl_to_standard().item() == 0.0


def test_sample_is_mu_plus_sigma_eps_with_eps_of_the_prior_draw():
    p = _policy()
    z, logp = p.sample(seed=7, k=5)
    eps, _ = GaussianPolicy(p.latent_shape).sample(seed=7, k=5)
    torch.testing.assert_close(z, (p.mu + p.log_sigma.exp() * eps.reshape(5, -1)).reshape(z.shape), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(logp, p.log_prob(z).detach(), rtol=1e-5, atol=1e-5)


def test_policy_file_round_trip_loads_with_weights_only(tmp_path):
    p = _policy()
    meta = {"prompt": "a red cube", "model": "m", "steps": 20, "final_stats": {"reward_mean": 1.5}}
    save_policy(tmp_path / "p.pt", p, meta, train_state={"iteration": 3, "x": torch.ones(2)})
    blob = torch.load(tmp_path / "p.pt", weights_only=True)
    assert blob["version"] == FORMAT_VERSION and blob["mu"].shape == (3, 5, 7)
    pf = load_policy(tmp_path / "p.pt", expected_shape=(3, 5, 7))
    assert torch.equal(pf.policy.mu, p.mu) and torch.equal(pf.policy.log_sigma, p.log_sigma)
    assert pf.meta["prompt"] == "a red cube" and pf.meta["latent_shape"] == [3, 5, 7]
    assert pf.train_state["iteration"] == 3
    assert [f.name for f in tmp_path.iterdir()] == ["p.pt"]  # no temp file left behind


@pytest.mark.parametrize("content", [b"", b"not a torch file", b"PK\x03\x04garbage"])
def test_corrupt_policy_file_is_one_line_error(tmp_path, content):
    (tmp_path / "bad.pt").write_bytes(content)
    with pytest.raises(FindError, match="corrupt"):
        load_policy(tmp_path / "bad.pt")


def test_other_version_and_foreign_file_and_shape_mismatch(tmp_path):
    p = _policy()
    save_policy(tmp_path / "p.pt", p, {"prompt": "x"})
    blob = torch.load(tmp_path / "p.pt", weights_only=True)
    blob["version"] = FORMAT_VERSION + 1
    torch.save(blob, tmp_path / "v.pt")
    with pytest.raises(FindError, match="format version"):
        load_policy(tmp_path / "v.pt")
    torch.save({"state_dict": {}}, tmp_path / "f.pt")
    with pytest.raises(FindError, match="not a findcli policy"):
        load_policy(tmp_path / "f.pt")
    with pytest.raises(FindError, match="does not match the model's latent shape"):
        load_policy(tmp_path / "p.pt", expected_shape=(4, 8, 8))
    with pytest.raises(FindError, match="does not exist"):
        load_policy(tmp_path / "missing.pt")


def test_prior_noise_is_the_eps_behind_a_policy_draw():
    from findcli.policy import prior_noise

    p = _policy()
    z, _ = p.sample(seed=11, k=4)
    eps = prior_noise(p.latent_shape, 11, 4)
    torch.testing.assert_close(z, p.mu.detach().view(p.latent_shape) + p.log_sigma.detach().exp().view(p.latent_shape) * eps,
                               rtol=1e-6, atol=1e-6)
