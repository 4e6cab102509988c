"""How a change of the shapes judge moves suite baselines: every suite prompt's baseline arm (N(0, I),
eval namespace, the draw `find eval --n N --seed S` makes) judged by the current judge and by an older
copy of judge.py (e.g. `git show REV:findcli/shapes/judge.py > old_judge.py`).

    OMP_NUM_THREADS=1 python benchmarks/judge_change.py --old old_judge.py --n 32 --seed 1 --json out.json

Prints per category the baseline success under each judge and lists the images whose verdict changes
(prompt, index), so they can be looked at.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import torch

from findcli.pipeline import SamplerSettings, load_pipeline
from findcli.sampling import draw
from findcli.shapes import judge as new_judge


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="benchmarks/prompts/shapes_suite.txt")
    ap.add_argument("--old", required=True, help="path of the older judge.py")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--seed", type=int, default=1, help="eval seed (find eval --seed)")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    spec = importlib.util.spec_from_file_location("old_judge", a.old)
    old_judge = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(old_judge)
    pipe = load_pipeline(None, torch.device("cpu"), torch.float32)
    rows = []
    for category, prompt in new_judge.load_suite(a.suite):
        x = draw(pipe, prompt, SamplerSettings(), a.seed, a.n, None, True).baseline_images
        ok_old, ok_new = old_judge.judge(x, prompt)[0], new_judge.judge(x, prompt)[0]
        changed = (ok_old != ok_new).nonzero().squeeze(1).tolist()
        rows.append({"category": category, "prompt": prompt, "old": ok_old.float().mean().item(),
                     "new": ok_new.float().mean().item(), "changed": changed})
        print(json.dumps(rows[-1]), flush=True)
    cats = dict.fromkeys(r["category"] for r in rows)
    print("\n| category | prompts | baseline, old judge | baseline, new judge | images whose verdict changed |")
    print("|---|---|---|---|---|")
    for c in [*cats, "overall"]:
        rs = [r for r in rows if c in ("overall", r["category"])]
        mean = lambda k: sum(r[k] for r in rs) / len(rs)  # noqa: E731
        print(f"| {c} | {len(rs)} | {mean('old'):.1%} | {mean('new'):.1%} | {sum(len(r['changed']) for r in rs)} of {a.n * len(rs)} |")
    if a.json:
        Path(a.json).write_text(json.dumps({"args": vars(a), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
