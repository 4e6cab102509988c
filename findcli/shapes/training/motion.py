"""Stage `motion`: the built-in video generator, AnimateDiff-style. A MotionAdapter
(`findcli.shapes.video.models`) is trained from scratch on top of the built-in image generator in
`model_dir`, whose UNet, VAE, text encoder and tokenizer stay frozen (by default only the motion modules
learn). Data: `render_video` clips (8 frames, 64 px) of the BIASED video captions
(`video.world.sample_training_specs`, BIASES.md), rendered and VAE-encoded frame by frame once into a
pool; ε-prediction with the image generator's DDIM schedule and min-SNR weighting, 10% caption dropout
to "" (for classifier-free guidance), EMA. Each checkpoint writes a complete AnimateDiffPipeline
directory (fp16 safetensors: the merged UNetMotionModel as `unet`, the adapter alone as
`motion_adapter`) to <out>, which `DiffusionPipeline.from_pretrained(<out>)` loads.

Two probes on a fixed held-out batch (biased clips from seed + 10000, fixed noise and timesteps) are
logged at the start and at every checkpoint: `eval_mse`, the plain ε-MSE (at step 0 it is the frozen
image UNet's, frame by frame, since the motion modules start as the identity), and `dir_gap`, the
ε-MSE with every object's direction in the caption replaced by its opposite minus `eval_mse`: above 0
when the model reads the direction words of the prompt (the motion modules see no text; a direction
reaches them only through the image UNet's cross-attention, so `text_kv=1` lets those key/value
projections learn too)."""

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
from findcli.shapes.training.unet import tokenize
from findcli.shapes.video import models as VM


@dataclass
class MotionTrainConfig:
    seed: int = 0
    threads: int = 1  # torch intra-op threads (one: the shared dev box; step costs in TRAINING_LOG.md)
    out: str = str(VM.VIDEO_MODEL_DIR)  # the AnimateDiffPipeline directory written
    model_dir: str = str(M.BUILTIN_MODEL_DIR)  # the image generator reused frozen (unet, vae, text encoder, tokenizer, scheduler)
    steps: int = 20000
    batch: int = 4  # clips per step; the UNet sees batch × frames rows
    frames: int = VM.TRAIN_FRAMES  # frames per clip
    lr: float = 5e-4
    warmup: int = 100  # linear warm-up steps, then constant (EMA does the averaging)
    pool_size: int = 8192  # pre-rendered, pre-encoded biased clips the batches are drawn from (~45 ms each to build, 32 KB each)
    caption_dropout: float = 0.1  # fraction of captions replaced by "" (classifier-free guidance)
    min_snr_gamma: float = 5.0  # loss weight min(SNR, γ)/SNR for ε-prediction
    t_focus: float = 0.0  # fraction of rows trained at t in the upper half of the schedule, where a clip's motion is decided (0 = t uniform)
    ema_decay: float = 0.999  # with warm-up: decay_t = min(decay, (1 + t) / (10 + t))
    heads: int = 4  # temporal attention heads per motion module (head dim 8 at 32 channels, 16 at 64)
    max_frames: int = 16  # motion_max_seq_length: the longest clip the saved pipeline takes
    text_kv: int = 0  # 1: also train the image UNet's cross-attention to_k/to_v (the adapter then needs this dir's unet)
    init: str = ""  # a pipeline directory this stage wrote: continue from its unet/ (motion modules and, with text_kv, key/value) instead of a fresh adapter
    eval_clips: int = 16  # held-out clips of the two probes
    minutes: float = 0.0  # wall-time budget (pool building included); 0 = no limit
    ckpt_every: int = 500  # steps between checkpoints (and probes)
    log_every: int = 50


# `--preset NAME`: field overrides. "cpu" is sized for the shared 2-core dev box at one thread: ~0.47 s
# a step, ~50 min in all (measurements and estimate in benchmarks/TRAINING_LOG.md, "Video generator").
SCHEDULES = {"default": {}, "cpu": dict(steps=6000, pool_size=4096, ckpt_every=250)}


@torch.no_grad()
def build_pool(cfg: MotionTrainConfig, vae, tokenizer, gen: torch.Generator, n: int, stage_log: bool = True):
    """Render and encode n biased clips: (latent means, latent stds) (n, C, F, h, w) fp16, token ids
    (n, L), the specs."""
    from findcli.shapes.video.world import render_video, sample_training_specs

    means, stds, ids, specs = [], [], [], []
    chunk = 64
    t0 = time.perf_counter()
    for i in range(0, n, chunk):
        sp = sample_training_specs(min(chunk, n - i), gen, biased=True)
        x = render_video(sp, gen, frames=cfg.frames, size=M.IMAGE_SIZE)  # (k, F, 3, 64, 64) in [0, 1]
        post = vae.encode(x.flatten(0, 1) * 2 - 1).latent_dist
        k = len(sp)

        def clips(t):  # (k·F, C, h, w) -> (k, C, F, h, w): the pipeline's latent layout
            return t.view(k, cfg.frames, *t.shape[1:]).transpose(1, 2).half()

        means.append(clips(post.mean))
        stds.append(clips(post.std))
        ids.append(tokenize(tokenizer, [s.caption() for s in sp]))
        specs += sp
    if stage_log:
        log("motion", pool=n, pool_s=round(time.perf_counter() - t0))
    return torch.cat(means), torch.cat(stds), torch.cat(ids), specs


def load_parts(model_dir: Path):
    """The frozen image generator: (UNet2DConditionModel, VAE, CLIPTextModel, tokenizer, DDIM scheduler)."""
    from diffusers import DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel

    vae = load_vae(model_dir)
    if not (model_dir / "unet" / "config.json").exists():
        raise SystemExit(f"no UNet in {model_dir / 'unet'}: train the image generator first (`unet` stage)")
    unet = UNet2DConditionModel.from_pretrained(model_dir / "unet", torch_dtype=torch.float32).eval()
    text = CLIPTextModel.from_pretrained(model_dir / "text_encoder", dtype=torch.float32).eval()
    tokenizer = M.load_tokenizer(model_dir / "tokenizer")
    sched = DDIMScheduler.from_pretrained(model_dir / "scheduler")
    for m in (unet, text):
        m.requires_grad_(False)
    return unet, vae, text, tokenizer, sched


def build_model(cfg: MotionTrainConfig, unet2d):
    """The UNetMotionModel of the frozen image UNet and a fresh adapter (seeded), and its trainable
    parameters by name: the motion modules, plus with text_kv the spatial cross-attention key/value
    projections."""
    from diffusers import UNetMotionModel

    adapter = VM.build_motion_adapter(cfg.seed, heads=cfg.heads, max_frames=cfg.max_frames)
    model = UNetMotionModel.from_unet2d(unet2d, adapter)
    if cfg.init:  # continue a run: the saved merged UNet (EMA weights) replaces the fresh adapter's and the UNet's
        src = UNetMotionModel.from_pretrained(Path(cfg.init) / "unet", torch_dtype=torch.float32)
        model.load_state_dict(src.state_dict())
        del src
    model.freeze_unet2d_params()
    if cfg.text_kv:
        for name, p in model.named_parameters():
            if ".attentions." in name and (".attn2.to_k." in name or ".attn2.to_v." in name):
                p.requires_grad_(True)
    model.train()
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    return model, dict(adapter.config), trainable


def save_pipeline(out: Path, model, ema: dict, adapter_config: dict, vae, text_encoder, tokenizer_dir: Path, sched) -> None:
    """Write a complete AnimateDiffPipeline directory in fp16 safetensors, file by file atomically: the
    model with its EMA weights as `unet`, its motion modules as `motion_adapter`."""
    from diffusers import AnimateDiffPipeline

    unet = copy.deepcopy(model).eval()
    with torch.no_grad():
        for name, value in ema.items():
            unet.get_parameter(name).copy_(value)
    unet = unet.half()
    pipe = AnimateDiffPipeline(
        vae=copy.deepcopy(vae).half(),
        text_encoder=copy.deepcopy(text_encoder).half(),
        tokenizer=M.load_tokenizer(tokenizer_dir),
        unet=unet,
        motion_adapter=VM.adapter_of(unet, adapter_config),
        scheduler=copy.deepcopy(sched),
        feature_extractor=None,
        image_encoder=None,
    )
    save_pipeline_dir(pipe, out, tokenizer_dir)


def opposite_ids(tokenizer, specs) -> torch.Tensor:
    """Token ids of each spec's caption with every object's direction replaced by its opposite."""
    from findcli.shapes.video.world import OPPOSITE, Mover, VideoSpec

    flipped = [VideoSpec(s.kind, tuple(Mover(o.colour, o.shape, OPPOSITE[o.direction]) for o in s.objects)) for s in specs]
    return tokenize(tokenizer, [s.caption() for s in flipped])


class Probe:
    """The fixed held-out batch: clips, noise, timesteps, true and direction-flipped captions."""

    def __init__(self, cfg, vae, tokenizer, alphas_cumprod, sf):
        gen = torch.Generator().manual_seed(cfg.seed + 10_000)
        means, stds, ids, specs = build_pool(cfg, vae, tokenizer, gen, cfg.eval_clips, stage_log=False)
        n = len(specs)
        self.z0 = (means.float() + stds.float() * torch.randn(means.shape, generator=gen)) * sf
        self.noise = torch.randn(self.z0.shape, generator=gen)
        self.t = torch.linspace(50, 950, n).round().long()  # every noise level, the same every time
        a = alphas_cumprod[self.t].view(-1, 1, 1, 1, 1)
        self.zt = a.sqrt() * self.z0 + (1 - a).sqrt() * self.noise
        self.ids, self.flipped = ids, opposite_ids(tokenizer, specs)

    @torch.no_grad()
    def __call__(self, model, text, frames: int) -> dict:
        def mse(ids):
            cond = text(ids).last_hidden_state.repeat_interleave(frames, dim=0)
            return (model(self.zt, self.t, cond).sample - self.noise).square().mean().item()

        true = mse(self.ids)
        return {"eval_mse": true, "dir_gap": mse(self.flipped) - true}


def _with_ema(model, ema: dict):
    """A copy of `model` holding the EMA weights (for the probes)."""
    m = copy.deepcopy(model).eval()
    with torch.no_grad():
        for name, value in ema.items():
            m.get_parameter(name).copy_(value)
    return m


def train_motion(cfg: MotionTrainConfig) -> dict:
    out, model_dir = Path(cfg.out), Path(cfg.model_dir)
    if out.resolve() == model_dir.resolve():
        raise SystemExit(f"--out {out} is the image generator's directory; write the video pipeline elsewhere")
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    clock = Clock(cfg.minutes)
    unet2d, vae, text, tokenizer, sched = load_parts(model_dir)
    sf = vae.config.scaling_factor
    tok_keep = Path(tempfile.mkdtemp())
    for f in (model_dir / "tokenizer").iterdir():
        shutil.copy(f, tok_keep / f.name)
    model, adapter_config, trainable = build_model(cfg, unet2d)
    del unet2d
    ema = {n: p.detach().clone() for n, p in trainable.items()}
    params = list(trainable.values())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=1e-2, fused=True)
    alphas_cumprod = sched.alphas_cumprod.float()  # (1000,) ᾱ_t
    snr = alphas_cumprod / (1 - alphas_cumprod)
    weight = torch.clamp(snr, max=cfg.min_snr_gamma) / snr  # min-SNR-γ weight for ε-prediction
    empty = tokenize(tokenizer, [""])  # (1, L): the unconditional prompt of CFG
    log(
        "motion",
        trainable_params=sum(p.numel() for p in params),
        unet_params=sum(p.numel() for p in model.parameters()),
        steps=cfg.steps,
        batch=cfg.batch,
        frames=cfg.frames,
        clips=cfg.steps * cfg.batch,
        scaling_factor=sf,
    )
    probe = Probe(cfg, vae, tokenizer, alphas_cumprod, sf)
    first = probe(model, text, cfg.frames)
    log("motion", step=0, **first)
    means, stds, ids, _ = build_pool(cfg, vae, tokenizer, gen, cfg.pool_size)
    hist, probes = [], [(0, first)]
    step = 0
    for step in range(1, cfg.steps + 1):
        lr = cfg.lr * min(1.0, step / cfg.warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        zt, t, noise, tok = noised_batch(means, stds, ids, empty, cfg.batch, cfg.caption_dropout, alphas_cumprod, sf,
                                         sched.config.num_train_timesteps, gen, cfg.t_focus)  # (B, C, F, h, w)
        with torch.no_grad():
            cond = text(tok).last_hidden_state  # frozen text encoder, (B, L, 128)
        cond = cond.repeat_interleave(cfg.frames, dim=0)  # per frame, as AnimateDiffPipeline passes it
        pred = model(zt, t, cond).sample  # ε̂, (B, C, F, h, w)
        per = (pred - noise).square().mean(dim=(1, 2, 3, 4))
        loss = (weight[t] * per).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        decay = min(cfg.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for n, p in trainable.items():
                ema[n].lerp_(p, 1 - decay)
        hist.append((loss.item(), per.mean().item()))
        if step % cfg.log_every == 0:
            a_ = torch.tensor(hist[-cfg.log_every :]).mean(0).tolist()
            log("motion", step=step, loss=a_[0], mse=a_[1], lr=lr, s=clock.elapsed())
        last = step == cfg.steps or clock.out_of_time()
        if step % cfg.ckpt_every == 0 or last:
            probes.append((step, probe(_with_ema(model, ema), text, cfg.frames)))
            save_pipeline(out, model, ema, adapter_config, vae, text, tok_keep, sched)
            log("motion", checkpoint=step, **probes[-1][1])
        if last:
            break
    shutil.rmtree(tok_keep, ignore_errors=True)
    a_ = torch.tensor(hist[-cfg.log_every :]).mean(0).tolist() if hist else [float("nan")] * 2
    result = dict(steps=step, wall_s=round(clock.elapsed()), loss=a_[0], mse=a_[1],
                  eval_mse_start=first["eval_mse"], eval_mse=probes[-1][1]["eval_mse"],
                  dir_gap_start=first["dir_gap"], dir_gap=probes[-1][1]["dir_gap"])
    log("motion", done=1, **result)
    return result
