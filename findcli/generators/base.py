"""The protocol every model family implements, and the loop they share.

A Generator turns the policy's latents z (K, *latent_shape) -- unit-variance noise in the family's
natural, unpacked layout -- into media in [0, 1]: images (K, 3, H, W) or videos (K, F, 3, H, W),
through the stock `pipe(..., latents=pack(z), output_type="latent")` call, then the family's own
decode (timed apart). The prompt is encoded once, with the pipeline's own `encode_prompt` called
with keyword arguments only, and the embeddings are repeated for every chunk of `max_batch`.

What a family module provides (a subclass of Generator):
  family            name recorded in policies ("sd", "sdxl", ...)
  pipeline_classes  the diffusers class names it drives
  latent_layout     "CHW" (images), "CFHW" (video, channels first), "FCHW" (video, frames first)
  default_size()    (height, width[, frames]) when none is given
  natural_shape()   the per-sample latent shape for (height, width, frames)
  encode()          {pipe kwarg: (1, ...) tensor} from encode_prompt, negative included when CFG is on
  call_kwargs()     the other pipe kwargs: steps, guidance, sizes, eta, num_frames, ...
  pack(z)           the latents the pipeline takes (identity for most; FLUX packs 2x2 patches)
  decode(latents)   what the pipeline's output_type="pt" does after the loop, in [0, 1]
  pooled_text()     (E,) float32 text feature for the value net
(token_text(), the per-token prompt_embeds, is shared: every family's encode() names them so.)

Pipelines multiply given latents by scheduler.init_noise_sigma where they should (SD family) and
use them as given elsewhere (flow matching): the policy lives on unit-variance noise for every
family and lets the pipeline scale it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

import torch

from findcli.errors import FindError


@dataclass
class SamplerSettings:
    steps: int = 20  # denoising steps per sample
    guidance: float = 7.5  # classifier-free guidance scale (1 = no CFG, half the rows)
    eta: float = 0.0  # DDIM eta: 0 = deterministic (the image is a function of z_T alone); DDIM only
    height: int | None = None  # pixels; None = the family's default for this model
    width: int | None = None
    frames: int | None = None  # video families: the pipeline's num_frames; None = the family's default
    scheduler: str = "auto"  # auto | ddim | native (see findcli.generators.configure_scheduler)


def clip_pooled(tokenizer, text_encoder, prompt: str) -> torch.Tensor:
    """A CLIP text encoder's pooled output (E,) for `prompt` (mean of the hidden states if it has none)."""
    ids = tokenizer(prompt, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids.to(text_encoder.device)
    out = text_encoder(ids)
    pooled = getattr(out, "pooler_output", None)
    if pooled is None:
        pooled = out[0].mean(dim=1)
    return pooled[0]


def _repeat(t, n: int):
    """A (1, ...) embedding tensor repeated to (n, ...) (None stays None)."""
    if t is None:
        return None
    return t.expand(n, *t.shape[1:]) if t.shape[0] == 1 else t.repeat_interleave(n, dim=0)


class Generator:
    family: ClassVar[str] = ""
    pipeline_classes: ClassVar[tuple[str, ...]] = ()
    latent_layout: ClassVar[str] = "CHW"
    video: ClassVar[bool] = False
    # Whether DDIM (and so --eta) applies; flow-matching and few-step families keep their scheduler.
    ddim: ClassVar[bool] = True
    # Name of the denoiser attribute (unet or transformer): device and dtype come from it.
    denoiser_attr: ClassVar[str] = "unet"

    def __init__(self, pipe, prompt: str, settings: SamplerSettings, max_batch: int = 16):
        self.pipe, self.prompt, self.settings = pipe, prompt, settings
        self.max_batch = max(1, int(max_batch))
        self._init_size()
        with torch.no_grad():
            self.embeds = self.encode()
        self.last_timing: dict[str, float] = {}

    def _init_size(self) -> None:
        denoiser = getattr(self.pipe, self.denoiser_attr)
        self.device, self.dtype = denoiser.device, denoiser.dtype
        size = self.default_size()
        self.height = self.settings.height or size[0]
        self.width = self.settings.width or size[1]
        self.frames = (self.settings.frames or size[2]) if self.video else None
        self.check_settings()
        self.latent_shape = tuple(int(s) for s in self.natural_shape())

    @classmethod
    def shape_for(cls, pipe, settings: SamplerSettings) -> tuple[int, ...]:
        """The per-sample latent shape for these settings, without encoding a prompt."""
        g = cls.__new__(cls)
        g.pipe, g.prompt, g.settings, g.max_batch = pipe, "", settings, 1
        g._init_size()
        return g.latent_shape

    # ------------------------------------------------------------------ family hooks

    def default_size(self) -> tuple[int, ...]:
        raise NotImplementedError

    def natural_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    def encode(self) -> dict:
        raise NotImplementedError

    def call_kwargs(self) -> dict:
        s = self.settings
        kw = dict(num_inference_steps=s.steps, guidance_scale=s.guidance, height=self.height, width=self.width)
        if self.ddim:
            kw["eta"] = s.eta
        if self.video:
            kw["num_frames"] = self.frames
        return kw

    def pack(self, z: torch.Tensor) -> torch.Tensor:
        return z

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def pooled_text(self) -> torch.Tensor:
        raise NotImplementedError

    # ------------------------------------------------------------------ shared

    def check_settings(self) -> None:
        """Sizes the family can make; --eta only where the sampler uses it."""
        s = self.settings
        if s.eta and not (self.ddim and type(self.pipe.scheduler).__name__ == "DDIMScheduler"):
            raise FindError(f"--eta applies to the DDIM sampler only; this {self.family} model samples with "
                            f"{type(self.pipe.scheduler).__name__}; drop --eta (or use --scheduler ddim where "
                            "the family allows it)")
        if self.frames is not None and self.frames < 1:
            raise FindError(f"--frames must be at least 1 (got {self.frames})")

    def check_multiple(self, m: int) -> None:
        """Height and width must be positive multiples of m pixels (what the pipeline can make)."""
        if self.height % m or self.width % m or self.height < m or self.width < m:
            raise FindError(f"this {self.family} model makes images whose height and width are multiples of {m} "
                            f"(got {self.height}x{self.width}); pick e.g. {max(m, self.height // m * m)}x"
                            f"{max(m, self.width // m * m)}")

    @property
    def media_shape(self) -> tuple[int, ...]:
        return (self.frames, 3, self.height, self.width) if self.video else (3, self.height, self.width)

    def text_features(self) -> torch.Tensor:
        with torch.no_grad():
            return self.pooled_text().reshape(-1).float().cpu()

    def token_text(self) -> torch.Tensor:
        """(L, E) float32 per-token prompt embeddings, the `prompt_embeds` the denoiser cross-attends
        (the conditional policy's tokens architecture reads them)."""
        pe = self.embeds.get("prompt_embeds")
        if pe is None:
            raise FindError(f"this {self.family} model gives no per-token prompt embeddings; use the conditional "
                            "policy's mlp architecture (--set arch=mlp)")
        return pe[0].reshape(pe.shape[1], -1).float().cpu()

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def check_latents(self, z: torch.Tensor) -> None:
        if tuple(z.shape[1:]) != self.latent_shape:
            raise FindError(f"latents of shape {list(z.shape[1:])} do not fit this {self.family} model at "
                            f"{self.height}x{self.width}{f'x{self.frames} frames' if self.video else ''} "
                            f"(it needs {list(self.latent_shape)}); use the size the policy was trained at")

    def denoise(self, latents: torch.Tensor, n: int, generator) -> torch.Tensor:
        """The stock pipeline call for one chunk, stopping before the decode."""
        out = self.pipe(**{k: _repeat(v, n) for k, v in self.embeds.items()}, latents=latents,
                        generator=generator, output_type="latent", return_dict=True, **self.call_kwargs())
        return out.frames if self.video else out.images

    @torch.no_grad()
    def __call__(self, z: torch.Tensor, seed: int = 0, start: int = 0) -> torch.Tensor:
        """Denoise then decode z (K, *latent_shape) -> media in [0, 1], float32, chunked by max_batch.
        `start`: the index of z's first row in its draw (a rank rolling out rows [start, start + K) of
        a sharded batch gives them the per-step noise they have in the whole draw)."""
        from findcli.seeds import noise_seed

        self.check_latents(z)
        media, t_denoise, t_decode = [], 0.0, 0.0
        for chunk in torch.split(z, self.max_batch):
            n = chunk.shape[0]
            # eta > 0 (and any stochastic sampler) draws fresh noise per step: one generator per sample,
            # seeded by (seed, sample index), so runs and resumes repeat and --max-batch changes nothing.
            gen = [torch.Generator(self.device).manual_seed(noise_seed("step", seed, start + j)) for j in range(n)]
            start += n
            self._sync()
            t0 = time.perf_counter()
            lat = self.denoise(self.pack(chunk.to(self.device, self.dtype)), n, gen)
            self._sync()
            t1 = time.perf_counter()
            media.append(self.decode(lat).float())
            self._sync()
            t_denoise += t1 - t0
            t_decode += time.perf_counter() - t1
        self.last_timing = {"denoise_s": t_denoise, "decode_s": t_decode}
        return torch.cat(media)
