"""What the training stages share: the log line, the wall-time clock, fp16 component saving, the VAE
loader, and `--set FIELD=VALUE` parsing."""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import tempfile
import time
from pathlib import Path

import torch


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


def noised_batch(means, stds, ids, empty, batch: int, caption_dropout: float, alphas_cumprod, sf: float,
                 num_train_timesteps: int, gen, t_focus: float = 0.0):
    """One ε-prediction training batch from a pre-encoded pool, shared by the unet and motion stages:
    `batch` pool rows at random, z0 drawn from their latent Gaussians (× the VAE scaling factor `sf`),
    captions replaced by `empty` with probability `caption_dropout` (for CFG), t uniform, ε, and
    z_t = √ᾱ_t z0 + √(1 − ᾱ_t) ε. Returns (z_t, t, ε, token ids). The draws from `gen` are always in
    this order, so a stage's run is a function of its seed. Works for image (B, C, h, w) and video
    (B, C, F, h, w) latents (ε is independent per frame, as at sampling). With `t_focus` > 0 each row's t
    is, with that probability (one extra draw from `gen` after t), moved to the upper half of the schedule
    as T/2 + t mod (T − T/2), still uniform there; at 0 nothing more is drawn, so the default run is unchanged."""
    idx = torch.randint(0, len(means), (batch,), generator=gen)
    z0 = (means[idx].float() + stds[idx].float() * torch.randn(means[idx].shape, generator=gen)) * sf
    tok = ids[idx].clone()
    drop = torch.rand(batch, generator=gen) < caption_dropout
    tok[drop] = empty
    t = torch.randint(0, num_train_timesteps, (batch,), generator=gen)
    if t_focus > 0:
        high = num_train_timesteps // 2 + t % (num_train_timesteps - num_train_timesteps // 2)
        t = torch.where(torch.rand(batch, generator=gen) < t_focus, high, t)
    noise = torch.randn(z0.shape, generator=gen)
    a = alphas_cumprod[t].view(-1, *[1] * (z0.dim() - 1))
    zt = a.sqrt() * z0 + (1 - a).sqrt() * noise  # q(z_t | z_0)
    return zt, t, noise, tok


def save_component(module, folder: Path) -> None:
    """save_pretrained in fp16 safetensors, file by file atomically (config, then weights)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:
        half = copy.deepcopy(module).to(torch.float16)
        half.save_pretrained(tmp, safe_serialization=True)
        folder.mkdir(parents=True, exist_ok=True)
        for f in sorted(Path(tmp).iterdir()):
            os.replace(f, folder / f.name)


def save_pipeline_dir(pipe, out: Path, tokenizer_dir: Path) -> None:
    """`pipe.save_pretrained` (safetensors, components already fp16) into `out`, file by file atomically.
    Its text encoder's config is set to load as fp32: transformers loads a model in its config's dtype
    (diffusers components already default to fp32), and a half text encoder beside a float UNet breaks
    the stock pipeline on CPUs. transformers 5 writes only tokenizer.json; older releases'
    CLIPTokenizer needs vocab.json and merges.txt, copied from `tokenizer_dir`."""
    import json
    import shutil

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        pipe.save_pretrained(tmp, safe_serialization=True)
        te_cfg = Path(tmp) / "text_encoder" / "config.json"
        cfg_json = json.loads(te_cfg.read_text())
        cfg_json["dtype"] = "float32"
        te_cfg.write_text(json.dumps(cfg_json, indent=2, sort_keys=True) + "\n")
        for name in ("vocab.json", "merges.txt"):
            shutil.copy(tokenizer_dir / name, Path(tmp) / "tokenizer" / name)
        for f in sorted(Path(tmp).rglob("*")):
            if f.is_file():
                dest = out / f.relative_to(tmp)
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(f, dest)


def load_vae(out: Path):
    """The frozen VAE of the generator in `out` (written by the vae stage)."""
    from diffusers import AutoencoderKL

    if not (out / "vae" / "config.json").exists():
        raise SystemExit(f"no VAE in {out / 'vae'}: run `python -m findcli.shapes.training vae --out {out}` first")
    return AutoencoderKL.from_pretrained(out / "vae").eval().requires_grad_(False)


def parse_field(cls, key: str, value: str):
    """`value` converted to the type of dataclass field `key` of `cls` (int, float, str, or a tuple of
    floats written "0.4,0.6")."""
    types = {f.name: f.type for f in dataclasses.fields(cls)}  # strings: `from __future__ import annotations`
    if key not in types:
        raise KeyError(key)
    conv = {"int": int, "float": float, "str": str, "tuple": lambda v: tuple(float(x) for x in v.split(","))}
    return conv[types[key]](value)
