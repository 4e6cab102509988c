"""Stage `vae`: a KL-regularised AutoencoderKL (64 px -> 4×16×16), L1 + MSE + small KL, on a 50/50 mix
of biased and unbiased scenes; then measures the latents' std and stores 1/std as `scaling_factor`, so
that the UNet sees latents of ~unit variance. Writes <out>/vae (fp16 safetensors) at every checkpoint."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from findcli.shapes import models as M
from findcli.shapes.training.common import Clock, log, save_component
from findcli.shapes.training.data import scenes


@dataclass
class VaeTrainConfig:
    seed: int = 0
    threads: int = 2  # torch intra-op threads (the dev box has 2 cores shared with other jobs)
    out: str = str(M.BUILTIN_MODEL_DIR)  # pipeline directory; the VAE goes to <out>/vae
    steps: int = 3000
    batch: int = 32  # images per step
    lr: float = 1e-3
    kl_weight: float = 1e-4  # × per-element KL(q(z|x) || N(0,I)), against per-pixel L1 + MSE
    minutes: float = 0.0  # wall-time budget; 0 = no limit
    ckpt_every: int = 500  # steps between checkpoints
    log_every: int = 50


# `--preset NAME`: field overrides. "cpu" is the schedule that produced the shipped weights on a
# shared 2-core CPU (no GPU).
SCHEDULES = {"default": {}, "cpu": dict(steps=800, batch=16, ckpt_every=250)}


def save_vae(vae, out: Path) -> None:
    save_component(vae, out / "vae")


def train_vae(cfg: VaeTrainConfig) -> dict:
    out = Path(cfg.out)
    gen = torch.Generator().manual_seed(cfg.seed)
    vae = M.build_vae(cfg.seed).train()
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.lr, weight_decay=0.0, fused=True)
    clock = Clock(cfg.minutes)
    log("vae", params=sum(p.numel() for p in vae.parameters()), steps=cfg.steps, batch=cfg.batch)
    hist = []
    step = 0
    for step in range(1, cfg.steps + 1):
        frac = clock.progress(step, cfg.steps)
        lr = cfg.lr * min(1.0, step / 100) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        # Half biased, half unbiased: the VAE must reconstruct any scene FIND may steer the sampler to.
        xa, _ = scenes(cfg.batch // 2, gen, biased=True)
        xb, _ = scenes(cfg.batch - cfg.batch // 2, gen, biased=False)
        x = torch.cat([xa, xb]) * 2 - 1  # diffusers VAEs work in [-1, 1]
        post = vae.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen)
        rec = vae.decode(z).sample
        l1 = (rec - x).abs().mean()
        mse = (rec - x).square().mean()
        # KL(N(μ, σ²) || N(0, 1)) per latent element, averaged (not summed) to sit beside per-pixel losses.
        kl = 0.5 * (post.mean.square() + post.var - 1 - post.logvar).mean()
        loss = l1 + mse + cfg.kl_weight * kl
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
