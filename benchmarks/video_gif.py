"""The README's before/after GIF of the built-in video world: one draw of `--n` videos in `find sample`'s
noise namespace (the draw `find sample --policy P --seed S --baseline` makes: the same ε through N(0, I)
and through the policy), baseline on the top row, policy on the bottom row, each video framed green
where the motion judge accepts it and red where it does not. The draw is not picked: whatever seed is
given is what is shown, with the verdict counts printed.

    OMP_NUM_THREADS=2 python benchmarks/video_gif.py --policy runs/video_acceptance/out.pt --seed 3 \
        --out docs/before_after_video.gif
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from PIL import Image

from findcli import atomic, shapes
from findcli.pipeline import load_runtime, to_pil
from findcli.policy import load_policy
from findcli.sampling import draw
from video_world import arm_settings  # the settings both arms of a video draw use

BORDER = 3  # px of the verdict frame around each 64 px video (drawn at --scale)
GAP = 4  # px between tiles


def tile_frames(videos: torch.Tensor, ok: torch.Tensor, scale: int) -> list[list[Image.Image]]:
    """Per video, its F frames upscaled (nearest) and framed green (accepted) or red (rejected)."""
    out = []
    for video, good in zip(videos, ok.tolist()):
        colour = (40, 170, 60) if good else (200, 40, 40)
        frames = []
        for im in to_pil(video):
            im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
            framed = Image.new("RGB", (im.width + 2 * BORDER, im.height + 2 * BORDER), colour)
            framed.paste(im, (BORDER, BORDER))
            frames.append(framed)
        out.append(frames)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", required=True, help="a policy file of the built-in video world (find train --model builtin-video)")
    ap.add_argument("--n", type=int, default=8, help="videos per row")
    ap.add_argument("--seed", type=int, default=3, help="find sample's seed (its noise namespace)")
    ap.add_argument("--scale", type=int, default=2, help="nearest-neighbour upscaling of the 64 px frames")
    ap.add_argument("--out", default="docs/before_after_video.gif")
    ap.add_argument("--dtype", default="auto", help="as find sample's --dtype (auto: bf16 on a CPU with native bf16)")
    a = ap.parse_args()
    pf = load_policy(Path(a.policy))
    world = shapes.world_of(pf.meta.get("model"))
    if world is None or world.kind != "video":
        ap.error(f"{a.policy} is not a policy of the built-in video world")
    prompt = pf.meta["prompt"]
    settings = arm_settings(world, Path(a.policy))  # as find sample reads the file (the world's frames if none)
    _, dtype, pipe, _ = load_runtime(world.id, "cpu", a.dtype)  # as find sample loads it
    print(f"dtype {str(dtype).removeprefix('torch.')}")
    d = draw(pipe, prompt, settings, a.seed, a.n, pf.policy, baseline=True, purpose="sample")
    rows = []
    for name, videos in (("baseline", d.baseline_images), ("policy", d.policy_images)):
        ok, _ = world.judge_images(videos.float().cpu(), prompt)
        print(f"{name}: the judge accepts {int(ok.sum())}/{len(ok)}")
        rows.append(tile_frames(videos.float().cpu(), ok, a.scale))
    tw, th = rows[0][0][0].size
    n_frames = len(rows[0][0])
    canvas = []
    for f in range(n_frames):
        im = Image.new("RGB", (a.n * tw + (a.n - 1) * GAP, 2 * th + GAP), (255, 255, 255))
        for r, row in enumerate(rows):
            for i, frames in enumerate(row):
                im.paste(frames[f], (i * (tw + GAP), r * (th + GAP)))
        canvas.append(im)
    atomic.write_with(Path(a.out), lambda p: canvas[0].save(p, format="GIF", save_all=True, append_images=canvas[1:],
                                                            duration=125, loop=0))
    print(f"wrote {a.out} ({prompt!r}, seed {a.seed}: top N(0, I), bottom the policy)")


if __name__ == "__main__":
    main()
