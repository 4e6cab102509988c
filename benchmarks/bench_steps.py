"""Steps sweep: rollout time at T = 10, 20, 50 DDIM steps and, on the built-in shapes model, FIND's
alignment gain at each T — a short FIND run at that T, then the judge's success rate of the policy
vs N(0, I) on the same ε (findcli.evaluation.evaluate_prompt). A related method reports that gains
of initial-noise optimisation shrink as the number of steps grows; this measures it for FIND.

The measurement code lives in `findcli.bench.steps_sweep`.

Run:  python benchmarks/bench_steps.py [--quick] [--device cuda|cpu] [--dtype ...] [--json FILE]
      find bench --only steps_sweep
--quick: T = 2, 5, 10 on the tiny test pipeline (timing only: it has no judge) and, if present,
the built-in model with a 2-iteration run and 8 images per arm.
"""

import sys

from findcli.bench import script_main

if __name__ == "__main__":
    sys.exit(script_main("steps_sweep"))
