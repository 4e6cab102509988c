"""Issue 13's search baselines on the tiny pipeline: best-of-N delivers the argmax candidate at N
generations + N reward calls per image; ReNO's gradient through the sampler matches central finite
differences (fp64), a few iterations raise the reward and keep-best delivers the best seen; a reward
without a gradient is a one-line error."""

import pytest
import torch

from findcli.baselines.best_of_n import BestOfN, delivery_noise, delivery_seed
from findcli.baselines.reno import ReNO
from findcli.errors import FindError
from findcli.generators.base import SamplerSettings
from findcli.testing import build_tiny_pipeline

PROMPT = "a red circle"
SAMPLER = SamplerSettings(steps=2, guidance=5.0)  # CFG on: 2 denoiser rows per image per step


@pytest.fixture(scope="module")
def pipe():
    return build_tiny_pipeline()


@pytest.fixture(scope="module")
def pipe64():
    return build_tiny_pipeline().to(torch.float64)


def pattern_score(images, prompts):
    """Smooth in the image: a left-right ramp plus a sine of the pixels, per image."""
    ramp = torch.linspace(-1, 1, images.shape[-1], dtype=images.dtype, device=images.device)
    return (images * ramp).mean((1, 2, 3)) + torch.sin(3 * images).mean((1, 2, 3))


def brightness_target(images, prompts):
    """Peaked at mean brightness 0.55 (the tiny model's images start near 0.48-0.50): gradient
    ascent with ReNO's lr overshoots it, so the best iteration is not always the last."""
    return -((images.mean((1, 2, 3)) - 0.55) * 100) ** 2


def frozen_brightness(images, prompts):
    return images.detach().mean((1, 2, 3))  # no gradient reaches the image


def test_best_of_n_delivers_the_argmax_and_counts_n_generations_and_rewards(pipe):
    n, big_n, seed = 3, 4, 5
    method = BestOfN(pipe, PROMPT, pattern_score, n_candidates=big_n, settings=SAMPLER, max_batch=3)
    assert method.train_step() is None
    assert method.settings["n_candidates"] == big_n and "equal reward calls" in method.settings["budget"]
    out = method.generate(n, seed)
    assert out.shape == (n, 3, 16, 16) and out.min() >= 0 and out.max() <= 1

    # Oracle: every candidate through the stock Rollout call, scored here
    choices = []
    for i in range(n):
        z = delivery_noise(method.gen.latent_shape, seed, i, big_n, "cpu")
        images = method.gen(z, delivery_seed(seed, i))
        scores = pattern_score(images, [PROMPT] * big_n)
        best = int(scores.argmax())
        choices.append(best)
        assert int(method.last_choice[i]) == best
        torch.testing.assert_close(method.last_scores[i], scores, atol=1e-6, rtol=0)
        torch.testing.assert_close(out[i], images[best], atol=1e-6, rtol=0)
    assert any(c != 0 for c in choices)  # the selection is exercised, not always the first draw

    cost = method.generate_cost
    assert cost.reward_calls == n * big_n
    assert cost.unet_rows == n * big_n * SAMPLER.steps * 2
    assert cost.images == n and cost.wall_s > 0
    assert method.train_cost.unet_rows == 0 and method.train_cost.reward_calls == 0


def test_reno_sampler_is_the_stock_pipeline(pipe):
    method = ReNO(pipe, PROMPT, pattern_score, settings=SAMPLER, iterations=1)
    z = delivery_noise(method.gen.latent_shape, 0, 0, 2, "cpu")
    torch.testing.assert_close(method.images(z), method.gen(z, 0), atol=1e-6, rtol=0)
    # One iteration is no optimisation: the plain sample of best-of-N's candidate 0 for that image
    z0 = delivery_noise(method.gen.latent_shape, 4, 1, 3, "cpu")[:1]
    torch.testing.assert_close(z0, delivery_noise(method.gen.latent_shape, 4, 1, 1, "cpu"), atol=0, rtol=0)
    out = method.generate(2, 4)
    torch.testing.assert_close(out[1:], method.gen(z0, delivery_seed(4, 1)), atol=1e-6, rtol=0)
    assert method.generate_backward_rows == 0 and method.generate_cost.reward_calls == 2


@pytest.mark.parametrize("reg_weight", [0.0, 0.01])  # the sampler + reward alone; with ReNO's regulariser
def test_reno_gradient_matches_central_finite_differences(pipe64, reg_weight):
    method = ReNO(pipe64, PROMPT, pattern_score, settings=SAMPLER, reg_weight=reg_weight)
    z = delivery_noise(method.gen.latent_shape, 1, 0, 2, "cpu").double()
    value, grad = method.value_and_grad(z)  # through the checkpointed steps and decode
    assert grad.dtype == torch.float64 and grad.shape == z.shape
    torch.testing.assert_close(value, method.objective(z), atol=1e-12, rtol=0)
    gen = torch.Generator().manual_seed(0)
    h = 1e-4
    for _ in range(3):
        v = torch.randn(z.shape, generator=gen, dtype=torch.float64)
        v /= v.norm()
        fd = ((method.objective(z + h * v) - method.objective(z - h * v)) / (2 * h)).sum()
        analytic = (grad * v).sum()
        assert abs(analytic) > 1e-5
        assert abs(fd - analytic) / abs(analytic) < 1e-4, (float(fd), float(analytic))


def test_reno_raises_the_reward_and_keeps_the_best(pipe):
    n, iterations = 2, 8
    method = ReNO(pipe, PROMPT, brightness_target, settings=SAMPLER, iterations=iterations, max_batch=2)
    out = method.generate(n, 3)
    hist = method.last_history
    assert hist.shape == (n, iterations)
    assert (hist.max(dim=1).values > hist[:, 0] + 1.0).all()  # the optimisation raised the reward
    assert (hist.argmax(dim=1) < iterations - 1).any()  # the best seen is not just the last one
    torch.testing.assert_close(method.last_best_reward, hist.max(dim=1).values)
    with torch.no_grad():  # the delivered image is the best z's image, and scores the best seen
        torch.testing.assert_close(out, method.images(method.last_best_z), atol=1e-6, rtol=0)
        torch.testing.assert_close(brightness_target(out, [PROMPT] * n), hist.max(dim=1).values, atol=1e-4, rtol=1e-5)

    # Cost: every forward and every checkpoint recompute is a counted denoiser row; backward apart
    rows = n * SAMPLER.steps * 2
    cost = method.generate_cost
    assert cost.reward_calls == n * iterations and cost.images == n
    assert cost.unet_rows == rows * iterations + rows * (iterations - 1)
    assert method.generate_backward_rows == rows * (iterations - 1)
    assert method.train_step() is None and method.train_cost.unet_rows == 0


def test_reno_with_a_reward_without_gradient_is_a_one_line_error(pipe):
    method = ReNO(pipe, PROMPT, frozen_brightness, settings=SAMPLER, iterations=3)
    with pytest.raises(FindError) as err:
        method.generate(1, 0)
    msg = str(err.value)
    assert "\n" not in msg and "frozen_brightness" in msg and "not differentiable" in msg
