"""The layout teacher of the conditional policy on the built-in image model (benchmarks/RESULTS.md §10.6).

For each prompt, with no per-prompt FIND run and no judge:

    x        = render(parse(prompt), seed)           a scene that satisfies the prompt (the world's renderer,
                                                     the same seed for every prompt, so that one template's
                                                     scenes share a layout)
    z_0      = scaling · VAE.encode(2x − 1).mean      the sampler's latent space
    z_T      = DDIM inversion of z_0                  (findcli.inversion; the sampler's steps, guidance 1)
    μ        = lowpass_pool(z_T)                      the coarse layout: mean over pool × pool latent cells,
                                                     repeated over them
    log σ    = log(sigma) everywhere

(`render_seeds` > 1 averages μ over that many scenes per prompt; on the fold that blurred the layouts and
lost 16 points, RESULTS.md §10.7, so one scene is the default.)

N(μ, σ²) is a per-prompt policy (on 11 fold prompts it was judged 82.1%, as high as their own FIND policies),
and its text-only pupil (findcli.conditional, `--teacher layouts`) is what serves prompts never seen.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from findcli.errors import FindError


def lowpass(mu: torch.Tensor, shape: tuple[int, ...], k: int) -> torch.Tensor:
    """(..., D) flattened latents of per-sample `shape` (C, H, W) averaged over k × k cells of (H, W) and
    repeated over them (nearest upsampling); H and W must be multiples of k. k = 1 returns mu."""
    if k == 1:
        return mu
    c, h, w = shape
    if h % k or w % k:
        raise FindError(f"a lowpass of {k} needs a latent whose height and width are multiples of {k}; got {h}x{w}")
    lead = mu.shape[:-1]
    m = mu.reshape(-1, c, h, w)
    out = torch.nn.functional.interpolate(torch.nn.functional.avg_pool2d(m, k), scale_factor=k, mode="nearest")
    return out.reshape(*lead, c * h * w)


@torch.no_grad()
def layout_targets(pipe, prompts: list[str], sigma: float = 0.3, pool: int = 2, render_seed: int = 0,
                   steps: int = 20, guidance: float = 1.0, batch: int = 32,
                   on_batch: Callable[[int, int], None] | None = None,
                   render_seeds: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """(μ, log σ), each (N, D) float32 on the CPU, of the layout teacher for `prompts` (built-in grammar)
    on the built-in `pipe`. Prompts are rendered, encoded and inverted `batch` at a time; `on_batch(done,
    total)` after each. `render_seeds` > 1: μ is the mean of the lowpassed inversions of the scenes of
    seeds render_seed, ..., render_seed + render_seeds − 1."""
    from findcli.inversion import ddim_invert
    from findcli.shapes.world import parse_prompt, render

    if not (sigma > 0 and math.isfinite(sigma)):
        raise FindError(f"the layout teacher's sigma must be a finite number > 0, got {sigma!r}")
    if not prompts:
        raise FindError("the layout teacher needs at least one prompt")
    specs = [parse_prompt(p) for p in prompts]
    vae = pipe.vae
    size = int(pipe.unet.config.sample_size) * int(pipe.vae_scale_factor)  # the pipeline's default image size
    if not (isinstance(render_seeds, int) and render_seeds >= 1):
        raise FindError(f"the layout teacher's render_seeds must be an integer >= 1, got {render_seeds!r}")
    mu, n = None, len(prompts)
    for r in range(render_seeds):
        out = []
        for i in range(0, n, batch):
            seed = render_seed + r
            imgs = torch.cat([render([s], torch.Generator().manual_seed(seed), size) for s in specs[i:i + batch]])
            x = (imgs * 2 - 1).to(vae.device, vae.dtype)
            z0 = vae.encode(x).latent_dist.mean * vae.config.scaling_factor
            zt = ddim_invert(pipe, z0, prompts[i:i + batch], steps, guidance).float().cpu()
            out.append(zt.flatten(1))
            if on_batch is not None:
                on_batch(r * n + min(i + batch, n), render_seeds * n)
        m = lowpass(torch.cat(out), tuple(zt.shape[1:]), pool)
        mu = m if mu is None else mu + m
    mu = mu / render_seeds
    return mu, torch.full_like(mu, math.log(sigma))
