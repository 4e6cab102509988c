"""AUC of the detector score for the judge's success on cached count images (reward_auc.py --seed SEED
--generate-only) at several detector COUNT_GAP values.

    python benchmarks/results/detector_touch_issue10/count_gap_sweep.py SEED "1,-2,-4,-6" shipped|DIR
"""
import sys, torch
from pathlib import Path
ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
import findcli.shapes.detector as D
from findcli.shapes.judge import judge
from findcli.evaluation import rank_auc
from benchmarks.reward_auc import pick_prompts, slug
torch.set_num_threads(1)
seed = int(sys.argv[1]); gaps = [float(g) for g in sys.argv[2].split(',')]
temps = ["count 2", "count 3", "count 4"]
chosen = pick_prompts(4, seed)
R = D.DetectorReward(folder=(None if sys.argv[3] == 'shipped' else sys.argv[3]))
data = {}
for t in temps:
    for p in chosen[t]:
        x = torch.load(f'{ROOT}/runs/reward_auc/images/{slug(p)}_n64_s{seed}.pt', weights_only=True)
        data[p] = (x, judge(x, p)[0])
for g in gaps:
    D.COUNT_GAP = g
    row = []
    for t in temps:
        sc, ok, within = [], [], []
        for p in chosen[t]:
            x, o = data[p]
            s = R(x, [p]*len(x)); sc.append(s); ok.append(o); within.append(rank_auc(s, o))
        row.append(f"{t}: {rank_auc(torch.cat(sc), torch.cat(ok)):.3f} (" + " ".join(f"{w:.2f}" for w in within) + ")")
    print(f"gap {g:6.1f} | " + " | ".join(row), flush=True)
