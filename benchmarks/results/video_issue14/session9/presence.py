"""Session 9: does a video reward see whether both named objects are present in every frame?

On the cached two-object suite videos (both arms: N(0, I) and the suite's FIND policies, eval seeds 1 and
2, n = 32 each; `benchmarks/video_world.py` must have drawn them), the AUC of each reward folder's score
(full caption, and min(full, sub-captions)), centred per prompt, for the motion judge's
`present_every_frame` constraint (every named object detected in every frame; `--constraint=NAME` for another of the judge's
per-constraint verdicts, e.g. no_extra_objects). The judge is only the label. 0.5 = blind to it; below 0.5 = prefers videos where an object is missing from some frame.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/results/video_issue14/session9/presence.py REWARD_DIR...
"""
import importlib.util
import sys
from pathlib import Path

import torch

from findcli import shapes
from findcli.evaluation import rank_auc, slug
from findcli.shapes.video.reward import load_video_clip, sub_captions
from findcli.shapes.video.world import parse_video_prompt

KEY = "present_every_frame"
ROOT = Path(__file__).resolve().parents[4]
spec = importlib.util.spec_from_file_location("vw", ROOT / "benchmarks/video_world.py")
VW = importlib.util.module_from_spec(spec)
spec.loader.exec_module(VW)


def main() -> None:
    global KEY
    for a in sys.argv[1:]:
        if a.startswith("--constraint="):  # another of the judge's constraints, e.g. no_extra_objects
            KEY = a.split("=", 1)[1]
    world = shapes.world_of("builtin-video")
    cache = ROOT / "runs/video/videos" / world.model_version()
    prompts = [p for _, p in VW.suite_lines(world, only="^two_")]
    rows = []  # (prompt, arm, videos, present_every_frame)
    for p in prompts:
        pp = ROOT / "benchmarks/results/video_issue14/suite" / f"{slug(p)}.pt"
        st = VW.arm_settings(world, pp)
        for arm, path in (("baseline", None), ("policy", pp)):
            x = torch.cat([VW.arm_videos(None, p, st, 32, s, cache, path) for s in (1, 2)])
            _, per = world.judge_images(x, p)
            rows.append((p, arm, x, per[KEY].bool()))
    for d in [a for a in sys.argv[1:] if not a.startswith("--")]:
        model = load_video_clip(d)
        scores = []
        for p, _, x, _ in rows:
            with torch.no_grad():
                v = model.encode_video(x)
                s = model.scale() * v @ model.encode_prompts([p] + sub_captions(parse_video_prompt(p))).T
            scores.append(torch.stack([s[:, 0], torch.minimum(s[:, 0], s[:, 1:].min(1).values)], 1))
        for p in prompts:  # centre each prompt's scores (both arms together)
            idx = [i for i, r in enumerate(rows) if r[0] == p]
            mean = torch.cat([scores[i] for i in idx]).mean(0)
            for i in idx:
                scores[i] = scores[i] - mean
        for arm in ("both", "baseline", "policy"):
            sel = [i for i, r in enumerate(rows) if arm in ("both", r[1])]
            sc = torch.cat([scores[i] for i in sel])
            pres = torch.cat([rows[i][3] for i in sel])
            print(f"{d} {arm}: present {float(pres.float().mean()):.3f}  AUC(present) full {rank_auc(sc[:, 0], pres):.3f}  "
                  f"min {rank_auc(sc[:, 1], pres):.3f}")


if __name__ == "__main__":
    main()
