"""Stage `detector`: the built-in shapes detector (`findcli.shapes.detector`, the runtime reward), trained
on rendered scenes with the renderer's ground truth.

Labels come only from `world.render_with_layout` (boxes, shape ids, colour ids of the rendered
objects), never from the judge. Half of each batch are fresh clean renders (unbiased specs, all four
templates), with generator-domain augmentation (VAE round trip with latent noise, Gaussian blur,
pixel noise, saturation/brightness jitter; no geometric warps, so the boxes stay exact); the other
half come from a pool of renders redrawn by the built-in generator with img2img
(`findcli.shapes.training.data.img2img_pool`, strength 0.4-0.6), labelled with the SOURCE render's
layout. The pool is cached under `cache` (its contents are a function of the seed and the pool fields).

Loss per image: per-class density maps (a per-cell Poisson likelihood of the target maps, each object
a unit-mass Gaussian at its box centre), per-class counts (L1 of the map's sum to the true count)
and box size (L1 of the predicted (w, h) at the cells weighted by the target density).
At the end it reports held-out count accuracy per class on clean renders and on a held-out img2img
pool and writes `<out>/detector.safetensors` and `<out>/config.json`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from findcli.shapes import models as M
from findcli.shapes.training.common import Clock, load_vae
from findcli.shapes.training.common import log as _log
from findcli.shapes.training.data import clip_specs, img2img_pool, is_structural


@dataclass
class DetectorTrainConfig:
    seed: int = 0
    threads: int = 1  # torch intra-op threads
    out: str = str(M.BUILTIN_MODEL_DIR / "detector")  # where detector.safetensors + config.json go
    model_dir: str = str(M.BUILTIN_MODEL_DIR)  # the generator that redraws the domain pool
    cache: str = "runs/detector"  # pool cache folder
    steps: int = 3000  # optimiser steps; images seen = steps × batch
    batch: int = 48  # images per step: batch × (1 − pool_share) fresh renders + the rest from the pool
    lr: float = 2e-3  # AdamW peak, cosine to 5% after `warmup` linear steps
    warmup: int = 100
    weight_decay: float = 1e-4
    pool: int = 2048  # img2img generator-domain images (build ≈ 0.1 s each on 1 thread)
    pool_share: float = 0.5  # fraction of each batch from the pool
    pool_strength: tuple = (0.4, 0.6)  # img2img strength range
    relation_share: float = 0.4  # fraction of relation scenes in renders and pool (0.25 = uniform templates)
    augment: float = 0.7  # probability of blur/noise/jitter per fresh render
    vae_share: float = 0.3  # probability of a VAE round trip per fresh render (the generator's decoder look)
    density_weight: float = 1.0  # × per-image Σ over cells and classes of the Poisson NLL λ − t log λ of the density maps
    count_weight: float = 0.5  # × per-image Σ over classes of |predicted − true count|
    size_weight: float = 0.05  # × per-object target-weighted mean over cells of |predicted − true (w, h)|, canvas px
    init: str = ""  # a detector folder (detector.safetensors + config.json) to fine-tune from ("" = from scratch)
    touching_share: float = 0.0  # fraction of the fresh count scenes tried as touching chains (`touching_layout`; a chain that does not fit keeps its layout)
    eval_scenes: int = 512  # held-out clean renders for the metrics
    eval_pool: int = 256  # held-out img2img images for the metrics
    minutes: float = 0.0  # wall-time budget for the training loop (0 = none); the pool is not counted
    log_every: int = 50


# `--preset NAME`: field overrides. The shipped detector was trained with the defaults, on a CPU
# (1 thread), so "cpu" changes nothing.
SCHEDULES = {"default": {}, "cpu": {}}


def log(**kv) -> None:
    _log("detector", **kv)


def load_or_build_pool(cfg: DetectorTrainConfig, n: int, seed: int):
    """(uint8 images (n,3,64,64), world.Layout) of the img2img pool drawn from `seed`, cached on disk."""
    from findcli.shapes.world import Layout

    lo, hi = cfg.pool_strength
    f = Path(cfg.cache) / f"pool_n{n}_s{seed}_r{cfg.relation_share}_st{lo}-{hi}.pt"
    if f.exists():
        d = torch.load(f, weights_only=True)
        return d["images"], Layout(d["boxes"], d["shape_ids"], d["colour_ids"], d["used"])
    gen = torch.Generator().manual_seed(seed)
    _, imgs, lay = img2img_pool(cfg.model_dir, n, gen, cfg.relation_share, cfg.pool_strength, stage="detector")
    f.parent.mkdir(parents=True, exist_ok=True)
    tmp = f.with_suffix(".tmp")
    torch.save(dict(images=imgs, **dataclasses.asdict(lay)), tmp)
    tmp.replace(f)
    return imgs, lay


# --- targets and augmentation -------------------------------------------------------------------------


def targets(layout, sigma: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """From the renderer's layout: density (N, 18, 16, 16) (each object a unit-mass Gaussian of std
    `sigma` cells at its box centre), counts (N, 18), per-object cell weights g (N, 4, 16, 16) (each
    object's own normalised Gaussian, zero for unused slots) and per-object (w, h) (N, 4, 2) px."""
    from findcli.shapes.detector import GRID, NUM_CLASSES, STRIDE
    from findcli.shapes.world import SHAPES

    boxes, used = layout.boxes.float(), layout.used
    cls = layout.colour_ids * len(SHAPES) + layout.shape_ids  # (N, 4)
    c = (boxes[..., :2] + boxes[..., 2:] / 2) / STRIDE - 0.5  # (N, 4, 2) centre in cell coordinates
    ar = torch.arange(GRID, dtype=torch.float32)
    gx = torch.exp(-((ar - c[..., 0:1]) ** 2) / (2 * sigma**2))  # (N, 4, G)
    gy = torch.exp(-((ar - c[..., 1:2]) ** 2) / (2 * sigma**2))
    g = gy[..., :, None] * gx[..., None, :]  # (N, 4, G, G)
    g = g / g.sum((-1, -2), keepdim=True) * used[..., None, None]
    onehot = F.one_hot(cls, NUM_CLASSES).float() * used[..., None]  # (N, 4, C)
    density = torch.einsum("nkc,nkyx->ncyx", onehot, g)
    return density, onehot.sum(1), g, boxes[..., 2:]


def _blur(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Per-image anisotropic Gaussian blur (7×7): a long axis at a random angle, mostly near the
    generator's ±45° smear, std 0.3-1.8 px, a short axis 0.3-1.0 px. Symmetric, so centres stay put."""
    m = x.shape[0]
    u = lambda lo, hi: lo + (hi - lo) * torch.rand(m, generator=gen)  # noqa: E731
    theta = torch.where(torch.rand(m, generator=gen) < 0.7, torch.sign(torch.rand(m, generator=gen) - 0.5) * math.pi / 4, u(0, math.pi))
    theta = theta + u(-0.3, 0.3)
    s_long, s_short = u(0.3, 1.8), u(0.3, 1.0)
    r = torch.arange(-3, 4, dtype=torch.float32)
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    ca, sa = torch.cos(theta)[:, None, None], torch.sin(theta)[:, None, None]
    along, across = xx * ca + yy * sa, -xx * sa + yy * ca
    k = torch.exp(-(along**2) / (2 * s_long[:, None, None] ** 2) - across**2 / (2 * s_short[:, None, None] ** 2))
    k = (k / k.sum((-1, -2), keepdim=True)).repeat_interleave(3, 0)[:, None]  # (3m, 1, 7, 7)
    xp = F.pad(x.reshape(1, 3 * m, *x.shape[-2:]), (3, 3, 3, 3), mode="replicate")
    return F.conv2d(xp, k, groups=3 * m).view_as(x)


@torch.no_grad()
def augment(x: torch.Tensor, gen: torch.Generator, p: float, p_vae: float, vae=None) -> torch.Tensor:
    """Generator-domain look without moving anything: a VAE round trip with latent noise (p_vae), then
    with probability p an anisotropic blur, saturation ×0.85-1.35 about the pixel's grey, brightness
    ×0.9-1.1 and pixel noise (std ≤ 0.04)."""
    x = x.clone()
    n = x.shape[0]
    if vae is not None and p_vae > 0:
        sel = (torch.rand(n, generator=gen) < p_vae).nonzero().squeeze(1)
        if len(sel):
            z = vae.encode(x[sel] * 2 - 1).latent_dist.sample(gen)
            z = z + torch.randn(z.shape, generator=gen) * 0.3 * torch.rand(len(sel), 1, 1, 1, generator=gen) * z.std()
            x[sel] = ((vae.decode(z).sample.clamp(-1, 1) + 1) / 2).float()
    sel = (torch.rand(n, generator=gen) < p).nonzero().squeeze(1)
    if len(sel):
        m = len(sel)
        y = _blur(x[sel], gen)
        grey = y.mean(1, keepdim=True)
        sat = 0.85 + 0.5 * torch.rand(m, 1, 1, 1, generator=gen)
        bright = 0.9 + 0.2 * torch.rand(m, 1, 1, 1, generator=gen)
        y = (grey + (y - grey) * sat) * bright
        y = y + torch.randn(y.shape, generator=gen) * 0.04 * torch.rand(m, 1, 1, 1, generator=gen)
        x[sel] = y.clamp(0, 1)
    return x


def fresh_batch(n: int, gen: torch.Generator, relation_share: float, touching_share: float = 0.0):
    """n unbiased renders (relation-heavy as the pool) with their layouts; with `touching_share` > 0 that
    fraction of the count scenes is re-laid out with its objects touching (`touching_layout`)."""
    from findcli.shapes.world import render_with_layout, sample_layout

    specs = clip_specs(n, gen, relation_share=relation_share)
    if touching_share <= 0:  # the original draws, bit for bit
        return render_with_layout(specs, gen, size=M.IMAGE_SIZE, device="cpu")
    rows = [i for i, s in enumerate(specs) if s.kind == "count"]
    pick = torch.rand(len(rows), generator=gen) < touching_share
    lay = touching_layout(sample_layout(specs, gen), [r for r, p in zip(rows, pick.tolist()) if p], gen)
    return render_with_layout(specs, gen, size=M.IMAGE_SIZE, device="cpu", layout=lay)


TOUCH_GAP = (-1.0, 1.0)  # px between consecutive objects of a touching chain: slightly overlapping to 1 px apart


def touching_layout(layout, rows: list[int], gen: torch.Generator):
    """`layout` with the objects of scenes `rows` (count scenes: one class) moved into a chain where each
    object's BOX touches the box before it: beside it (bottoms level within 2 px), on it (its box's
    bottom on the previous box's top, shifted sideways by up to half a width) or diagonally below it (a
    box corner on the other's), gaps in TOUCH_GAP. The built-in generator draws same-coloured objects
    touching (RESULTS.md §6.10-6.11); the renderer's sampler keeps them >= 4 px apart, so a detector
    trained on its scenes alone never sees two instances meet. Sizes, shapes and colours are kept; the
    chain is moved to a random place inside the margins, and a scene whose chain does not fit, or where
    two non-consecutive objects would overlap, keeps its original layout. Labels stay exact: the boxes
    are the ones drawn.

    Limits (measured on 180 count scenes): every 2-object scene is re-laid, but only about half of the
    3-object and a fifth of the 4-object ones (the random directions often bring object j onto j - 2);
    and a diagonal contact is between box corners, which a sphere or pyramid leaves empty, so those
    pairs are mostly 1-3 px apart in pixels (cubes touch in about half)."""
    from findcli.shapes.world import CANVAS, Layout

    margin = 2.0
    boxes = layout.boxes.clone()
    for r in rows:
        k = int(layout.used[r].sum())
        b = boxes[r, :k].clone()  # (k, 4) x0, y0, w, h
        u = torch.rand(k, 4, generator=gen).tolist()
        for j in range(1, k):
            px, py, pw, ph = b[j - 1].tolist()
            w, h = b[j, 2].item(), b[j, 3].item()
            gap = TOUCH_GAP[0] + (TOUCH_GAP[1] - TOUCH_GAP[0]) * u[j][0]
            mode = int(u[j][1] * 3)
            side = 1.0 if u[j][2] < 0.5 else -1.0
            if mode == 0:  # beside
                x = px + pw + gap if side > 0 else px - w - gap
                y = py + ph - h + (u[j][3] - 0.5) * 4
            elif mode == 1:  # stacked: on top of the previous one
                x = px + pw / 2 - w / 2 + side * u[j][3] * 0.5 * pw
                y = py - h - gap
            else:  # diagonal: below, one corner on the previous one's
                x = px + (pw - 0.3 * w if side > 0 else 0.3 * w - w)
                y = py + ph + gap - 0.15 * h * u[j][3]
            b[j, 0], b[j, 1] = x, y
        lo, hi = b[:, :2].min(0).values, (b[:, :2] + b[:, 2:]).max(0).values
        room = CANVAS - 2 * margin - (hi - lo)
        if bool((room < 0).any()):
            continue
        b[:, :2] += margin - lo + room * torch.rand(2, generator=gen)
        ok = True
        for i in range(k):
            for j in range(i + 2, k):
                dx = max(b[j, 0] - (b[i, 0] + b[i, 2]), b[i, 0] - (b[j, 0] + b[j, 2]))
                dy = max(b[j, 1] - (b[i, 1] + b[i, 3]), b[i, 1] - (b[j, 1] + b[j, 3]))
                ok &= bool(max(dx, dy) >= 1.0)
        if ok:
            boxes[r, :k] = b
    return Layout(boxes, layout.shape_ids, layout.colour_ids, layout.used)


def _cat_layouts(a, b):
    from findcli.shapes.world import Layout

    return Layout(*(torch.cat([getattr(a, f), getattr(b, f)]) for f in ("boxes", "shape_ids", "colour_ids", "used")))


def _take(layout, idx):
    from findcli.shapes.world import Layout

    return Layout(layout.boxes[idx], layout.shape_ids[idx], layout.colour_ids[idx], layout.used[idx])


# --- loss and metrics ---------------------------------------------------------------------------------


def detector_loss(model, images, layout, cfg: DetectorTrainConfig, sigma: float) -> tuple[torch.Tensor, dict]:
    density_t, count_t, g, wh_t = targets(layout, sigma)
    density, size = model(images)
    # Poisson NLL per cell, minus its value at the optimum (λ = t), so that a perfect map scores 0
    l_density = (density - density_t * torch.log(density) - density_t + torch.xlogy(density_t, density_t)).sum((1, 2, 3)).mean()
    l_count = (density.sum((-1, -2)) - count_t).abs().sum(1).mean()
    # size: each object's own Gaussian weights the |error| of the size predicted around its centre
    err = (size[:, None] - wh_t[..., None, None]).abs().sum(2)  # (N, 4, G, G)
    l_size = (err * g).sum((-1, -2)).sum(1).mean() / layout.used.sum(1).float().mean().clamp_min(1)
    loss = cfg.density_weight * l_density + cfg.count_weight * l_count + cfg.size_weight * l_size
    return loss, dict(density=l_density.item(), count=l_count.item(), size=l_size.item())


@torch.no_grad()
def count_metrics(model, images: torch.Tensor, layout, chunk: int = 128) -> dict:
    """Counts rounded to integers against the renderer's: exact for every class of an image
    (image_exact), per class among images holding that class (class_min / class_mean), mean |error|
    of the total, and per-object box-size error (|Δw| + |Δh| px, from each class's soft summary, on
    images where the class occurs once)."""
    from findcli.shapes.detector import NUM_CLASSES, summarise

    model.eval()
    outs = [model(x.float()) for x in images.split(chunk)]
    s = summarise(torch.cat([d for d, _ in outs]), torch.cat([z for _, z in outs]))
    _, count_t, _, wh_t = targets(layout, 1.0)
    pred = s["count"].round()
    exact = (pred == count_t)
    per_class = []
    for c in range(NUM_CLASSES):
        has = count_t[:, c] > 0
        if has.any():
            per_class.append(exact[has, c].float().mean().item())
    from findcli.shapes.world import SHAPES

    cls = layout.colour_ids * len(SHAPES) + layout.shape_ids
    single = (count_t.gather(1, cls) == 1) & layout.used  # (N, 4) objects alone in their class
    wh_p = s["wh"].gather(1, cls[..., None].expand(-1, -1, 2))  # (N, 4, 2)
    size_err = ((wh_p - wh_t).abs().sum(-1))[single].mean().item()
    model.train()
    return dict(
        image_exact=exact.all(1).float().mean().item(),
        class_min=min(per_class),
        class_mean=sum(per_class) / len(per_class),
        total_abs_err=(s["count"].sum(1) - count_t.sum(1)).abs().mean().item(),
        size_err_px=size_err,
    )


# --- training -----------------------------------------------------------------------------------------


def train_detector(cfg: DetectorTrainConfig) -> dict:
    from findcli.shapes.detector import Detector, DetectorConfig, load_detector, save_detector

    torch.manual_seed(cfg.seed)
    if cfg.init:  # a fine-tune: the saved architecture and weights (BatchNorm statistics included)
        model = load_detector(cfg.init).requires_grad_(True).train()
        mcfg = model.cfg
    else:
        mcfg = DetectorConfig()
        model = Detector(mcfg).train()
    t0 = time.perf_counter()
    pool_x, pool_l = load_or_build_pool(cfg, cfg.pool, cfg.seed + 3) if cfg.pool > 0 else (None, None)
    log(pool=cfg.pool, pool_s=round(time.perf_counter() - t0))
    vae = load_vae(Path(cfg.model_dir)) if cfg.vae_share > 0 else None
    gen = torch.Generator().manual_seed(cfg.seed + 4)
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    n_pool = round(cfg.batch * cfg.pool_share) if pool_x is not None else 0
    n_fresh = cfg.batch - n_pool
    log(params=sum(p.numel() for p in model.parameters()), steps=cfg.steps, batch=cfg.batch, fresh=n_fresh, from_pool=n_pool,
        images=cfg.steps * cfg.batch)
    clock = Clock(cfg.minutes)
    hist, step = [], 0
    for step in range(1, cfg.steps + 1):
        frac = clock.progress(step, cfg.steps)
        lr = cfg.lr * min(1.0, step / cfg.warmup) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))
        for grp in opt.param_groups:
            grp["lr"] = lr
        x, lay = fresh_batch(n_fresh, gen, cfg.relation_share, cfg.touching_share)
        x = augment(x, gen, cfg.augment, cfg.vae_share, vae)
        if n_pool:
            idx = torch.randint(0, len(pool_x), (n_pool,), generator=gen)
            x = torch.cat([x, pool_x[idx].float() / 255])
            lay = _cat_layouts(lay, _take(pool_l, idx))
        loss, parts = detector_loss(model, x, lay, cfg, mcfg.sigma)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        hist.append((loss.item(), parts["density"], parts["count"], parts["size"]))
        if step % cfg.log_every == 0:
            a = torch.tensor(hist[-cfg.log_every :]).mean(0).tolist()
            log(step=step, loss=a[0], density=a[1], count=a[2], size=a[3], lr=lr, s=clock.elapsed())
        if step % 500 == 0:
            save_detector(model.eval(), cfg.out, {"training": dataclasses.asdict(cfg), "steps_done": step})
            model.train()
        if clock.out_of_time():
            break
    wall = clock.elapsed()
    model.eval()
    metrics = evaluate(model, cfg)
    result = dict(steps=step, train_s=round(wall), **metrics)
    save_detector(model, cfg.out, {"training": dataclasses.asdict(cfg), "result": result})
    log(done=1, **{k: v for k, v in result.items() if not isinstance(v, dict)})
    return result


@torch.no_grad()
def evaluate(model, cfg: DetectorTrainConfig) -> dict:
    """Held-out count metrics on clean renders (seed 10000 + seed) and on a held-out img2img pool,
    and caption-vs-hard-negative accuracy of the prompt score on clean renders."""
    from findcli.shapes.detector import prompt_score, summarise
    from findcli.shapes.world import hard_negatives, render_with_layout

    g = torch.Generator().manual_seed(10_000 + cfg.seed)
    specs = clip_specs(cfg.eval_scenes, g, relation_share=cfg.relation_share)
    x, lay = render_with_layout(specs, g, size=M.IMAGE_SIZE, device="cpu")
    out = {"clean": count_metrics(model, x, lay)}
    if cfg.eval_pool > 0:
        px, pl = load_or_build_pool(cfg, cfg.eval_pool, 10_000 + cfg.seed + 3)
        out["img2img"] = count_metrics(model, px.float() / 255, pl)
    d, z = model(x)
    s = summarise(d, z)
    wins: dict[str, list[int]] = {}
    for i, spec in enumerate(specs):
        rows = torch.tensor([i])
        true = prompt_score(s, spec, rows)["score"].item()
        for neg in hard_negatives(spec, g, 10_000):
            key = f"{spec.kind}_{'structural' if is_structural(spec, neg) else 'attribute'}"
            w = wins.setdefault(key, [0, 0])
            w[0] += int(prompt_score(s, neg, rows)["score"].item() < true)
            w[1] += 1
    out["caption_vs_negatives"] = {k: round(a / b, 4) for k, (a, b) in sorted(wins.items())}
    model.train()
    return out

