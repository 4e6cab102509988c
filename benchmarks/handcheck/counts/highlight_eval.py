"""The judge's verdicts against the 222 hand labels at several HIGHLIGHT_MAX_AREA values (needs the judge with
judge_absorb_small_tried.diff applied, and reward_auc.py's cached count images: RESULTS.md §6.12, last part).
    python benchmarks/handcheck/counts/highlight_eval.py 0 40 60 80
    HIGHLIGHT_JOIN=0 python benchmarks/handcheck/counts/highlight_eval.py 40 60 80 120   # never join two objects"""
import json
import os
import sys

import torch

sys.path.insert(0, "benchmarks")
from reward_auc import slug  # noqa: E402

import findcli.shapes.judge as J  # noqa: E402
from findcli.shapes.world import parse_prompt  # noqa: E402

torch.set_num_threads(1)
rows = [r for r in json.load(open("benchmarks/handcheck/counts/eval_mix1.json"))["rows"] if r["hand"] >= 0]
cells = sorted({(r["seed"], r["k"]) for r in rows})
imgs = {}
for r in rows:
    key = (r["seed"], r["prompt"])
    if key not in imgs:
        imgs[key] = torch.load(f"runs/reward_auc/images/{slug(r['prompt'])}_n64_s{r['seed']}.pt", weights_only=True)
J.HIGHLIGHT_JOIN = os.environ.get("HIGHLIGHT_JOIN", "1") != "0"
for v in [float(a) for a in sys.argv[1:]]:
    J.HIGHLIGHT_MAX_AREA = v
    verdict = {}
    for key, x in imgs.items():
        verdict[key] = J.judge(x, parse_prompt(key[1]))[0]
    out = []
    fixed = broke = 0
    for c in cells:
        mine = [r for r in rows if (r["seed"], r["k"]) == c]
        hand = torch.tensor([r["hand"] == r["k"] for r in mine])
        old = torch.tensor([r["judge"] for r in mine])
        new = torch.tensor([bool(verdict[(r["seed"], r["prompt"])][r["index"]]) for r in mine])
        fixed += int(((old != hand) & (new == hand)).sum())
        broke += int(((old == hand) & (new != hand)).sum())
        out.append(f"s{c[0]}k{c[1]} agree {(new == hand).float().mean():.3f} (was {(old == hand).float().mean():.3f}) n={len(mine)}")
    print(f"HIGHLIGHT_MAX_AREA={v}: fixed {fixed} broke {broke} | " + " | ".join(out), flush=True)
