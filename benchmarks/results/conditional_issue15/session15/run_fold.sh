#!/bin/bash
# tuning fold: per-prompt FIND on the 11 fold prompts from the fold network's prediction; $1 tag, rest: options
# FOLD: the 11 fold prompts of RESULTS §10.6 (conditional_fold.py), FOLD_NET: the network taught on the fold's 719 prompts (find train --prompts FOLD_TEACH --conditional --teacher layouts)
set -x
tag=$1; shift
export OMP_NUM_THREADS=1
cd "$(git rev-parse --show-toplevel)"
/usr/bin/time -v .venv/bin/find train --prompts "${FOLD:-benchmarks/results/conditional_issue15/session15/fold_judged.txt}" --out-dir runs/r5/$tag --iterations 10 --init "${FOLD_NET:-benchmarks/results/conditional_issue15/session15/fold_network.pt}" "$@" > runs/r5/$tag.train.log 2>&1
.venv/bin/find eval --prompts "${FOLD:-benchmarks/results/conditional_issue15/session15/fold_judged.txt}" --policy-dir runs/r5/$tag --n 32 --seed 1 --json runs/r5/$tag.eval.json > runs/r5/$tag.eval.log 2>&1
echo done
