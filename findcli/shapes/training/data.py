"""The training data the stages share, all drawn from the project's renderer (`findcli.shapes.world`):
random scenes, relation-heavy unbiased specs, and the generator-domain img2img pool."""

from __future__ import annotations

import time

import torch

from findcli.shapes import models as M
from findcli.shapes.training.common import log


def scenes(n: int, gen: torch.Generator, biased: bool):
    """n random scenes: (images (n,3,64,64) in [0,1], captions)."""
    from findcli.shapes.world import render, sample_specs

    specs = sample_specs(n, gen, biased=biased)
    return render(specs, gen, size=M.IMAGE_SIZE, device="cpu"), [s.caption() for s in specs]


def is_structural(spec, neg) -> bool:
    """A negative that keeps the objects and changes only what is between them: the relation, the
    subject/object order, or the count. These are what a weak CLIP confuses (colour and shape are easy)."""
    return spec.kind == neg.kind and sorted(o.phrase() for o in spec.objects) == sorted(o.phrase() for o in neg.objects)


def clip_specs(n: int, gen: torch.Generator, relation_share: float = 0.25, biased: bool = False):
    """n unbiased specs of which round(n × relation_share) are relation scenes (0.25: the plain
    uniform-over-templates draw)."""
    from findcli.shapes.world import sample_specs

    if relation_share == 0.25:
        return sample_specs(n, gen, biased=biased)
    want = round(n * relation_share)
    rel, other = [], []
    while len(rel) < want or len(other) < n - want:
        for s in sample_specs(4 * n, gen, biased=biased):
            (rel if s.kind == "relation" else other).append(s)
    return rel[:want] + other[: n - want]


@torch.no_grad()
def img2img_pool(model_dir, n: int, gen: torch.Generator, relation_share: float, strength: tuple, stage: str = "clip"):
    """The generator-domain pool behind the clip stage's `domain_pool` and the detector's: n scenes from
    `clip_specs`, rendered, redrawn by the generator in `model_dir` with img2img (strength uniform in
    `strength` per chunk of 64). Returns (specs, uint8 images (n, 3, 64, 64), the SOURCE renders'
    `world.Layout`), the layout on the CPU."""
    from diffusers import StableDiffusionImg2ImgPipeline

    from findcli.pipeline import load_pipeline
    from findcli.shapes.world import Layout, render_with_layout

    t0 = time.perf_counter()
    # The sampler FIND uses (DDIM, quiet, no safety checker), with the img2img entry point.
    i2i = StableDiffusionImg2ImgPipeline(**load_pipeline(model_dir, torch.device("cpu"), torch.float32).components)
    i2i.set_progress_bar_config(disable=True)
    specs, imgs, layouts = [], [], []
    chunk = 64
    lo, hi = strength
    for i in range(0, n, chunk):
        sp = clip_specs(min(chunk, n - i), gen, relation_share=relation_share)
        x, lay = render_with_layout(sp, gen, size=M.IMAGE_SIZE, device="cpu")
        s = lo + (hi - lo) * torch.rand((), generator=gen).item()
        seed = int(torch.randint(0, 2**31, (1,), generator=gen).item())
        y = i2i([q.caption() for q in sp], image=x, strength=s, guidance_scale=7.5, num_inference_steps=20,
                output_type="pt", generator=torch.Generator().manual_seed(seed)).images
        specs += sp
        imgs.append((y.clamp(0, 1) * 255).round().to(torch.uint8))
        layouts.append(lay)
    log(stage, pool=len(specs), pool_s=round(time.perf_counter() - t0))
    layout = Layout(*(torch.cat([getattr(lay, f) for lay in layouts]) for f in ("boxes", "shape_ids", "colour_ids", "used")))
    return specs, torch.cat(imgs), layout
