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

With `--policy-dir DIR` (the layout `find train --prompts FILE --out-dir DIR` writes: DIR/<slug>.pt),
each prompt's policy is drawn on the same ε as its baseline (`findcli.sampling.draw`, the draw `find
eval` makes, so the success rates equal `find eval --n N --seed S`'s), and both arms are judged and
scored: the reward's AUC on the *policy's* videos says whether FIND's gain in reward is a gain the judge
sees or a hack (the reward rising on videos the judge rejects). `--only REGEX` keeps the suite lines
whose category or prompt matches.

    OMP_NUM_THREADS=1 python benchmarks/video_world.py --n 32 --seed 1 --policy-dir DIR --json runs/video/arms.json
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import re
from pathlib import Path

import torch

from findcli import shapes
from findcli.evaluation import rank_auc, slug  # slug: the name find train --prompts gives DIR/<slug>.pt
from findcli import atomic
from findcli.pipeline import SamplerSettings, load_runtime, resolve_dtype
from findcli.policy import load_policy
from findcli.sampling import draw, settings_from_meta


def suite_lines(world, suite: str | Path | None = None, only: str | None = None) -> list[tuple[str, str]]:
    """(category, prompt) lines of the video suite (or `suite`) whose category or prompt matches `only`."""
    lines = world.load_suite(suite or Path(__file__).with_name("prompts") / "video_suite.txt")
    return [(c, p) for c, p in lines if only is None or re.search(only, f"{c}\t{p}")]


def arm_settings(world, policy_path: Path | None) -> SamplerSettings:
    """The sampler both arms of a prompt are drawn with: the policy file's own (as `find eval` reads it,
    the world's frames where it names none), or the default with the world's frames without a policy."""
    if policy_path is None:
        return SamplerSettings(frames=world.default_frames)
    settings = settings_from_meta(load_policy(policy_path).meta, source=str(policy_path))
    return settings if settings.frames else dataclasses.replace(settings, frames=world.default_frames)


def arm_videos(pipe, prompt: str, settings: SamplerSettings, n: int, seed: int, cache: Path,
               policy_path: Path | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(n, F, 3, 64, 64) videos of one arm of `find eval`'s paired draw (eval seed `seed`,
    `findcli.sampling.draw`): N(0, I) when `policy_path` is None, else that policy file's on the same ε.
    Cached per arm by prompt, n, seed, the sampler settings, the policy file's bytes and the dtype (fp32
    names carry none, as before --dtype), so a baseline is drawn once for every policy folder compared on it."""
    import hashlib

    def tag(b: bytes) -> str:
        return hashlib.blake2b(b, digest_size=6).hexdigest()

    name = f"{slug(prompt)}_n{n}_s{seed}_set{tag(repr(dataclasses.astuple(settings)).encode())}"
    if policy_path is not None:
        name += f"_pi{tag(policy_path.read_bytes())}"
    if dtype != torch.float32:
        name += "_" + str(dtype).removeprefix("torch.")
    cache.mkdir(parents=True, exist_ok=True)
    f = cache / f"{name}.pt"
    if not f.exists():
        policy = load_policy(policy_path).policy if policy_path is not None else None
        d = draw(pipe(), prompt, settings, seed, n, policy, baseline=policy is None)
        tmp = f.with_suffix(".tmp")
        torch.save((d.baseline_images if policy is None else d.policy_images).float().cpu(), tmp)
        tmp.replace(f)
        print(f"generated {prompt!r} ({policy_path.name if policy_path else 'N(0, I)'}) -> {f}", flush=True)
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
    ap.add_argument("--policy-dir", default=None, help="DIR/<slug>.pt per prompt: judge and score the policy arm too")
    ap.add_argument("--only", default=None, help="keep the suite lines whose category or prompt matches this regex")
    ap.add_argument("--dtype", default="auto", help="the generator's dtype, as find eval's --dtype (auto: bf16 on a "
                    "CPU with native bf16, else fp32; findcli.pipeline.resolve_dtype)")
    a = ap.parse_args()
    world = shapes.world_of(a.model)
    if world is None or world.kind != "video":
        ap.error(f"--model {a.model!r} is not the built-in video world")

    suite = suite_lines(world, a.suite, a.only)
    if a.only and not suite:
        ap.error(f"--only {a.only!r} matches no line of the suite")
    policy_dir = Path(a.policy_dir) if a.policy_dir else None
    if policy_dir is not None:
        missing = [p for _, p in suite if not (policy_dir / f"{slug(p)}.pt").exists()]
        if missing:
            ap.error(f"--policy-dir {policy_dir} has no policy for {missing[0]!r} (expected {slug(missing[0])}.pt); "
                     "train it or narrow the suite with --only")
    arm_names = ["baseline", "policy"] if policy_dir is not None else ["baseline"]
    dtype = resolve_dtype(a.dtype, torch.device("cpu"), a.model)
    cache = Path(a.cache) / world.model_version()  # a retrained generator never reuses old videos
    loaded = {}

    def pipe():
        if "pipe" not in loaded:
            loaded["pipe"] = load_runtime(a.model, "cpu", a.dtype)[2]  # as find eval loads it
        return loaded["pipe"]

    from findcli.rewards import build_reward

    rewards = {spec: build_reward(spec, torch.device("cpu"), reward_model=world.clip_model) for spec in a.rewards}
    def judged(x, prompt):
        ok, per = world.judge_images(x, prompt)
        scores = {spec: torch.cat([fn(c, [prompt] * len(c)).float().cpu() for c in x.split(16)]) for spec, fn in rewards.items()}
        row = {"n": len(x), "success": float(ok.float().mean()),
               "per_constraint": {k: float(v.float().mean()) for k, v in per.items()},
               "mean_reward": {s: float(v.mean()) for s, v in scores.items()},
               "auc": {s: rank_auc(v, ok) for s, v in scores.items()}}
        return ok, scores, row

    rows, by_cat = [], {}
    for category, prompt in suite:
        paths = {"baseline": None}
        if policy_dir is not None:  # both arms with the policy's own sampler, as `find eval` reads it
            paths["policy"] = policy_dir / f"{slug(prompt)}.pt"
        settings = arm_settings(world, paths.get("policy"))
        arms = {arm: arm_videos(pipe, prompt, settings, a.n, a.seed, cache, path, dtype) for arm, path in paths.items()}
        row = {"prompt": prompt, "category": category}
        c = by_cat.setdefault(category, {arm: {"ok": [], "scores": {s: [] for s in rewards}} for arm in arm_names})
        for arm in arm_names:
            ok, scores, r = judged(arms[arm], prompt)
            if arm == "baseline":
                row.update(r)  # the baseline keys stay at the top level, as before --policy-dir existed
            else:
                row[arm] = r
            c[arm]["ok"].append(ok)
            for s, v in scores.items():
                c[arm]["scores"][s].append(v)
        rows.append(row)
        print(json.dumps(row), flush=True)
    cats = []
    for category, c in by_cat.items():
        entry = {"category": category, "prompts": len(c["baseline"]["ok"])}
        for arm in arm_names:
            ok = torch.cat(c[arm]["ok"])
            r = {"n": len(ok), "success": float(ok.float().mean()),
                 "auc": {s: rank_auc(torch.cat(v), ok) for s, v in c[arm]["scores"].items()}}
            if arm == "baseline":
                entry.update(r)  # top level, as before --policy-dir existed
            else:
                entry[arm] = r
        cats.append(entry)

    def fmt(v):
        return "–" if v is None or v != v else f"{v:.3f}"

    print(f"\nmodel {a.model} ({world.model_version()}), n = {a.n} per prompt, eval seed {a.seed}")
    for arm in arm_names:
        print(f"\n{arm} arm" + (f" (policies of {policy_dir})" if arm == "policy" else " (N(0, I))"))
        print("| category | prompts | judge success | " + " | ".join(f"AUC {s}" for s in rewards) + " |")
        print("|---|---|---|" + "---|" * len(rewards))
        for c in cats:
            r = c if arm == "baseline" else c[arm]
            print(f"| {c['category']} | {c['prompts']} | {100 * r['success']:.1f}% | "
                  + " | ".join(fmt(r["auc"][s]) for s in rewards) + " |")
    if a.json:
        out = Path(a.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_text(out, json.dumps({"model": a.model, "model_version": world.model_version(), "n": a.n,
                                           "seed": a.seed, "dtype": str(dtype).removeprefix("torch."),
                                           "rewards": list(rewards), "policy_dir": a.policy_dir, "prompts": rows,
                                           "categories": cats}, indent=2))


if __name__ == "__main__":
    main()
