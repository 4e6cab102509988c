"""Session 9: frame strips of cached videos, baseline arm on top, policy arm below (8 frames per row).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/results/video_issue14/session9/frames.py \
        "a red sphere moving right and a blue cube moving left" benchmarks/results/video_issue14/suite OUT.jpg
"""
import importlib.util
import sys
from pathlib import Path

import torch
from PIL import Image

from findcli import shapes
from findcli.evaluation import slug

ROOT = Path(__file__).resolve().parents[4]
spec = importlib.util.spec_from_file_location("vw", ROOT / "benchmarks/video_world.py")
VW = importlib.util.module_from_spec(spec)
spec.loader.exec_module(VW)


def main(prompt: str, policy_dir: str, out: str, seed: int = 1, rows: int = 6) -> None:
    world = shapes.world_of("builtin-video")
    cache = ROOT / "runs/video/videos" / world.model_version()
    pp = Path(policy_dir) / f"{slug(prompt)}.pt"
    st = VW.arm_settings(world, pp)
    strips = []
    for path in (None, pp):
        x = VW.arm_videos(None, prompt, st, 32, seed, cache, path)
        strips += [torch.cat(list(x[i]), dim=2) for i in range(rows)]  # (3, 64, F*64)
    img = torch.cat(strips, 1).clamp(0, 1)
    im = Image.fromarray((img.permute(1, 2, 0).numpy() * 255).astype("uint8"))
    im.resize((im.width * 2, im.height * 2)).save(out, quality=88)


if __name__ == "__main__":
    main(*sys.argv[1:4])
