"""Table of the held-out test runs (RESULTS.md §10.5): per arm and seed the mean success over the 12
held-out prompts (position / counting), and the fraction of the per-prompt ceiling's paired gain
(§10.3's re-judged ceiling: base 26.6%, per-prompt FIND 91.9%).

    python benchmarks/results/conditional_issue15/session12/summarise.py RUN.json ...
"""
import json
import sys

BASE, CEILING = 0.266, 0.919  # the ceiling run's own base and per-prompt FIND arm (§10.3)
for f in sys.argv[1:]:
    d = json.load(open(f))
    per = d["per_prompt"]
    cats = {"position": [p for p in per if not p.split()[0] in ("two", "three", "four")]}
    cats["counting"] = [p for p in per if p not in cats["position"]]
    print(f"{f}: {len(per)} prompts, seed {d['seed']}")
    for arm in per[next(iter(per))]:
        mean = sum(v[arm] for v in per.values()) / len(per)
        parts = " / ".join(f"{100 * sum(per[p][arm] for p in ps) / len(ps):.1f}" for ps in cats.values() if ps)
        print(f"  {arm:16} {100 * mean:5.1f}%  ({parts})  fraction of the ceiling's gain {(mean - BASE) / (CEILING - BASE):+.2f}")
