#!/usr/bin/env bash
# Acceptance run for the built-in video world (issue 14): `find train --model builtin-video PROMPT` with
# no other option but the output path, timed with /usr/bin/time -v, then a paired `find eval` (n = 64)
# of baseline vs the policy in the eval noise namespace (never a training ε, findcli/seeds.py), judged by
# the motion judge. Usage: benchmarks/video_acceptance.sh [OUTDIR] [PROMPT]
# (defaults runs/video_acceptance, "a red cube moving to the left": red moves right 90% of the time in
# the generator's training captions, BIASES.md). Any further arguments go to `find train` (e.g. --seed 1).
# Run from the repo root with the project's .venv.
set -euo pipefail
out=${1:-runs/video_acceptance}
prompt=${2:-a red cube moving to the left}
shift $(( $# < 2 ? $# : 2 ))
mkdir -p "$out"
/usr/bin/time -v .venv/bin/find train --model builtin-video "$prompt" --out "$out/out.pt" "$@" > "$out/train.log" 2> "$out/time.txt"
.venv/bin/find eval --prompt "$prompt" --policy "$out/out.pt" --n 64 --seed 1 --json "$out/eval.json" | tee "$out/eval.log"
grep -E "Elapsed|Maximum resident" "$out/time.txt"
python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print('baseline', r['baseline'], 'policy', r['policy'])" "$out/eval.json"
