"""The SDXL and PixArt adapters (findcli.generators.sdxl / .pixart) on tiny random pipelines (CPU, offline).

Oracles: the stock diffusers call `pipe(prompt=..., latents=z, output_type="pt")` with the same z
(bit for bit: with eta 0 Euler, DDIM and DPM-Solver are deterministic, and the adapter feeds the
pipeline the same embeddings, expanded rather than re-encoded, and decodes with the same ops);
`find train` / `find sample` through the CLI on a pipeline saved with save_pretrained; a policy of
another family; and, for SDXL, a synthetic reward whose optimum is known (the image decoded from z*).
"""

import json

import pytest
import torch
from typer.testing import CliRunner

from findcli.errors import FindError
from findcli.generators import SamplerSettings, configure_scheduler, family_class, generator_for
from findcli.main import app
from findcli.policy import GaussianPolicy, load_policy, save_policy
from findcli.testing_sdxl_pixart import build_tiny_pixart, build_tiny_sdxl
from _synthetic import assert_reward_rose, cosine_to, write_mse_reward

PROMPT = "a red cube on a blue sphere"
SHAPE = (4, 8, 8)  # 16×16 images, vae_scale_factor 2
FAST = ["--steps", "2", "--guidance", "3", "--device", "cpu", "--kernels", "torch"]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one intra-op thread for the module


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


BUILDERS = {"sdxl": build_tiny_sdxl, "pixart-sigma": lambda: build_tiny_pixart("sigma"),
            "pixart-alpha": lambda: build_tiny_pixart("alpha")}
FAMILY = {"sdxl": "sdxl", "pixart-sigma": "pixart", "pixart-alpha": "pixart"}
EXTRA = {"sdxl": {}, "pixart-sigma": {"use_resolution_binning": False, "clean_caption": False},
         "pixart-alpha": {"use_resolution_binning": False, "clean_caption": False}}


@pytest.fixture(scope="module")
def pipes():
    return {name: build() for name, build in BUILDERS.items()}


@pytest.fixture(scope="module")
def saved(pipes, tmp_path_factory):
    """name -> the tiny pipeline saved with save_pretrained (what --model DIR loads)."""
    out = {}
    for name in ("sdxl", "pixart-sigma"):
        out[name] = tmp_path_factory.mktemp(name)
        pipes[name].save_pretrained(out[name])
    return out


# ------------------------------------------------------------------ 1. gen(z) == the stock call


@pytest.mark.parametrize("scheduler", ["native", "ddim"])
@pytest.mark.parametrize("guidance", [3.0, 1.0])
@pytest.mark.parametrize("name", list(BUILDERS))
def test_gen_equals_stock_pipeline_call_bit_for_bit(pipes, name, scheduler, guidance):
    pipe = pipes[name]
    native = pipe.scheduler
    try:
        used = configure_scheduler(pipe, scheduler)
        assert used == ("DDIMScheduler" if scheduler == "ddim" else type(native).__name__)
        settings = SamplerSettings(steps=2, guidance=guidance, height=16, width=16)
        gen = generator_for(pipe, PROMPT, settings, max_batch=16)
        assert gen.family == FAMILY[name] and gen.latent_layout == "CHW"
        assert gen.latent_shape == SHAPE == type(gen).shape_for(pipe, SamplerSettings())  # default size too
        z = torch.randn(3, *SHAPE, generator=torch.Generator().manual_seed(1))
        ours = gen(z, seed=0)
        with torch.no_grad():
            stock = pipe(prompt=PROMPT, num_images_per_prompt=3, latents=gen.pack(z), num_inference_steps=2,
                         guidance_scale=guidance, height=16, width=16, output_type="pt", **EXTRA[name]).images
        assert ours.shape == stock.shape == (3, 3, 16, 16) and ours.dtype == torch.float32
        assert torch.equal(ours, stock), (ours - stock).abs().max()
        assert float(ours.min()) >= 0 and float(ours.max()) <= 1
        # chunked (max_batch 2: chunks of 2 and 1) repeats within rounding of the batch shape
        torch.testing.assert_close(generator_for(pipe, PROMPT, settings, max_batch=2)(z), stock, atol=1e-5, rtol=0)
    finally:
        pipe.scheduler = native


@pytest.mark.parametrize("name", list(BUILDERS))
def test_latents_of_the_wrong_shape_are_one_line(pipes, name):
    gen = generator_for(pipes[name], PROMPT, SamplerSettings(steps=2, guidance=3.0))
    for bad in (torch.zeros(2, 4, 4, 4), torch.zeros(2, 4, 8, 8, 1), torch.zeros(2, 8, 8, 8)):
        with pytest.raises(FindError) as e:
            gen(bad)
        assert "\n" not in str(e.value) and "[4, 8, 8]" in str(e.value)


@pytest.mark.parametrize("name", ["sdxl", "pixart-sigma"])
def test_sizes_set_the_natural_latent_shape_and_odd_sizes_are_one_line(pipes, name):
    pipe = pipes[name]
    cls = family_class(pipe)
    assert cls.shape_for(pipe, SamplerSettings(height=32, width=16)) == (4, 16, 8)
    with pytest.raises(FindError) as e:
        cls.shape_for(pipe, SamplerSettings(height=20, width=16))
    assert "\n" not in str(e.value) and "multiples of" in str(e.value)


@pytest.mark.parametrize("name", list(BUILDERS))
def test_pooled_text_is_one_vector_that_depends_on_the_prompt(pipes, name):
    a = generator_for(pipes[name], PROMPT, SamplerSettings(steps=2)).text_features()
    b = generator_for(pipes[name], "a green cone", SamplerSettings(steps=2)).text_features()
    assert a.ndim == 1 and a.dtype == torch.float32 and torch.isfinite(a).all()
    assert not torch.allclose(a, b)
    if name == "sdxl":  # pooled_prompt_embeds: text_encoder_2's projection
        assert a.shape == (pipes[name].text_encoder_2.config.projection_dim,)
    else:  # mean of the T5 states over the mask
        assert a.shape == (pipes[name].text_encoder.config.d_model,)


@pytest.mark.parametrize("name", list(BUILDERS))
def test_token_text_is_the_prompt_embeds_the_denoiser_cross_attends(pipes, name):
    gen = generator_for(pipes[name], PROMPT, SamplerSettings(steps=2))
    t = gen.token_text()
    assert t.dtype == torch.float32 and t.ndim == 2
    assert torch.equal(t, gen.embeds["prompt_embeds"][0].float().cpu())  # (L, E): what the pipeline is given


def test_sdxl_without_guidance_passes_no_negative_embeddings(pipes):
    gen = generator_for(pipes["sdxl"], PROMPT, SamplerSettings(steps=2, guidance=1.0))
    assert set(gen.embeds) == {"prompt_embeds", "pooled_prompt_embeds"}
    gen = generator_for(pipes["sdxl"], PROMPT, SamplerSettings(steps=2, guidance=3.0))
    assert set(gen.embeds) == {"prompt_embeds", "pooled_prompt_embeds", "negative_prompt_embeds",
                               "negative_pooled_prompt_embeds"}
    assert all(v.shape[0] == 1 for v in gen.embeds.values())
    assert torch.count_nonzero(gen.embeds["negative_prompt_embeds"]) == 0  # force_zeros_for_empty_prompt


def test_pixart_passes_the_attention_masks(pipes):
    gen = generator_for(pipes["pixart-sigma"], PROMPT, SamplerSettings(steps=2, guidance=3.0))
    assert set(gen.embeds) == {"prompt_embeds", "prompt_attention_mask", "negative_prompt_embeds",
                               "negative_prompt_attention_mask"}
    assert all(v.shape[0] == 1 for v in gen.embeds.values())
    m = gen.embeds["prompt_attention_mask"]
    assert 0 < int(m.sum()) < m.shape[1]  # the prompt's tokens, not the padding
    assert gen.call_kwargs()["use_resolution_binning"] is False


# ------------------------------------------------------------------ 2. find train / find sample


def _reward_file(d):
    path = d / "bright.py"
    path.write_text("def reward(images, prompts):\n    return images.flatten(1).mean(1)\n")
    return f"{path}:reward"


def _train_and_sample(model_dir, family, tmp_path):
    out = tmp_path / "run" / "p.pt"
    res = invoke("train", PROMPT, "--model", model_dir, "--reward", _reward_file(tmp_path), "--iterations", 3,
                 "--batch", 2, "--out", out, *FAST)
    assert res.exit_code == 0, (res.output, res.exception)
    meta = load_policy(out).meta
    assert meta["family"] == family and meta["latent_layout"] == "CHW"
    assert (meta["height"], meta["width"]) == (16, 16) and meta["latent_shape"] == list(SHAPE)
    assert meta["scheduler"] == "DDIMScheduler"  # --scheduler auto
    res = invoke("sample", "--policy", out, "--n", 2, "--out-dir", tmp_path / "s", "--no-reward",
                 "--device", "cpu", "--kernels", "torch")
    assert res.exit_code == 0, (res.output, res.exception)
    from PIL import Image

    for i in range(2):
        assert Image.open(tmp_path / "s" / f"policy_{i:04d}.png").size == (16, 16)
    assert json.loads((tmp_path / "s" / "rewards.json").read_text())["n"] == 2


def test_sdxl_find_train_then_find_sample(saved, tmp_path):
    _train_and_sample(saved["sdxl"], "sdxl", tmp_path)


def test_pixart_find_train_then_find_sample(saved, tmp_path):
    _train_and_sample(saved["pixart-sigma"], "pixart", tmp_path)


# ------------------------------------------------------------------ 3. a policy of another family


@pytest.mark.parametrize("name", ["sdxl", "pixart-sigma"])
def test_policy_of_another_family_is_refused_in_one_line(saved, name, tmp_path):
    meta = {"model": str(saved[name]), "prompt": PROMPT, "steps": 2, "guidance": 3.0, "eta": 0.0,
            "family": "sd", "latent_layout": "CHW", "height": 16, "width": 16, "reward": "clip"}
    save_policy(tmp_path / "sd.pt", GaussianPolicy(SHAPE), meta)
    res = invoke("sample", "--policy", tmp_path / "sd.pt", "--n", 1, "--out-dir", tmp_path / "s", "--no-reward",
                 "--device", "cpu", "--kernels", "torch")
    assert res.exit_code != 0
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "a policy for a sd model" in err[0], res.stderr
    assert f"{FAMILY[name]} pipeline" in err[0]
    assert not (tmp_path / "s" / "policy_0000.png").exists()


# ------------------------------------------------------------------ 4. SDXL: a synthetic reward rises


def test_sdxl_train_raises_synthetic_reward_toward_known_optimum(saved, tmp_path):
    """-100·MSE to the image decoded from a fixed z* (same sampler as training: DDIM, 2 steps, CFG 3)."""
    from findcli.pipeline import load_pipeline

    pipe = load_pipeline(str(saved["sdxl"]), torch.device("cpu"), torch.float32)
    z_star = torch.randn(1, *SHAPE, generator=torch.Generator().manual_seed(123))
    target = generator_for(pipe, PROMPT, SamplerSettings(steps=2, guidance=3.0))(z_star)
    reward = write_mse_reward(tmp_path, target)
    out = tmp_path / "run" / "out.pt"
    res = invoke("train", PROMPT, "--model", saved["sdxl"], "--reward", reward,
                 "--batch", 16, "--iterations", 24, "--out", out, *FAST)
    assert res.exit_code == 0, (res.output, res.exception)
    assert_reward_rose(out, iterations=24, batch=16)
    cos = cosine_to(load_policy(out).policy.mu, z_star)
    assert cos > 0.2, cos  # a random direction in 256 dimensions has |cos| ≈ 1/16


# ------------------------------------------------------------------ SDXL specifics: fp16 VAE upcast, Turbo


def test_sdxl_fp16_decode_upcasts_the_vae_like_the_pipeline_and_restores_it():
    pipe = build_tiny_sdxl().to(dtype=torch.float16)
    assert pipe.vae.config.force_upcast
    gen = generator_for(pipe, PROMPT, SamplerSettings(steps=2, guidance=3.0))
    z = torch.randn(2, *SHAPE, generator=torch.Generator().manual_seed(2))
    ours = gen(z)
    assert pipe.vae.dtype == torch.float16  # cast back, as the pipeline does
    with torch.no_grad():
        stock = pipe(prompt=PROMPT, num_images_per_prompt=2, latents=z.half(), num_inference_steps=2,
                     guidance_scale=3.0, output_type="pt").images
    assert torch.equal(ours, stock.float())


def test_sdxl_turbo_keeps_its_scheduler_under_auto_and_refuses_eta(pipes, tmp_path):
    from findcli.pipeline import load_pipeline

    pipes["sdxl"].save_pretrained(tmp_path / "tiny-sdxl-turbo")
    pipe = load_pipeline(str(tmp_path / "tiny-sdxl-turbo"), torch.device("cpu"), torch.float32)
    assert type(pipe.scheduler).__name__ == "EulerDiscreteScheduler"  # few-step: not switched to DDIM
    with pytest.raises(FindError) as e:
        generator_for(pipe, PROMPT, SamplerSettings(steps=1, guidance=1.0, eta=0.5))
    assert "--eta" in str(e.value) and "\n" not in str(e.value)
    z = torch.randn(2, *SHAPE, generator=torch.Generator().manual_seed(3))
    ours = generator_for(pipe, PROMPT, SamplerSettings(steps=1, guidance=0.0))(z)  # Turbo: 1 step, no CFG
    with torch.no_grad():
        stock = pipe(prompt=PROMPT, num_images_per_prompt=2, latents=z, num_inference_steps=1, guidance_scale=0.0,
                     output_type="pt").images
    assert torch.equal(ours, stock)
