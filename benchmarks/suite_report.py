"""Compare shapes-suite result files (benchmarks/bench_suite.py --json): several training seeds of one
setting, another reward, the oracle. Paired throughout: every number is over the prompts that have a
result in *every* file given, baseline and FIND on the same ε; a setting with several files (seeds)
is the mean over them per prompt. Prints Markdown, per category and per split (tuning / validation,
benchmarks/prompts/shapes_suite_{tune,val}.txt).

    python benchmarks/suite_report.py --run oracle=runs/suite/oracle_*.json \\
        --run detector=runs/suite/det_s0_*.json,runs/suite/det_s1_*.json --ratio-to oracle

A run's files may be parts of one suite (--start/--limit halves) and several seeds: parts are joined,
seeds (the `train_seed` of each file) averaged.
"""

from __future__ import annotations

import argparse
import glob
import json
from collections import defaultdict
from pathlib import Path

SPLITS = {"tune": "benchmarks/prompts/shapes_suite_tune.txt", "val": "benchmarks/prompts/shapes_suite_val.txt"}
ORDER = ["single", "colour", "two_objects", "attribute_binding", "counting", "position", "overall"]


def policy_success(r: dict, arm: str) -> float:
    """FIND's success in one result: the policy evaluated (arm "kept"), or under keep=best the last
    policy of the same run on the same eval draw (arm "last"; the kept one where it was the last)."""
    if arm == "last":
        if "kept" not in r:
            raise SystemExit(f"{r['prompt']!r} has no keep=best record: '@last' needs a bench_suite --set keep=best run")
        return r["kept"]["last_success_rate"]
    return r["policy"]["success_rate"]


def load_run(spec: str, arm: str = "kept") -> dict[str, dict]:
    """prompt -> {"category", "baseline", "policy"} success rates, FIND averaged over seeds."""
    per: dict[str, list[dict]] = defaultdict(list)
    for pattern in spec.split(","):
        for f in sorted(glob.glob(pattern)) or [pattern]:
            blob = json.loads(Path(f).read_text())
            for r in blob["results"]:
                if "policy" in r:
                    per[r["prompt"]].append({"seed": blob.get("train_seed", 0), **r})
    out = {}
    for p, rs in per.items():
        out[p] = {"category": rs[0]["category"], "seeds": sorted({r["seed"] for r in rs}),
                  "baseline": sum(r["baseline"]["success_rate"] for r in rs) / len(rs),
                  "policy": sum(policy_success(r, arm) for r in rs) / len(rs),
                  "per_seed": [policy_success(r, arm) for r in rs]}
    return out


def split_of(prompt: str) -> str:
    for name, path in SPLITS.items():
        if any(line.split("\t")[-1].strip() == prompt for line in Path(path).read_text().splitlines()):
            return name
    return "other"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", action="append", required=True, help="LABEL=glob[,glob...]; LABEL@last=... reads "
                    "the last policy of a keep=best run instead of the kept one")
    ap.add_argument("--ratio-to", help="label of the run whose gain is the reference (the oracle); the ratio is "
                    "shown where that gain exceeds 5 points")
    a = ap.parse_args()
    runs = {}
    for spec in a.run:
        label, files = spec.split("=", 1)
        arm = "last" if label.endswith("@last") else "kept"
        runs[label.removesuffix("@last")] = load_run(files, arm)
    common = set.intersection(*(set(r) for r in runs.values()))
    first = next(iter(runs.values()))
    for split in ("tune", "val", "all"):
        prompts = sorted(p for p in common if split == "all" or split_of(p) == split)
        if not prompts:
            continue
        print(f"\n### {split} ({len(prompts)} prompts with a result in every run)\n")
        head = "| category | prompts | baseline | " + " | ".join(f"{k} (gain)" for k in runs)
        if a.ratio_to:
            head += " | " + " | ".join(f"{k} / {a.ratio_to} gain" for k in runs if k != a.ratio_to)
        print(head + " |")
        print("|" + "---|" * (head.count("|")))
        for cat in ORDER:
            ps = [p for p in prompts if cat == "overall" or first[p]["category"] == cat]
            if not ps:
                continue
            base = sum(first[p]["baseline"] for p in ps) / len(ps)
            gains = {k: sum(r[p]["policy"] for p in ps) / len(ps) - base for k, r in runs.items()}
            row = f"| {cat} | {len(ps)} | {100 * base:.1f}% | " + " | ".join(
                f"{100 * (base + g):.1f}% ({100 * g:+.1f})" for g in gains.values())
            if a.ratio_to:
                ref = gains[a.ratio_to]
                row += " | " + " | ".join(
                    (f"{g / ref:.2f}" if ref > 0.05 else "–") for k, g in gains.items() if k != a.ratio_to)
            print(row + " |")
    print("\n### per prompt (FIND success per seed)\n")
    print("| prompt | split | baseline | " + " | ".join(runs) + " |")
    print("|---|---|---|" + "---|" * len(runs))
    for p in sorted(common, key=lambda p: (ORDER.index(first[p]["category"]), p)):
        cells = [" / ".join(f"{100 * x:.0f}" for x in r[p]["per_seed"]) for r in runs.values()]
        print(f"| {p} | {split_of(p)} | {100 * first[p]['baseline']:.0f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
