"""The UNet video families, AnimateDiff (AnimateDiffPipeline) and ModelScope (TextToVideoSDPipeline),
on tiny random pipelines (findcli.testing_unet_video; CPU, offline, one thread).

Oracles:
  * the stock pipeline call `pipe(prompt=[P] * K, latents=z, ..., num_frames=F, output_type="pt").frames`
    for the same z: bit for bit when the K videos go through one call; chunked runs (max_batch < K)
    change every matmul's batch size, so they are held to fp32 rounding (atol 1e-5, on [0, 1] pixels;
    observed ~7e-7), as tests/test_rollout_equivalence.py does for SD;
  * the stock call with the per-video generators find uses (eta > 0): same step noise, same videos;
  * `find train` / `find sample` through the CLI on pipelines saved with save_pretrained;
  * a synthetic reward with a known optimum (-MSE to the video decoded from a fixed z*) that must rise.
"""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from findcli.errors import FindError
from findcli.generators import SamplerSettings, configure_scheduler, family_class, generator_for
from findcli.main import app
from findcli.policy import GaussianPolicy, load_policy, save_policy
from findcli.seeds import noise_seed
from findcli.testing_unet_video import build_tiny_animatediff, build_tiny_modelscope
from _synthetic import assert_reward_rose, cosine_to, write_mse_reward

PROMPT = "a red cube on a blue sphere"
FRAMES, SIZE = 3, 16
LATENT = (4, FRAMES, 8, 8)  # (C, F, h, w): vae_scale_factor 2
FAST = ["--steps", "2", "--guidance", "3", "--frames", str(FRAMES), "--device", "cpu", "--kernels", "torch"]
BUILDERS = {"animatediff": build_tiny_animatediff, "modelscope": build_tiny_modelscope}
CLASSES = {"animatediff": "AnimateDiff", "modelscope": "ModelScope"}


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one intra-op thread for the module


@pytest.fixture(scope="module")
def pipes():
    return {name: build() for name, build in BUILDERS.items()}


@pytest.fixture(scope="module")
def saved(pipes, tmp_path_factory):
    """Each tiny pipeline saved with save_pretrained: what `--model DIR` loads through DiffusionPipeline."""
    out = {}
    for name, pipe in pipes.items():
        out[name] = tmp_path_factory.mktemp(f"tiny-{name}")
        pipe.save_pretrained(out[name])
    return out


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def stock(pipe, z, steps, guidance, **kw):
    with torch.no_grad():
        return pipe(prompt=[PROMPT] * z.shape[0], latents=z, num_inference_steps=steps, guidance_scale=guidance,
                    height=SIZE, width=SIZE, num_frames=z.shape[2], output_type="pt", **kw).frames


def noise(k, seed=0, shape=LATENT):
    return torch.randn(k, *shape, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------- 1. stock call


@pytest.mark.parametrize("family", list(BUILDERS))
@pytest.mark.parametrize("guidance", [1.0, 4.0])  # without CFG, and with the negative embeddings
def test_rollout_equals_stock_pipeline_call(pipes, family, guidance):
    pipe = pipes[family]
    gen = generator_for(pipe, PROMPT, SamplerSettings(steps=2, guidance=guidance, frames=FRAMES), max_batch=16)
    assert type(gen).__name__ == CLASSES[family] and gen.family == family
    assert gen.video and gen.latent_layout == "CFHW" and gen.latent_shape == LATENT
    assert set(gen.embeds) == {"prompt_embeds", "negative_prompt_embeds"}
    assert all(v is None or v.shape[0] == 1 for v in gen.embeds.values())
    assert (gen.embeds["negative_prompt_embeds"] is None) == (guidance == 1.0)
    z = noise(3)
    ours = gen(z)
    ref = stock(pipe, z, 2, guidance)
    assert ours.dtype == torch.float32 and ours.shape == ref.shape == (3, FRAMES, 3, SIZE, SIZE)
    assert 0.0 <= ours.min() and ours.max() <= 1.0
    assert torch.equal(ours, ref)  # one call, same kernels: bit for bit
    assert set(gen.last_timing) == {"denoise_s", "decode_s"}
    chunked = generator_for(pipe, PROMPT, SamplerSettings(steps=2, guidance=guidance, frames=FRAMES), max_batch=2)(z)
    torch.testing.assert_close(chunked, ref, rtol=0, atol=1e-5)  # chunks of 2, 1: fp32 rounding only


@pytest.mark.parametrize("family", list(BUILDERS))
def test_latent_output_is_the_latents_and_decode_is_the_pipelines(pipes, family):
    """output_type="latent" returns `.frames` = the final latents (B, C, F, h, w); decode() of them is
    what output_type="pt" returns."""
    pipe = pipes[family]
    gen = generator_for(pipe, PROMPT, SamplerSettings(steps=2, guidance=3.0, frames=FRAMES))
    z = noise(2, seed=1)
    with torch.no_grad():
        lat = pipe(prompt=[PROMPT] * 2, latents=z, num_inference_steps=2, guidance_scale=3.0, height=SIZE,
                   width=SIZE, num_frames=FRAMES, output_type="latent").frames
        assert lat.shape == (2, *LATENT)
        assert torch.equal(gen.denoise(gen.pack(z), 2, None), lat)
        assert torch.equal(gen.decode(lat), stock(pipe, z, 2, 3.0))


@pytest.mark.parametrize("family", list(BUILDERS))
def test_eta_uses_one_generator_per_video_like_the_stock_call(pipes, family):
    """DDIM with eta > 0 draws step noise; find seeds one generator per video (seed, index). The stock
    call with those generators gives the same videos (ModelScope: one call per video, since its
    scheduler step runs on (B·F, C, h, w) rows and cannot take a list of B generators)."""
    pipe = pipes[family]
    gen = generator_for(pipe, PROMPT, SamplerSettings(steps=2, guidance=3.0, eta=0.7, frames=FRAMES))
    z, seed = noise(2, seed=2), 11
    ours = gen(z, seed)

    def gens(idx):
        return [torch.Generator().manual_seed(noise_seed("step", seed, j)) for j in idx]

    if family == "animatediff":
        ref = stock(pipe, z, 2, 3.0, eta=0.7, generator=gens(range(2)))
    else:
        ref = torch.cat([stock(pipe, z[j:j + 1], 2, 3.0, eta=0.7, generator=gens([j])) for j in range(2)])
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)
    assert not torch.equal(ours, gen.__class__(pipe, PROMPT, SamplerSettings(steps=2, guidance=3.0, eta=0.7,
                                                                             frames=FRAMES))(z, seed + 1))


@pytest.mark.parametrize("family", list(BUILDERS))
def test_shapes_sizes_and_settings_errors_are_one_line(pipes, family):
    pipe = pipes[family]
    gen = generator_for(pipe, PROMPT, SamplerSettings(steps=2, guidance=3.0, frames=FRAMES))
    with pytest.raises(FindError) as e:
        gen(torch.zeros(2, 4, FRAMES + 1, 8, 8))
    assert "\n" not in str(e.value) and str(list(LATENT)) in str(e.value)
    with pytest.raises(FindError) as e:
        gen(torch.zeros(2, FRAMES, 4, 8, 8))  # frames-first is not this family's layout
    assert "\n" not in str(e.value)
    # defaults: the UNet's sample size × vae_scale_factor, and the call's own num_frames (16)
    cls = family_class(pipe)
    assert cls.shape_for(pipe, SamplerSettings()) == (4, 16, 8, 8)
    assert cls.shape_for(pipe, SamplerSettings(height=32, width=24, frames=5)) == (4, 5, 16, 12)
    for bad in (SamplerSettings(height=20), SamplerSettings(width=12)):
        with pytest.raises(FindError) as e:
            cls.shape_for(pipe, bad)
        assert "\n" not in str(e.value)
    if family == "animatediff":  # the motion modules' positional table bounds the frames
        with pytest.raises(FindError, match="at most 32 frames"):
            cls.shape_for(pipe, SamplerSettings(frames=33))


@pytest.mark.parametrize("family", list(BUILDERS))
def test_pooled_text_and_scheduler_choice(pipes, family):
    from diffusers import PNDMScheduler

    pipe = pipes[family]
    gen = generator_for(pipe, PROMPT, SamplerSettings(steps=2, frames=FRAMES))
    feat = gen.text_features()
    assert feat.shape == (pipe.text_encoder.config.hidden_size,) and feat.dtype == torch.float32
    ids = pipe.tokenizer(PROMPT, padding="max_length", max_length=pipe.tokenizer.model_max_length,
                         truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.equal(feat, pipe.text_encoder(ids).pooler_output[0])
    keep = pipe.scheduler
    try:  # --scheduler auto: DDIM for these ε models; native keeps the model's own
        pipe.scheduler = PNDMScheduler.from_config(keep.config)
        assert configure_scheduler(pipe, "native") == "PNDMScheduler"
        with pytest.raises(FindError, match="--eta"):
            generator_for(pipe, PROMPT, SamplerSettings(steps=2, eta=0.5, frames=FRAMES))
        assert configure_scheduler(pipe, "auto") == "DDIMScheduler"
    finally:
        pipe.scheduler = keep


# ---------------------------------------------------------------------------------------------- 2. CLI


def _user_reward(d, name="mean"):
    path = d / f"{name}.py"
    path.write_text(
        "import torch\n"
        "def reward(videos, prompts):\n"
        "    assert videos.ndim == 5 and videos.shape[2] == 3, videos.shape  # (N, F, 3, H, W)\n"
        "    return -videos.flatten(1).mean(1)\n")
    return f"{path}:reward"


@pytest.mark.parametrize("family", list(BUILDERS))
def test_find_train_then_sample_through_the_cli(saved, pipes, family, tmp_path):
    out = tmp_path / "run" / "p.pt"
    res = invoke("train", PROMPT, "--model", saved[family], "--reward", _user_reward(tmp_path), "--iterations", 3,
                 "--batch", 2, "--out", out, *FAST)
    assert res.exit_code == 0, res.output
    pf = load_policy(out)
    assert pf.meta["family"] == family and pf.meta["latent_layout"] == "CFHW"
    assert (pf.meta["frames"], pf.meta["height"], pf.meta["width"]) == (FRAMES, SIZE, SIZE)
    assert pf.meta["scheduler"] == "DDIMScheduler" and pf.policy.latent_shape == LATENT
    rows = [json.loads(x) for x in (out.parent / "p.metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 3

    s = tmp_path / "s"
    res = invoke("sample", "--policy", out, "--n", 2, "--seed", 4, "--out-dir", s, "--no-reward",
                 "--device", "cpu", "--kernels", "torch")
    assert res.exit_code == 0, res.output
    gif = s / "policy_0000.gif"
    assert gif.is_file(), f"find sample wrote no GIF for a video policy: {sorted(p.name for p in s.iterdir())}"
    assert (s / "policy_0001.gif").is_file() and (s / "grid.png").is_file() and (s / "rewards.json").is_file()

    # The GIF's frames are the stock pipeline's frames for the policy's z (16×16 frames hold at most 256
    # colours, so the GIF palette is exact).
    from PIL import Image, ImageSequence

    z, _ = pf.policy.sample(noise_seed("sample", 4), 2)
    ref = stock(pipes[family], z, 2, 3.0)[0]  # (F, 3, H, W)
    ref8 = (ref.clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255).round().astype("uint8")
    with Image.open(gif) as im:
        frames = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)]
    assert len(frames) == FRAMES and frames[0].shape == (SIZE, SIZE, 3)
    assert np.array_equal(np.stack(frames), ref8)


# ---------------------------------------------------------------------------------------------- 3. other family


@pytest.mark.parametrize("family", list(BUILDERS))
def test_a_policy_of_another_family_is_refused_in_one_line(saved, family, tmp_path):
    other = "modelscope" if family == "animatediff" else "sd"
    meta = {"model": str(saved[family]), "prompt": PROMPT, "steps": 2, "guidance": 3.0, "eta": 0.0,
            "reward": "clip", "reward_model": None, "family": other, "latent_layout": "CFHW" if other != "sd" else "CHW",
            "height": SIZE, "width": SIZE, "frames": FRAMES}
    save_policy(tmp_path / "p.pt", GaussianPolicy(LATENT), meta)  # a latent of the matching size
    res = invoke("sample", "--policy", tmp_path / "p.pt", "--n", 1, "--out-dir", tmp_path / "s", "--no-reward",
                 "--device", "cpu", "--kernels", "torch")
    assert res.exit_code != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), res.stderr
    assert f"a policy for a {other} model" in lines[0] and family in lines[0]
    assert not (tmp_path / "s").exists()


# ---------------------------------------------------------------------------------------------- 4. it learns


def test_animatediff_train_raises_synthetic_reward_toward_known_optimum(saved, pipes, tmp_path):
    """-100 · MSE to the video decoded from a fixed z*: the reward must rise far beyond its noise and μ
    turn toward z* (768 dimensions: a random direction has |cos| ≈ 0.04)."""
    z_star = noise(1, seed=123)
    reward = write_mse_reward(tmp_path, stock(pipes["animatediff"], z_star, 2, 3.0))
    out = tmp_path / "run" / "out.pt"
    res = invoke("train", PROMPT, "--model", saved["animatediff"], "--reward", reward, "--batch", 16,
                 "--iterations", 24, "--out", out, *FAST)
    assert res.exit_code == 0, res.output
    assert_reward_rose(out, iterations=24, batch=16)
    cos = cosine_to(load_policy(out).policy.mu, z_star)
    assert cos > 0.15, cos
