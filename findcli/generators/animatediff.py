"""AnimateDiff (AnimateDiffPipeline): a Stable Diffusion 1.x UNet2DConditionModel plus a MotionAdapter,
which the pipeline merges into one UNetMotionModel (UNetMotionModel.from_unet2d) when it is built;
a saved pipeline stores the merged UNetMotionModel as its `unet`. One CLIP text encoder.

Facts the adapter relies on (diffusers 0.42, pipelines/animatediff/pipeline_animatediff.py):
  latents     (B, C=unet.in_channels=4, F, h, w), h = height / vae_scale_factor: layout "CFHW"; the
              policy's per-sample latent is (C, F, h, w).
  scaling     prepare_latents multiplies the given latents by scheduler.init_noise_sigma (1 for DDIM),
              so the policy lives on unit-variance noise.
  prompt      encode_prompt(prompt=, device=, num_images_per_prompt=1, do_classifier_free_guidance=,
              negative_prompt=None) -> (prompt_embeds, negative_prompt_embeds), each (1, 77, E); the
              pipeline concatenates [negative, positive] and repeats them per frame itself. The call
              forces num_videos_per_prompt = 1: the batch is prompt_embeds.shape[0] (the base class
              repeats the (1, ...) embeddings to the chunk size), a stock call with K videos passes K
              prompts.
  decode      decode_latents(latents, decode_chunk_size=16): latents / vae.config.scaling_factor,
              (B, C, F, h, w) -> (B*F, C, h, w), the 2-D VAE in chunks of 16 frames, back to
              (B, 3, F, H, W) float32; then video_processor.postprocess_video(output_type="pt") ->
              (B, F, 3, H, W) in [0, 1] (denormalize (x/2 + 0.5).clamp(0, 1)). output_type="latent"
              returns the latents in `.frames`.
  scheduler   any SD scheduler; DDIM from the model's scheduler config is fine (the release examples
              use DDIM), so --scheduler auto switches to DDIM and --eta applies. The DDIM step works on
              the 5-D latents, so one generator per video gives per-video step noise.
  sizes       default height = width = unet.config.sample_size * vae_scale_factor, frames = the call's
              default num_frames (16); height and width must be multiples of 8 (check_inputs) and
              frames at most the motion modules' motion_max_seq_length (their positional table).
  quirks      FreeInit / FreeNoise are off unless enabled on the pipeline (find never enables them);
              no IP-adapter inputs are passed.
"""

from __future__ import annotations

import inspect

import torch

from findcli.errors import FindError
from findcli.generators.base import Generator, clip_pooled


class AnimateDiff(Generator):
    family = "animatediff"
    pipeline_classes = ("AnimateDiffPipeline",)
    latent_layout = "CFHW"
    video = True
    ddim = True

    # ------------------------------------------------------------------ sizes

    def _default_frames(self) -> int:
        """The pipeline call's own default num_frames (16 for AnimateDiff and ModelScope)."""
        default = inspect.signature(type(self.pipe).__call__).parameters["num_frames"].default
        return int(default) if isinstance(default, int) else 16

    def default_size(self) -> tuple[int, int, int]:
        sample = self.pipe.unet.config.sample_size
        sample = sample if isinstance(sample, int) else sample[0]
        f = self.pipe.vae_scale_factor
        return sample * f, sample * f, self._default_frames()

    def natural_shape(self) -> tuple[int, int, int, int]:
        f = self.pipe.vae_scale_factor
        return self.pipe.unet.config.in_channels, self.frames, self.height // f, self.width // f

    def check_settings(self) -> None:
        super().check_settings()
        if self.height % 8 or self.width % 8:
            raise FindError(f"{self.family} models need --height and --width divisible by 8 "
                            f"(got {self.height}x{self.width})")
        limit = self.pipe.unet.config.get("motion_max_seq_length")
        if limit is not None and self.frames > int(limit):
            raise FindError(f"this {self.family} model's motion modules take at most {limit} frames "
                            f"(got --frames {self.frames})")

    # ------------------------------------------------------------------ prompt

    def encode(self) -> dict:
        do_cfg = self.settings.guidance > 1.0
        pe, ne = self.pipe.encode_prompt(prompt=self.prompt, device=self.device, num_images_per_prompt=1,
                                         do_classifier_free_guidance=do_cfg, negative_prompt=None)
        return {"prompt_embeds": pe, "negative_prompt_embeds": ne}  # (1, L, E) each; ne None without CFG

    def pooled_text(self) -> torch.Tensor:
        """The CLIP text encoder's pooled output for the prompt (E,)."""
        return clip_pooled(self.pipe.tokenizer, self.pipe.text_encoder, self.prompt)

    # ------------------------------------------------------------------ decode

    def decode_video(self, latents: torch.Tensor) -> torch.Tensor:
        """The pipeline's decode_latents: (B, C, F, h, w) -> (B, 3, F, H, W) float32 in [-1, 1]."""
        return self.pipe.decode_latents(latents, decode_chunk_size=16)  # the call's default chunk

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """What output_type="pt" does after the loop: decode_latents, then postprocess_video ->
        (B, F, 3, H, W) in [0, 1]."""
        video = self.decode_video(latents)
        return self.pipe.video_processor.postprocess_video(video=video, output_type="pt")
