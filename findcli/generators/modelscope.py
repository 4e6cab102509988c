"""ModelScope text-to-video (TextToVideoSDPipeline, deprecated in diffusers -- it lives under
pipelines/deprecated/text_to_video_synthesis -- but still importable as diffusers.TextToVideoSDPipeline):
a UNet3DConditionModel (spatial + temporal convolutions and attention), one CLIP text encoder, the
2-D SD VAE applied frame by frame.

Facts the adapter relies on (diffusers 0.42, pipeline_text_to_video_synth.py):
  latents     (B, C=unet.in_channels=4, F, h, w), h = height / vae_scale_factor: layout "CFHW"; the
              policy's per-sample latent is (C, F, h, w).
  scaling     prepare_latents multiplies the given latents by scheduler.init_noise_sigma (1 for DDIM).
  prompt      encode_prompt(prompt=, device=, num_images_per_prompt=1, do_classifier_free_guidance=,
              negative_prompt=None) -> (prompt_embeds, negative_prompt_embeds), each (1, 77, E); CFG when
              guidance_scale > 1 (the call's default is 9.0; find passes its own). The call forces
              num_images_per_prompt = 1, so the batch is prompt_embeds.shape[0] and a stock call with K
              videos passes K prompts.
  decode      decode_latents(latents): latents / vae.config.scaling_factor, (B, C, F, h, w) ->
              (B*F, C, h, w), ONE vae.decode of all frames (no chunking), back to (B, 3, F, H, W)
              float32; then video_processor.postprocess_video(output_type="pt") -> (B, F, 3, H, W) in
              [0, 1]. output_type="latent" returns the latents in `.frames`.
  scheduler   an SD-style epsilon-prediction model: DDIM from its scheduler config is fine, so
              --scheduler auto switches to DDIM and --eta applies.
  quirk       the scheduler step runs on latents reshaped to (B*F, C, h, w), so a list of B generators
              (one per video, as find passes them) does not fit a stochastic step (diffusers'
              randn_tensor indexes the list by the B*F rows). Where the step draws noise (DDIM with
              eta > 0, or a native scheduler that takes a generator) each video of a chunk goes
              through its own pipe call with its own generator; DDIM with eta 0 (the default) runs
              the chunk as one call.
  sizes       default height = width = unet.config.sample_size * vae_scale_factor, frames = the call's
              default num_frames (16); height and width must be multiples of 8 (check_inputs).
"""

from __future__ import annotations

import inspect

import torch

from findcli.generators.animatediff import AnimateDiff


class ModelScope(AnimateDiff):
    family = "modelscope"
    pipeline_classes = ("TextToVideoSDPipeline",)
    latent_layout = "CFHW"
    video = True
    ddim = True

    def decode_video(self, latents: torch.Tensor) -> torch.Tensor:
        return self.pipe.decode_latents(latents)

    def _stochastic_step(self) -> bool:
        sched = self.pipe.scheduler
        if type(sched).__name__ == "DDIMScheduler":
            return bool(self.settings.eta)
        return "generator" in inspect.signature(sched.step).parameters

    def denoise(self, latents: torch.Tensor, n: int, generator) -> torch.Tensor:
        if n > 1 and isinstance(generator, list) and self._stochastic_step():
            return torch.cat([super(ModelScope, self).denoise(latents[j:j + 1], 1, [generator[j]])
                              for j in range(n)])
        return super().denoise(latents, n, generator)
