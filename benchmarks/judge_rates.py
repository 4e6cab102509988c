"""The shapes judge on rendered scenes: acceptance of 500 unbiased renders per kind (seed 100) and
rejection of all of each scene's hard negatives, clean and after Gaussian blur + pixel noise (the
numbers in `findcli/shapes/judge.py`'s docstring).

    OMP_NUM_THREADS=1 python benchmarks/judge_rates.py [--n 500] [--judge path/to/judge.py]

`--judge` loads another copy of the judge module (e.g. an older one from `git show`) to compare.
"""
from __future__ import annotations

import argparse
import importlib.util
import json

import torch
import torchvision.transforms.functional as TF

from findcli.shapes.world import KINDS, hard_negatives, render, sample_specs

LEVELS = [(0.0, 0.0), (0.8, 0.04), (1.0, 0.05), (1.3, 0.07)]


def load_judge(path: str | None):
    """The judge module at `path` (another copy of judge.py, e.g. `git show REV:findcli/shapes/judge.py`),
    or findcli.shapes.judge when None. Used by judge_rates.py, reward_auc.py and judge_change.py."""
    if path is None:
        from findcli.shapes import judge

        return judge
    spec = importlib.util.spec_from_file_location("judge_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--seed", type=int, default=100)
    ap.add_argument("--judge", default=None)
    a = ap.parse_args()
    J = load_judge(a.judge)
    pool = sample_specs(8 * a.n, torch.Generator().manual_seed(a.seed), biased=False)
    specs = [s for k in KINDS for s in [p for p in pool if p.kind == k][: a.n]]
    images = render(specs, torch.Generator().manual_seed(a.seed + 1))
    negs = [hard_negatives(s, torch.Generator().manual_seed(a.seed + 2 + i), 10_000) for i, s in enumerate(specs)]
    out = {}
    for sigma, noise in LEVELS:
        x = images
        if sigma > 0:
            g = torch.Generator().manual_seed(a.seed + 3)
            x = TF.gaussian_blur(images, kernel_size=2 * int(3 * sigma) + 1, sigma=sigma)
            x = (x + noise * torch.randn(x.shape, generator=g)).clamp(0, 1)
        found = J.segment(x)
        pos, _ = J.judge_segments(found, specs)
        nf, ns = [], []
        for f, n in zip(found, negs):
            nf += [f] * len(n)
            ns += n
        neg, _ = J.judge_segments(nf, ns)
        kinds_pos = [s.kind for s in specs]
        kinds_neg = [s.kind for s, n in zip(specs, negs) for _ in n]
        row = {}
        for k in KINDS:
            acc = pos[[i for i, q in enumerate(kinds_pos) if q == k]].float().mean().item()
            rej = (~neg[[i for i, q in enumerate(kinds_neg) if q == k]]).float().mean().item()
            row[k] = (round(acc, 4), round(rej, 4))
        out[f"sigma {sigma} noise {noise}"] = row
        print(f"sigma {sigma} noise {noise}: " + ", ".join(f"{k} {v[0]:.1%} / {v[1]:.2%}" for k, v in row.items()), flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
