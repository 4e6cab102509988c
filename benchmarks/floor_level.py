"""Which prompts a floor level (--adv-std-floor-above) would change, from a suite run's training curves.

bench_suite.py stores each prompt's batch reward means and whether the advantage-std floor set the
scale (`std_floored`) at every iteration. A run with `--adv-std-floor-above LEVEL` takes the same steps
as the run it is read from until the first iteration where the floor set the scale while the running
window's mean (the last `norm_window` rewards = the last 8 batches of 8) was below lo + LEVEL × span:
there the scale becomes the plain running std, and the trajectories part. Prompts with no such
iteration are bit-identical under the level (same seeds, same code), so only the others need training.

usage: python benchmarks/floor_level.py RUN.json [RUN.json ...] --level 0.5 [--range 0 2] [--window-batches 8]
       [--level-runs LEVEL.json ... --write DIR]

With --level-runs (bench_suite runs of the changed prompts, trained with the level) and --write, each
RUN.json is written to DIR with the level's results: a changed prompt's record comes from the level
run of the same training seed (an error if there is none), every other record is the run's own. Under
keep=best (both runs), FIND's arm is the last policy (`kept.last_success_rate`), which is what a
keep=last run would have evaluated: the same trajectory, the same eval draw.
"""

import argparse
import copy
import json
from pathlib import Path


def floored_below(curve: dict, threshold: float, window_batches: int) -> list[int]:
    """The iterations at which the floor set the scale with the window's mean below `threshold`."""
    means = curve["reward_mean"]
    out = []
    for i, floored in enumerate(curve["std_floored"]):
        window = means[max(0, i - window_batches + 1): i + 1]
        if floored and sum(window) / len(window) < threshold:
            out.append(i)
    return out


def first_change(curve: dict, threshold: float, window_batches: int) -> int | None:
    """The first of those: where a run with the level parts from the run it is read from."""
    below = floored_below(curve, threshold, window_batches)
    return below[0] if below else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--level", type=float, required=True, help="the --adv-std-floor-above to check")
    ap.add_argument("--range", type=float, nargs=2, default=(0.0, 2.0), help="the reward's declared (lo, hi)")
    ap.add_argument("--window-batches", type=int, default=8, help="norm_window / batch (64 / 8)")
    ap.add_argument("--level-runs", nargs="*", default=[], help="bench_suite runs trained with the level")
    ap.add_argument("--write", help="folder for the runs with the level's results substituted")
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
            below = floored_below(c, threshold, args.window_batches)
            print(f"| {path.rsplit('/', 1)[-1]} | {r['prompt']} | {r['category']} | {sum(c['std_floored'])} | "
                  f"{len(below)} | {below[0] if below else '–'} |")
    if args.write:
        write_substituted(args, threshold)


def last_arm(r: dict) -> dict:
    """The record with FIND's success set to the last policy's (keep=best runs), marked as such."""
    r = copy.deepcopy(r)
    if "kept" in r:
        r["policy"]["success_rate"] = r["kept"]["last_success_rate"]
        r["policy_arm"] = "last"  # the reward / win rate fields still describe the kept policy
    return r


def write_substituted(args, threshold: float) -> None:
    level = {}
    for path in args.level_runs:
        d = json.load(open(path))
        for r in d["results"]:
            level[(d["train_seed"], r["prompt"])] = r
    out = Path(args.write)
    out.mkdir(parents=True, exist_ok=True)
    for path in args.runs:
        d = json.load(open(path))
        results = []
        for r in d["results"]:
            if "train" in r and first_change(r["train"], threshold, args.window_batches) is not None:
                key = (d["train_seed"], r["prompt"])
                if key not in level:
                    raise SystemExit(f"{r['prompt']!r} (seed {d['train_seed']}) changes under the level but no "
                                     "--level-runs file has it")
                results.append(dict(last_arm(level[key]), source="level run"))
            else:
                results.append(dict(last_arm(r), source="unchanged by the level"))
        d = dict(d, results=results, level=args.level, substituted_from=args.level_runs)
        d.pop("summary", None)
        (out / Path(path).name).write_text(json.dumps(d, indent=2))
        print(f"wrote {out / Path(path).name}")


if __name__ == "__main__":
    main()
