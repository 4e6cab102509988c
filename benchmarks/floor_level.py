"""Which prompts a floor level (--adv-std-floor-above) would change, from a suite run's training curves.

bench_suite.py stores each prompt's batch reward means and whether the advantage-std floor set the
scale (`std_floored`) at every iteration. A run with `--adv-std-floor-above LEVEL` takes the same steps
as the run it is read from until the first iteration where the floor set the scale while the running
window's mean (the last `norm_window` rewards = the last 8 batches of 8) was below lo + LEVEL × span:
there the scale becomes the plain running std, and the trajectories part. Prompts with no such
iteration are bit-identical under the level (same seeds, same code), so only the others need training.

usage: python benchmarks/floor_level.py RUN.json [RUN.json ...] --level 0.5 [--range 0 2] [--window-batches 8]
"""

import argparse
import json


def first_change(curve: dict, threshold: float, window_batches: int) -> int | None:
    """The first iteration at which the floor set the scale with the window's mean below `threshold`."""
    means = curve["reward_mean"]
    for i, floored in enumerate(curve["std_floored"]):
        window = means[max(0, i - window_batches + 1): i + 1]
        if floored and sum(window) / len(window) < threshold:
            return i
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--level", type=float, required=True, help="the --adv-std-floor-above to check")
    ap.add_argument("--range", type=float, nargs=2, default=(0.0, 2.0), help="the reward's declared (lo, hi)")
    ap.add_argument("--window-batches", type=int, default=8, help="norm_window / batch (64 / 8)")
    args = ap.parse_args()
    lo, hi = args.range
    threshold = lo + args.level * (hi - lo)
    print(f"| run | prompt | category | iterations floored | floored below {threshold:g} | first change |")
    print("|---|---|---|---|---|---|")
    for path in args.runs:
        d = json.load(open(path))
        for r in d["results"]:
            if "train" not in r:
                continue
            c = r["train"]
            means = c["reward_mean"]
            below = sum(1 for i, f in enumerate(c["std_floored"]) if f and sum(
                means[max(0, i - args.window_batches + 1): i + 1]) / len(means[max(0, i - args.window_batches + 1): i + 1])
                < threshold)
            k = first_change(c, threshold, args.window_batches)
            print(f"| {path.rsplit('/', 1)[-1]} | {r['prompt']} | {r['category']} | {sum(c['std_floored'])} | {below} | "
                  f"{'–' if k is None else k} |")


if __name__ == "__main__":
    main()
