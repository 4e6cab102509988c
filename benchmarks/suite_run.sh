#!/usr/bin/env bash
# Train + evaluate one split of the shapes suite with find train's defaults (RESULTS.md §6.3); results in runs/suite/.
# usage: benchmarks/suite_run.sh LABEL SPLIT SEED [--set k=v ...]   (one process, one thread)
cd "$(dirname "$0")/.."
label=$1; split=$2; seed=$3; shift 3
mkdir -p runs/suite
OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv/bin/python benchmarks/bench_suite.py --suite benchmarks/prompts/shapes_suite_$split.txt \
  --n 32 --eval-seed 1 --out runs/suite/${label}_${split}_s$seed --train-seed $seed \
  --json runs/suite/${label}_${split}_s$seed.json --markdown runs/suite/${label}_${split}_s$seed.md "$@" > runs/suite/${label}_${split}_s$seed.log 2>&1
