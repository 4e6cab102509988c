"""`--model builtin-video`: the built-in video world through find train / eval / sample, end to end.

The shipped video generator is a pipeline directory written by `python -m findcli.shapes.training
motion`; here a 2-step run of that same stage stands in for it (the world's folder is pointed at it),
so the test exercises the real architecture (AnimateDiffPipeline on the built-in image UNet) at 8
frames of 64 px. Oracles: the video judge called directly on the same videos (find eval's success
rate must be its mean), the video grammar's own parser (its one-line error), the policy file's
recorded model and latent shape (4 × 8 × 16 × 16, the frames the world defaults to)."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from findcli import shapes
from findcli.main import app

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPT = "a red sphere moving left"
REWARD = "findcli.shapes.video.judge:judge_video_reward"  # the video world's rule-based reward (no weights needed)
FAST = ["--steps", "2", "--device", "cpu", "--kernels", "torch"]


@pytest.fixture(scope="module")
def video_world(tmp_path_factory):
    from findcli.shapes.training.__main__ import main

    out = tmp_path_factory.mktemp("video") / "pipe"
    try:
        main(["motion", "--seed", "0", "--steps", "1", "--out", str(out), "--set", "pool_size=2", "batch=1",
              "eval_clips=1", "log_every=1", "warmup=1"])
    finally:
        torch.set_flush_denormal(False)
    return out


@pytest.fixture
def shipped(video_world, monkeypatch):
    """The world's folder is the stage's output, as after `--out findcli/shapes/video/model`."""
    w = dataclasses.replace(shapes.VIDEO_WORLD, folder=video_world)
    monkeypatch.setattr(shapes, "VIDEO_WORLD", w)
    monkeypatch.setitem(shapes.WORLDS, w.id, w)
    shapes._version.cache_clear()
    yield w
    shapes._version.cache_clear()


def test_world_of_each_model_name():
    assert shapes.world_of(None) is shapes.IMAGE_WORLD and shapes.world_of("builtin") is shapes.IMAGE_WORLD
    assert shapes.world_of("builtin-video") is shapes.VIDEO_WORLD
    assert shapes.world_of(str(shapes.VIDEO_MODEL_DIR)) is shapes.VIDEO_WORLD
    assert shapes.world_of("org/other-model") is None
    assert not shapes.is_builtin("builtin-video")  # is_builtin stays the image world's


def test_missing_video_model_is_one_line_saying_how_to_train_it(tmp_path, monkeypatch):
    w = dataclasses.replace(shapes.VIDEO_WORLD, folder=tmp_path / "absent")
    monkeypatch.setattr(shapes, "VIDEO_WORLD", w)
    res = CliRunner().invoke(app, ["train", PROMPT, "--model", "builtin-video", "--reward", REWARD,
                                   "--out", str(tmp_path / "o.pt"), *FAST])
    assert res.exit_code != 0
    assert "python -m findcli.shapes.training motion" in res.output
    assert not (tmp_path / "o.pt").exists()


def test_image_prompt_on_the_video_model_is_the_video_grammars_error(shipped, tmp_path):
    res = CliRunner().invoke(app, ["train", "a red cube on a blue sphere", "--model", "builtin-video",
                                   "--reward", REWARD, "--out", str(tmp_path / "o.pt"), *FAST])
    assert res.exit_code != 0 and "moving" in res.output
    assert not (tmp_path / "o.pt").exists()


def test_train_eval_sample_on_builtin_video(shipped, tmp_path):
    out = tmp_path / "v.pt"
    res = CliRunner().invoke(app, ["train", PROMPT, "--model", "builtin-video", "--reward", REWARD, "--iterations", "2",
                                   "--batch", "2", "--out", str(out), *FAST])
    assert res.exit_code == 0, res.output
    from findcli.policy import load_policy

    pf = load_policy(out)
    assert pf.meta["model"] == "builtin-video"
    assert pf.meta["model_version"].startswith("shapes-video-")
    assert pf.policy.latent_shape == (4, 8, 16, 16)  # C, F = the world's 8 frames, 64 px / 4

    res = CliRunner().invoke(app, ["eval", "--prompt", PROMPT, "--policy", str(out), "--n", "3", "--seed", "2",
                                   "--json", str(tmp_path / "e.json"), "--device", "cpu", "--kernels", "torch"])
    assert res.exit_code == 0, res.output
    rec = json.loads((tmp_path / "e.json").read_text())
    assert rec["category"] == "anti"  # red's favourite direction is right (BIASES.md)
    assert {"present_every_frame", "direction", "binding"} <= set(rec["per_constraint"]["baseline"])

    # Oracle: the video judge on the same baseline draw, called directly.
    from findcli.pipeline import load_pipeline
    from findcli.sampling import draw, settings_from_meta
    from findcli.shapes.video.judge import judge_video

    pipe = load_pipeline(str(shipped.folder), torch.device("cpu"), torch.float32)
    s = dataclasses.replace(settings_from_meta(pf.meta), frames=8)
    d = draw(pipe, PROMPT, s, 2, 3, pf.policy, baseline=True)
    ok, _ = judge_video(d.baseline_images, shapes.VIDEO_WORLD.check_prompt(PROMPT))
    assert rec["baseline"]["success_rate"] == pytest.approx(float(ok.float().mean()))

    res = CliRunner().invoke(app, ["sample", "--policy", str(out), "--n", "2", "--out-dir", str(tmp_path / "s"),
                                   "--no-reward", "--device", "cpu", "--kernels", "torch"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "s" / "policy_0000.gif").is_file() and (tmp_path / "s" / "grid.png").is_file()


def test_eval_without_policy_uses_the_worlds_8_frames(shipped, tmp_path):
    res = CliRunner().invoke(app, ["eval", "--model", "builtin-video", "--prompt", PROMPT, "--reward", REWARD,
                                   "--n", "2", "--json", str(tmp_path / "b.json"), *FAST])
    assert res.exit_code == 0, res.output
    rec = json.loads(Path(tmp_path / "b.json").read_text())
    assert rec["baseline"]["success_rate"] is not None and "policy" not in rec


def test_video_world_defaults_apply_under_the_users_options(shipped, tmp_path):
    from findcli.training import TrainRequest, new_config

    cfg = new_config(TrainRequest(prompt=PROMPT, out=tmp_path / "a.pt", overrides={}, model="builtin-video"))
    assert (cfg.iterations, cfg.frames, cfg.reward) == (30, 8, "find-shapes-video-clip")
    cfg = new_config(TrainRequest(prompt=PROMPT, out=tmp_path / "a.pt", overrides={"iterations": 7}, model="builtin-video"))
    assert cfg.iterations == 7  # the user's option wins
    cfg = new_config(TrainRequest(prompt="a red cube", out=tmp_path / "a.pt", overrides={}, model=None))
    assert (cfg.iterations, cfg.frames) == (100, None)  # the image world is unchanged
