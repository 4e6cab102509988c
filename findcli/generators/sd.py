"""Stable Diffusion 1.x / 2.x (StableDiffusionPipeline): UNet, one CLIP text encoder, latents
(B, 4, h, w) scaled by the scheduler's init_noise_sigma inside the pipeline, VAE decode by
/scaling_factor. The built-in shapes model is one of these."""

from __future__ import annotations

import torch

from findcli.generators.base import Generator, clip_pooled


class StableDiffusion(Generator):
    family = "sd"
    pipeline_classes = ("StableDiffusionPipeline",)

    def default_size(self) -> tuple[int, int]:
        sample = self.pipe.unet.config.sample_size
        sample = sample if isinstance(sample, int) else sample[0]
        return sample * self.pipe.vae_scale_factor, sample * self.pipe.vae_scale_factor

    def natural_shape(self) -> tuple[int, int, int]:
        f = self.pipe.vae_scale_factor
        return self.pipe.unet.config.in_channels, self.height // f, self.width // f

    def encode(self) -> dict:
        do_cfg = self.settings.guidance > 1.0
        pe, ne = self.pipe.encode_prompt(prompt=self.prompt, device=self.device, num_images_per_prompt=1,
                                         do_classifier_free_guidance=do_cfg, negative_prompt=None)
        return {"prompt_embeds": pe, "negative_prompt_embeds": ne}  # (1, L, E) each; ne None without CFG

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """The two calls the pipeline makes for output_type="pt", so that the decode can be timed apart."""
        pipe = self.pipe
        img = pipe.vae.decode(latents / pipe.vae.config.scaling_factor, return_dict=False)[0]
        return pipe.image_processor.postprocess(img, output_type="pt", do_denormalize=[True] * img.shape[0])

    def pooled_text(self) -> torch.Tensor:
        """The text encoder's pooled output for the prompt (E,): the value net's view of it."""
        return clip_pooled(self.pipe.tokenizer, self.pipe.text_encoder, self.prompt)
