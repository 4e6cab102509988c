"""Session 8: on the cached generated videos of two single-object prompts (both arms, eval seed 1), the
video reward with combine="min" equals combine="full" bit for bit (torch.equal), scored in batches of 16."""
from pathlib import Path
import torch
from findcli.shapes.video.reward import VideoClipReward

cache = Path("runs/video/videos/shapes-video-bfd87f1d8a5d")
full, per_object = VideoClipReward("cpu"), VideoClipReward("cpu", combine="min")
for f in sorted(cache.glob("a_*_n32_s1_*.pt")):
    name = f.name.split("_n32_")[0]
    if "_and_" in name:
        continue
    prompt = name.replace("_", " ")
    x = torch.load(f, weights_only=True)
    with torch.no_grad():
        a = torch.cat([full(c, [prompt] * len(c)) for c in x.split(16)])
        b = torch.cat([per_object(c, [prompt] * len(c)) for c in x.split(16)])
    print(f.name, prompt, len(x), "equal" if torch.equal(a, b) else "DIFFERENT", float(a.mean()))
