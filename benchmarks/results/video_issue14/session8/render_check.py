"""Session 8: the shipped video reward on rendered two-object clips and the same scenes with one object left out
(brightness 1, no jitter, for the redrawn clips). Prints mean full-caption, sub-caption, min and full-|a-b| scores."""

import torch
from findcli.shapes.video import reward as R
from findcli.shapes.video import world as W

torch.set_num_threads(1)
m = R.load_video_clip()
specs_txt = [
    "a red sphere moving right and a blue cube moving left",
    "a green pyramid moving up and a red sphere moving right",
    "a red sphere moving left and a blue cube moving right",
    "a blue cube moving up and a green pyramid moving down",
]
g = torch.Generator().manual_seed(0)
for p in specs_txt:
    sp = W.parse_video_prompt(p)
    n = 32
    x, lay = W.render_video_with_layout([sp] * n, g, frames=8)
    # the same scene with object k removed
    outs = {"both": x}
    for k in range(2):
        used = lay.used.clone()
        used[:, k] = False
        F_ = x.shape[1]
        boxes = lay.boxes.reshape(n * F_, W.MAX_OBJECTS, 4)

        def rep(t):
            return t.repeat_interleave(F_, 0)

        g2 = torch.Generator().manual_seed(0)
        bright = torch.ones(n, W.MAX_OBJECTS)
        jitter = torch.zeros(n, W.MAX_OBJECTS, 3)
        y = W._composite(
            boxes,
            rep(lay.shape_ids),
            rep(lay.colour_ids),
            rep(used),
            rep(bright),
            rep(jitter),
            64,
        ).view(n, F_, 3, 64, 64)
        outs[f"only_{1 - k}"] = y
    # also re-render both with same bright/jitter=neutral for a fair comparison
    outs["both_neutral"] = W._composite(
        lay.boxes.reshape(n * 8, W.MAX_OBJECTS, 4),
        lay.shape_ids.repeat_interleave(8, 0),
        lay.colour_ids.repeat_interleave(8, 0),
        lay.used.repeat_interleave(8, 0),
        torch.ones(n * 8, W.MAX_OBJECTS),
        torch.zeros(n * 8, W.MAX_OBJECTS, 3),
        64,
    ).view(n, 8, 3, 64, 64)
    subs = [f"a {o.phrase()}" for o in sp.objects]
    t = m.encode_prompts([p] + subs)
    with torch.no_grad():
        for name, y in outs.items():
            s = m.scale() * m.encode_video(y) @ t.T
            full, a, b = s[:, 0], s[:, 1], s[:, 2]
            print(
                f"{p[:40]:40s} {name:13s} full {full.mean():6.2f} subA {a.mean():6.2f} subB {b.mean():6.2f} min {torch.minimum(a, b).mean():6.2f} full-|a-b| {(full - (a - b).abs()).mean():6.2f}"
            )
