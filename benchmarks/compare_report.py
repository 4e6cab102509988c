"""Merge `benchmarks/compare.py` JSON files (e.g. two processes run side by side, each on its own prompts)
into one report: the per-prompt tables of findcli.bench.compare.markdown, and a mean over prompts per
method (final and peak success, reward, diversity, training cost, cost per image after training).

    python benchmarks/compare_report.py runs/compare_c.json runs/compare_d.json --markdown report.md \
        --png compare.png --json merged.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="compare.py --json files")
    ap.add_argument("--markdown")
    ap.add_argument("--png")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    from findcli import atomic
    from findcli.bench.compare import markdown, mean_table, merge, plot
    from findcli.errors import FindError

    runs = []
    for p in args.runs:
        try:
            runs.append(json.loads(Path(p).read_text()))
        except (OSError, ValueError) as e:
            raise SystemExit(f"compare_report: cannot read {p} as a compare.py --json file ({e})") from None
    try:
        result = merge(runs)
    except FindError as e:
        raise SystemExit(f"compare_report: {e}") from None
    text = "Mean over prompts:\n\n" + mean_table(result) + "\nPer prompt:\n\n" + markdown(result)
    print(text)
    if args.markdown:
        atomic.write_text(args.markdown, text)
    if args.json:
        atomic.write_text(args.json, json.dumps(result, indent=2) + "\n")
    if args.png:
        plot(result, args.png)


if __name__ == "__main__":
    main()
