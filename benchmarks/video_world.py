"""The built-in video world measured (issue 14): what the generator does at baseline, and whether a
reward sees what the motion judge checks.

For every prompt of the video suite (`benchmarks/prompts/video_suite.txt`, or --suite), `--n`
videos from N(0, I) latents in find eval's namespace (eval seed `--seed`) through the default
sampler (DDIM 20, CFG 7.5, eta 0, 8 frames of 64 px) of `--model` (default: builtin-video), cached
under `--cache`; each video judged by `findcli.shapes.video.judge` and scored by each `--rewards`
spec. Reported per prompt and per suite category: judge success (and per constraint), each reward's
ROC AUC for the judge's success (pooled over the category's videos; `findcli.evaluation.rank_auc`).

    OMP_NUM_THREADS=1 python benchmarks/video_world.py --n 32 --json runs/video/baseline.json

The reward AUC needs videos the judge both accepts and rejects; categories without both print '–'.
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import torch

from findcli import shapes
from findcli.evaluation import rank_auc
from findcli.pipeline import SamplerSettings, load_pipeline
from findcli.sampling import draw


def slug(prompt: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", prompt.lower()).strip("_")


def videos_for(pipe, prompt: str, n: int, seed: int, cache: Path, frames: int) -> torch.Tensor:
    """(n, F, 3, 64, 64) baseline videos of `prompt`, cached by prompt, n, seed and the model version."""
    cache.mkdir(parents=True, exist_ok=True)
    f = cache / f"{slug(prompt)}_n{n}_s{seed}.pt"
    if not f.exists():
        d = draw(pipe(), prompt, SamplerSettings(frames=frames), seed, n, None, baseline=True)
        tmp = f.with_suffix(".tmp")
        torch.save(d.baseline_images.float().cpu(), tmp)
        tmp.replace(f)
        print(f"generated {prompt!r} -> {f}", flush=True)
    return torch.load(f, weights_only=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="builtin-video")
    ap.add_argument("--suite", default=None, help="category<TAB>prompt file (default: the video suite)")
    ap.add_argument("--n", type=int, default=32, help="videos per prompt")
    ap.add_argument("--seed", type=int, default=0, help="eval-namespace seed of the latents")
    ap.add_argument("--cache", default="runs/video/videos")
    ap.add_argument("--rewards", nargs="*", default=["find-shapes-video-clip", "clip"])
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    world = shapes.world_of(a.model)
    if world is None or world.kind != "video":
        ap.error(f"--model {a.model!r} is not the built-in video world")

    suite = world.load_suite(a.suite or Path(__file__).with_name("prompts") / "video_suite.txt")
    cache = Path(a.cache) / world.model_version()  # a retrained generator never reuses old videos
    loaded = {}

    def pipe():
        if "pipe" not in loaded:
            loaded["pipe"] = load_pipeline(a.model, torch.device("cpu"), torch.float32)
        return loaded["pipe"]

    from findcli.rewards import build_reward

    rewards = {spec: build_reward(spec, torch.device("cpu"), reward_model=world.clip_model) for spec in a.rewards}
    rows, by_cat = [], {}
    for category, prompt in suite:
        x = videos_for(pipe, prompt, a.n, a.seed, cache, world.default_frames)
        ok, per = world.judge_images(x, prompt)
        scores = {spec: torch.cat([fn(c, [prompt] * len(c)).float().cpu() for c in x.split(16)]) for spec, fn in rewards.items()}
        row = {"prompt": prompt, "category": category, "n": len(x), "success": float(ok.float().mean()),
               "per_constraint": {k: float(v.float().mean()) for k, v in per.items()},
               "mean_reward": {s: float(v.mean()) for s, v in scores.items()},
               "auc": {s: rank_auc(v, ok) for s, v in scores.items()}}
        rows.append(row)
        c = by_cat.setdefault(category, {"ok": [], "scores": {s: [] for s in rewards}})
        c["ok"].append(ok)
        for s, v in scores.items():
            c["scores"][s].append(v)
        print(json.dumps(row), flush=True)
    cats = []
    for category, c in by_cat.items():
        ok = torch.cat(c["ok"])
        cats.append({"category": category, "prompts": len(c["ok"]), "n": len(ok), "success": float(ok.float().mean()),
                     "auc": {s: rank_auc(torch.cat(v), ok) for s, v in c["scores"].items()}})

    def fmt(v):
        return "–" if v is None or v != v else f"{v:.3f}"

    print(f"\nmodel {a.model} ({world.model_version()}), n = {a.n} per prompt, eval seed {a.seed}")
    print("| category | prompts | judge success | " + " | ".join(f"AUC {s}" for s in rewards) + " |")
    print("|---|---|---|" + "---|" * len(rewards))
    for c in cats:
        print(f"| {c['category']} | {c['prompts']} | {100 * c['success']:.1f}% | "
              + " | ".join(fmt(c["auc"][s]) for s in rewards) + " |")
    if a.json:
        out = Path(a.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"model": a.model, "model_version": world.model_version(), "n": a.n, "seed": a.seed,
                                   "rewards": list(rewards), "prompts": rows, "categories": cats}, indent=2))


if __name__ == "__main__":
    main()
