"""FIND on two tuning prompts trained in fp32 vs bf16 (study.sh): paired success from `find eval --n 32
--seed 1` (eval namespace), each policy judged on fp32 rollouts and the bf16 ones also on bf16 rollouts,
plus training wall time (one torch thread each, two runs at a time)."""
import json
import re
from pathlib import Path

here = Path(__file__).parent
rows = []
for f in sorted(here.glob("*/eval_*.json")):
    slug, dt, seed = f.parent.name.rsplit("_", 2)  # <prompt slug>_<train dtype>_seed<seed>
    r = json.loads(f.read_text())
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", (f.parent / "time.txt").read_text())
    b, p = r["baseline"]["success_rate"], r["policy"]["success_rate"]
    ev = f.stem.removeprefix("eval_")
    rows.append((dt, ev, p - b))
    print(f"{slug:28s} train {dt} {seed} eval {ev}: {100 * b:5.1f}% -> {100 * p:5.1f}% ({100 * (p - b):+.1f})  "
          f"win {r['policy']['win_rate']:.2f}  train wall {wall.group(1) if wall else '?'}")
for key in sorted({(d, e) for d, e, _ in rows}):
    g = [x for d, e, x in rows if (d, e) == key]
    print(f"train {key[0]} eval {key[1]}: mean gain {100 * sum(g) / len(g):+.1f} over {len(g)} runs")
