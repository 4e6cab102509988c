"""Reward AUC per template (issue 10): does a reward rank the judge's successes above its failures on
the built-in generator's own images?

For each template (single = a shape's frequent colour, colour = another shape's frequent colour, two objects, attribute
binding, each of the 7 relations, counts 2/3/4), `--per-template` prompts are drawn from the shapes
grammar with `--seed` (two-object prompts use two colours, as the samplers do; "on" also holds the
README example). Each prompt gets `--n` images from N(0, I) latents through `find`'s default sampler
(DDIM 20, CFG 7.5, eta 0), cached under `--cache` so rescoring is cheap. Each image is judged by
`findcli.shapes.judge`; each reward's score is turned into a ROC AUC for "the judge says success",
pooled over the template's images (`findcli.evaluation.rank_auc`; undefined without failures).

    OMP_NUM_THREADS=1 python benchmarks/reward_auc.py --n 64 --per-template 4 --seed 0 \
        --rewards clip find-shapes-detector clip=1,find-shapes-detector=1 --json runs/reward_auc/auc.json

Rewards are `--reward` specs, built by `findcli.rewards.build_reward` with the built-in CLIP.
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import re
from pathlib import Path

import torch

from findcli.evaluation import rank_auc
from findcli.pipeline import Rollout, SamplerSettings, latent_shape, load_pipeline
from findcli.policy import prior_noise
from findcli.shapes.world import BIAS_FREQUENT_COLOUR, COLOURS, COUNTS, RELATIONS, SHAPES, Obj, Spec

EXAMPLE = "a red cube on a blue sphere"


def template_specs() -> dict[str, list[Spec]]:
    """Every spec of each template (two-object specs with two different colours)."""
    objs = [Obj(c, s) for c in COLOURS for s in SHAPES]
    pairs = [(a, b) for a, b in itertools.product(objs, objs) if a.colour != b.colour]
    t: dict[str, list[Spec]] = {
        "single": [Spec("single", (o,)) for o in objs if BIAS_FREQUENT_COLOUR[o.shape] == o.colour],
        "colour": [Spec("single", (o,)) for o in objs if BIAS_FREQUENT_COLOUR[o.shape] != o.colour],
        "two_objects": [s for s in (Spec("and", p) for p in pairs) if s.category() == "two_objects"],
        "attribute_binding": [s for s in (Spec("and", p) for p in pairs) if s.category() == "attribute_binding"],
    }
    for r in RELATIONS:
        t[r] = [Spec("relation", p, relation=r) for p in pairs]
    for k in COUNTS.values():
        t[f"count {k}"] = [Spec("count", (o,), count=k) for o in objs]
    return t


def pick_prompts(per_template: int, seed: int) -> dict[str, list[str]]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, specs in template_specs().items():
        order = torch.randperm(len(specs), generator=g).tolist()
        prompts = [specs[i].caption() for i in order]
        if name == "on":  # the README example first
            prompts = [EXAMPLE] + [p for p in prompts if p != EXAMPLE]
        if name == "colour":
            # Of the rare colours, those that are another shape's frequent colour: the anti-correlated
            # case ("a red cube" comes out as a red sphere), as the suite's "colour" category. The
            # other rare colours the generator gets right every time (no failures, no AUC).
            frequent = set(BIAS_FREQUENT_COLOUR.values())
            prompts = [p for p in prompts if p.split()[1] in frequent]
        out[name] = prompts[:per_template]
    return out


def slug(prompt: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", prompt.lower()).strip("_")


def generate(prompts: list[str], n: int, seed: int, cache: Path, max_batch: int = 64) -> dict[str, torch.Tensor]:
    """Images (n, 3, 64, 64) float32 per prompt from N(0, I) with `find`'s default sampler, cached."""
    cache.mkdir(parents=True, exist_ok=True)
    pipe = None
    images = {}
    for p in prompts:
        f = cache / f"{slug(p)}_n{n}_s{seed}.pt"
        if not f.exists():
            if pipe is None:
                pipe = load_pipeline(None, torch.device("cpu"), torch.float32)
            z = prior_noise(latent_shape(pipe), seed, n, torch.device("cpu"))
            x = Rollout(pipe, p, SamplerSettings(), max_batch)(z, seed)
            tmp = f.with_suffix(".tmp")
            torch.save(x, tmp)
            tmp.replace(f)
            print(f"generated {p!r} -> {f}", flush=True)
        images[p] = torch.load(f, weights_only=True)
    return images


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64, help="images per prompt")
    ap.add_argument("--per-template", type=int, default=4, help="prompts per template")
    ap.add_argument("--seed", type=int, default=0, help="prompt draw and latent seed")
    ap.add_argument("--cache", default="runs/reward_auc/images")
    ap.add_argument("--rewards", nargs="*", default=["clip", "find-shapes-detector", "clip=1,find-shapes-detector=1"])
    ap.add_argument("--generate-only", action="store_true")
    ap.add_argument("--templates", nargs="*", default=None, help="only these templates (e.g. 'next to' 'count 4')")
    ap.add_argument("--judge", default=None, help="judge with another copy of judge.py (e.g. an older one from "
                    "`git show REV:findcli/shapes/judge.py`) instead of findcli.shapes.judge")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    from judge_rates import load_judge  # benchmarks/ is on sys.path when a script in it runs

    judge_fn = load_judge(a.judge).judge
    chosen = pick_prompts(a.per_template, a.seed)
    if a.templates:
        unknown = sorted(set(a.templates) - set(chosen))
        if unknown:
            ap.error(f"unknown template(s) {unknown}; choose from {sorted(chosen)}")
        chosen = {k: v for k, v in chosen.items() if k in a.templates}
    all_prompts = [p for ps in chosen.values() for p in ps]
    images = generate(all_prompts, a.n, a.seed, Path(a.cache))
    if a.generate_only:
        return
    from findcli.rewards import build_reward

    rewards = {spec: build_reward(spec, torch.device("cpu"), reward_model="builtin") for spec in a.rewards}
    rows = []
    for name, prompts in chosen.items():
        ok, scores = [], {spec: [] for spec in rewards}
        for p in prompts:
            x = images[p]
            ok.append(judge_fn(x, p)[0])
            for spec, fn in rewards.items():
                scores[spec].append(torch.cat([fn(c, [p] * len(c)) for c in x.split(64)]))
        ok_t = torch.cat(ok)
        row = {"template": name, "prompts": prompts, "n": len(ok_t), "success": ok_t.float().mean().item()}
        row["auc"] = {spec: rank_auc(torch.cat(v), ok_t) for spec, v in scores.items()}
        # Per prompt, too: pooled AUC mixes between-prompt and within-prompt ranking.
        row["auc_within_prompt"] = {
            spec: [rank_auc(s, o) for s, o in zip(v, ok)] for spec, v in scores.items()
        }
        rows.append(row)
        print(json.dumps(row), flush=True)

    def fmt(v):
        return "undefined" if math.isnan(v) else f"{v:.3f}"  # undefined: no successes or no failures

    head = "| template | n | judge success | " + " | ".join(f"AUC `{s}`" for s in rewards) + " |"
    print("\n" + head)
    print("|" + "---|" * (3 + len(rewards)))
    for r in rows:
        cells = [fmt(r["auc"][s]) for s in rewards]
        print(f"| {r['template']} | {r['n']} | {r['success']:.1%} | " + " | ".join(cells) + " |")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps({"args": vars(a), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
