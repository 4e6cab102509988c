"""How much the per-prompt policies of one template agree on their coarse layout (RESULTS.md §10.3):
per template, the mean pairwise cosine of lowpass₂ μ between its policies (the split's 36 training
prompts, session 4, and the 18 extra ones, this session), and of each policy with its horizontal mirror
image of another prompt of the template (a left-right flip keeps on/under/above/below/next to/counts true).

    python benchmarks/results/conditional_issue15/session10/template_agreement.py
"""
import glob
import itertools
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / "benchmarks"))
from findcli.evaluation import read_suite  # noqa: E402
from findcli.policy import load_policy  # noqa: E402
from policy_transfer import group_of, lowpass  # noqa: E402

R = ROOT / "benchmarks/results/conditional_issue15"
pols = {}
for f in glob.glob(str(R / "session4/per_prompt_policies/*.pt")) + glob.glob(str(R / "session10/extra_policies/*.pt")):
    pf = load_policy(f)
    pols[pf.meta["prompt"]] = pf.policy
train = [p for t in ("conditional_train.txt", "conditional_train_extra.txt")
         for p, _ in read_suite(ROOT / "benchmarks/prompts" / t) if p in pols]
shape = tuple(pols[train[0]].latent_shape)


def cos(a, b):
    return float(torch.nn.functional.cosine_similarity(a, b, dim=0))


by = {}
for p in train:
    by.setdefault(group_of(p), []).append(lowpass(pols[p].mu.detach().flatten(), shape, 2))
print(f"{'template':16s} {'n':>3s} {'pairwise cos':>13s} {'vs mirror':>10s} {'max of the two':>15s}")
for t, ms in sorted(by.items()):
    same, mir, best = [], [], []
    for a, b in itertools.combinations(ms, 2):
        bm = b.reshape(shape).flip(-1).flatten()
        same.append(cos(a, b))
        mir.append(cos(a, bm))
        best.append(max(same[-1], mir[-1]))
    m = lambda xs: sum(xs) / len(xs)  # noqa: E731
    print(f"{t:16s} {len(ms):3d} {m(same):13.3f} {m(mir):10.3f} {m(best):15.3f}")
