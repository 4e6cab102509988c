"""Stable Diffusion XL (StableDiffusionXLPipeline; SDXL-Turbo is the same pipeline).

Facts the adapter relies on (diffusers 0.42, pipeline_stable_diffusion_xl.py):
  latents    (B, 4, h, w), h = height / vae_scale_factor; layout CHW. The pipeline multiplies the given
             latents by scheduler.init_noise_sigma (prepare_latents): Euler's is sqrt(σ_max² + 1) ≈ 14.6,
             DDIM's is 1. The policy stays on unit-variance noise.
  text       two encoders: CLIPTextModel + CLIPTextModelWithProjection; encode_prompt returns
             (prompt_embeds, negative_prompt_embeds, pooled_prompt_embeds, negative_pooled_prompt_embeds),
             the penultimate hidden states of both concatenated and the second encoder's projected
             pooled output. With CFG and no negative prompt, force_zeros_for_empty_prompt (SDXL base's
             config) makes the negatives zeros, exactly as pipe(prompt=...) does.
  micro-conditioning  original_size / target_size / crops_coords_top_left are left to the pipeline's
             defaults ((height, width), (height, width), (0, 0)); the time ids are built inside the call.
  decode     what __call__ does after its loop: upcast the VAE when it is fp16 with force_upcast, then
             latents · latents_std / scaling_factor + latents_mean when the VAE config has both, else
             latents / scaling_factor; vae.decode; the invisible watermark if the pipeline has one;
             image_processor.postprocess(output_type="pt").
  scheduler  ships EulerDiscreteScheduler; --scheduler auto switches to DDIM (ε/v-prediction, eta allowed)
             except for few-step checkpoints (Turbo/Lightning/Hyper/LCM names, LCM/TCD schedulers), which
             keep theirs (findcli.generators.configure_scheduler).
  sizes      height and width multiples of 8 (the pipeline's check, one line here instead of its ValueError).
             Default: unet.config.sample_size × vae_scale_factor (1024 for SDXL base, 512 for Turbo).
  pooled_text  pooled_prompt_embeds (text_encoder_2's projected pooled output), (E,).
"""

from __future__ import annotations

import torch

from findcli.generators.base import Generator


class StableDiffusionXL(Generator):
    family = "sdxl"
    pipeline_classes = ("StableDiffusionXLPipeline",)
    ddim = True
    denoiser_attr = "unet"

    def default_size(self) -> tuple[int, int]:
        sample = self.pipe.unet.config.sample_size
        sample = sample if isinstance(sample, int) else sample[0]
        return sample * self.pipe.vae_scale_factor, sample * self.pipe.vae_scale_factor

    def check_settings(self) -> None:
        super().check_settings()
        m = max(8, self.pipe.vae_scale_factor)  # the pipeline's check_inputs: multiples of 8
        self.check_multiple(m)

    def natural_shape(self) -> tuple[int, int, int]:
        f = self.pipe.vae_scale_factor
        return self.pipe.unet.config.in_channels, self.height // f, self.width // f

    def encode(self) -> dict:
        do_cfg = self.settings.guidance > 1.0  # the pipeline's do_classifier_free_guidance (no time_cond_proj)
        if self.pipe.unet.config.time_cond_proj_dim is not None:
            do_cfg = False  # guidance-embedded UNets (LCM distillations): the pipeline never runs CFG
        pe, ne, pp, npp = self.pipe.encode_prompt(
            prompt=self.prompt, device=self.device, num_images_per_prompt=1, do_classifier_free_guidance=do_cfg,
            negative_prompt=None)
        embeds = {"prompt_embeds": pe, "pooled_prompt_embeds": pp}  # (1, L, E), (1, P)
        if do_cfg:
            embeds.update(negative_prompt_embeds=ne, negative_pooled_prompt_embeds=npp)
        return embeds

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """The tail of StableDiffusionXLPipeline.__call__ for output_type="pt", timed apart."""
        pipe = self.pipe
        vae = pipe.vae
        needs_upcasting = vae.dtype == torch.float16 and vae.config.force_upcast
        if needs_upcasting:
            vae.to(dtype=torch.float32)  # what the pipeline's (deprecated) upcast_vae() does
            latents = latents.to(next(iter(pipe.vae.post_quant_conv.parameters())).dtype)
        mean = getattr(vae.config, "latents_mean", None)
        std = getattr(vae.config, "latents_std", None)
        if mean is not None and std is not None:
            mean = torch.tensor(mean).view(1, 4, 1, 1).to(latents.device, latents.dtype)
            std = torch.tensor(std).view(1, 4, 1, 1).to(latents.device, latents.dtype)
            latents = latents * std / vae.config.scaling_factor + mean
        else:
            latents = latents / vae.config.scaling_factor
        try:
            image = vae.decode(latents, return_dict=False)[0]
        finally:
            if needs_upcasting:
                vae.to(dtype=torch.float16)
        if getattr(pipe, "watermark", None) is not None:
            image = pipe.watermark.apply_watermark(image)
        return pipe.image_processor.postprocess(image, output_type="pt")

    def pooled_text(self) -> torch.Tensor:
        """pooled_prompt_embeds: text_encoder_2's projected pooled output for the prompt, (E,)."""
        return self.embeds["pooled_prompt_embeds"][0]
