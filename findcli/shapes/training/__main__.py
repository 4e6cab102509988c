"""python -m findcli.shapes.training {vae,unet,clip,all,detector,motion,video_clip} [--seed S] [--out DIR] [--steps N] [--minutes M] [--preset cpu] [--threads T] [--set FIELD=VALUE ...]

Trains one stage of the built-in shapes models (see `findcli.shapes.training`):

- vae, unet, clip: the generator and the reward CLIP; --out is the pipeline directory (default
  findcli/shapes/model), read by the later stages (unet needs <out>/vae, clip the whole generator).
- all: vae, then unet, then clip, with one --steps for each when given.
- detector: the detector reward; --out is its folder (default findcli/shapes/model/detector), the
  generator it learns from is the field model_dir (--set model_dir=DIR).
- motion: the built-in video generator (an AnimateDiff MotionAdapter on the frozen image generator in
  the field model_dir); --out is the AnimateDiffPipeline directory it writes (default
  findcli/shapes/video/model).
- video_clip: the built-in video world's video-text reward (`find-shapes-video-clip`, trained on
  rendered clips); --out is its folder (default findcli/shapes/video/reward_model).

Each stage writes its files atomically at every checkpoint, and is reproducible from --seed for a
fixed --steps (`--minutes` bounds a stage's wall time: it stops early and still writes its final
checkpoint, so a time-capped run is not reproducible). `--preset cpu` is the small schedule that
produced the shipped weights on a 2-core CPU. The settings apply in this order: the stage's config
defaults, --seed/--out/--minutes/--threads, the preset, --set (field names of the stage's config; the
old single-config names, `vae_steps`, `clip_pool`, ..., with the stage's prefix, are accepted too),
then --steps.
"""

from __future__ import annotations

import os

# On a CPU shared with other jobs, OpenMP threads that spin at barriers waste the slices they get;
# sleeping instead made a 2-thread training step 2-5x faster on the busy 2-core dev box. libgomp reads
# the variable once, when torch loads it, so it is set here, in the entry point and before the first
# torch import (the package's __init__ imports nothing), and never by importing a training module.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import dataclasses
import json

import torch

from findcli.shapes.training import clip, detector, motion, unet, vae, video_clip
from findcli.shapes.training.common import log, parse_field

# stage -> (config class, presets, trainer)
STAGES = {
    "vae": (vae.VaeTrainConfig, vae.SCHEDULES, vae.train_vae),
    "unet": (unet.UnetTrainConfig, unet.SCHEDULES, unet.train_unet),
    "clip": (clip.ClipTrainConfig, clip.SCHEDULES, clip.train_clip),
    "detector": (detector.DetectorTrainConfig, detector.SCHEDULES, detector.train_detector),
    "motion": (motion.MotionTrainConfig, motion.SCHEDULES, motion.train_motion),
    "video_clip": (video_clip.VideoClipTrainConfig, video_clip.SCHEDULES, video_clip.train_video_clip),
}
ALL = ("vae", "unet", "clip")


def stage_config(stage: str, a: argparse.Namespace, overrides: list[tuple[str, str]]):
    """The config of `stage` from the parsed flags; `overrides` are the (key, value) pairs of --set,
    each already known to apply to some chosen stage."""
    cls, schedules, _ = STAGES[stage]
    given = {k: getattr(a, k) for k in ("seed", "out", "minutes", "threads") if getattr(a, k) is not None}
    cfg = dataclasses.replace(cls(**given), **schedules[a.preset])
    for key, val in overrides:
        field = field_name(stage, key)
        if field is not None:
            cfg = dataclasses.replace(cfg, **{field: parse_field(cls, field, val)})
    if a.steps is not None:
        cfg = dataclasses.replace(cfg, steps=a.steps)
    return cfg


def field_name(stage: str, key: str) -> str | None:
    """The field of `stage`'s config that --set `key` names: the key itself, or the key less the stage's
    prefix (`clip_pool` -> `pool`, the name it had in the former single TrainConfig); None if neither."""
    names = {f.name for f in dataclasses.fields(STAGES[stage][0])}
    if key in names:
        return key
    if key.startswith(stage + "_") and key[len(stage) + 1 :] in names:
        return key[len(stage) + 1 :]
    return None


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m findcli.shapes.training", description="Train the built-in shapes models from scratch.")
    p.add_argument("stage", choices=[*ALL, "all", "detector", "motion", "video_clip"])
    p.add_argument("--seed", type=int, default=None, help="default 0")
    p.add_argument("--steps", type=int, default=None, help="steps of the chosen stage (all: of every stage)")
    p.add_argument("--minutes", type=float, default=None, help="wall-time budget per stage (default 0 = none)")
    p.add_argument("--out", default=None, help="default: the built-in model directory (detector: its detector/ folder; motion: findcli/shapes/video/model; video_clip: findcli/shapes/video/reward_model)")
    p.add_argument("--preset", choices=["default", "cpu"], default="default")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default 2; detector, motion and video_clip 1)")
    p.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="override any field of the stage's config")
    a = p.parse_args(argv)
    stages = ALL if a.stage == "all" else (a.stage,)
    overrides = []
    for kv in a.set:
        key, sep, val = kv.partition("=")
        if not sep:
            p.error(f"--set {kv!r}: expected FIELD=VALUE")
        if not any(field_name(st, key) for st in stages):
            p.error(f"--set {key}: not a field of {' / '.join(STAGES[st][0].__name__ for st in stages)}")
        overrides.append((key, val))
    cfgs = {st: stage_config(st, a, overrides) for st in stages}
    torch.set_flush_denormal(True)  # tiny activations late in training must not fall to slow denormals
    results = {}
    for st in stages:
        cfg = cfgs[st]
        torch.set_num_threads(cfg.threads)
        log(st, config=type(cfg).__name__, **dataclasses.asdict(cfg))
        results[st] = STAGES[st][2](cfg)
    print(json.dumps(results, indent=2), flush=True)


if __name__ == "__main__":
    main()
