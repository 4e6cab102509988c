#!/usr/bin/env bash
# Train the example prompt again with other seeds and evaluate each policy the way acceptance.sh does
# (paired, n = 64, eval seed 1), two runs at a time with one torch thread each: how much a single run
# of a setting varies (benchmarks/RESULTS.md §2, "seeds" table).
# Usage: benchmarks/seeds.sh NAME "SEEDS" [find train options...]
#   e.g. benchmarks/seeds.sh default "0 1 2 3"    benchmarks/seeds.sh ie2 "0 1 2 3" --inner-epochs 2
# Run from the repo root with the project's .venv. Results: runs/seeds/NAME_sS/{eval.json,train.log},
# one line per run appended to runs/seeds/results.txt.
set -euo pipefail
name=$1; seeds=$2; shift 2
prompt="a red cube on a blue sphere"
one() {
  local seed=$1; shift
  local d=runs/seeds/${name}_s${seed}
  mkdir -p "$d"
  OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv/bin/find train "$prompt" --out "$d/out.pt" --seed "$seed" "$@" > "$d/train.log" 2>&1
  OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv/bin/find eval --prompt "$prompt" --policy "$d/out.pt" --n 64 --seed 1 \
    --json "$d/eval.json" > "$d/eval.log" 2>&1
  python3 -c "import json,sys; r=json.load(open(sys.argv[1])); \
print(sys.argv[2], 'seed', sys.argv[3], 'baseline', r['baseline']['success_rate'], 'policy', r['policy']['success_rate'])" \
    "$d/eval.json" "$name" "$seed" | tee -a runs/seeds/results.txt
}
running=0
for s in $seeds; do
  one "$s" "$@" &
  running=$((running + 1))
  if [ "$running" -ge 2 ]; then wait -n; running=$((running - 1)); fi
done
wait
