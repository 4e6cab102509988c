"""Images whose verdict differs between two copies of the shapes judge, on a cached reward_auc.py draw.

    python benchmarks/results/judge_stack_issue10/changed_verdicts.py OLD_judge.py findcli/shapes/judge.py \
        SEED OUT.png "count 2" "count 3" "count 4"

Reads runs/reward_auc/images/<slug>_n64_s<SEED>.pt (written by `benchmarks/reward_auc.py --seed SEED
--generate-only`), prints each changed verdict (prompt, image index, both judges' objects as
colour+shape initials) and writes a sheet of those images labelled "index old>new objects(new)"."""
import importlib.util
import os
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path[:0] = [str(ROOT), str(HERE)]
from benchmarks.reward_auc import pick_prompts, slug  # noqa: E402
from sheetlib import sheet  # noqa: E402


def load(path):
    spec = importlib.util.spec_from_file_location(f"judge_{abs(hash(path))}", path)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m


torch.set_num_threads(1)
A, B = load(sys.argv[1]), load(sys.argv[2])
seed, out, temps = int(sys.argv[3]), sys.argv[4], sys.argv[5:]
chosen = pick_prompts(4, seed)
imgs, labs = [], []
tot = ok_a = ok_b = 0
for t in temps:
    for p in chosen[t]:
        fn = ROOT / f"runs/reward_auc/images/{slug(p)}_n64_s{seed}.pt"
        if not os.path.exists(fn):
            continue
        x = torch.load(fn, weights_only=True)
        a, b = A.judge(x, p)[0], B.judge(x, p)[0]
        sa, sb = A.segment(x), B.segment(x)
        tot += len(x)
        ok_a += int(a.sum())
        ok_b += int(b.sum())
        for i in (a != b).nonzero().squeeze(1).tolist():
            da = "".join(o["colour"][0] + o["shape"][0] for o in sa[i])
            db = "".join(o["colour"][0] + o["shape"][0] for o in sb[i])
            labs.append(f"{len(imgs)} {'Y' if a[i] else 'n'}>{'Y' if b[i] else 'n'} {db}")
            imgs.append(x[i])
            print(len(imgs) - 1, p, i, "A", bool(a[i]), da, "B", bool(b[i]), db)
print("changed", len(imgs), "of", tot, "success A", ok_a, "B", ok_b)
if imgs:
    sheet(imgs, labs, out, scale=3, cols=8)
