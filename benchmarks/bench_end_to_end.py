"""One `find train` iteration end to end: FindTrainer.step() timed and split into denoise (the UNet
loop), decode (VAE), reward and update (value net + PPO replay update), with iterations/s and
images/s, for the default preset and for `--preset paper` (one image per iteration, 50 steps, eta 1).

Rewards: the built-in CLIP on the built-in model (as `find train` uses it); on the random SD1.5
model, `findcli.bench.models.colourfulness_reward`, a cheap user-style function, so the reward column is
the floor of that phase. The measurement code lives in `findcli.bench.end_to_end`.

Run:  python benchmarks/bench_end_to_end.py [--quick] [--device cuda|cpu] [--dtype ...] [--json FILE]
      find bench --only end_to_end
--quick: the tiny test pipeline with reduced steps (4 and 10), CPU-sized, seconds.
"""

import sys

from findcli.bench import script_main

if __name__ == "__main__":
    sys.exit(script_main("end_to_end"))
