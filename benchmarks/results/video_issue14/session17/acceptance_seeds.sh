#!/usr/bin/env bash
# find train --model builtin-video "a red cube moving to the left" --seed S, then find eval n=64 seed 1 (1 thread)
s=$1; out=runs/r7/accs$s; mkdir -p $out
export OMP_NUM_THREADS=1
/usr/bin/time -v .venv/bin/find train --model builtin-video "a red cube moving to the left" --seed $s --out $out/out.pt > $out/train.log 2> $out/time.txt
.venv/bin/find eval --prompt "a red cube moving to the left" --policy $out/out.pt --n 64 --seed 1 --json $out/eval.json > $out/eval.log 2>&1
