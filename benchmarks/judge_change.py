"""How a change of the shapes judge moves suite baselines: every suite prompt's baseline arm (N(0, I),
eval namespace, the draw `find eval --n N --seed S` makes) judged by the current judge and by an older
copy of judge.py (e.g. `git show REV:findcli/shapes/judge.py > old_judge.py`).

    OMP_NUM_THREADS=1 python benchmarks/judge_change.py --old old_judge.py --n 32 --seed 1 --json out.json

Prints per category the baseline success under each judge and lists the images whose verdict changes
(prompt, index), so they can be looked at. With `--policy-dir DIR` (the layout `find train --prompts`
and `bench_suite.py --out` write: DIR/<slug>.pt), each prompt with a policy there also gets its policy
arm on the same ε (paired, as `find eval`), judged by both judges: the same images, two verdicts.

    OMP_NUM_THREADS=1 python benchmarks/judge_change.py --old old_judge.py --policy-dir runs/suite/cnt_s0 \
        --suite runs/count.txt --json out.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from findcli.evaluation import slug
from findcli.pipeline import SamplerSettings, load_pipeline
from findcli.policy import load_policy
from findcli.sampling import draw, settings_from_meta
from findcli.shapes import judge as new_judge
from judge_rates import load_judge  # benchmarks/ is on sys.path when a script in it runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="benchmarks/prompts/shapes_suite.txt")
    ap.add_argument("--old", required=True, help="path of the older judge.py")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--seed", type=int, default=1, help="eval seed (find eval --seed)")
    ap.add_argument("--policy-dir", default=None, help="DIR/<slug>.pt per prompt: also judge the policy arm")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    old_judge = load_judge(a.old)
    pipe = load_pipeline(None, torch.device("cpu"), torch.float32)
    rows = []
    for category, prompt in new_judge.load_suite(a.suite):
        f = Path(a.policy_dir) / f"{slug(prompt)}.pt" if a.policy_dir else None
        pf = load_policy(f) if f is not None and f.exists() else None
        settings = settings_from_meta(pf.meta) if pf is not None else SamplerSettings()
        d = draw(pipe, prompt, settings, a.seed, a.n, pf.policy if pf is not None else None, True)
        row = {"category": category, "prompt": prompt}
        for arm, x in (("baseline", d.baseline_images), ("policy", d.policy_images)):
            if x is None:
                continue
            ok_old, ok_new = old_judge.judge(x, prompt)[0], new_judge.judge(x, prompt)[0]
            row[arm] = {"old": ok_old.float().mean().item(), "new": ok_new.float().mean().item(),
                        "changed": (ok_old != ok_new).nonzero().squeeze(1).tolist()}
        rows.append(row)
        print(json.dumps(row), flush=True)
    cats = dict.fromkeys(r["category"] for r in rows)
    print("\n| category | prompts | baseline, old judge | baseline, new judge | changed verdicts | prompts with a policy | "
          "their baseline, old -> new | their policy, old -> new |")
    print("|---|---|---|---|---|---|---|---|")
    for c in [*cats, "overall"]:
        rs = [r for r in rows if c in ("overall", r["category"])]
        ps = [r for r in rs if "policy" in r]

        def mean(rows_, arm, judge_):
            return sum(r[arm][judge_] for r in rows_) / max(len(rows_), 1)

        line = (f"| {c} | {len(rs)} | {mean(rs, 'baseline', 'old'):.1%} | {mean(rs, 'baseline', 'new'):.1%} | "
                f"{sum(len(r['baseline']['changed']) for r in rs)} of {a.n * len(rs)} | {len(ps)} | ")
        if ps:
            line += (f"{mean(ps, 'baseline', 'old'):.1%} -> {mean(ps, 'baseline', 'new'):.1%} | "
                     f"{mean(ps, 'policy', 'old'):.1%} -> {mean(ps, 'policy', 'new'):.1%} |")
        else:
            line += "– | – |"
        print(line)
    if a.json:
        Path(a.json).write_text(json.dumps({"args": vars(a), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
