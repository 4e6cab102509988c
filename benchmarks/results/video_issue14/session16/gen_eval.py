"""Baseline judge rates of a video generator directory on a prompt list (N(0,I), eval namespace seed,
DDIM 20, CFG 7.5, 8 frames), with the direction of each clean full-length track.
usage: gen_eval.py MODEL_DIR PROMPTS_FILE N SEED OUT_JSON"""
import json, os, sys, torch
from collections import Counter
from findcli import shapes
from findcli.pipeline import SamplerSettings, load_pipeline
from findcli.sampling import draw
from findcli.shapes.video.judge import MAX_DRIFT_FRAC, MIN_TRAVEL, PRESENT_TOLERANCE, track_videos
from findcli.shapes.video.world import parse_video_prompt, category

model, pfile, n, seed, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
world = shapes.world_of("builtin-video")
pipe = load_pipeline(model, torch.device("cpu"), torch.float32)
rows = []
for prompt in [l.split("\t")[-1].strip() for l in open(pfile) if l.strip() and not l.startswith("#")]:
    d = draw(pipe, prompt, SamplerSettings(frames=8, steps=int(os.environ.get("STEPS", "20"))), seed, n, None, baseline=True)
    x = d.baseline_images.float()
    ok, per = world.judge_images(x, prompt)
    dirs = Counter()
    for c in track_videos(x):
        full = [t for t in c.tracks if len(t.frames) >= c.n_frames - PRESENT_TOLERANCE]
        if len(full) != 1:
            dirs["split/none" if not full else "several"] += 1
            continue
        dx, dy = full[0].displacement(c.n_frames)
        if max(abs(dx), abs(dy)) < MIN_TRAVEL:  # the judge's thresholds, any axis
            dirs["static"] += 1
        elif abs(dy) <= MAX_DRIFT_FRAC * abs(dx):
            dirs["right" if dx > 0 else "left"] += 1
        elif abs(dx) <= MAX_DRIFT_FRAC * abs(dy):
            dirs["down" if dy > 0 else "up"] += 1
        else:
            dirs["diagonal"] += 1
    row = dict(prompt=prompt, category=category(parse_video_prompt(prompt)), success=float(ok.float().mean()),
               per_constraint={k: float(v.float().mean()) for k, v in per.items()}, track_dirs=dict(dirs))
    print(json.dumps(row), flush=True)
    rows.append(row)
json.dump(dict(model=model, n=n, seed=seed, steps=int(os.environ.get("STEPS", "20")), rows=rows), open(out, "w"), indent=1)
