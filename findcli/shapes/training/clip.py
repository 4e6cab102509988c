"""Stage `clip`: the reward CLIP, an open_clip model (config `find-shapes-clip.json`), contrastive on
UNBIASED scenes with hard negatives in every batch: each image is scored against every caption of the
batch plus the swapped captions of its own scene.

What a small CLIP gets wrong is relations (it turns into a bag of words: "left of" and "right of" end up
with the same text embedding) and the look of the generator's samples, so the batches are
relation-heavy, relation/order/count swaps come first among the negatives, an extra loss ranks each
image's own captions, mirrored scenes swap left/right, and half of each batch comes from a
generator-domain pool (renders redrawn by the built-in generator with img2img), plus warp/VAE/blur
augmentation. Needs the generator (vae, unet stages) first. Reports held-out accuracy at ranking the
true caption above each hard negative, and per template against every structural swap.
Writes <out>/clip/open_clip_model.safetensors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from findcli.atomic import write_with
from findcli.shapes import models as M
from findcli.shapes.training.common import Clock, load_vae, log
from findcli.shapes.training.data import clip_specs, img2img_pool, is_structural


@dataclass
class ClipTrainConfig:
    seed: int = 0
    threads: int = 2  # torch intra-op threads (the dev box has 2 cores shared with other jobs)
    out: str = str(M.BUILTIN_MODEL_DIR)  # pipeline directory (the generator); the CLIP goes to <out>/clip
    steps: int = 6000
    batch: int = 64  # scenes per step; texts per step = batch × (1 + negatives)
    negatives: int = 6  # hard negatives per scene (colour / shape / relation / count swaps)
    relation_share: float = 0.5  # fraction of each batch that is relation scenes (0.25 = uniform over templates)
    structural: int = 4  # of the negatives, how many are structural first: relation/order or count swaps
    augment: float = 0.3  # probability of the generator-domain augmentation per image (see augment)
    hn_weight: float = 1.0  # weight of an extra loss: each image against only its own caption and its negatives
    init: str = ""  # start from these CLIP weights (safetensors) instead of a random init
    flip: float = 0.5  # probability of a mirrored scene with "left" and "right" swapped in all its captions
    pool: int = 4096  # generator-domain pool: rendered scenes redrawn by the generator (img2img), see domain_pool
    pool_share: float = 0.5  # fraction of each batch drawn from that pool
    pool_strength: tuple = (0.4, 0.6)  # img2img strength range (fraction of the DDIM steps re-run)
    lr: float = 1e-3
    warmup: int = 200
    eval_scenes: int = 1000  # held-out scenes for the accuracy measurement
    minutes: float = 0.0  # wall-time budget; 0 = no limit
    ckpt_every: int = 500  # steps between checkpoints
    log_every: int = 50


# `--preset NAME`: field overrides. "cpu" is the schedule that produced the shipped weights on a
# shared 2-core CPU (no GPU).
SCHEDULES = {"default": {}, "cpu": dict(steps=3500, batch=32, ckpt_every=250)}


def clip_batch(
    n: int,
    k: int,
    gen: torch.Generator,
    biased: bool = False,
    relation_share: float = 0.25,
    structural: int = 0,
    pool: tuple | None = None,
    pool_share: float = 0.0,
    flip: float = 0.0,
):
    """n unbiased scenes and, for each, its caption followed by k hard-negative captions, of which up
    to `structural` are relation/order/count swaps (the rest drawn uniformly from the other swaps).

    Returns images (n,3,64,64) in [0,1] and texts (n × (1+k) strings, scene-major).
    """
    from findcli.shapes.world import hard_negatives, render

    specs = clip_specs(n, gen, relation_share, biased)
    imgs = render(specs, gen, size=M.IMAGE_SIZE, device="cpu")
    if pool is not None and pool_share > 0:
        # Replace the first round(n × share) scenes by pool scenes (generator-domain images).
        pspecs, pimgs = pool
        m = round(n * pool_share)
        idx = torch.randint(0, len(pspecs), (m,), generator=gen).tolist()
        specs = [pspecs[i] for i in idx] + specs[m:]
        imgs = torch.cat([pimgs[idx].float() / 255, imgs[m:]])
    texts = []
    for s in specs:
        if structural > 0:
            every = hard_negatives(s, gen, 10_000)  # all distinct swaps, in random order
            first = [x for x in every if is_structural(s, x)][:structural]
            negs = (first + [x for x in every if x not in first])[:k]
        else:
            negs = hard_negatives(s, gen, k)
        # A scene may have fewer than k distinct swaps; repeat the last to keep the batch rectangular.
        negs = (negs + negs[-1:] * k)[:k] if negs else [s] * k
        texts += [s.caption()] + [x.caption() for x in negs]
    if flip > 0:
        # Mirror a scene and swap left/right in its caption and negatives: the same layout seen both
        # ways with the caption that differs in one word, which a position-blind model cannot fit.
        # (A mirrored cube shows its depth face on the side the renderer never draws; its caption still
        # names a cube, which is what the CLIP should say of it. The generator never draws one.)
        fl = (torch.rand(n, generator=gen) < flip).tolist()
        imgs = torch.where(torch.tensor(fl).view(-1, 1, 1, 1), imgs.flip(-1), imgs)
        texts = [swap_left_right(t) if fl[i // (1 + k)] else t for i, t in enumerate(texts)]
    return imgs, texts


def swap_left_right(caption: str) -> str:
    """The caption of the mirrored scene."""
    return caption.replace("to the left of", "\0").replace("to the right of", "to the left of").replace("\0", "to the right of")


@torch.no_grad()
def domain_pool(cfg: ClipTrainConfig, gen: torch.Generator):
    """`pool` unbiased scenes (relation-heavy, as the batches) rendered, then redrawn by the built-in
    generator with the stock img2img pipeline: encode, noise to a random strength in
    `pool_strength`, denoise with the scene's own caption at guidance 7.5 (the sampler's default).
    Low strength keeps the layout, so the caption stays true (the judge agrees on ~90% of them; the pool
    is NOT filtered by the judge, which must stay independent of the reward), while the look becomes
    the generator's: blur, diagonal smear, guidance-saturated colours. Returns (specs, uint8 images)."""
    specs, imgs, _ = img2img_pool(cfg.out, cfg.pool, gen, cfg.relation_share, cfg.pool_strength)
    return specs, imgs


@torch.no_grad()
def augment(imgs: torch.Tensor, gen: torch.Generator, p: float, vae=None) -> torch.Tensor:
    """Generator-domain augmentation for the reward CLIP, each image with probability p.

    The built-in generator's samples are softer and warped compared with the renderer's (small UNet,
    strong classifier-free guidance): objects come out smeared along a diagonal, edges blurred. A CLIP
    trained on clean renders only sees those as off-distribution and ranks them poorly. So the selected
    images get: a random affine warp (anisotropic scale 0.8-1.05, mostly shrinking so that nothing
    leaves the frame; shear up to ±0.3; rotation ±8°; about the centre), a smooth random displacement
    field (±1.5 px), a round trip through the generator's VAE with noise on the latent, and a Gaussian
    blur (σ ≤ 1 px). The caption stays the scene's: none of these moves an object across another or
    changes a colour, so the meaning holds (tests/test_shapes_clip_training.py checks it with the judge).
    """
    if p <= 0:
        return imgs  # and draws nothing from gen, so runs without augmentation keep their random stream
    n = imgs.shape[0]
    sel = torch.rand(n, generator=gen) < p
    if not sel.any():
        return imgs
    x = imgs[sel]
    m = x.shape[0]
    u = lambda lo, hi: lo + (hi - lo) * torch.rand(m, generator=gen)  # noqa: E731
    sx, sy, sh, rot = u(0.8, 1.05), u(0.8, 1.05), u(-0.3, 0.3), u(-0.14, 0.14)
    c, s_ = torch.cos(rot), torch.sin(rot)
    # theta maps output coords to input coords (affine_grid convention).
    a = torch.stack([torch.stack([c / sx, (-s_ + sh) / sx, torch.zeros(m)], -1), torch.stack([s_ / sy, c / sy, torch.zeros(m)], -1)], 1)
    grid = F.affine_grid(a, list(x.shape), align_corners=False)
    field = torch.randn(m, 2, 4, 4, generator=gen) * (1.5 * 2 / M.IMAGE_SIZE)
    grid = grid + F.interpolate(field, size=x.shape[-2:], mode="bicubic", align_corners=False).permute(0, 2, 3, 1)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if vae is not None:
        z = vae.encode(x * 2 - 1).latent_dist.sample(gen)
        z = z + torch.randn(z.shape, generator=gen) * u(0.0, 0.3).view(-1, 1, 1, 1) * z.std()
        x = (vae.decode(z).sample.clamp(-1, 1) + 1) / 2
    sigma = u(0.0, 1.0)
    r = torch.arange(-2, 3, dtype=x.dtype)
    k1 = torch.exp(-(r.view(1, -1) ** 2) / (2 * sigma.clamp_min(1e-3).view(-1, 1) ** 2))
    k1 = k1 / k1.sum(1, keepdim=True)  # (m, 5) per-image 1-D Gaussian
    xs = F.pad(x, (2, 2, 2, 2), mode="replicate")
    xs = sum(k1[:, i].view(-1, 1, 1, 1) * xs[..., :, i : i + x.shape[-1]] for i in range(5))
    xs = sum(k1[:, i].view(-1, 1, 1, 1) * xs[..., i : i + x.shape[-2], :] for i in range(5))
    out = imgs.clone()
    out[sel] = xs.clamp(0, 1)
    return out


def normalize(images: torch.Tensor, model) -> torch.Tensor:
    cfg = model.visual.preprocess_cfg
    mean = torch.tensor(cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(cfg["std"]).view(1, 3, 1, 1)
    return (images - mean) / std


@torch.no_grad()
def clip_accuracy(model, tokenizer, n: int, k: int, seed: int) -> dict:
    """Held-out hard-negative accuracy on n unbiased scenes rendered from `seed`.

    pair_acc: fraction of (scene, negative) pairs with score(true caption) > score(negative);
    scene_acc: fraction of scenes whose true caption beats all k negatives.
    Negatives identical to the true caption (a swap that changes nothing) are not counted.
    """
    from findcli.shapes.world import hard_negatives, render

    model.eval()
    gen = torch.Generator().manual_seed(seed)
    wins, pairs, scene_wins = 0, 0, 0
    for i in range(0, n, 100):
        m = min(100, n - i)
        imgs, texts = clip_batch(m, k, gen)
        fi = F.normalize(model.encode_image(normalize(imgs, model)), dim=-1)  # (m, D)
        ft = F.normalize(model.encode_text(tokenizer(texts)), dim=-1).view(m, 1 + k, -1)  # (m, 1+k, D)
        s = torch.einsum("md,mjd->mj", fi, ft)  # (m, 1+k) cosine scores
        valid = torch.tensor([[texts[r * (1 + k)] != texts[r * (1 + k) + j] for j in range(1, k + 1)] for r in range(m)])
        beat = s[:, 1:] < s[:, :1]
        wins += (beat & valid).sum().item()
        pairs += valid.sum().item()
        scene_wins += (beat | ~valid).all(dim=1).sum().item()
    # Structural pairs: the true caption against every relation/order/count swap of it (left vs right,
    # on vs above, subject/object order, two vs three), per template. The uniform draw above holds few
    # of them, and they are what a bag-of-words CLIP cannot rank.
    by_kind: dict[str, list[int]] = {}
    for i in range(0, n, 100):
        m = min(100, n - i)
        specs = clip_specs(m, gen, relation_share=0.5)
        imgs = render(specs, gen, size=M.IMAGE_SIZE, device="cpu")
        fi = F.normalize(model.encode_image(normalize(imgs, model)), dim=-1)
        for spec, f in zip(specs, fi):
            negs = [x.caption() for x in hard_negatives(spec, gen, 10_000) if is_structural(spec, x)]
            if not negs:
                continue
            ft = F.normalize(model.encode_text(tokenizer([spec.caption()] + negs)), dim=-1)
            s = ft @ f
            w = by_kind.setdefault(spec.kind, [0, 0])
            w[0] += int((s[1:] < s[0]).sum())
            w[1] += len(negs)
    structural = {f"structural_acc_{kind}": round(w / max(t, 1), 4) for kind, (w, t) in sorted(by_kind.items())}
    return dict(pair_acc=wins / max(pairs, 1), scene_acc=scene_wins / n, pairs=pairs, scenes=n, **structural)


def save_clip(model, out: Path) -> None:
    from safetensors.torch import save_file

    sd = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    write_with(out / "clip" / "open_clip_model.safetensors", lambda p: save_file(sd, str(p)))


def train_clip(cfg: ClipTrainConfig) -> dict:
    import open_clip

    out = Path(cfg.out)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed + 2)
    M.register_builtin_clip()
    model = open_clip.create_model(M.CLIP_NAME)
    if cfg.init:
        from safetensors.torch import load_file

        model.load_state_dict({k: v.float() for k, v in load_file(cfg.init).items()})
    tokenizer = open_clip.get_tokenizer(M.CLIP_NAME)
    vae = load_vae(out) if cfg.augment > 0 else None
    pool = domain_pool(cfg, gen) if cfg.pool > 0 else None
    model.train()
    decay, no_decay = [], []
    for n_, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "logit_scale" in n_ or "embedding" in n_ else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, fused=True)
    k = cfg.negatives
    log("clip", params=sum(p.numel() for p in model.parameters()), steps=cfg.steps, batch=cfg.batch, texts=cfg.batch * (1 + k))
    clock = Clock(cfg.minutes)
    hist = []
    step = 0
    for step in range(1, cfg.steps + 1):
        frac = clock.progress(step, cfg.steps)
        lr = cfg.lr * min(1.0, step / cfg.warmup) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        imgs, texts = clip_batch(
            cfg.batch, k, gen, relation_share=cfg.relation_share, structural=cfg.structural,
            pool=pool, pool_share=cfg.pool_share, flip=cfg.flip,
        )
        imgs = augment(imgs, gen, cfg.augment, vae)
        n = cfg.batch
        fi = F.normalize(model.encode_image(normalize(imgs, model)), dim=-1)  # (n, D)
        ft = F.normalize(model.encode_text(tokenizer(texts)), dim=-1)  # (n(1+k), D), scene-major
        scale = model.logit_scale.exp().clamp(max=100)
        logits = scale * fi @ ft.T  # (n, n(1+k)): every image against every caption, negatives included
        pos = torch.arange(n) * (1 + k)  # column of each image's true caption
        loss_i = F.cross_entropy(logits, pos)
        loss_t = F.cross_entropy(logits[:, pos].T, torch.arange(n))  # true captions vs all images
        # Each image against only its own caption and its k hard negatives. In the batch-wide loss the
        # n-1 other scenes' captions are easy (another colour or shape) and dominate the gradient; this
        # term is all about what the negatives change (relation, order, count), the bag-of-words
        # failure of small CLIPs (Yuksekgonul et al., ICLR 2023: NegCLIP).
        hn = logits.view(n, n, 1 + k)[torch.arange(n), torch.arange(n)]  # (n, 1+k) own captions
        loss_hn = F.cross_entropy(hn, torch.zeros(n, dtype=torch.long))
        loss = 0.5 * (loss_i + loss_t) + cfg.hn_weight * loss_hn
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        # Hard-negative accuracy on the training batch, logged beside the loss.
        hist.append((loss.item(), (hn[:, 1:] < hn[:, :1]).float().mean().item()))
        if step % cfg.log_every == 0:
            a = torch.tensor(hist[-cfg.log_every :]).mean(0).tolist()
            log("clip", step=step, loss=a[0], batch_hn_acc=a[1], scale=scale.item(), lr=lr, s=clock.elapsed())
        if step % cfg.ckpt_every == 0 or clock.out_of_time():
            save_clip(model, out)
            model.train()
        if clock.out_of_time():
            break
    save_clip(model, out)
    acc = clip_accuracy(model, tokenizer, cfg.eval_scenes, k, seed=10_000 + cfg.seed)
    a = torch.tensor(hist[-cfg.log_every :]).mean(0).tolist()
    result = dict(steps=step, wall_s=round(clock.elapsed()), loss=a[0], **acc)
    log("clip", done=1, **result)
    return result


