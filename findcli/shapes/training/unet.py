"""Stage `unet`: the UNet and the CLIP text encoder of the generator together, ε-prediction with
min-SNR weighting, 10% caption dropout (to the empty prompt, which is what classifier-free guidance
feeds as negative), EMA of both, on the BIASED caption distribution. The VAE is read from <out>/vae
(the vae stage) and frozen; each checkpoint writes a complete StableDiffusionPipeline directory
(fp16 safetensors) to <out>."""

from __future__ import annotations

import copy
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from findcli.shapes import models as M
from findcli.shapes.training.common import Clock, load_vae, log, noised_batch, save_pipeline_dir
from findcli.shapes.training.data import scenes


@dataclass
class UnetTrainConfig:
    seed: int = 0
    threads: int = 2  # torch intra-op threads (the dev box has 2 cores shared with other jobs)
    out: str = str(M.BUILTIN_MODEL_DIR)  # pipeline directory, holding the VAE stage's <out>/vae
    steps: int = 20000
    batch: int = 64  # latents per step; samples seen = steps × batch
    lr: float = 5e-4
    warmup: int = 200  # linear warm-up steps, then constant (EMA does the averaging)
    pool_size: int = 32768  # pre-rendered, pre-encoded biased scenes the UNet samples batches from
    caption_dropout: float = 0.1  # fraction of captions replaced by "" (classifier-free guidance)
    min_snr_gamma: float = 5.0  # loss weight min(SNR, γ)/SNR for ε-prediction
    ema_decay: float = 0.999  # with warm-up: decay_t = min(decay, (1 + t) / (10 + t))
    minutes: float = 0.0  # wall-time budget; 0 = no limit
    ckpt_every: int = 500  # steps between checkpoints
    log_every: int = 50


# `--preset NAME`: field overrides. "cpu" is the schedule that produced the shipped weights on a
# shared 2-core CPU (no GPU).
SCHEDULES = {"default": {}, "cpu": dict(steps=5000, lr=8e-4, pool_size=8192, ckpt_every=250)}


@torch.no_grad()
def build_pool(cfg: UnetTrainConfig, vae, tokenizer, gen: torch.Generator):
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
    save_pipeline_dir(pipe, out, tokenizer_dir)


def train_unet(cfg: UnetTrainConfig) -> dict:
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
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=1e-2, fused=True)
    sched = M.build_scheduler()
    alphas_cumprod = sched.alphas_cumprod.float()  # (1000,) ᾱ_t
    snr = alphas_cumprod / (1 - alphas_cumprod)  # SNR_t = ᾱ_t / (1 − ᾱ_t)
    weight = torch.clamp(snr, max=cfg.min_snr_gamma) / snr  # min-SNR-γ weight for ε-prediction
    empty = tokenize(tokenizer, [""])  # (1, L): what CFG uses as the unconditional prompt
    log(
        "unet",
        unet_params=sum(p.numel() for p in unet.parameters()),
        text_params=sum(p.numel() for p in text.parameters()),
        steps=cfg.steps,
        batch=cfg.batch,
        samples=cfg.steps * cfg.batch,
        scaling_factor=sf,
    )
    clock = Clock(cfg.minutes)
    means, stds, ids = build_pool(cfg, vae, tokenizer, gen)
    hist = []
    step = 0
    for step in range(1, cfg.steps + 1):
        lr = cfg.lr * min(1.0, step / cfg.warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        zt, t, noise, tok = noised_batch(means, stds, ids, empty, cfg.batch, cfg.caption_dropout, alphas_cumprod, sf,
                                         sched.config.num_train_timesteps, gen)
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
