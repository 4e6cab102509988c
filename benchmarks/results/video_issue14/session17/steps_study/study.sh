#!/usr/bin/env bash
# FIND on tuning prompts (not in the suite) at 20 vs 15 DDIM steps; 1 thread; eval n=32 seed 1 (eval namespace)
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
seed=${SEED:-0}
for p in "a blue pyramid moving right" "a green sphere moving down"; do
  for st in 20 15; do
    slug=$(echo "$p" | tr ' ' '_')_s${st}_seed${seed}; out=runs/r7/study/$slug; mkdir -p $out
    [ -f $out/eval.json ] && continue
    /usr/bin/time -v .venv/bin/find train --model builtin-video "$p" --steps $st --seed $seed --out $out/out.pt > $out/train.log 2> $out/time.txt
    .venv/bin/find eval --prompt "$p" --policy $out/out.pt --n 32 --seed 1 --json $out/eval.json > $out/eval.log 2>&1
  done
done
