"""Within-template agreement of the training policies' coarse layout, before and after starting FIND at
the teacher's prediction (RESULTS.md §10.4): per template, the mean pairwise cosine of lowpass₂ μ over
the split's training prompts, for two policy folders.

    python benchmarks/results/conditional_issue15/session11/agreement.py OLD_DIR NEW_DIR
"""
import itertools
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / "benchmarks"))
from findcli.evaluation import read_suite, slug  # noqa: E402
from findcli.policy import load_policy  # noqa: E402
from policy_transfer import group_of, lowpass  # noqa: E402

train = [p for p, _ in read_suite(ROOT / "benchmarks/prompts/conditional_train.txt")]
dirs = sys.argv[1:]
mus = {d: {p: load_policy(Path(d) / f"{slug(p)}.pt").policy for p in train} for d in dirs}
groups: dict[str, list[str]] = {}
for p in train:
    groups.setdefault(group_of(p), []).append(p)
print(f"{'template':16} {'n':>3} " + " ".join(f"{Path(d).name[-22:]:>22}" for d in dirs))
for g, ps in sorted(groups.items()):
    row = []
    for d in dirs:
        v = {p: lowpass(mus[d][p].mu.detach().flatten(), tuple(mus[d][p].latent_shape), 2) for p in ps}
        cs = [torch.nn.functional.cosine_similarity(v[x], v[y], dim=0).item() for x, y in itertools.combinations(ps, 2)]
        row.append(sum(cs) / len(cs))
    print(f"{g:16} {len(ps):3d} " + " ".join(f"{c:22.3f}" for c in row))
