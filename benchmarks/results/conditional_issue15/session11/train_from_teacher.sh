#!/usr/bin/env bash
# RESULTS.md §10.4: per-prompt FIND on each training prompt of the split, started from the parse-based
# teacher's prediction for it (conditional_fold.py --write-inits INITS) instead of N(0, I); two at a time.
# Resumable: a prompt whose policy exists is skipped.  usage: train_from_teacher.sh INITS OUT CATEGORY [find train options]
# (CATEGORY: position, counting or all: which training prompts of the split)
set -euo pipefail
INITS=$1 OUT=$2 CAT=$3; shift 3
mkdir -p "$OUT"
grep -hv '^#' benchmarks/prompts/conditional_train.txt | { [ "$CAT" = all ] && cat || grep -P "^$CAT\t"; } | cut -f2 | python -c '
import sys; from findcli.evaluation import slug
for p in sys.stdin.read().splitlines(): print(f"{p}\t{slug(p)}")' > "$OUT/prompts.tsv"
export OUT INITS OMP_NUM_THREADS=1 EXTRA="$*"
cut -f2 "$OUT/prompts.tsv" | xargs -P 2 -I{} bash -c '
  s={}; p=$(grep -P "\t$s\$" "$OUT/prompts.tsv" | cut -f1)
  [ -f "$OUT/$s.pt" ] && exit 0
  t0=$(date +%s)
  find train "$p" --init "$INITS/$s.pt" --out "$OUT/$s.pt" --device cpu $EXTRA > "$OUT/$s.log" 2>&1 &&
  echo "$p	$(( $(date +%s) - t0 )) s" >> "$OUT/times.tsv"'
