"""Benchmark the policy's per-element work: PyTorch eager vs torch.compile vs the fused Triton kernels.

The measurement code is `findcli.bench.kernels` (installed with the package, so `find bench --only
kernels` runs it from any install); this script is the standalone entry point and prints the plain
table. See that module for the ops, the byte floors and the timing.

Run:  python benchmarks/bench_kernels.py [--quick] [--device cuda|cpu] [--json FILE]
      find bench --only kernels   (the same numbers, inside the CLI)
--quick: tiny sizes, CPU-friendly, finishes in seconds; PyTorch paths only unless CUDA is present.
"""

from __future__ import annotations

import argparse
import json
import sys

from findcli.bench.kernels import format_table, run

__all__ = ["format_table", "main", "run"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, seconds on a CPU")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--json", default=None, help="write the result here as JSON")
    args = parser.parse_args(argv)
    result = run(quick=args.quick, device=args.device)
    if args.json:
        from findcli.atomic import write_text

        write_text(args.json, json.dumps(result, indent=2) + "\n")
    print(format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
