"""End-to-end `find train` / `find sample` on a tiny random diffusers pipeline (CPU, offline).

Oracles: a synthetic reward whose optimum is known (the image decoded from a fixed latent z*), an
uninterrupted run (for --resume), and the stock `pipe(prompt, latents=z)` call (for find sample).
"""

import json

import signal

import pytest
import torch
from typer.testing import CliRunner

from _synthetic import assert_reward_rose
from findcli.main import app
from findcli.pipeline import Rollout, SamplerSettings, load_pipeline
from findcli.errors import INTERRUPTED_EXIT
from findcli.policy import GaussianPolicy, load_checkpoint, load_policy, save_policy

PROMPT = "a red cube on a blue sphere"
FAST = ["--steps", "2", "--guidance", "3", "--device", "cpu", "--kernels", "torch"]


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def target(tiny_pipeline_dir, tmp_path_factory):
    """z* and the image it decodes to; the reward prefers images close to that image."""
    pipe = load_pipeline(str(tiny_pipeline_dir), torch.device("cpu"), torch.float32)
    z_star = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(123))
    image = Rollout(pipe, PROMPT, SamplerSettings(steps=2, guidance=3.0))(z_star)
    d = tmp_path_factory.mktemp("reward")
    torch.save(image, d / "target.pt")
    return z_star, image, d


def write_reward(target_dir, body="", name="synth"):
    """A user reward module `(images, prompts) -> (N,)`: -100 · MSE to the target image, plus `body`."""
    path = target_dir / f"{name}.py"
    path.write_text(
        "import os, signal, torch\n"
        f"T = torch.load({str(target_dir / 'target.pt')!r})\n"
        "CALLS = [0]\n"
        "def reward(images, prompts):\n"
        "    CALLS[0] += 1\n"
        "    r = -100.0 * ((images - T) ** 2).flatten(1).mean(1)\n"
        + "".join(f"    {line}\n" for line in body.splitlines())
        + "    return r\n")
    return f"{path}:reward"


def test_train_raises_synthetic_reward_toward_known_optimum(tiny_pipeline_dir, target, tmp_path):
    z_star, _, d = target
    out = tmp_path / "run" / "out.pt"
    res = invoke("train", PROMPT, "--model", tiny_pipeline_dir, "--reward", write_reward(d), "--batch", 16,
                 "--iterations", 24, "--out", out, *FAST)
    assert res.exit_code == 0, res.output
    # Noise scale: the spread of rewards within a batch under N(0, I); the standard error of a mean over
    # 3 batches of 16 is std/√48. Demand a gain of 10 standard errors.
    rows = assert_reward_rose(out, iterations=24, batch=16, sigmas=10)
    pf = load_policy(out)
    cos = torch.nn.functional.cosine_similarity(pf.policy.mu, z_star.flatten(), dim=0).item()
    # A random direction in 256 dimensions has |cos| ≈ 1/16; μ must have turned toward z*.
    assert cos > 0.2, cos
    for name in ("metrics.jsonl", "reward_curve.png", "before_after.png"):  # named after the policy
        assert (out.parent / f"out.{name}").stat().st_size > 0
    assert not (out.parent / "metrics.jsonl").exists()
    assert pf.meta["prompt"] == PROMPT and pf.meta["iteration"] == 24 and pf.meta["steps"] == 2
    assert pf.meta["final_stats"]["reward_mean"] == rows[-1]["reward_mean"]


@pytest.mark.parametrize("from_init", [False, True], ids=["from_standard_normal", "from_init_kl_to_start"])
def test_resume_gives_the_same_policy_as_an_uninterrupted_run(tiny_pipeline_dir, target, tmp_path, from_init):
    """With --init (kl_to "start": the KL pull's target is the start, kept in the checkpoint) as without."""
    _, _, d = target
    reward = write_reward(d)
    common = [PROMPT, "--model", tiny_pipeline_dir, "--reward", reward, "--batch", 4, "--replay", 2,
              "--checkpoint-every", 2, *FAST]
    if from_init:
        start = tmp_path / "start.pt"
        assert invoke("train", *common, "--iterations", 2, "--lr", 0.3, "--out", start).exit_code == 0
        assert load_policy(start).policy.mu.abs().max() > 0.3  # far enough from N(0, I) to tell the targets apart
        common += ["--init", start]
    a, b = tmp_path / "a" / "out.pt", tmp_path / "b" / "out.pt"
    assert invoke("train", *common, "--iterations", 5, "--out", a).exit_code == 0
    assert invoke("train", *common, "--iterations", 3, "--out", b).exit_code == 0
    res = invoke("train", "--resume", b, "--iterations", 5, "--device", "cpu", "--kernels", "torch")
    assert res.exit_code == 0, res.output
    pa, pb = load_policy(a), load_policy(b)
    assert pb.meta["iteration"] == 5
    assert torch.equal(pa.policy.mu, pb.policy.mu) and torch.equal(pa.policy.log_sigma, pb.policy.log_sigma)
    _, sa = load_checkpoint(a)
    _, sb = load_checkpoint(b)
    assert [m["reward_mean"] for m in sa["metrics"]] == [m["reward_mean"] for m in sb["metrics"]]


def test_ctrl_c_saves_a_checkpoint_and_exits_with_the_interrupted_status(tiny_pipeline_dir, target, tmp_path):
    _, _, d = target
    reward = write_reward(d, "if CALLS[0] == 2: os.kill(os.getpid(), signal.SIGINT)", name="interrupt")
    out = tmp_path / "out.pt"
    previous = signal.getsignal(signal.SIGINT)
    res = invoke("train", PROMPT, "--model", tiny_pipeline_dir, "--reward", reward, "--batch", 2,
                 "--iterations", 50, "--out", out, *FAST)
    assert signal.getsignal(signal.SIGINT) is previous  # handler restored
    assert res.exit_code == INTERRUPTED_EXIT, res.output
    assert "interrupted by SIGINT" in res.output and "--resume" in res.output
    pf = load_policy(out)
    assert pf.meta["iteration"] == 2 and pf.train_state is None  # the policy file stays small
    assert load_checkpoint(out)[1]["iteration"] == 2


def test_non_finite_rewards_skip_then_abort_without_half_written_files(tiny_pipeline_dir, target, tmp_path):
    _, _, d = target
    once = write_reward(d, "if CALLS[0] == 2: r = r * float('nan')", name="nan_once")
    out = tmp_path / "ok" / "out.pt"
    res = invoke("train", PROMPT, "--model", tiny_pipeline_dir, "--reward", once, "--batch", 2,
                 "--iterations", 3, "--out", out, *FAST)
    assert res.exit_code == 0, res.output
    assert "non-finite" in res.stderr
    rows = [json.loads(x) for x in (out.parent / (out.stem + ".metrics.jsonl")).read_text().splitlines()]
    assert [m["skipped"] for m in rows] == [False, True, False]

    always = write_reward(d, "r = r * float('inf')", name="inf_always")
    out = tmp_path / "bad" / "out.pt"
    res = invoke("train", PROMPT, "--model", tiny_pipeline_dir, "--reward", always, "--batch", 2,
                 "--iterations", 10, "--out", out, *FAST)
    assert res.exit_code != 0
    assert res.stderr.strip().splitlines()[-1].startswith("error: the reward was non-finite for 3 batches")
    assert not out.exists() and not out.parent.exists()  # nothing written, not even the folder


def test_sample_matches_stock_pipeline_with_the_same_latents(tiny_pipeline_dir, tmp_path):
    """`find sample` images equal, bit for bit, stock pipe(prompt, latents=z) with the policy's z."""
    g = torch.Generator().manual_seed(9)
    policy = GaussianPolicy((4, 8, 8), 0.3 * torch.randn(256, generator=g), 0.2 * torch.randn(256, generator=g))
    meta = {"model": str(tiny_pipeline_dir), "prompt": PROMPT, "steps": 3, "guidance": 4.0, "eta": 0.0,
            "reward": "clip", "reward_model": None}
    save_policy(tmp_path / "p.pt", policy, meta)
    res = invoke("sample", "--policy", tmp_path / "p.pt", "--n", 3, "--seed", 5, "--out-dir", tmp_path / "s",
                 "--baseline", "--no-reward", "--device", "cpu", "--kernels", "torch")
    assert res.exit_code == 0, res.output

    import numpy as np
    from PIL import Image

    pipe = load_pipeline(str(tiny_pipeline_dir), torch.device("cpu"), torch.float32)
    from findcli.seeds import noise_seed

    s = noise_seed("sample", 5)  # `find sample --seed 5` draws from the "sample" namespace
    z, _ = policy.sample(s, 3)
    eps, _ = GaussianPolicy((4, 8, 8)).sample(s, 3)
    for arm, lat in (("policy", z), ("baseline", eps)):
        stock = pipe(PROMPT, latents=lat, num_inference_steps=3, guidance_scale=4.0, eta=0.0,
                     num_images_per_prompt=3, output_type="pil").images
        for i, img in enumerate(stock):
            ours = np.asarray(Image.open(tmp_path / "s" / f"{arm}_{i:04d}.png"))
            assert np.array_equal(ours, np.asarray(img)), (arm, i)
    assert (tmp_path / "s" / "grid.png").exists() and (tmp_path / "s" / "rewards.json").exists()
