"""Conditional policy by distillation (issue 15, item 3, a second route): fit the prompt-conditioned
network to per-prompt FIND policies already trained (regression of (μ, log σ) on the text feature),
then evaluate it on held-out prompts exactly as benchmarks/conditional.py does.

    OMP_NUM_THREADS=1 python benchmarks/conditional_distill.py --policies 'runs/suite/j2_*_s0/*.pt' \
        --exclude-objects "blue pyramid,green sphere,blue sphere,green cube" \
        --test benchmarks/prompts/conditional_test.txt --n 32 --eval-seed 1 --json runs/cond/distill.json
"""
from __future__ import annotations

import argparse
import glob
import json
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policies", required=True, help="glob of per-prompt policy files")
    ap.add_argument("--exclude-objects", default="", help="comma list of 'colour shape': skip policies naming one")
    ap.add_argument("--test", required=True)
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--eval-seed", type=int, default=1)
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--out", default="runs/cond/distill.pt")
    ap.add_argument("--json", default="runs/cond/distill.json")
    ap.add_argument("--ceiling", default=None)
    a = ap.parse_args()
    from findcli import atomic, shapes
    from findcli.conditional import ConditionalPolicy, distill, save_conditional
    from findcli.evaluation import evaluate_prompt, summarize
    from findcli.pipeline import SamplerSettings, load_runtime, text_features
    from findcli.policy import load_policy
    from findcli.shapes.world import parse_prompt
    from findcli.training import build_reward

    dev, _, pipe, _ = load_runtime(None, "auto")
    excl = {tuple(o.split()) for o in a.exclude_objects.split(",") if o.strip()}
    files, prompts, mus, lss = [], [], [], []
    for f in sorted(glob.glob(a.policies)):
        if f.endswith(".ckpt.pt"):
            continue
        pf = load_policy(f)
        spec = parse_prompt(pf.meta["prompt"])
        if any((o.colour, o.shape) in excl for o in spec.objects):
            continue
        files.append(f)
        prompts.append(pf.meta["prompt"])
        mus.append(pf.policy.mu.detach().flatten())
        lss.append(pf.policy.log_sigma.detach().flatten())
    text = torch.stack([text_features(pipe, p).float() for p in prompts])
    mu, ls = torch.stack(mus), torch.stack(lss)
    pol = ConditionalPolicy(tuple(load_policy(files[0]).policy.latent_shape), text.shape[1], a.rank, 256,
                            text.mean(0), text.std(0).clamp_min(1e-4))
    t0 = time.perf_counter()
    curve = distill(pol, text, mu, ls, steps=a.steps)
    fit_s = time.perf_counter() - t0
    meta = {"model": shapes.MODEL_ID, "steps": 20, "guidance": 7.5, "eta": 0.0, "prompts": prompts,
            "distilled_from": files, "fit_s": round(fit_s, 1), "fit_loss": curve[-1]}
    save_conditional(a.out, pol.eval(), meta)
    clip, _ = build_reward("clip", None, None, dev)
    recs = []
    for category, prompt in shapes.load_suite(a.test):
        p = pol.policy_for(text_features(pipe, prompt))
        rec = evaluate_prompt(pipe, prompt, SamplerSettings(), clip, a.n, a.eval_seed, p, True, 16, category)
        recs.append(rec)
        print(f"{category:<10} {prompt:<50} success {rec['baseline']['success_rate']:.2f} -> "
              f"{rec['policy']['success_rate']:.2f}", flush=True)
    out = {"policies": files, "prompts": prompts, "fit_s": fit_s, "fit_loss_first_last": [curve[0], curve[-1]],
           "n": a.n, "eval_seed": a.eval_seed, "test": recs, "test_summary": summarize(recs)}
    if a.ceiling and Path(a.ceiling).exists():
        ceil = {r["prompt"]: r for r in json.loads(Path(a.ceiling).read_text())["results"]}
        rows = [(r["baseline"]["success_rate"], r["policy"]["success_rate"], ceil[r["prompt"]]["policy"]["success_rate"])
                for r in recs if r["prompt"] in ceil]
        b, p, c = (sum(x[i] for x in rows) / len(rows) for i in range(3))
        out["vs_ceiling"] = {"prompts": len(rows), "baseline": b, "conditional": p, "per_prompt": c,
                             "fraction_of_ceiling_gain": (p - b) / (c - b) if c > b else None}
        print(json.dumps(out["vs_ceiling"]))
    atomic.write_text(a.json, json.dumps(out, indent=1))
    print(json.dumps(out["test_summary"]["overall"]))


if __name__ == "__main__":
    main()
