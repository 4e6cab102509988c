"""Wan 2.1 / 2.2 text-to-video (WanPipeline).

Facts the adapter relies on (diffusers 0.42 pipeline_wan.py):
  latents     CHANNELS FIRST, (B, C, F_lat, h, w), C = transformer.config.in_channels,
              F_lat = (num_frames - 1) // vae_scale_factor_temporal + 1, h, w = H, W // vae_scale_factor_spatial
              (the VAE config's scale_factor_temporal / scale_factor_spatial): latent_layout "CFHW".
  scaling     none: flow matching; prepare_latents returns the given latents as they are (cast to float32,
              whatever the transformer's dtype), so unit-variance z is the flow's starting noise. (The shared
              rollout casts z to the transformer's dtype first: at fp16/bf16 the starting noise is rounded to
              that precision before the pipeline's float32 cast.)
  text        one UMT5 encoder read with its attention mask; the embeddings past the prompt's tokens are
              zeroed and padded to max_sequence_length. That length is __call__'s default (512), which
              differs from encode_prompt's own default (226): the adapter passes __call__'s value to
              encode_prompt so that the embeddings equal what the stock call would make. The negative
              prompt is "" (the pipeline's default) when guidance > 1.
  decode      the tail of __call__: latents.to(vae.dtype); latents / (1 / latents_std) + latents_mean,
              per channel, (1, z_dim, 1, 1, 1) from the VAE config; vae.decode(...)[0];
              video_processor.postprocess_video(output_type="pt") -> (B, F, 3, H, W) in [0, 1].
  scheduler   native, used as given: UniPCMultistepScheduler (flow sigmas, flow_shift) in the released
              checkpoints, FlowMatchEulerDiscreteScheduler in diffusers' tests; both deterministic.
              ddim = False (--scheduler ddim and --eta are refused).
  quirks      num_frames must be 4k + 1 (vae_scale_factor_temporal k + 1): the pipeline would round any
              other count with a warning, so it is a one-line error here. height and width must be
              multiples of 16 (the pipeline's check) and of vae_scale_factor_spatial * patch size (which the
              pipeline would otherwise round down silently). Wan 2.2 two-expert checkpoints (transformer_2,
              boundary_ratio) switch experts inside the stock call; guidance_scale_2 is left at its default
              (= guidance_scale); sizes and dtype come from `transformer` (the high-noise expert, present in
              every text-to-video checkpoint). Wan 2.2 TI2V (expand_timesteps) needs nothing more. No
              resolution binning.
"""

from __future__ import annotations

import inspect
import math

import torch

from findcli.errors import FindError
from findcli.generators.base import Generator


class Wan(Generator):
    family = "wan"
    pipeline_classes = ("WanPipeline",)
    latent_layout = "CFHW"
    video = True
    ddim = False
    denoiser_attr = "transformer"

    def _call_default(self, name: str):
        return inspect.signature(type(self.pipe).__call__).parameters[name].default

    # ------------------------------------------------------------------ sizes

    def default_size(self) -> tuple[int, int, int]:
        """The stock call's own defaults (480x832, 81 frames): Wan configs record no sample size."""
        return self._call_default("height"), self._call_default("width"), self._call_default("num_frames")

    @property
    def max_sequence_length(self) -> int:
        return int(self._call_default("max_sequence_length"))

    def check_settings(self) -> None:
        super().check_settings()
        pipe = self.pipe
        t = pipe.vae_scale_factor_temporal
        if self.frames % t != 1 % t:
            k = (self.frames - 1) // t
            raise FindError(f"wan models make {t}k+1 frames; --frames {self.frames} is not one "
                            f"(use {t * k + 1} or {t * (k + 1) + 1})")
        patch = self.pipe.transformer.config.patch_size
        mh = math.lcm(16, pipe.vae_scale_factor_spatial * patch[1])
        mw = math.lcm(16, pipe.vae_scale_factor_spatial * patch[2])
        if self.height % mh or self.width % mw:
            raise FindError(f"this wan model needs --height a multiple of {mh} and --width a multiple of {mw} "
                            f"(got {self.height}x{self.width})")

    def natural_shape(self) -> tuple[int, int, int, int]:
        pipe = self.pipe
        f = pipe.vae_scale_factor_spatial
        frames = (self.frames - 1) // pipe.vae_scale_factor_temporal + 1
        return self.pipe.transformer.config.in_channels, frames, self.height // f, self.width // f

    # ------------------------------------------------------------------ rollout

    def encode(self) -> dict:
        do_cfg = self.settings.guidance > 1.0
        pe, ne = self.pipe.encode_prompt(prompt=self.prompt, negative_prompt=None, do_classifier_free_guidance=do_cfg,
                                         num_videos_per_prompt=1, max_sequence_length=self.max_sequence_length,
                                         device=self.device)
        return {"prompt_embeds": pe, "negative_prompt_embeds": ne}  # (1, 512, E); ne None without CFG

    def call_kwargs(self) -> dict:
        kw = super().call_kwargs()  # steps, guidance, height, width, num_frames (no eta: ddim = False)
        kw["max_sequence_length"] = self.max_sequence_length
        return kw

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """The tail of WanPipeline.__call__ for output_type="pt", step for step."""
        vae = self.pipe.vae
        latents = latents.to(vae.device, dtype=vae.dtype)
        z = vae.config.z_dim
        latents_mean = torch.tensor(vae.config.latents_mean).view(1, z, 1, 1, 1).to(latents.device, latents.dtype)
        latents_std = 1.0 / torch.tensor(vae.config.latents_std).view(1, z, 1, 1, 1).to(latents.device, latents.dtype)
        latents = latents / latents_std + latents_mean
        video = vae.decode(latents, return_dict=False)[0]
        return self.pipe.video_processor.postprocess_video(video, output_type="pt")

    def pooled_text(self) -> torch.Tensor:
        """The UMT5 encoder's last hidden state averaged over the prompt's own tokens (E,): the
        embeddings the pipeline keeps (it zeroes the rest), without their padding."""
        from diffusers.pipelines.wan.pipeline_wan import prompt_clean

        pipe = self.pipe
        tok = pipe.tokenizer(prompt_clean(self.prompt), truncation=True, max_length=self.max_sequence_length,
                             add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
        dev = pipe.text_encoder.device
        hidden = pipe.text_encoder(tok.input_ids.to(dev), tok.attention_mask.to(dev)).last_hidden_state
        n = int(tok.attention_mask[0].sum())
        return hidden[0, :n].mean(dim=0)
