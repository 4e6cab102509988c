#!/usr/bin/env bash
# FIND on two tuning prompts (not in the suite), trained in fp32 vs bf16 (bf16 weights, fp32 attention:
# findcli.pipeline.configure_pipeline), 1 thread each; every policy evaluated with --dtype fp32
# (n=32, eval seed 1, eval namespace), and the bf16 ones also with --dtype bf16 (what `auto` now gives).
# usage: SEED=0 study.sh PROMPT   (run from the repo root; outputs under runs/r9/study)
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
seed=${SEED:-0}
p=$1
for dt in fp32 bf16; do
  slug=$(echo "$p" | tr ' ' '_')_${dt}_seed${seed}; out=runs/r9/study/$slug; mkdir -p $out
  [ -f $out/eval_fp32.json ] && continue
  /usr/bin/time -v .venv/bin/find train --model builtin-video "$p" --dtype $dt --seed $seed --out $out/out.pt > $out/train.log 2> $out/time.txt
  .venv/bin/find eval --prompt "$p" --policy $out/out.pt --n 32 --seed 1 --dtype fp32 --json $out/eval_fp32.json > $out/eval_fp32.log 2>&1
  [ $dt = bf16 ] && .venv/bin/find eval --prompt "$p" --policy $out/out.pt --n 32 --seed 1 --dtype bf16 --json $out/eval_bf16.json > $out/eval_bf16.log 2>&1
done
