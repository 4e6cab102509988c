"""Write the prompt split of the conditional-policy benchmark (issue 15, item 3): prompts of the
shapes grammar held out by template slot.

  held-out objects  4 of the 18 (colour, shape) pairs, drawn with --seed; no training prompt names one
  train             4 relation prompts per relation (28) and 8 count prompts, objects never held out,
                    two different colours per relation prompt
  test              per relation 1 prompt naming a held-out object (7); 2 relation prompts whose two
                    objects are both seen in training but never together (an unseen relation pair);
                    3 count prompts (two, three, four) of held-out objects

Only position and counting: the categories where FIND has something to gain on the built-in model
(the baseline already succeeds 80-100% on the others, RESULTS.md §6.3).

    python benchmarks/make_conditional_split.py --seed 0 --out benchmarks/prompts

With --extra K it also writes conditional_train_extra.txt: K more relation prompts per relation and
2K count prompts, drawn (from a second generator, seed + 1000) under the same rules from what the split
left: never a held-out object, never a pair of objects that a training prompt or one of the test's
unseen-pair prompts already puts together, never a (count, object) the training file has. The files
of the split itself are unchanged by it (RESULTS.md §10.3: does the fit improve with more prompts?).
"""
from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import torch

from findcli.shapes.world import COLOURS, COUNTS, RELATIONS, SHAPES, Obj, Spec


def split(seed: int) -> tuple[list[Obj], list[Spec], list[Spec]]:
    g = torch.Generator().manual_seed(seed)
    objs = [Obj(c, s) for c in COLOURS for s in SHAPES]
    held = [objs[i] for i in torch.randperm(len(objs), generator=g)[:4].tolist()]
    seen = [o for o in objs if o not in held]
    pick = lambda xs, k: [xs[i] for i in torch.randperm(len(xs), generator=g)[:k].tolist()]  # noqa: E731
    seen_pairs = [(a, b) for a, b in itertools.product(seen, seen) if a.colour != b.colour]
    held_pairs = [(a, b) for a, b in itertools.product(objs, objs) if a.colour != b.colour and (a in held or b in held)]
    train, used = [], set()
    for r in RELATIONS:
        for a, b in pick(seen_pairs, 4):
            train.append(Spec("relation", (a, b), relation=r))
            used.add(frozenset((a, b)))
    counts = sorted(COUNTS.values())
    train += [Spec("count", (o,), count=counts[i % 3]) for i, o in enumerate(pick(seen, 8))]
    test = [Spec("relation", p, relation=r) for r, p in zip(RELATIONS, pick(held_pairs, len(RELATIONS)))]
    unseen = [p for p in seen_pairs if frozenset(p) not in used]
    rels = pick(list(RELATIONS), 2)
    test += [Spec("relation", p, relation=r) for r, p in zip(rels, pick(unseen, 2))]
    test += [Spec("count", (o,), count=k) for o, k in zip(held[:3], counts)]
    return held, train, test


def extra(seed: int, k: int) -> list[Spec]:
    """K relation prompts per relation and 2K count prompts beyond `split(seed)` (see the docstring),
    interleaved by template so that a run stopped early still covers every template."""
    held, train, test = split(seed)
    g = torch.Generator().manual_seed(seed + 1000)
    objs = [Obj(c, s) for c in COLOURS for s in SHAPES]
    seen = [o for o in objs if o not in held]
    taken = {frozenset(s.objects) for s in train + test if s.relation}
    free = [(a, b) for a, b in itertools.product(seen, seen) if a.colour != b.colour and frozenset((a, b)) not in taken]
    order = torch.randperm(len(free), generator=g).tolist()
    per_rel: dict[str, list[Spec]] = {r: [] for r in RELATIONS}
    used: set[frozenset] = set()
    for r in RELATIONS:
        for i in order:
            a, b = free[i]
            if len(per_rel[r]) < k and frozenset((a, b)) not in used:
                per_rel[r].append(Spec("relation", (a, b), relation=r))
                used.add(frozenset((a, b)))
    have = {(s.objects[0], s.count) for s in train if s.count}
    cands = [(o, c) for o in seen for c in sorted(COUNTS.values()) if (o, c) not in have]
    counts = [Spec("count", (cands[i][0],), count=cands[i][1])
              for i in torch.randperm(len(cands), generator=g)[:2 * k].tolist()]
    out: list[Spec] = []
    for j in range(k):
        out += [per_rel[r][j] for r in RELATIONS] + counts[2 * j:2 * j + 2]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/prompts")
    ap.add_argument("--extra", type=int, default=0, help="also write conditional_train_extra.txt (K per relation)")
    a = ap.parse_args()
    held, train, test = split(a.seed)
    head = (f"# Conditional-policy benchmark split (benchmarks/make_conditional_split.py --seed {a.seed}).\n"
            f"# Held-out objects (never in a training prompt): {', '.join(o.phrase() for o in held)}.\n")
    files = [("train", head, train), ("test", head, test)]
    if a.extra:
        files.append(("train_extra", head.replace("--seed", f"--extra {a.extra} --seed"), extra(a.seed, a.extra)))
    for name, top, specs in files:
        lines = [f"{s.category()}\t{s.caption()}" for s in specs]
        Path(a.out, f"conditional_{name}.txt").write_text(top + "\n".join(lines) + "\n")
        print(name, len(specs))


if __name__ == "__main__":
    main()
