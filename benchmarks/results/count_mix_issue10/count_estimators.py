"""AUC of the detector's count term exp(-(m - k)^2 / tau) for four estimates m (distinct instances, density mass,
instance count without merging, their half) against the judge on the cached count draws 1, 3, 4 (reward_auc.py --generate-only)
and against the blind hand counts (benchmarks/handcheck/counts).

    python benchmarks/results/count_mix_issue10/count_estimators.py shipped|DETECTOR_DIR
"""
import sys, torch, json
from pathlib import Path
ROOT = Path(__file__).resolve().parents[3]; sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(ROOT/'benchmarks'))
import findcli.shapes.detector as D
from findcli.shapes import judge as J
from findcli.shapes.world import parse_prompt
from findcli.evaluation import rank_auc
from reward_auc import pick_prompts, slug
torch.set_num_threads(1)
folder = None if sys.argv[1] == 'shipped' else sys.argv[1]
model = D.load_detector(folder)
meta = json.load(open(ROOT/'benchmarks/handcheck/counts/items.json'))
hand = sum([list(map(int, open(ROOT/f'benchmarks/handcheck/counts/labels_{i}.txt').read().split())) for i in range(6)], [])
handmap = {(s, p, i): h for (s, p, i), h in zip(meta['items'], hand)}
ests = {}
def estimators(s, c):
    return {'distinct': D.distinct_count(s, c), 'mass': s['count'][:, c], 'inst': s['inst_count'][:, c],
            'half': 0.5 * D.distinct_count(s, c) + 0.5 * s['count'][:, c]}
res = {}
for seed in [1, 3, 4]:
    ch = pick_prompts(4, seed)
    for t in ["count 2", "count 3", "count 4"]:
        acc = {}
        for p in ch[t]:
            x = torch.load(f'{ROOT}/runs/reward_auc/images/{slug(p)}_n64_s{seed}.pt', weights_only=True)
            spec = parse_prompt(p); c = D.class_index(spec.objects[0].colour, spec.objects[0].shape); k = spec.count
            s = D.summarise(*model(x)); ok = J.judge(x, p)[0]
            for name, est in estimators(s, c).items():
                sc = torch.exp(-((est - k) ** 2) / D.COUNT_TAU)
                a = acc.setdefault(name, [[], [], [], []])
                a[0].append(sc); a[1].append(ok)
                for i in range(64):
                    h = handmap.get((seed, p, i))
                    if h is not None and h >= 0: a[2].append(sc[i].item()); a[3].append(h == k)
        for name, a in acc.items():
            r = res.setdefault(name, {})
            r[f"s{seed} {t[-1]} judge"] = rank_auc(torch.cat(a[0]), torch.cat(a[1]))
            if a[2]: r[f"s{seed} {t[-1]} HAND"] = rank_auc(torch.tensor(a[2]), torch.tensor(a[3]))
keys = list(next(iter(res.values())).keys())
print("est | " + " | ".join(keys))
for name, r in res.items():
    print(f"{name} | " + " | ".join(f"{r[k]:.3f}" for k in keys))
