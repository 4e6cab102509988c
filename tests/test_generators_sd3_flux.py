"""The SD3 and FLUX.1 adapters (findcli.generators.sd3 / .flux) on tiny random pipelines (CPU, offline).

Oracles: the stock diffusers call `pipe(prompt=..., latents=pack(z), ..., output_type="pt")` with the
same z (bit for bit: both paths run the same fp32 kernels on the same batch in the same order), the
policy metadata `find train` writes, `find sample`'s files, and check_family's one-line refusal; for
FLUX also a synthetic reward with a known optimum (the image decoded from a fixed latent z*).
"""

import json

import pytest
import torch
from typer.testing import CliRunner

from findcli.errors import FindError
from findcli.generators import SamplerSettings, configure_scheduler, generator_for
from findcli.main import app
from findcli.policy import GaussianPolicy, load_policy, save_policy
from findcli.testing_sd3_flux import build_tiny_flux, build_tiny_sd3
from _synthetic import assert_reward_rose, cosine_to, write_mse_reward

PROMPT = "a red cube on a blue sphere"
CPU = ["--device", "cpu", "--kernels", "torch"]
SIZE = ["--height", "16", "--width", "16"]  # FLUX's default is 128 * vae_scale_factor whatever the model


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one intra-op thread for the module


@pytest.fixture(scope="module")
def sd3():
    return build_tiny_sd3()


@pytest.fixture(scope="module")
def flux():
    return build_tiny_flux(guidance_embeds=True)  # FLUX.1-dev-like


@pytest.fixture(scope="module")
def flux_schnell():
    return build_tiny_flux(guidance_embeds=False)


@pytest.fixture(scope="module")
def saved(sd3, flux, tmp_path_factory):
    """The tiny pipelines saved with save_pretrained: what `--model DIR` loads."""
    out = {}
    for name, pipe in (("sd3", sd3), ("flux", flux)):
        out[name] = tmp_path_factory.mktemp(f"tiny-{name}")
        pipe.save_pretrained(out[name])
    return out


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_ok(res):
    assert res.exit_code == 0, res.output


def assert_one_line_error(res, *needles):
    assert res.exit_code != 0, res.output
    lines = res.stderr.strip().splitlines()
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert lines and lines[-1].startswith("error: ") and len(errors) == 1, res.stderr
    for n in needles:
        assert n in errors[0], (n, errors[0])


def stock(pipe, gen, z, steps, guidance):
    """The oracle: diffusers' own call on the latents the adapter hands it."""
    with torch.no_grad():
        return pipe(prompt=PROMPT, latents=gen.pack(z), num_inference_steps=steps, guidance_scale=guidance,
                    height=gen.height, width=gen.width, num_images_per_prompt=z.shape[0], output_type="pt").images


# ---------------------------------------------------------------------------------------------- 1. rollout


@pytest.mark.parametrize("guidance", [1.0, 5.0])  # CFG off (no negative embeddings) and on
def test_sd3_rollout_equals_stock_pipeline_call_bitwise(sd3, guidance):
    gen = generator_for(sd3, PROMPT, SamplerSettings(steps=2, guidance=guidance))
    assert type(gen).__name__ == "StableDiffusion3" and gen.family == "sd3" and gen.latent_layout == "CHW"
    # natural layout = the pipeline's: (transformer.in_channels, H / vae_scale_factor, W / vae_scale_factor)
    assert gen.latent_shape == (16, 8, 8) and (gen.height, gen.width) == (16, 16)
    assert all(v is None or v.shape[0] == 1 for v in gen.embeds.values())
    assert (gen.embeds["negative_prompt_embeds"] is None) == (guidance <= 1.0)
    z = torch.randn(3, *gen.latent_shape, generator=torch.Generator().manual_seed(0))
    assert torch.equal(gen.pack(z), z)  # SD3 takes (B, C, h, w) as given
    images = gen(z)
    assert images.shape == (3, 3, 16, 16) and images.dtype == torch.float32
    assert torch.equal(images, stock(sd3, gen, z, 2, guidance))
    assert gen.text_features().shape == (16,)  # both CLIP projections (8 + 8)
    assert set(gen.last_timing) == {"denoise_s", "decode_s"}


@pytest.mark.parametrize("variant", ["dev", "schnell"])  # guidance embedded / ignored
def test_flux_rollout_equals_stock_pipeline_call_bitwise(flux, flux_schnell, variant):
    pipe = flux if variant == "dev" else flux_schnell
    gen = generator_for(pipe, PROMPT, SamplerSettings(steps=2, guidance=3.5, height=16, width=16))
    assert type(gen).__name__ == "Flux" and gen.family == "flux" and gen.latent_layout == "CHW"
    # natural (C, h, w): C = in_channels / 4, h = 2 * (H // (vae_scale_factor * 2))
    assert gen.latent_shape == (4, 8, 8)
    assert set(gen.embeds) == {"prompt_embeds", "pooled_prompt_embeds"}  # no CFG rows, no negative
    assert all(v.shape[0] == 1 for v in gen.embeds.values())
    z = torch.randn(3, *gen.latent_shape, generator=torch.Generator().manual_seed(1))
    packed = gen.pack(z)
    assert packed.shape == (3, 16, 16)  # (B, (h/2)(w/2), 4C)
    from diffusers import FluxPipeline

    assert torch.equal(packed, FluxPipeline._pack_latents(z, 3, 4, 8, 8))  # the recipe in flux.py's docstring
    assert torch.equal(pipe._unpack_latents(packed, 16, 16, pipe.vae_scale_factor), z)
    images = gen(z)
    assert images.shape == (3, 3, 16, 16) and images.dtype == torch.float32
    assert torch.equal(images, stock(pipe, gen, z, 2, 3.5))
    assert gen.text_features().shape == (16,)  # the CLIP pooled output
    assert torch.equal(gen.token_text(), gen.embeds["prompt_embeds"][0].float())  # (L, D): the T5 tokens
    if variant == "dev":  # guidance_scale reaches the transformer: another value, another image
        other = generator_for(pipe, PROMPT, SamplerSettings(steps=2, guidance=1.0, height=16, width=16))
        assert not torch.equal(other(z), images)
    else:  # schnell ignores it
        other = generator_for(pipe, PROMPT, SamplerSettings(steps=2, guidance=1.0, height=16, width=16))
        assert torch.equal(other(z), images)


def test_flux_stock_pipeline_refuses_unpacked_latents(flux):
    """The reason pack() exists: FluxPipeline's latents= must be packed; 4-D latents fail there."""
    z = torch.randn(1, 4, 8, 8)
    with pytest.raises(Exception):
        with torch.no_grad():
            flux(prompt=PROMPT, latents=z, num_inference_steps=1, height=16, width=16, output_type="pt")


@pytest.mark.parametrize("family", ["sd3", "flux"])
def test_wrong_latent_shape_is_one_line_error(sd3, flux, family):
    pipe = sd3 if family == "sd3" else flux
    gen = generator_for(pipe, PROMPT, SamplerSettings(steps=2, guidance=1.0, height=16, width=16))
    with pytest.raises(FindError) as e:
        gen(torch.zeros(2, 4, 4, 4))
    msg = str(e.value)
    assert "\n" not in msg and family in msg and str(list(gen.latent_shape)) in msg


@pytest.mark.parametrize("family", ["sd3", "flux"])
def test_native_scheduler_only_and_sizes_checked(sd3, flux, family):
    pipe = sd3 if family == "sd3" else flux
    assert configure_scheduler(pipe, "auto") == "FlowMatchEulerDiscreteScheduler"  # auto keeps it
    assert configure_scheduler(pipe, "native") == "FlowMatchEulerDiscreteScheduler"
    with pytest.raises(FindError, match="does not apply"):
        configure_scheduler(pipe, "ddim")
    with pytest.raises(FindError, match="--eta applies to the DDIM sampler only"):
        generator_for(pipe, PROMPT, SamplerSettings(steps=2, eta=0.5, height=16, width=16))
    with pytest.raises(FindError, match="multiples of 4") as e:  # vae_scale_factor 2 x patch 2
        generator_for(pipe, PROMPT, SamplerSettings(steps=2, height=18, width=16))
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------------------------------------- 2. CLI


def _reward_file(d):
    path = d / "bright.py"
    path.write_text("def reward(images, prompts):\n    return images.flatten(1).mean(1)\n")
    return f"{path}:reward"


@pytest.mark.parametrize("family", ["sd3", "flux"])
def test_find_train_then_sample_writes_family_policy_and_images(saved, tmp_path, family):
    out = tmp_path / "run" / "p.pt"
    res = invoke("train", PROMPT, "--model", saved[family], "--reward", _reward_file(tmp_path), "--iterations", 3,
                 "--batch", 2, "--steps", 2, "--guidance", 3, *SIZE, *CPU, "--out", out)
    assert_ok(res)
    pf = load_policy(out)
    assert pf.meta["family"] == family and pf.meta["latent_layout"] == "CHW"
    assert pf.meta["scheduler"] == "FlowMatchEulerDiscreteScheduler"
    assert (pf.meta["height"], pf.meta["width"]) == (16, 16)
    assert tuple(pf.policy.latent_shape) == ((16, 8, 8) if family == "sd3" else (4, 8, 8))
    assert pf.meta["iteration"] == 3
    res = invoke("sample", "--policy", out, "--n", 2, "--no-reward", "--out-dir", tmp_path / "s", *CPU)
    assert_ok(res)
    from PIL import Image

    for i in range(2):
        assert Image.open(tmp_path / "s" / f"policy_{i:04d}.png").size == (16, 16)
    assert (tmp_path / "s" / "grid.png").exists()
    assert json.loads((tmp_path / "s" / "rewards.json").read_text())["n"] == 2


# ---------------------------------------------------------------------------------------------- 3. family


@pytest.mark.parametrize("family,other,shape", [("sd3", "sd", (16, 8, 8)), ("flux", "sd3", (4, 8, 8))])
def test_sample_refuses_a_policy_of_another_family(saved, tmp_path, family, other, shape):
    meta = {"model": str(saved[family]), "prompt": PROMPT, "steps": 2, "guidance": 3.0, "eta": 0.0,
            "reward": "clip", "reward_model": None, "family": other, "latent_layout": "CHW",
            "height": 16, "width": 16, "frames": None}
    save_policy(tmp_path / "p.pt", GaussianPolicy(shape), meta)  # a latent of the right size, the wrong family
    res = invoke("sample", "--policy", tmp_path / "p.pt", "--n", 1, "--no-reward", "--out-dir", tmp_path / "s", *CPU)
    assert_one_line_error(res, f"a policy for a {other} model", f"a {family} pipeline")
    assert not (tmp_path / "s").exists()


# ---------------------------------------------------------------------------------------------- 4. FLUX learns


def test_flux_train_raises_synthetic_reward_toward_known_optimum(saved, flux, tmp_path):
    """-100 · MSE to the image decoded from a fixed z*: the reward must rise far beyond noise and μ
    turn toward z* (as tests/test_train.py does for SD)."""
    gen = generator_for(flux, PROMPT, SamplerSettings(steps=2, guidance=3.0, height=16, width=16))
    z_star = torch.randn(1, *gen.latent_shape, generator=torch.Generator().manual_seed(123))
    reward = write_mse_reward(tmp_path, gen(z_star))
    out = tmp_path / "run" / "out.pt"
    res = invoke("train", PROMPT, "--model", saved["flux"], "--reward", reward,
                 "--batch", 16, "--iterations", 24, "--steps", 2, "--guidance", 3, *SIZE, *CPU, "--out", out)
    assert_ok(res)
    assert_reward_rose(out, iterations=24, batch=16)
    pf = load_policy(out)
    assert pf.meta["family"] == "flux"
    cos = cosine_to(pf.policy.mu, z_star)
    assert cos > 0.2, cos  # a random direction in 256 dimensions has |cos| ≈ 1/16
