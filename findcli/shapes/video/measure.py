"""Measure the video judge on rendered clips: the numbers quoted in judge.py and BIASES.md.

    OMP_NUM_THREADS=1 python -m findcli.shapes.video.measure [--n 500] [--seed 100]

Per kind and per condition (clean; blur sigma 0.8 px + noise 0.04; 1.0 + 0.05; 1.3 + 0.07,
applied to every frame as the image judge's measurement does): the fraction of rendered clips the judge
accepts for their own spec, the fraction of (clip, hard negative) pairs it rejects over every hard
negative of each clip, and the fraction of time-reversed clips it rejects. Also the renderer-side
numbers the thresholds rest on: per-frame centroid jitter (deviation from a straight constant-velocity
path) and the orthogonal drift of the tracked objects.
"""

from __future__ import annotations

import argparse

import torch
import torchvision.transforms.functional as TF

from findcli.shapes.video.judge import judge_clips, track_videos
from findcli.shapes.video.world import KINDS, hard_negatives, render_video, sample_training_specs

# (name, blur sigma px, noise std): the image judge's conditions (judge.py's docstring)
CONDITIONS: tuple[tuple[str, float, float], ...] = (
    ("clean", 0.0, 0.0),
    ("blur0.8+noise0.04", 0.8, 0.04),
    ("blur1.0+noise0.05", 1.0, 0.05),
    ("blur1.3+noise0.07", 1.3, 0.07),
)


def degrade(videos: torch.Tensor, sigma: float, noise: float, generator: torch.Generator) -> torch.Tensor:
    """Gaussian blur (sigma px, kernel 2*int(3 sigma)+1) and pixel noise (std `noise`) on every frame."""
    if sigma <= 0 and noise <= 0:
        return videos
    n, f = videos.shape[:2]
    x = videos.reshape(n * f, *videos.shape[2:])
    if sigma > 0:
        x = TF.gaussian_blur(x, kernel_size=2 * int(3 * sigma) + 1, sigma=sigma)
    x = x + noise * torch.randn(x.shape, generator=generator)
    return x.clamp(0, 1).view_as(videos)


def specs_per_kind(n: int, seed: int) -> list:
    """n unbiased specs of each kind, in KINDS order."""
    pool = sample_training_specs(4 * n, torch.Generator().manual_seed(seed), biased=False)
    out = []
    for kind in KINDS:
        of_kind = [s for s in pool if s.kind == kind][:n]
        if len(of_kind) < n:
            raise RuntimeError(f"only {len(of_kind)} {kind} specs drawn")
        out += of_kind
    return out


def rates(clips, specs, negatives) -> tuple[float, float]:
    """(accepted fraction of clips for their specs, rejected fraction of (clip, negative) pairs)."""
    pos, _ = judge_clips(clips, specs)
    neg_clips = [c for c, negs in zip(clips, negatives) for _ in negs]
    neg_specs = [s for negs in negatives for s in negs]
    neg, _ = judge_clips(neg_clips, neg_specs)
    return pos.float().mean().item(), (~neg).float().mean().item()


def _line_stats(clips) -> tuple[float, float]:
    """Over fully tracked objects: the largest deviation (px) of a centroid from the track's fitted
    straight line, and the largest orthogonal drift (px) of a net displacement."""
    jitter, drift = [0.0], [0.0]
    for c in clips:
        for t in c.tracks:
            if len(t.frames) < c.n_frames:
                continue
            tt = torch.tensor(t.frames, dtype=torch.float64)
            cc = torch.tensor(t.centres, dtype=torch.float64)
            a = torch.stack([torch.ones_like(tt), tt], 1)
            fit = a @ torch.linalg.lstsq(a, cc).solution
            jitter.append((cc - fit).abs().max().item())
            dx, dy = t.displacement(c.n_frames)
            drift.append(min(abs(dx), abs(dy)))
    return max(jitter), max(drift)


def measure(n: int = 500, seed: int = 100) -> dict:
    """{(condition, kind): (accepted, rejected)}, {("reversed", kind): (rejected, None)} and
    {(condition, "centroid_jitter_max_px" | "drift_max_px"): px}."""
    specs = specs_per_kind(n, seed)
    videos = render_video(specs, torch.Generator().manual_seed(seed + 1))
    negatives = [hard_negatives(s, torch.Generator().manual_seed(seed + 2), 1000) for s in specs]
    by_kind = {kind: [i for i, s in enumerate(specs) if s.kind == kind] for kind in KINDS}
    out: dict = {}
    for name, sigma, noise in CONDITIONS:
        vids = degrade(videos, sigma, noise, torch.Generator().manual_seed(seed + 3))
        clips = track_videos(vids)
        for kind, idx in by_kind.items():
            out[(name, kind)] = rates([clips[i] for i in idx], [specs[i] for i in idx], [negatives[i] for i in idx])
        if name == "clean":
            ok, _ = judge_clips(track_videos(vids.flip(1)), specs)
            for kind, idx in by_kind.items():
                out[("reversed", kind)] = (1.0 - ok[idx].float().mean().item(), None)
        out[(name, "centroid_jitter_max_px")], out[(name, "drift_max_px")] = _line_stats(clips)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=500, help="clips per kind")
    ap.add_argument("--seed", type=int, default=100)
    args = ap.parse_args()
    for key, val in measure(args.n, args.seed).items():
        if isinstance(val, float):
            print(f"{key[0]:>20} {key[1]:>22}: {val:.3f}")
            continue
        acc, rej = val
        if rej is None:
            print(f"{key[0]:>20} {key[1]:>22}: {100 * acc:.2f}% of time-reversed clips rejected")
        else:
            print(f"{key[0]:>20} {key[1]:>22}: accepted {100 * acc:.2f}% / rejected {100 * rej:.2f}% of hard negatives")


if __name__ == "__main__":
    main()
