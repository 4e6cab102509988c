#!/bin/bash
# per-prompt FIND on the 12 held-out prompts, $2 iterations, from N(0, I) or (INIT set) the conditional network's prediction
set -x
tag=$1; it=$2; shift 2
export OMP_NUM_THREADS=${THREADS:-1}
cd "$(git rev-parse --show-toplevel)"
/usr/bin/time -v .venv/bin/find train --prompts benchmarks/prompts/conditional_test.txt --out-dir runs/r5/$tag --iterations $it \
  ${INIT:+--init $INIT} "$@" > runs/r5/$tag.train.log 2>&1
.venv/bin/find eval --prompts benchmarks/prompts/conditional_test.txt --policy-dir runs/r5/$tag --n 32 --seed 1 --json runs/r5/$tag.eval.json > runs/r5/$tag.eval.log 2>&1
echo done
