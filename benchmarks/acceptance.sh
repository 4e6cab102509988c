#!/usr/bin/env bash
# Acceptance run for the built-in shapes model (issues 3, 10): `find train` with no option but the output
# path, timed with /usr/bin/time -v, then a paired `find eval` (n = 64) of baseline vs the policy
# (eval noise namespace: never a training ε, findcli/seeds.py).
# Usage: benchmarks/acceptance.sh [OUTDIR]   (default runs/acceptance); run from the repo root with the
# project's .venv. Results: OUTDIR/time.txt, OUTDIR/train.log, OUTDIR/eval.json, OUTDIR/out.before_after.png.
set -euo pipefail
out=${1:-runs/acceptance}
mkdir -p "$out"
prompt="a red cube on a blue sphere"
/usr/bin/time -v .venv/bin/find train "$prompt" --out "$out/out.pt" > "$out/train.log" 2> "$out/time.txt"
.venv/bin/find eval --prompt "$prompt" --policy "$out/out.pt" --n 64 --seed 1 --json "$out/eval.json" | tee "$out/eval.log"
grep -E "Elapsed|Maximum resident" "$out/time.txt"
python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print('baseline', r['baseline'], 'policy', r['policy'])" "$out/eval.json"
