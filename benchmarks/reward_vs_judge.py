"""Does the reward see what the judge checks? For each prompt, draw N(0, I) images from the built-in
model and measure how well the CLIP score ranks the judge's successes above its failures (ROC AUC:
0.5 = blind, 1 = perfect), overall and per judge constraint.

    python benchmarks/reward_vs_judge.py --n 128 --seed 7 "a red cube on a blue sphere" "three purple spheres"
    python benchmarks/reward_vs_judge.py --reward-model find-shapes-clip:/path/to/other.safetensors ...

The TRAINING_LOG "Reward CLIP v2" table used --n 128 --seed 7 and the five prompts listed there.
"""
import argparse

import torch

from findcli.evaluation import rank_auc as auc
from findcli.pipeline import SamplerSettings, load_pipeline
from findcli.rewards import OpenClipScorer, resolve_clip_model
from findcli.sampling import draw
from findcli.shapes.judge import judge
from findcli.shapes.world import parse_prompt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("prompts", nargs="+")
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--guidance", type=float, default=7.5)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--reward-model", default="builtin")
    a = ap.parse_args()
    pipe = load_pipeline(None, torch.device("cpu"), torch.float32)
    scorer = OpenClipScorer(*resolve_clip_model(a.reward_model), torch.device("cpu"), torch.float32)
    aucs = []
    for p in a.prompts:
        d = draw(pipe, p, SamplerSettings(a.steps, a.guidance, 0.0), a.seed, a.n, None, True, 32)
        ok, per = judge(d.baseline_images, parse_prompt(p))
        score = scorer.cosine(d.baseline_images, [p] * a.n)
        aucs.append(auc(score, ok))
        parts = "  ".join(f"{k} {v.float().mean():.2f}/{auc(score, v):.2f}" for k, v in per.items())
        print(f"{p:45s} success {ok.float().mean():.2f}  AUC {aucs[-1]:.3f}   constraint rate/AUC: {parts}", flush=True)
    print(f"mean AUC {sum(aucs) / len(aucs):.3f}")


if __name__ == "__main__":
    main()
