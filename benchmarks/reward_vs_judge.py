"""Does the reward see what the judge checks? For each prompt, draw N(0, I) images from the built-in
model and compare the mean built-in CLIP reward of images that pass vs fail each judge constraint.

    python benchmarks/reward_vs_judge.py "a red cube on a blue sphere" "four red cubes"
"""
import sys

import torch


from findcli.pipeline import load_pipeline, SamplerSettings
from findcli.sampling import draw
from findcli.rewards import build_reward
from findcli.shapes.judge import judge
pipe = load_pipeline(None, torch.device("cpu"), torch.float32)
reward = build_reward("clip", torch.device("cpu"), reward_model="builtin")
for p in sys.argv[1:]:
    d = draw(pipe, p, SamplerSettings(20, 7.5, 0.0), 5, 64, None, True, 32)
    r = reward(d.baseline_images, [p]*64)
    ok, per = judge(d.baseline_images, p)
    print(p, "success", ok.float().mean().item(), "reward succ", r[ok].mean().item() if ok.any() else None, "fail", r[~ok].mean().item(), "r std", r.std().item())
    for k, v in per.items():
        if v.any() and (~v).any():
            print("   ", k, "rate", round(v.float().mean().item(),2), "reward when true", round(r[v].mean().item(),3), "false", round(r[~v].mean().item(),3))
