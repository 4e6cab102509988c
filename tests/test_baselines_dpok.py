"""DPOK / DDPO baselines (findcli.baselines.dpok) on the tiny seeded pipeline: the per-step log-prob is the
float64 Gaussian density of the DDIM update, the sampler is the stock pipeline's, LoRA at zero init is the
base pipeline bit for bit, training raises a synthetic reward (KL on for DPOK, absent for DDPO), a saved
LoRA generates what the live one does, and the cost ledgers count what was run."""

import math

import pytest
import torch

from findcli.baselines.dpok import Dpok, published_settings
from findcli.errors import FindError
from findcli.generators.base import SamplerSettings
from findcli.pipeline import Rollout
from findcli.policy import prior_noise
from findcli.seeds import noise_seed
from findcli.testing import build_tiny_pipeline

PROMPT = "a red cube left of a blue sphere"


def brightness(images, prompts):  # noqa: ARG001
    return images.mean(dim=(1, 2, 3))


@pytest.fixture(scope="module")
def pipe():
    return build_tiny_pipeline()


def _lora_layers(unet):
    return [n for n, _ in unet.named_modules() if n.endswith("lora_A.default")]


# ------------------------------------------------------------------------------------------------ math


def test_step_log_prob_is_the_float64_gaussian_density_of_the_ddim_update():
    """Each recorded log p(x_{t-1} | x_t) equals N(x_{t-1}; mean, σ_t²) averaged over dimensions, with mean and
    σ_t computed here by hand in float64 from the scheduler's ᾱ (DDIM eqs. 12, 16), the UNet called directly."""
    pipe = build_tiny_pipeline().to(torch.float64)
    steps, k, g = 4, 3, 7.5
    m = Dpok(pipe, PROMPT, None, "ddpo", steps=steps, guidance=g)
    assert m.math_dtype == torch.float64
    traj = m.sample(k, noise_seed("train", 0, 0))
    assert traj.log_probs.dtype == torch.float64 and traj.log_probs.shape == (k, steps)

    pe, ne = pipe.encode_prompt(prompt=PROMPT, device="cpu", num_images_per_prompt=1,
                                do_classifier_free_guidance=True, negative_prompt=None)
    cond = torch.cat([ne.expand(k, -1, -1), pe.expand(k, -1, -1)])
    alphas = pipe.scheduler.alphas_cumprod.double()
    final = torch.tensor(float(pipe.scheduler.final_alpha_cumprod), dtype=torch.float64)
    for j, t in enumerate(traj.timesteps.tolist()):
        x, x_prev = traj.latents[:, j], traj.next_latents[:, j]
        with torch.no_grad():  # base UNet (LoRA at zero init changes nothing), CFG by hand
            u, c = pipe.unet(torch.cat([x, x]), t, encoder_hidden_states=cond).sample.chunk(2)
        eps = u + g * (c - u)
        prev = t - 1000 // steps
        a_t, a_p = alphas[t], (alphas[prev] if prev >= 0 else final)
        x0 = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
        var = (1 - a_p) / (1 - a_t) * (1 - a_t / a_p)
        mean = a_p.sqrt() * x0 + (1 - a_p - var).sqrt() * eps
        want = torch.distributions.Normal(mean, var.sqrt()).log_prob(x_prev).mean(dim=(1, 2, 3))
        torch.testing.assert_close(traj.log_probs[:, j], want, rtol=0, atol=1e-9)
        # the update recomputes the same number, so the first importance ratio is exactly 1
        lp, _ = m.step_log_prob(x, x_prev, traj.timesteps[j].expand(k))
        torch.testing.assert_close(lp, traj.log_probs[:, j], rtol=0, atol=1e-12)


def test_sampler_is_the_stock_pipeline_at_eta_1(pipe):
    """The DDIM loop with log-probs draws what the stock pipeline call draws at eta 1 from the same ε and the same
    per-image step generators (findcli's SD Generator), up to float32 rounding."""
    m = Dpok(pipe, PROMPT, None, "dpok", steps=5)
    s = noise_seed("train", 3, 1)
    traj = m.sample(4, s)
    stock = Rollout(pipe, PROMPT, SamplerSettings(steps=5, guidance=7.5, eta=1.0))(prior_noise(m.shape, s, 4), s)
    torch.testing.assert_close(traj.images, stock, rtol=0, atol=2e-5)
    assert torch.isfinite(traj.log_probs).all()


# ------------------------------------------------------------------------------------------------ LoRA


@pytest.mark.parametrize("variant", ["dpok", "ddpo"])
def test_zero_init_lora_reproduces_the_base_pipeline_bit_for_bit(pipe, variant):
    m = Dpok(pipe, PROMPT, None, variant, steps=4)
    # LoRA is really there: rank 4 on every attention's to_q/to_k/to_v/to_out.0, B = 0 and A ≠ 0 (peft's init)
    targets = [n for n, _ in pipe.unet.named_modules() if n.endswith(("to_q", "to_k", "to_v", "to_out.0"))]
    assert len(_lora_layers(m.unet)) == len(targets) > 0
    for name, p in m.unet.named_parameters():
        if "lora_B" in name:
            assert torch.count_nonzero(p) == 0
        if "lora_A" in name:
            assert p.shape[0] == 4 and torch.count_nonzero(p) > 0
    assert {n for n, p in m.unet.named_parameters() if p.requires_grad} == {
        n for n, _ in m.unet.named_parameters() if "lora_" in n}
    # the caller's pipeline is untouched (no LoRA in its UNet, its own scheduler)
    assert m.pipe.unet is not pipe.unet and not _lora_layers(pipe.unet) and m.pipe.scheduler is not pipe.scheduler

    s = noise_seed("eval", 11)
    base = Rollout(pipe, PROMPT, SamplerSettings(steps=4, guidance=7.5))(prior_noise(m.shape, s, 5), s)
    assert torch.equal(m.generate(5, 11), base)


def test_save_load_generate_equal(pipe, tmp_path):
    m = Dpok(pipe, PROMPT, brightness, "ddpo", steps=3, batch=4, train_batch=2, lr=0.05, clip_range=0.2)
    before = m.generate(3, 5)
    for _ in range(2):
        m.train_step()
    after = m.generate(3, 5)
    assert not torch.equal(before, after)  # the LoRA moved
    out = m.save(tmp_path / "lora")
    assert {"adapter_model.safetensors", "adapter_config.json", "findcli-lora.json"} <= {p.name for p in out.iterdir()}

    loaded = Dpok.load(out, pipe)
    assert loaded.variant == "ddpo" and loaded.prompt == PROMPT and loaded.iteration == 2
    assert loaded.settings["steps"] == 3 and loaded.settings["lr"] == m.settings["lr"]
    assert torch.equal(loaded.generate(3, 5), after)
    # loaded.pipe is a stock StableDiffusionPipeline sampling with the LoRA
    out_pt = loaded.pipe(PROMPT, num_inference_steps=3, guidance_scale=7.5, output_type="pt",
                         generator=torch.Generator().manual_seed(0)).images
    assert out_pt.shape == (1, 3, 16, 16) and torch.isfinite(out_pt).all()
    with pytest.raises(FindError, match="without a reward"):
        loaded.train_step()


# ------------------------------------------------------------------------------------------------ training


@pytest.mark.parametrize("variant", ["ddpo", "dpok"])
def test_training_raises_a_synthetic_reward(pipe, variant):
    """25 rounds on brightness raise the delivered images' brightness (eta 0, eval noise, 64 images) beyond the
    noise: the mean rises by over 1.5 standard errors of the untrained model's mean, and the rise is consistent
    across the paired images (paired t > 5). Settings chosen so a random tiny UNet learns in seconds (8x8 images,
    10 steps, no CFG, lr 1e-2, clip ranges 0.2, DPOK's value lr = lr); the published clip ranges (1e-4) and
    lrs move it far slower. Seeds 0-5 of this setup rose by 2.1-5.9 (DDPO) and 2.4-6.2 (DPOK) standard errors."""
    common = dict(seed=0, steps=10, guidance=1.0, height=8, width=8, max_batch=64, batch=16, lr=1e-2)
    extra = dict(train_batch=4, clip_range=0.2) if variant == "ddpo" else dict(p_batch=32, ratio_clip=0.2, v_lr=1e-2)
    m = Dpok(pipe, PROMPT, brightness, variant, **common, **extra)
    r0 = brightness(m.generate(64, 0), None)
    for _ in range(25):
        stats = m.train_step()
    r1 = brightness(m.generate(64, 0), None)
    d = r1 - r0
    se = float(r0.std()) / math.sqrt(64)
    assert float(d.mean()) > 1.5 * se, (float(d.mean()) / se, variant)
    assert float(d.mean()) / (float(d.std()) / math.sqrt(64)) > 5
    if variant == "dpok":
        assert all(mm["kl"] > 0 for mm in m.metrics) and m.settings["kl"] is not None
        assert stats["value_loss"] >= 0 and stats["buffer"] == 2 * 16 * 10
    else:
        assert all("kl" not in mm for mm in m.metrics) and m.settings["kl"] is None
        assert stats["optimizer_steps"] == 4  # 16 samples per epoch, 4 per step
    assert all(math.isfinite(mm["loss"]) for mm in m.metrics)
    # The KL reference is the pretrained UNet: LoRA disabled gives the caller's UNet's output exactly.
    x = torch.randn(2, *m.shape)
    t = m.scheduler.timesteps[:2]
    with torch.no_grad():
        ref = pipe.unet(x, t, encoder_hidden_states=m.prompt_embeds.expand(2, -1, -1)).sample
        with m.frozen():
            assert torch.equal(m.guided_eps(x, t), ref)
        assert not torch.equal(m.guided_eps(x, t), ref)


# ------------------------------------------------------------------------------------------------ cost


@pytest.mark.parametrize("variant", ["ddpo", "dpok"])
def test_cost_counts(pipe, variant):
    steps, k = 3, 4
    extra = dict(train_batch=2) if variant == "ddpo" else dict(p_batch=8)
    m = Dpok(pipe, PROMPT, brightness, variant, steps=steps, batch=k, max_batch=2, **extra)
    # delivery: steps × 2 CFG rows × images, no reward, apart from training
    m.generate(5, 0)
    assert m.generate_cost.as_dict() | {"wall_s": 0} == {"unet_rows": steps * 2 * 5, "reward_calls": 0,
                                                          "wall_s": 0, "images": 5}
    assert m.train_cost.unet_rows == 0
    # one sampling call: steps × 2 rows × batch
    from findcli.baselines.base import Cost, counting

    c = Cost()
    with counting(m.pipe, c):
        m.sample(k, 123)
    assert c.unet_rows == steps * 2 * k
    # one train step: sampling + the update (DDPO: every (sample, timestep) once, 2 rows; DPOK: p_step × p_batch
    # transitions, 2 LoRA rows + 2 frozen rows each)
    m.train_step()
    update = steps * 2 * k if variant == "ddpo" else 5 * 8 * 4
    assert m.train_cost.unet_rows == steps * 2 * k + update
    assert m.train_cost.reward_calls == k and m.generate_cost.unet_rows == steps * 2 * 5
    # no CFG: one row per image and step
    m1 = Dpok(pipe, PROMPT, None, variant, steps=steps, guidance=1.0)
    m1.generate(3, 0)
    assert m1.generate_cost.unet_rows == steps * 3


def test_settings_record_published_scaled_and_why(pipe):
    for variant, lr, clip in (("ddpo", 3e-4, "clip_range"), ("dpok", 1e-5, "ratio_clip")):
        m = Dpok(pipe, PROMPT, None, variant)
        st = m.settings
        assert st["published"]["lr"] == lr and st["lr"] == pytest.approx(lr * st["lr_scale"]) and st["lr_scale"] > 1
        assert "sqrt(fan-in)" in st["why"]["lr"] and st[clip] == 1e-4 == st["published"][clip]
        assert st["lora_rank"] == 4 and st["eta"] == 1.0 and st["steps"] == 20 and st["batch"] == 8
        assert set(published_settings(variant)) <= set(st["published"]) == set(st["why"])
    with pytest.raises(FindError, match="unknown ddpo setting"):
        Dpok(pipe, PROMPT, None, "ddpo", kl_weight=0.1)
    with pytest.raises(FindError, match="unknown variant"):
        Dpok(pipe, PROMPT, None, "ppo")
