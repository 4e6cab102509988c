"""Count accuracy of detectors on rendered count scenes whose objects touch (held-out draw, seed 20000):
`training.detector.touching_layout` chains, clean and blurred (sigma 0.8 + noise 0.02). Per detector:
the fraction of scenes where the true caption ("three red cubes") scores above both other counts of
the same object, and the mean |distinct_count - k|.

    PYTHONPATH=. python benchmarks/results/detector_touch_issue10/touching_renders.py DIR [DIR ...]
    ("shipped" = the shipped detector)"""
import sys

import torch
import torchvision.transforms.functional as TF

from findcli.shapes.detector import DetectorReward, class_index, distinct_count, summarise
from findcli.shapes.training.detector import touching_layout
from findcli.shapes.world import COLOURS, COUNTS, SHAPES, Obj, Spec, render_with_layout, sample_layout

torch.set_num_threads(1)
g = torch.Generator().manual_seed(20000)
specs = [Spec("count", (Obj(c, s),), count=COUNTS[k]) for c in COLOURS for s in SHAPES for k in COUNTS] * 4
lay = sample_layout(specs, g)
lay = touching_layout(lay, list(range(len(specs))), g)
moved = [i for i in range(len(specs)) if not torch.equal(lay.boxes[i], sample_layout(specs, torch.Generator().manual_seed(20000)).boxes[i])]
x, _ = render_with_layout(specs, g, layout=lay)
x, specs = x[moved], [specs[i] for i in moved]
noisy = (TF.gaussian_blur(x, 5, 0.8) + 0.02 * torch.randn(x.shape, generator=g)).clamp(0, 1)
names = {2: "two", 3: "three", 4: "four"}
for folder in sys.argv[1:]:
    R = DetectorReward("cpu", folder=None if folder == "shipped" else folder)
    for cond, xx in (("clean", x), ("blurred", noisy)):
        right, err = 0, 0.0
        for i, s in enumerate(specs):
            o = s.objects[0]
            caps = {k: f"{names[k]} {o.colour} {o.shape}s" for k in (2, 3, 4)}
            sc = {k: R(xx[i : i + 1], [c])[0].item() for k, c in caps.items()}
            right += all(sc[s.count] > v for k, v in sc.items() if k != s.count)
            d, z = R.model(xx[i : i + 1])
            err += abs(distinct_count(summarise(d, z), class_index(o.colour, o.shape)).item() - s.count)
        print(f"{folder:28s} {cond:8s} scenes {len(specs)}: true count scored highest {right / len(specs):.1%}, "
              f"mean |distinct_count - k| {err / len(specs):.2f}", flush=True)
