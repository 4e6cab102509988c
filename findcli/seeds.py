"""Seed namespaces: every random draw of `find` comes from a seed hashed from (purpose, seed, index).

Before, training iteration i of a run with seed s drew ε from s·1_000_003 + i and `find eval --seed e`
drew from e, so for training seed 0 the first eval samples of any eval seed below `iterations` were
training noise. Now each purpose has its own namespace:

    noise_seed(purpose, seed, index) = first 63 bits of BLAKE2b("findcli/{purpose}/{seed}/{index}")

Two draws share their ε only if (purpose, seed, index) are equal (or on a 2^-63 hash collision), so
no eval, sample, picture or validation draw can equal a training draw for any pair of seeds.
Purposes (PURPOSES):
  train         ε of training iteration `index`
  validation    the fixed draw `--keep best` scores the policy on (index 0)
  before_after  the before/after picture written by `find train`
  eval          `find eval` and the suite benchmarks
  sample        `find sample`
  bench         benchmarks' own throwaway draws
  conditional   ε of prompt slot `index % 4096` of iteration `index // 4096` of a conditional policy's training
  step          DDIM eta > 0: the per-step noise of image `index` of a draw whose ε seed is `seed`
                (one generator per image, so `--max-batch` never changes an image)
"""

from __future__ import annotations

import hashlib

SEED_MASK = (1 << 63) - 1  # torch.Generator and the Triton Philox key both take 63-bit seeds
PURPOSES = ("train", "validation", "before_after", "eval", "sample", "bench", "step", "conditional")


def noise_seed(purpose: str, seed: int, index: int = 0) -> int:
    """The 63-bit seed of draw `index` of `purpose` for the user's `seed` (any Python int)."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown seed purpose {purpose!r}; one of {PURPOSES}")
    key = f"findcli/{purpose}/{int(seed)}/{int(index)}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") & SEED_MASK
