"""The FIND update is invariant to the reward's affine scale and to the latent size D.

Oracles: the same run with the reward r replaced by a·r + b (identical μ, σ trajectories up to
rounding, for a in {1e-3, 1, 1e3}); closed-form Adam (the first step of Adam moves every element by
lr when its gradient is well above eps, so the relative step is 1 at any D); and, as controls that
show each test can fail, the official settings (raw advantages, per-dimension-mean loss), under
which the trajectories and the step do depend on a and D.
"""

import dataclasses

import pytest
import torch

from findcli.config import TrainConfig
from findcli.engine import FindTrainer, policy_update
from findcli.pipeline import Rollout, SamplerSettings, load_pipeline
from findcli.policy import GaussianPolicy
from findcli.value import RewardNormalizer

PROMPT = "a red cube on a blue sphere"


@pytest.fixture(scope="module")
def pipe_and_target(tiny_pipeline_dir):
    pipe = load_pipeline(str(tiny_pipeline_dir), torch.device("cpu"), torch.float32)
    z_star = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(123))
    target = Rollout(pipe, PROMPT, SamplerSettings(steps=2, guidance=3.0))(z_star).double()
    return pipe, target


def affine_reward(target, a, b):
    """r = a · (-100 · MSE(image, target)) + b, computed in float64 so that a and b cost no precision."""
    def reward(images, prompts):
        return a * (-100.0 * (images.double() - target).pow(2).flatten(1).mean(1)) + b
    return reward


def trajectory(pipe, reward, tmp_path, **overrides):
    cfg = TrainConfig(prompt=PROMPT, model="tiny", steps=2, guidance=3.0, batch=4, iterations=5, replay=2,
                      inner_epochs=2, checkpoint_every=100, **overrides).validate()
    trainer = FindTrainer(cfg, pipe, reward, tmp_path / "out.pt")
    mus, sigmas = [], []
    for _ in range(cfg.iterations):
        trainer.step()
        mus.append(trainer.policy.mu.detach().clone())
        sigmas.append(trainer.policy.log_sigma.detach().clone())
    trajectory.metrics = trainer.metrics  # the last run's rows, for the value-net check below
    return torch.stack(mus), torch.stack(sigmas)


def test_affine_change_of_reward_gives_the_same_trajectory(pipe_and_target, tmp_path):
    pipe, target = pipe_and_target
    ref_mu, ref_ls = trajectory(pipe, affine_reward(target, 1.0, 0.0), tmp_path)
    assert ref_mu.abs().max() > 0.05  # the policy moved: the comparison below is not between zeros
    for a, b in ((1e-3, 0.5), (1.0, -3.0), (1e3, 7.0)):
        mu, ls = trajectory(pipe, affine_reward(target, a, b), tmp_path)
        torch.testing.assert_close(mu, ref_mu, rtol=0, atol=1e-4, msg=f"a={a}, b={b}")
        torch.testing.assert_close(ls, ref_ls, rtol=0, atol=1e-4, msg=f"a={a}, b={b}")


def test_value_net_in_reward_units_follows_the_affine_change(pipe_and_target, tmp_path):
    """metrics' value_reward (what reward_curve.png plots) is V mapped back to the reward's units:
    under r -> a·r + b it must become a·V + b (oracle: the affine map itself)."""
    pipe, target = pipe_and_target
    trajectory(pipe, affine_reward(target, 1.0, 0.0), tmp_path)
    ref = [m["value_reward"] for m in trajectory.metrics]
    a, b = 1e3, 7.0
    trajectory(pipe, affine_reward(target, a, b), tmp_path)
    got = [m["value_reward"] for m in trajectory.metrics]
    for x, y in zip(ref, got):
        assert abs(y - (a * x + b)) < 1e-3 * a, (x, y)


def test_control_raw_advantages_depend_on_the_reward_scale(pipe_and_target, tmp_path):
    """adv_norm none (the official code): the KL weight is absolute, so a reward 1000× smaller is
    dominated by it; the invariance above is a property of the normalisation, not of the test."""
    pipe, target = pipe_and_target
    mu1, _ = trajectory(pipe, affine_reward(target, 1.0, 0.0), tmp_path, adv_norm="none", kl_weight=1.0)
    mu2, _ = trajectory(pipe, affine_reward(target, 1e-3, 0.0), tmp_path, adv_norm="none", kl_weight=1.0)
    assert (mu1 - mu2).abs().max() > 1e-2


def _one_step(d: int, adv_spread: float, d_invariant: bool) -> float:
    """Relative step (RMS of Δμ over lr) of one update from N(0, I) on a synthetic linear reward
    r_k = ε_k · w with advantages of spread `adv_spread` (raw, as with a reward whose spread is small)."""
    g = torch.Generator().manual_seed(0)
    k = 8
    policy = GaussianPolicy((d,))
    z, logp = policy.sample(1234, k)
    w = torch.randn(d, generator=g) / d ** 0.5
    r = z @ w
    adv = adv_spread * (r - r.mean()) / r.std()
    cfg = dataclasses.replace(TrainConfig(), inner_epochs=1, kl_weight=0.0, d_invariant=d_invariant)
    opt = torch.optim.Adam(policy.parameters(), lr=cfg.lr)
    before = policy.mu.detach().clone()
    policy_update(policy, opt, z, logp, adv, cfg)
    return float((policy.mu.detach() - before).pow(2).mean().sqrt() / cfg.lr)


def test_relative_step_is_the_same_at_d_256_and_d_262144():
    # A spread of 0.003, as the mean redness of an image: the case the issue measured.
    small, large = _one_step(256, 0.003, True), _one_step(262_144, 0.003, True)
    # First Adam step: |Δ| = lr · |g| / (|g| + eps) ≈ lr for |g| ≫ eps, so the relative step is 1.
    assert abs(small - 1.0) < 0.01 and abs(large - 1.0) < 0.01, (small, large)
    # Control: the per-dimension-mean loss makes |g| ≈ |A| / (√K · D) ≈ 4e-9 at D = 262 144, below eps.
    small_off, large_off = _one_step(256, 0.003, False), _one_step(262_144, 0.003, False)
    assert small_off > 0.95 and large_off < 0.5, (small_off, large_off)


def test_normalizer_units_are_affine_invariant_float64_oracle():
    g = torch.Generator().manual_seed(3)
    r = torch.randn(40, generator=g, dtype=torch.float64)
    n1, n2 = RewardNormalizer(16), RewardNormalizer(16)
    for chunk in r.split(8):
        n1.observe(chunk)
        n2.observe(1e3 * chunk - 5.0)
        torch.testing.assert_close(n1.units(chunk), n2.units(1e3 * chunk - 5.0), rtol=0, atol=1e-6)
        assert abs(n1.scale() - n2.scale()) < 1e-9
    # reference: first window mean/std; scale: std of the last 16 over the first std
    assert abs(n1.m0 - float(r[:8].mean())) < 1e-12 and abs(n1.s0 - float(r[:8].std())) < 1e-12
    assert abs(n1.scale() - float(r[-16:].std()) / float(r[:8].std())) < 1e-12


def test_normalizer_waits_for_a_spread():
    n = RewardNormalizer(8)
    n.observe(torch.tensor([2.0]))
    assert not n.ready  # one reward: no spread yet
    n.observe(torch.tensor([2.0]))
    assert not n.ready  # equal rewards: still none
    n.observe(torch.tensor([3.0]))
    assert n.ready and abs(n.m0 - 7 / 3) < 1e-12


def test_normalizer_floor_bounds_the_scale_float64_oracle():
    """scale() = max(std of the window, floor) / s0 (closed form), and the floor binds only below it."""
    g = torch.Generator().manual_seed(4)
    r = torch.randn(24, generator=g, dtype=torch.float64)
    wide, tight = 0.5, 10.0  # one below every window's std here, one above
    for floor in (wide, tight):
        n = RewardNormalizer(16, floor)
        for chunk in r.split(8):
            n.observe(chunk)
        want = max(float(r[-16:].std()), floor) / float(r[:8].std())
        assert abs(n.scale() - want) < 1e-12, (floor, n.scale(), want)
        assert n.floored() == (float(r[-16:].std()) < floor)  # the metric `std_floored` reports it
    assert float(r[-16:].std()) > wide  # the first floor did not bind: the plain running std
    # a saturated prompt: rewards that barely differ keep the scale at the floor, not at their noise
    n = RewardNormalizer(16, 0.2)
    n.observe(torch.tensor([1.0, 1.9, 1.1, 1.8], dtype=torch.float64))
    n.observe(torch.tensor([1.95, 1.96, 1.94, 1.95], dtype=torch.float64))
    std = float(torch.tensor([1.0, 1.9, 1.1, 1.8, 1.95, 1.96, 1.94, 1.95], dtype=torch.float64).std())
    assert abs(n.scale() - max(std, 0.2) / n.s0) < 1e-12


def test_floor_binds_only_at_or_above_its_level_float64_oracle():
    """floor_above: the floor is in force only while the window's mean is at or above the level; below
    it the scale is the plain running std (closed form), as on a prompt whose batches all fail."""
    low = torch.tensor([0.70, 0.75, 0.72, 0.74, 0.71, 0.73, 0.76, 0.70], dtype=torch.float64)
    high = low + 1.2  # the same spread near the top of a (0, 2) range
    for r, floored in ((low, False), (high, True)):
        n = RewardNormalizer(16, 0.2, floor_above=1.0)
        n.observe(r)
        want = (0.2 if floored else float(r.std())) / float(r.std())
        assert abs(n.scale() - want) < 1e-12 and n.floored() == floored, (float(r.mean()), n.scale(), want)
    n = RewardNormalizer(16, 0.2, floor_above=float(low.mean()))  # exactly at the level: in force
    n.observe(low)
    assert n.floored() and abs(n.scale() - 0.2 / float(low.std())) < 1e-12


def ranged_reward(target, a, b):
    """affine_reward with its declared range mapped by the same a, b (reward_span scales by a)."""
    fn = affine_reward(target, a, b)
    fn.value_range = (b - a * 50.0, b)  # -100·MSE of images in [0, 1] lies in [-100, 0]; any span works
    return fn


def test_floor_keeps_the_affine_invariance_when_the_range_is_declared(pipe_and_target, tmp_path):
    """With the floor on (a binding one: half the declared span), r -> a·r + b with the range mapped
    too gives the same trajectory; and the floor does change the run (control)."""
    pipe, target = pipe_and_target
    ref_mu, ref_ls = trajectory(pipe, ranged_reward(target, 1.0, 0.0), tmp_path, adv_std_floor=0.5)
    free_mu, _ = trajectory(pipe, affine_reward(target, 1.0, 0.0), tmp_path, adv_std_floor=0.5)
    assert (ref_mu - free_mu).abs().max() > 1e-3  # the floor bound: a run without a range differs
    for a, b in ((1e-3, 0.5), (1e3, 7.0)):
        mu, ls = trajectory(pipe, ranged_reward(target, a, b), tmp_path, adv_std_floor=0.5)
        torch.testing.assert_close(mu, ref_mu, rtol=0, atol=1e-4, msg=f"a={a}, b={b}")
        torch.testing.assert_close(ls, ref_ls, rtol=0, atol=1e-4, msg=f"a={a}, b={b}")


def test_reward_span_of_the_built_in_rewards():
    from findcli.rewards import CombinedReward, reward_span
    from findcli.shapes.detector import DetectorReward

    assert reward_span(DetectorReward.__new__(DetectorReward)) == 2.0
    f = lambda images, prompts: images.mean((1, 2, 3))  # noqa: E731
    assert reward_span(f) is None  # nothing declared: no floor
    g = lambda images, prompts: images.mean((1, 2, 3))  # noqa: E731
    g.value_range = (0.0, 1.0)
    h = lambda images, prompts: images.mean((1, 2, 3))  # noqa: E731
    h.value_range = (-1.0, 3.0)
    assert reward_span(CombinedReward([("g", 2.0, g), ("h", -0.5, h)])) == 2.0 * 1.0 + 0.5 * 4.0
    # the range itself: 2·[0, 1] + (-0.5)·[-1, 3] = [0, 2] + [-1.5, 0.5]
    assert CombinedReward([("g", 2.0, g), ("h", -0.5, h)]).value_range == (-1.5, 2.5)
    assert reward_span(CombinedReward([("g", 1.0, g), ("f", 1.0, f)])) is None


def test_a_user_functions_declared_range_reaches_the_trainer(tmp_path):
    """--reward file.py:fn with fn.value_range set: build_reward's CombinedReward carries the span."""
    from findcli.rewards import build_reward, reward_span

    (tmp_path / "ranged.py").write_text("def r(images, prompts):\n    return images.mean((1, 2, 3))\n"
                                        "r.value_range = (0.0, 1.0)\n"
                                        "def plain(images, prompts):\n    return images.mean((1, 2, 3))\n")
    assert reward_span(build_reward(f"{tmp_path / 'ranged.py'}:r", torch.device("cpu"))) == 1.0
    assert reward_span(build_reward(f"{tmp_path / 'ranged.py'}:r=2", torch.device("cpu"))) == 2.0
    assert reward_span(build_reward(f"{tmp_path / 'ranged.py'}:plain", torch.device("cpu"))) is None


def test_floor_above_keeps_the_affine_invariance_and_switches_mid_run(pipe_and_target, tmp_path):
    """A floor level between the run's first and last window means: the floor is in force for part of
    the run only (checked from std_floored), and r -> a·r + b with the range mapped gives the same
    trajectory; a level above every reward equals the run with no floor at all (oracle)."""
    pipe, target = pipe_and_target
    trajectory(pipe, ranged_reward(target, 1.0, 0.0), tmp_path, adv_std_floor=0.5)
    rewards = [m["reward_mean"] for m in trajectory.metrics]
    windows = [sum(rewards[: i + 1]) / (i + 1) for i in range(len(rewards))]  # window 64 > 5 batches of 4
    lo, span = -50.0, 50.0  # ranged_reward(a=1, b=0)'s declared range
    above = ((min(windows[1:]) + max(windows[1:])) / 2 - lo) / span
    ref_mu, ref_ls = trajectory(pipe, ranged_reward(target, 1.0, 0.0), tmp_path, adv_std_floor=0.5,
                                adv_std_floor_above=above)
    floored = [m["std_floored"] for m in trajectory.metrics if "std_floored" in m]
    assert any(floored) and not all(floored), floored  # the level is crossed during the run
    for a, b in ((1e-3, 0.5), (1e3, 7.0)):
        mu, ls = trajectory(pipe, ranged_reward(target, a, b), tmp_path, adv_std_floor=0.5,
                            adv_std_floor_above=above)
        torch.testing.assert_close(mu, ref_mu, rtol=0, atol=1e-4, msg=f"a={a}, b={b}")
        torch.testing.assert_close(ls, ref_ls, rtol=0, atol=1e-4, msg=f"a={a}, b={b}")
    never_mu, _ = trajectory(pipe, ranged_reward(target, 1.0, 0.0), tmp_path, adv_std_floor=0.5,
                             adv_std_floor_above=1.0)  # the top of the range: no reward reaches it
    free_mu, _ = trajectory(pipe, affine_reward(target, 1.0, 0.0), tmp_path, adv_std_floor=0.5)
    assert torch.equal(never_mu, free_mu)


def test_files_written_before_the_floor_settings_load_with_the_settings_they_trained_with():
    """A policy file's config from before --adv-std-floor (and before its level) trained with no floor
    (and with the floor at every level): from_dict fills those, not today's defaults."""
    today = TrainConfig().to_dict()
    old = {k: v for k, v in today.items() if k not in ("adv_std_floor", "adv_std_floor_above")}
    cfg = TrainConfig.from_dict(old)
    assert cfg.adv_std_floor == 0.0 and cfg.adv_std_floor_above == 0.0
    between = dict(old, adv_std_floor=0.1)  # the floor, before its level existed
    assert TrainConfig.from_dict(between).adv_std_floor_above == 0.0
    assert TrainConfig.from_dict(dict(today, adv_std_floor_above=0.5)).adv_std_floor_above == 0.5


# ---- the KL pull's target (kl_to): N(0, I), or the distribution --init starts from


def trajectory_from(pipe, reward, tmp_path, mu0, log_sigma0, **overrides):
    """trajectory(), started from (mu0, log_sigma0) as --init does (FindTrainer.init_from)."""
    cfg = TrainConfig(prompt=PROMPT, model="tiny", steps=2, guidance=3.0, batch=4, iterations=4, replay=2,
                      inner_epochs=2, checkpoint_every=100, **overrides).validate()
    trainer = FindTrainer(cfg, pipe, reward, tmp_path / "out.pt")
    trainer.init_from(mu0, log_sigma0)
    for _ in range(cfg.iterations):
        trainer.step()
    return trainer


def test_kl_to_a_standard_normal_start_equals_the_fused_kl_to_the_prior(pipe_and_target, tmp_path):
    """--init from N(0, I) itself with kl_to "start" adds the KL in PyTorch (kl_to_gaussian to the start);
    kl_to "standard" uses the fused loss's KL to N(0, I): the same run up to rounding, for both KL kinds."""
    pipe, target = pipe_and_target
    zero = torch.zeros(4 * 8 * 8)
    for kind in ("exact", "l2"):
        a = trajectory_from(pipe, affine_reward(target, 1.0, 0.0), tmp_path, zero, zero, kl_to="start", kl=kind,
                            kl_weight=1.0)
        assert a.kl_ref is not None  # the PyTorch path ran
        b = trajectory_from(pipe, affine_reward(target, 1.0, 0.0), tmp_path, zero, zero, kl_to="standard", kl=kind,
                            kl_weight=1.0)
        assert b.kl_ref is None
        assert a.policy.mu.abs().max() > 0.05
        torch.testing.assert_close(a.policy.mu, b.policy.mu, rtol=0, atol=1e-5, msg=kind)
        torch.testing.assert_close(a.policy.log_sigma, b.policy.log_sigma, rtol=0, atol=1e-5, msg=kind)
        assert abs(a.metrics[-1]["kl_pull"] - b.metrics[-1]["kl_pull"]) < 1e-5 and a.metrics[-1]["kl_pull"] > 0


def test_kl_to_the_start_holds_an_init_policy_where_the_reward_teaches_nothing(pipe_and_target, tmp_path):
    """A flat reward (group advantages, raw units: all zero; the running normaliser would wait for a spread)
    leaves only the KL in the gradient: pulled toward the
    --init policy itself (kl_to "start") μ and σ stay exactly where they start; pulled toward N(0, I)
    ("standard", FIND's KL before kl_to existed) they move toward it, as a tight start's did on saturated
    count prompts (RESULTS.md §10.8)."""
    pipe, _ = pipe_and_target
    flat = lambda images, prompts: torch.ones(images.shape[0])  # noqa: E731
    g = torch.Generator().manual_seed(5)
    mu0, ls0 = 0.5 * torch.randn(256, generator=g), torch.full((256,), -1.2)
    held = trajectory_from(pipe, flat, tmp_path, mu0, ls0, baseline="group", adv_norm="none")
    assert torch.equal(held.policy.mu.detach(), mu0) and torch.equal(held.policy.log_sigma.detach(), ls0)
    pulled = trajectory_from(pipe, flat, tmp_path, mu0, ls0, baseline="group", adv_norm="none", kl_to="standard")
    assert (pulled.policy.log_sigma.detach() > ls0 + 0.1).all()  # σ 0.3 -> toward 1, at Adam's full step
    assert pulled.policy.mu.detach().abs().mean() < mu0.abs().mean() - 0.1
