#!/bin/bash
# FIND iterations from the distilled test network (benchmarks/results/conditional_issue15/session15/distilled_s0.pt, 72.9% held out) over the 36 training prompts,
# every prompt at every iteration; then the held-out eval. $1 tag, $2 iterations, rest: extra options
set -x
tag=$1; it=$2; shift 2
export OMP_NUM_THREADS=1
cd "$(git rev-parse --show-toplevel)"
/usr/bin/time -v .venv/bin/find train --prompts benchmarks/prompts/conditional_train.txt --conditional --init ${INIT:-benchmarks/results/conditional_issue15/session15/distilled_s0.pt} \
  --iterations $it --batch 4 --prompts-per-iteration 38 --net-lr 1e-3 --set tune=layout --set kl_to=start --kl-weight 1 \
  --out runs/r5/$tag.pt "$@" > runs/r5/$tag.train.log 2>&1
.venv/bin/find eval --prompts benchmarks/prompts/conditional_test.txt --policy runs/r5/$tag.pt --n 32 --seed 1 --json runs/r5/$tag.eval.json > runs/r5/$tag.eval.log 2>&1
echo done
