"""FIND on two tuning prompts (not in the suite) at 20 vs 15 DDIM steps, training seeds 0 and 1:
paired success from `find eval --n 32 --seed 1` (eval namespace; each run's baseline at its own steps)."""
import json
from pathlib import Path

here = Path(__file__).parent
rows = {}
for f in sorted(here.glob("*/eval.json")):
    name = f.parent.name  # <prompt slug>_s<steps>_seed<seed>
    slug, steps, seed = name.rsplit("_", 2)
    r = json.loads(f.read_text())
    b, p = r["baseline"]["success_rate"], r["policy"]["success_rate"]
    rows.setdefault(steps, []).append((slug, seed, b, p))
    print(f"{slug:32s} {steps:4s} {seed:6s} {100 * b:5.1f}% -> {100 * p:5.1f}% ({100 * (p - b):+.1f})")
for steps, rs in rows.items():
    n = len(rs)
    print(f"{steps}: mean baseline {100 * sum(r[2] for r in rs) / n:.1f}%, FIND {100 * sum(r[3] for r in rs) / n:.1f}%, "
          f"gain {100 * sum(r[3] - r[2] for r in rs) / n:+.1f} over {n} runs")
