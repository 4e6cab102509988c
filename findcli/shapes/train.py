"""Train the built-in shapes models from scratch, on images from the project's own renderer.

    python -m findcli.shapes.train {vae,unet,clip,all} --seed 0 --out findcli/shapes/model [--steps N] [--minutes M]

Stages (each reproducible from --seed; each writes its files atomically, at every checkpoint):

- vae:  a KL-regularised AutoencoderKL (64 px -> 4×16×16), L1 + MSE + small KL, on a 50/50 mix of
        biased and unbiased scenes; then measures the latents' std and stores 1/std as
        `scaling_factor`, so that the UNet sees latents of ~unit variance.           -> <out>/vae
- unet: the UNet and the CLIP text encoder together, ε-prediction with min-SNR weighting, 10% caption
        dropout (to the empty prompt, which is what classifier-free guidance feeds as negative), EMA
        of both, on the BIASED caption distribution. The VAE is read from <out>/vae and frozen; each
        checkpoint writes a complete StableDiffusionPipeline directory (fp16 safetensors).
- clip: an open_clip CLIP (config `find-shapes-clip.json`), contrastive on UNBIASED scenes with hard
        negatives in every batch: each image is scored against every caption of the batch plus the
        swapped captions of its own scene. What a small CLIP gets wrong is relations (it turns into a
        bag of words: "left of" and "right of" end up with the same text embedding) and the look of the
        generator's samples, so the batches are relation-heavy, relation/order/count swaps come first
        among the negatives, an extra loss ranks each image's own captions, mirrored scenes swap
        left/right, and half of each batch comes from a generator-domain pool (renders redrawn by the
        built-in generator with img2img), plus warp/VAE/blur augmentation. Needs the generator (vae,
        unet) first. Reports held-out accuracy at ranking the true caption above each hard negative,
        and per template against every structural swap.       -> <out>/clip/open_clip_model.safetensors
- all:  vae, then unet, then clip.

`--minutes` bounds a stage's wall time (the stage stops early and still writes its final checkpoint);
`--preset cpu` is the small schedule that produced the shipped weights on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

# On a CPU shared with other jobs, OpenMP threads that spin at barriers waste the slices they get;
# sleeping instead made a 2-thread training step 2-5x faster on the busy 2-core dev box. Must be set
# before torch loads libgomp, so it only takes effect when this module is the entry point.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn.functional as F

from findcli.atomic import write_text, write_with
from findcli.shapes import models as M


@dataclass
class TrainConfig:
    seed: int = 0
    threads: int = 2  # torch intra-op threads (the dev box has 2 cores shared with other jobs)
    out: str = str(M.BUILTIN_MODEL_DIR)  # pipeline directory; CLIP goes to <out>/clip
    # VAE
    vae_steps: int = 3000
    vae_batch: int = 32  # images per step
    vae_lr: float = 1e-3
    vae_kl_weight: float = 1e-4  # × per-element KL(q(z|x) || N(0,I)), against per-pixel L1 + MSE
    # UNet + text encoder
    unet_steps: int = 20000
    unet_batch: int = 64  # latents per step; samples seen = steps × batch
    unet_lr: float = 5e-4
    unet_warmup: int = 200  # linear warm-up steps, then constant (EMA does the averaging)
    pool_size: int = 32768  # pre-rendered, pre-encoded biased scenes the UNet samples batches from
    caption_dropout: float = 0.1  # fraction of captions replaced by "" (classifier-free guidance)
    min_snr_gamma: float = 5.0  # loss weight min(SNR, γ)/SNR for ε-prediction
    ema_decay: float = 0.999  # with warm-up: decay_t = min(decay, (1 + t) / (10 + t))
    # CLIP
    clip_steps: int = 6000
    clip_batch: int = 64  # scenes per step; texts per step = batch × (1 + clip_negatives)
    clip_negatives: int = 6  # hard negatives per scene (colour / shape / relation / count swaps)
    clip_relation_share: float = 0.5  # fraction of each batch that is relation scenes (0.25 = uniform over templates)
    clip_structural: int = 4  # of the negatives, how many are structural first: relation/order or count swaps
    clip_augment: float = 0.3  # probability of the generator-domain augmentation per image (see augment)
    clip_hn_weight: float = 1.0  # weight of an extra loss: each image against only its own caption and its negatives
    clip_init: str = ""  # start from these CLIP weights (safetensors) instead of a random init
    clip_flip: float = 0.5  # probability of a mirrored scene with "left" and "right" swapped in all its captions
    clip_pool: int = 4096  # generator-domain pool: rendered scenes redrawn by the generator (img2img), see domain_pool
    clip_pool_share: float = 0.5  # fraction of each batch drawn from that pool
    clip_pool_strength: tuple = (0.4, 0.6)  # img2img strength range (fraction of the DDIM steps re-run)
    clip_lr: float = 1e-3
    clip_warmup: int = 200
    clip_eval_scenes: int = 1000  # held-out scenes for the accuracy measurement
    # Bookkeeping
    minutes: float = 0.0  # wall-time budget per stage; 0 = no limit
    ckpt_every: int = 500  # steps between checkpoints
    log_every: int = 50


def cpu_preset(cfg: TrainConfig) -> TrainConfig:
    """The schedule that produced the shipped weights on a shared 2-core CPU (no GPU)."""
    return dataclasses.replace(
        cfg, vae_steps=800, vae_batch=16, unet_steps=5000, unet_lr=8e-4, pool_size=8192, clip_steps=3500, clip_batch=32, ckpt_every=250
    )


PRESETS = {"default": lambda c: c, "cpu": cpu_preset}



def log(stage: str, **kv) -> None:
    parts = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in kv.items())
    print(f"[{stage}] {parts}", flush=True)


class Clock:
    """Wall-time budget for one stage (0 minutes = unlimited)."""

    def __init__(self, minutes: float):
        self.t0 = time.perf_counter()
        self.limit = minutes * 60 if minutes > 0 else math.inf

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def progress(self, step: int, steps: int) -> float:
        """Fraction of the stage done, by steps or by wall time, whichever is further (for lr decay)."""
        return min(1.0, max(step / steps, self.elapsed() / self.limit))

    def out_of_time(self) -> bool:
        return self.elapsed() >= self.limit


def scenes(n: int, gen: torch.Generator, biased: bool):
    """n random scenes: (images (n,3,64,64) in [0,1], captions)."""
    from findcli.shapes.world import render, sample_specs

    specs = sample_specs(n, gen, biased=biased)
    return render(specs, gen, size=M.IMAGE_SIZE, device="cpu"), [s.caption() for s in specs]


# --- VAE ----------------------------------------------------------------------------------------------


def save_vae(vae, out: Path) -> None:
    save_component(vae, out / "vae")


def save_component(module, folder: Path) -> None:
    """save_pretrained in fp16 safetensors, file by file atomically (config, then weights)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:
        half = copy.deepcopy(module).to(torch.float16)
        half.save_pretrained(tmp, safe_serialization=True)
        folder.mkdir(parents=True, exist_ok=True)
        for f in sorted(Path(tmp).iterdir()):
            os.replace(f, folder / f.name)


def train_vae(cfg: TrainConfig) -> dict:
    out = Path(cfg.out)
    gen = torch.Generator().manual_seed(cfg.seed)
    vae = M.build_vae(cfg.seed).train()
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae_lr, weight_decay=0.0, fused=True)
    clock = Clock(cfg.minutes)
    log("vae", params=sum(p.numel() for p in vae.parameters()), steps=cfg.vae_steps, batch=cfg.vae_batch)
    hist = []
    step = 0
    for step in range(1, cfg.vae_steps + 1):
        frac = clock.progress(step, cfg.vae_steps)
        lr = cfg.vae_lr * min(1.0, step / 100) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        # Half biased, half unbiased: the VAE must reconstruct any scene FIND may steer the sampler to.
        xa, _ = scenes(cfg.vae_batch // 2, gen, biased=True)
        xb, _ = scenes(cfg.vae_batch - cfg.vae_batch // 2, gen, biased=False)
        x = torch.cat([xa, xb]) * 2 - 1  # diffusers VAEs work in [-1, 1]
        post = vae.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen)
        rec = vae.decode(z).sample
        l1 = (rec - x).abs().mean()
        mse = (rec - x).square().mean()
        # KL(N(μ, σ²) || N(0, 1)) per latent element, averaged (not summed) to sit beside per-pixel losses.
        kl = 0.5 * (post.mean.square() + post.var - 1 - post.logvar).mean()
        loss = l1 + mse + cfg.vae_kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        hist.append((l1.item(), mse.item(), kl.item()))
        if step % cfg.log_every == 0:
            a = torch.tensor(hist[-cfg.log_every :]).mean(0).tolist()
            log("vae", step=step, l1=a[0], mse=a[1], kl=a[2], lr=lr, s=clock.elapsed())
        if step % cfg.ckpt_every == 0 or clock.out_of_time():
            set_scaling_factor(vae, gen)
            save_vae(vae, out)
        if clock.out_of_time():
            break
    sf = set_scaling_factor(vae, gen)
    save_vae(vae, out)
    a = torch.tensor(hist[-cfg.log_every :]).mean(0).tolist()
    result = dict(steps=step, wall_s=round(clock.elapsed()), l1=a[0], mse=a[1], kl=a[2], scaling_factor=sf)
    log("vae", done=1, **result)
    return result


@torch.no_grad()
def set_scaling_factor(vae, gen: torch.Generator, n: int = 256) -> float:
    """Set vae.config.scaling_factor = 1 / std of posterior samples on biased scenes."""
    was_training = vae.training
    vae.eval()
    x, _ = scenes(n, gen, biased=True)
    z = vae.encode(x * 2 - 1).latent_dist.sample(gen)
    sf = float(1.0 / z.std())
    vae.register_to_config(scaling_factor=sf)
    vae.train(was_training)
    return sf


# --- UNet + text encoder ------------------------------------------------------------------------------


def load_vae(out: Path):
    from diffusers import AutoencoderKL

    if not (out / "vae" / "config.json").exists():
        raise SystemExit(f"no VAE in {out / 'vae'}: run `python -m findcli.shapes.train vae --out {out}` first")
    return AutoencoderKL.from_pretrained(out / "vae").eval().requires_grad_(False)


@torch.no_grad()
def build_pool(cfg: TrainConfig, vae, tokenizer, gen: torch.Generator):
    """Render and encode `pool_size` biased scenes once: (latent means, latent stds, token ids)."""
    means, stds, ids = [], [], []
    chunk = 256
    t0 = time.perf_counter()
    for i in range(0, cfg.pool_size, chunk):
        x, caps = scenes(min(chunk, cfg.pool_size - i), gen, biased=True)
        post = vae.encode(x * 2 - 1).latent_dist
        means.append(post.mean.half())
        stds.append(post.std.half())
        ids.append(tokenize(tokenizer, caps))
    log("unet", pool=cfg.pool_size, pool_s=round(time.perf_counter() - t0))
    return torch.cat(means), torch.cat(stds), torch.cat(ids)


def tokenize(tokenizer, captions: list[str]) -> torch.Tensor:
    # Exactly as StableDiffusionPipeline.encode_prompt: pad to model_max_length, truncate, no mask.
    return tokenizer(
        captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids


def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters()):
            e.lerp_(p, 1 - decay)


def save_pipeline(out: Path, unet, vae, text_encoder, tokenizer_dir: Path) -> None:
    """Write a complete StableDiffusionPipeline directory in fp16 safetensors, file by file atomically."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=copy.deepcopy(vae).half(),
        text_encoder=copy.deepcopy(text_encoder).half(),
        tokenizer=M.load_tokenizer(tokenizer_dir),
        unet=copy.deepcopy(unet).half(),
        scheduler=M.build_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        pipe.save_pretrained(tmp, safe_serialization=True)
        # fp16 on disk, fp32 by default on load: transformers loads a model in its config's dtype
        # (diffusers components already default to fp32), and a half text encoder beside a float UNet
        # breaks the stock pipeline on CPUs.
        te_cfg = Path(tmp) / "text_encoder" / "config.json"
        cfg_json = json.loads(te_cfg.read_text())
        cfg_json["dtype"] = "float32"
        te_cfg.write_text(json.dumps(cfg_json, indent=2, sort_keys=True) + "\n")
        # transformers 5 writes only tokenizer.json; older releases' CLIPTokenizer needs these two.
        for name in ("vocab.json", "merges.txt"):
            shutil.copy(tokenizer_dir / name, Path(tmp) / "tokenizer" / name)
        for f in sorted(Path(tmp).rglob("*")):
            if f.is_file():
                dest = out / f.relative_to(tmp)
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(f, dest)


def train_unet(cfg: TrainConfig) -> dict:
    out = Path(cfg.out)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    vae = load_vae(out)
    sf = vae.config.scaling_factor
    with tempfile.TemporaryDirectory() as tokdir:
        M.write_tokenizer(tokdir)
        tokenizer = M.load_tokenizer(tokdir)
        tok_keep = Path(tempfile.mkdtemp())
        M.write_tokenizer(tok_keep)
    unet = M.build_unet(cfg.seed).train()
    text = M.build_text_encoder(cfg.seed).train()
    ema_unet, ema_text = copy.deepcopy(unet).eval(), copy.deepcopy(text).eval()
    params = list(unet.parameters()) + list(text.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.unet_lr, weight_decay=1e-2, fused=True)
    sched = M.build_scheduler()
    alphas_cumprod = sched.alphas_cumprod.float()  # (1000,) ᾱ_t
    snr = alphas_cumprod / (1 - alphas_cumprod)  # SNR_t = ᾱ_t / (1 − ᾱ_t)
    weight = torch.clamp(snr, max=cfg.min_snr_gamma) / snr  # min-SNR-γ weight for ε-prediction
    empty = tokenize(tokenizer, [""])  # (1, L): what CFG uses as the unconditional prompt
    log(
        "unet",
        unet_params=sum(p.numel() for p in unet.parameters()),
        text_params=sum(p.numel() for p in text.parameters()),
        steps=cfg.unet_steps,
        batch=cfg.unet_batch,
        samples=cfg.unet_steps * cfg.unet_batch,
        scaling_factor=sf,
    )
    clock = Clock(cfg.minutes)
    means, stds, ids = build_pool(cfg, vae, tokenizer, gen)
    hist = []
    step = 0
    for step in range(1, cfg.unet_steps + 1):
        lr = cfg.unet_lr * min(1.0, step / cfg.unet_warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        idx = torch.randint(0, len(means), (cfg.unet_batch,), generator=gen)
        z0 = (means[idx].float() + stds[idx].float() * torch.randn(means[idx].shape, generator=gen)) * sf
        tok = ids[idx].clone()
        drop = torch.rand(cfg.unet_batch, generator=gen) < cfg.caption_dropout
        tok[drop] = empty
        t = torch.randint(0, sched.config.num_train_timesteps, (cfg.unet_batch,), generator=gen)
        noise = torch.randn(z0.shape, generator=gen)
        a = alphas_cumprod[t].view(-1, 1, 1, 1)
        zt = a.sqrt() * z0 + (1 - a).sqrt() * noise  # q(z_t | z_0)
        cond = text(tok).last_hidden_state  # (B, L, 128)
        pred = unet(zt, t, cond).sample  # ε̂
        per = (pred - noise).square().mean(dim=(1, 2, 3))  # per-sample MSE, mean over latent elements
        loss = (weight[t] * per).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        decay = min(cfg.ema_decay, (1 + step) / (10 + step))
        ema_update(ema_unet, unet, decay)
        ema_update(ema_text, text, decay)
        hist.append((loss.item(), per.mean().item()))
        if step % cfg.log_every == 0:
            a_ = torch.tensor(hist[-cfg.log_every :]).mean(0).tolist()
            log("unet", step=step, loss=a_[0], mse=a_[1], lr=lr, s=clock.elapsed())
        if step % cfg.ckpt_every == 0 or clock.out_of_time():
            save_pipeline(out, ema_unet, vae, ema_text, tok_keep)
            log("unet", checkpoint=step)
        if clock.out_of_time():
            break
    save_pipeline(out, ema_unet, vae, ema_text, tok_keep)
    shutil.rmtree(tok_keep, ignore_errors=True)
    a_ = torch.tensor(hist[-cfg.log_every :]).mean(0).tolist()
    result = dict(steps=step, wall_s=round(clock.elapsed()), loss=a_[0], mse=a_[1])
    log("unet", done=1, **result)
    return result


# --- CLIP ---------------------------------------------------------------------------------------------


def _structural(spec, neg) -> bool:
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
            first = [x for x in every if _structural(s, x)][:structural]
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
def domain_pool(cfg: TrainConfig, gen: torch.Generator):
    """`clip_pool` unbiased scenes (relation-heavy, as the batches) rendered, then redrawn by the built-in
    generator with the stock img2img pipeline: encode, noise to a random strength in
    `clip_pool_strength`, denoise with the scene's own caption at guidance 7.5 (the sampler's default).
    Low strength keeps the layout, so the caption stays true (the judge agrees on ~90% of them; the pool
    is NOT filtered by the judge, which must stay independent of the reward), while the look becomes
    the generator's: blur, diagonal smear, guidance-saturated colours. Returns (specs, uint8 images)."""
    specs, imgs, _ = img2img_pool(cfg.out, cfg.clip_pool, gen, cfg.clip_relation_share, cfg.clip_pool_strength)
    return specs, imgs


@torch.no_grad()
def img2img_pool(model_dir, n: int, gen: torch.Generator, relation_share: float, strength: tuple, stage: str = "clip"):
    """The generator-domain pool behind `domain_pool`: n scenes from `clip_specs`, rendered, redrawn by
    the generator in `model_dir` with img2img (strength uniform in `strength` per chunk of 64).
    Returns (specs, uint8 images (n, 3, 64, 64), the SOURCE renders' `world.Layout`), the layout on the CPU."""
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
    layout = Layout(*(torch.cat([getattr(l, f) for l in layouts]) for f in ("boxes", "shape_ids", "colour_ids", "used")))
    return specs, torch.cat(imgs), layout


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
            negs = [x.caption() for x in hard_negatives(spec, gen, 10_000) if _structural(spec, x)]
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


def train_clip(cfg: TrainConfig) -> dict:
    import open_clip

    out = Path(cfg.out)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed + 2)
    M.register_builtin_clip()
    model = open_clip.create_model(M.CLIP_NAME)
    if cfg.clip_init:
        from safetensors.torch import load_file

        model.load_state_dict({k: v.float() for k, v in load_file(cfg.clip_init).items()})
    tokenizer = open_clip.get_tokenizer(M.CLIP_NAME)
    vae = load_vae(out) if cfg.clip_augment > 0 else None
    pool = domain_pool(cfg, gen) if cfg.clip_pool > 0 else None
    model.train()
    decay, no_decay = [], []
    for n_, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "logit_scale" in n_ or "embedding" in n_ else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}], lr=cfg.clip_lr, fused=True)
    k = cfg.clip_negatives
    log("clip", params=sum(p.numel() for p in model.parameters()), steps=cfg.clip_steps, batch=cfg.clip_batch, texts=cfg.clip_batch * (1 + k))
    clock = Clock(cfg.minutes)
    hist = []
    step = 0
    for step in range(1, cfg.clip_steps + 1):
        frac = clock.progress(step, cfg.clip_steps)
        lr = cfg.clip_lr * min(1.0, step / cfg.clip_warmup) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        imgs, texts = clip_batch(
            cfg.clip_batch, k, gen, relation_share=cfg.clip_relation_share, structural=cfg.clip_structural,
            pool=pool, pool_share=cfg.clip_pool_share, flip=cfg.clip_flip,
        )
        imgs = augment(imgs, gen, cfg.clip_augment, vae)
        n = cfg.clip_batch
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
        loss = 0.5 * (loss_i + loss_t) + cfg.clip_hn_weight * loss_hn
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
    acc = clip_accuracy(model, tokenizer, cfg.clip_eval_scenes, k, seed=10_000 + cfg.seed)
    a = torch.tensor(hist[-cfg.log_every :]).mean(0).tolist()
    result = dict(steps=step, wall_s=round(clock.elapsed()), loss=a[0], **acc)
    log("clip", done=1, **result)
    return result


# --- CLI ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m findcli.shapes.train", description=__doc__.split("\n")[0])
    p.add_argument("stage", choices=["vae", "unet", "clip", "all"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="steps of the chosen stage (all: of every stage)")
    p.add_argument("--minutes", type=float, default=0.0, help="wall-time budget per stage (0 = none)")
    p.add_argument("--out", default=str(M.BUILTIN_MODEL_DIR))
    p.add_argument("--preset", choices=sorted(PRESETS), default="default")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="override any TrainConfig field")
    a = p.parse_args(argv)
    cfg = PRESETS[a.preset](TrainConfig(seed=a.seed, out=a.out, minutes=a.minutes, threads=a.threads))
    types = {f.name: f.type for f in dataclasses.fields(TrainConfig)}
    for kv in a.set:
        key, val = kv.split("=", 1)
        cfg = dataclasses.replace(cfg, **{key: {"int": int, "float": float, "str": str}[types[key]](val)})
    if a.steps is not None:
        for st in (["vae", "unet", "clip"] if a.stage == "all" else [a.stage]):
            cfg = dataclasses.replace(cfg, **{f"{st}_steps": a.steps})
    torch.set_num_threads(cfg.threads)
    torch.set_flush_denormal(True)  # tiny activations late in training must not fall to slow denormals
    results = {}
    log("config", **dataclasses.asdict(cfg))
    for st, fn in (("vae", train_vae), ("unet", train_unet), ("clip", train_clip)):
        if a.stage in (st, "all"):
            results[st] = fn(cfg)
    print(json.dumps(results, indent=2), flush=True)


if __name__ == "__main__":
    main()
