"""The CogVideoX and Wan adapters (findcli.generators.cogvideox / .wan) on tiny random pipelines
(findcli.testing_transformer_video; CPU, offline, one thread).

Oracles: the stock `pipe(prompt=[...] * K, latents=pack(z), ..., output_type="pt").frames` call for the
same z (bit for bit in one chunk: both pipelines are deterministic with their native schedulers on the
CPU; chunks change the batch size of every matmul, so chunked rollouts are compared to within fp32
rounding, 2e-5 on videos in [0, 1], observed <= 6e-6); the pipeline's own prepare_latents for the
latent shape; the CogVideoX VAE itself for the frame counts it reproduces; a synthetic reward with a
known optimum for `find train`.
"""


import pytest
import torch
from typer.testing import CliRunner

from findcli.errors import FindError
from findcli.generators import SamplerSettings, configure_scheduler, generator_for
from findcli.main import app
from findcli.testing_transformer_video import build_tiny_cogvideox, build_tiny_wan
from _synthetic import assert_reward_rose, cosine_to, write_mse_reward

PROMPT = "a red cube on a blue sphere"
CHUNK_ATOL = 2e-5
# family -> (builder, frames, the stock call's extra kwargs, the CLI's size options)
FAMILIES = {
    "cogvideox": (build_tiny_cogvideox, 9, {"max_sequence_length": 16}, []),
    "wan": (build_tiny_wan, 5, {}, ["--height", "16", "--width", "16", "--frames", "5"]),
}
FAST = ["--steps", "2", "--guidance", "3", "--device", "cpu", "--kernels", "torch"]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one intra-op thread for the module


@pytest.fixture(scope="module")
def pipes():
    return {name: spec[0]() for name, spec in FAMILIES.items()}


@pytest.fixture(scope="module")
def saved(pipes, tmp_path_factory):
    """Each tiny pipeline saved with save_pretrained: what `--model DIR` loads."""
    out = {}
    for name, pipe in pipes.items():
        out[name] = tmp_path_factory.mktemp(name)
        pipe.save_pretrained(out[name])
    return out


def settings(name, **kw):
    return SamplerSettings(**{"steps": 2, "guidance": 4.0, "height": 16, "width": 16, "frames": FAMILIES[name][1],
                              **kw})


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_error_line(res) -> str:
    lines = [line for line in res.output.strip().splitlines() if line.strip()]
    assert "Traceback" not in res.output, res.output
    assert lines and lines[-1].startswith("error: ") and sum(x.startswith("error: ") for x in lines) == 1, res.output
    return lines[-1]


# ---------------------------------------------------------------------------------------------- shapes


def _prepared_latent_shape(name, pipe):
    """The oracle: the latents the pipeline makes itself for one 16x16 video (its own prepare_latents)."""
    frames, g = FAMILIES[name][1], torch.Generator().manual_seed(0)
    if name == "cogvideox":
        lat = pipe.prepare_latents(1, pipe.transformer.config.in_channels, frames, 16, 16, torch.float32,
                                   torch.device("cpu"), g)
    else:
        lat = pipe.prepare_latents(1, pipe.transformer.config.in_channels, 16, 16, frames, torch.float32,
                                   torch.device("cpu"), g)
    return tuple(lat.shape[1:])


@pytest.mark.parametrize("name", list(FAMILIES))
def test_latent_shape_is_the_one_the_pipeline_prepares(pipes, name):
    from findcli.pipeline import latent_shape

    pipe = pipes[name]
    gen = generator_for(pipe, PROMPT, settings(name))
    assert gen.latent_shape == _prepared_latent_shape(name, pipe)
    expected = {"cogvideox": ((3, 4, 2, 2), "FCHW"), "wan": ((4, 2, 2, 2), "CFHW")}[name]
    assert (gen.latent_shape, gen.latent_layout, gen.video, gen.family) == (*expected, True, name)
    assert gen.media_shape == (FAMILIES[name][1], 3, 16, 16)
    # The defaults: CogVideoX from the transformer's sample size, Wan from the stock call's signature.
    default = {"cogvideox": (3, 4, 2, 2), "wan": (4, 21, 60, 104)}[name]  # Wan: 480x832, 81 frames
    assert latent_shape(pipe) == default


@pytest.mark.parametrize("name", list(FAMILIES))
@pytest.mark.parametrize("guidance", [4.0, 1.0])  # CFG on (negative embeddings too) and off
def test_gen_equals_stock_pipeline_call(pipes, name, guidance):
    pipe, (_, frames, extra, _) = pipes[name], FAMILIES[name]
    gen = generator_for(pipe, PROMPT, settings(name, guidance=guidance), max_batch=16)
    assert all(v is None or v.shape[0] == 1 for v in gen.embeds.values())
    assert (gen.embeds["negative_prompt_embeds"] is None) == (guidance <= 1.0)
    z = torch.randn(3, *gen.latent_shape, generator=torch.Generator().manual_seed(0))
    ours = gen(z, seed=0)
    stock = pipe(prompt=[PROMPT] * 3, latents=gen.pack(z), num_inference_steps=2, guidance_scale=guidance,
                 height=16, width=16, num_frames=frames, output_type="pt", **extra).frames
    assert ours.shape == stock.shape == (3, frames, 3, 16, 16) and ours.dtype == torch.float32
    assert torch.equal(ours, stock)
    assert 0.0 <= float(ours.min()) and float(ours.max()) <= 1.0
    assert set(gen.last_timing) == {"denoise_s", "decode_s"}
    chunked = generator_for(pipe, PROMPT, settings(name, guidance=guidance), max_batch=2)(z, seed=0)
    torch.testing.assert_close(chunked, stock, rtol=0, atol=CHUNK_ATOL)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_wrong_latent_shape_is_a_one_line_error(pipes, name):
    gen = generator_for(pipes[name], PROMPT, settings(name))
    bad = torch.randn(2, *gen.latent_shape[:-1], gen.latent_shape[-1] + 1)
    with pytest.raises(FindError) as e:
        gen(bad)
    assert "\n" not in str(e.value) and str(list(gen.latent_shape)) in str(e.value)
    with pytest.raises(FindError):
        gen(torch.randn(2, *gen.latent_shape[1:]))  # one dimension short (the other layout's habit)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_text_features_are_a_pooled_embedding(pipes, name):
    gen = generator_for(pipes[name], PROMPT, settings(name))
    f = gen.text_features()
    assert f.shape == (16,) and f.dtype == torch.float32 and torch.isfinite(f).all()
    other = generator_for(pipes[name], "a green pyramid", settings(name)).text_features()
    assert not torch.equal(f, other)


def test_cogvideox_dpm_scheduler_repeats_the_stock_call_given_the_rollouts_generators():
    """CogVideoXDPMScheduler (the 5b models' sampler) draws noise at every step: gen(z, seed) passes one
    generator per sample, seeded by (seed, sample index), and equals the stock call given the same ones."""
    from findcli.seeds import noise_seed

    pipe = build_tiny_cogvideox(scheduler="dpm")
    assert configure_scheduler(pipe, "auto") == "CogVideoXDPMScheduler"  # native kept
    gen = generator_for(pipe, PROMPT, settings("cogvideox"))
    z = torch.randn(2, *gen.latent_shape, generator=torch.Generator().manual_seed(1))
    ours = gen(z, seed=7)
    gens = [torch.Generator().manual_seed(noise_seed("step", 7, j)) for j in range(2)]
    stock = pipe(prompt=[PROMPT] * 2, latents=z, generator=gens, num_inference_steps=2, guidance_scale=4.0,
                 height=16, width=16, num_frames=9, max_sequence_length=16, output_type="pt").frames
    assert torch.equal(ours, stock)
    assert torch.equal(gen(z, seed=7), ours) and not torch.equal(gen(z, seed=8), ours)


# ---------------------------------------------------------------------------------------------- settings


def test_cogvideox_frame_rule_matches_its_vae(pipes):
    """The frame counts the adapter accepts are exactly those the VAE decodes back to themselves."""
    pipe = pipes["cogvideox"]
    accepted = []
    for frames in range(1, 18):
        latent_frames = (frames - 1) // pipe.vae_scale_factor_temporal + 1
        decoded = pipe.decode_latents(torch.zeros(1, latent_frames, 4, 2, 2)).shape[2]
        try:
            generator_for(pipe, PROMPT, settings("cogvideox", frames=frames))
            accepted.append(frames)
            assert decoded == frames
        except FindError as e:
            assert decoded != frames and f"{decoded}-frame" in str(e) and "\n" not in str(e)
    assert accepted == [1, 8, 9, 16, 17]
    with pytest.raises(FindError, match="e.g. 9 or 16"):
        generator_for(pipe, PROMPT, settings("cogvideox", frames=13))


@pytest.mark.parametrize("frames,height,width,match", [
    (6, 16, 16, r"4k\+1 frames; --frames 6 is not one \(use 5 or 9\)"),
    (4, 16, 16, r"use 1 or 5"),
    (5, 24, 16, "multiple of 16"),
])
def test_wan_sizes_it_cannot_make_are_one_line_errors(pipes, frames, height, width, match):
    from findcli.pipeline import latent_shape

    with pytest.raises(FindError, match=match) as e:
        latent_shape(pipes["wan"], height, width, frames)
    assert "\n" not in str(e.value)


def test_cogvideox_size_must_tile_the_patches(pipes):
    with pytest.raises(FindError, match="multiples of 16"):
        generator_for(pipes["cogvideox"], PROMPT, settings("cogvideox", height=24))


@pytest.mark.parametrize("name", list(FAMILIES))
def test_eta_and_ddim_are_refused(pipes, name):
    """Both keep their native scheduler: --eta (meaningless for CogVideoXDDIMScheduler, whose step ignores
    it; absent from flow matching) and --scheduler ddim are one-line errors."""
    pipe = pipes[name]
    native = type(pipe.scheduler).__name__
    with pytest.raises(FindError, match="--eta applies to the DDIM sampler only"):
        generator_for(pipe, PROMPT, settings(name, eta=0.5))
    with pytest.raises(FindError, match="--scheduler ddim does not apply"):
        configure_scheduler(pipe, "ddim")
    assert configure_scheduler(pipe, "auto") == native == {"cogvideox": "CogVideoXDDIMScheduler",
                                                            "wan": "UniPCMultistepScheduler"}[name]
    assert "eta" not in generator_for(pipe, PROMPT, settings(name)).call_kwargs()


# ---------------------------------------------------------------------------------------------- CLI


@pytest.mark.parametrize("name", list(FAMILIES))
def test_find_train_then_sample_writes_videos(saved, name, tmp_path):
    from PIL import Image

    from findcli.policy import load_policy

    frames, size = FAMILIES[name][1], FAMILIES[name][3]
    reward = tmp_path / "bright.py"
    reward.write_text("def reward(videos, prompts):\n"
                      "    assert videos.ndim == 5 and videos.shape[1:3] == (%d, 3), videos.shape\n"
                      "    return videos.flatten(1).mean(1)\n" % frames)
    out = tmp_path / "run" / "p.pt"
    res = invoke("train", PROMPT, "--model", saved[name], "--reward", f"{reward}:reward", "--iterations", 3,
                 "--batch", 2, "--out", out, *size, *FAST)
    assert res.exit_code == 0, res.output
    meta = load_policy(out).meta
    assert (meta["family"], meta["frames"], meta["height"], meta["width"]) == (name, frames, 16, 16)
    assert meta["latent_layout"] == {"cogvideox": "FCHW", "wan": "CFHW"}[name]
    assert meta["iteration"] == 3

    s = tmp_path / "s"
    res = invoke("sample", "--policy", out, "--n", 2, "--out-dir", s, "--no-reward", "--device", "cpu",
                 "--kernels", "torch")
    assert res.exit_code == 0, res.output
    gif = s / "policy_0000.gif"
    assert gif.is_file(), f"find sample wrote no GIF for a video policy: {sorted(p.name for p in s.iterdir())}"
    with Image.open(gif) as im:
        assert (im.n_frames, im.size) == (frames, (16, 16))
    assert (s / "policy_0001.gif").is_file() and (s / "grid.png").is_file()


@pytest.mark.parametrize("name", list(FAMILIES))
def test_a_policy_of_another_family_is_refused(saved, pipes, name, tmp_path):
    from findcli.policy import GaussianPolicy, save_policy

    shape = generator_for(pipes[name], PROMPT, settings(name)).latent_shape
    meta = {"model": str(saved[name]), "prompt": PROMPT, "family": "sd", "latent_layout": "CHW", "steps": 2,
            "guidance": 3.0, "eta": 0.0, "height": 16, "width": 16, "frames": FAMILIES[name][1],
            "reward": "clip", "reward_model": None}
    save_policy(tmp_path / "sd.pt", GaussianPolicy(shape), meta)
    res = invoke("sample", "--policy", tmp_path / "sd.pt", "--n", 1, "--out-dir", tmp_path / "s", "--no-reward",
                 "--device", "cpu", "--kernels", "torch")
    assert res.exit_code != 0
    line = one_error_line(res)
    assert "a policy for a sd model" in line and f"a {name} pipeline" in line, line
    assert not (tmp_path / "s" / "policy_0000.gif").exists()


def test_train_raises_synthetic_reward_toward_known_optimum_cogvideox(saved, tmp_path):
    """-100 · MSE to the video decoded from a fixed z*: the reward rises far beyond noise and μ turns
    toward z* (CogVideoX: the cheaper of the two here, 48 latent dimensions; ~6 s on one thread)."""
    from findcli.pipeline import load_pipeline
    from findcli.policy import load_policy

    pipe = load_pipeline(str(saved["cogvideox"]), torch.device("cpu"), torch.float32)
    gen = generator_for(pipe, PROMPT, settings("cogvideox", guidance=3.0))
    z_star = torch.randn(1, *gen.latent_shape, generator=torch.Generator().manual_seed(123))
    reward = write_mse_reward(tmp_path, gen(z_star))  # receives videos (N, F, 3, H, W)
    out = tmp_path / "run" / "p.pt"
    res = invoke("train", PROMPT, "--model", saved["cogvideox"], "--reward", reward, "--batch", 16,
                 "--iterations", 24, "--out", out, *FAST)
    assert res.exit_code == 0, res.output
    assert_reward_rose(out, iterations=24, batch=16)
    cos = cosine_to(load_policy(out).policy.mu, z_star)
    assert cos > 0.3, cos  # a random direction in 48 dimensions has |cos| ≈ 0.14
