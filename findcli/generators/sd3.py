"""Stable Diffusion 3 / 3.5 (StableDiffusion3Pipeline): an MMDiT (SD3Transformer2DModel) over
latents (B, 16, h, w), h = height // vae_scale_factor (8 for the real VAE), patchified 2x2 inside
the transformer; text from two CLIPTextModelWithProjection encoders and a T5 encoder.

  latents     (C, h, w) natural and as the pipeline takes them (pack() is the identity); C is the
              transformer's in_channels (16). height and width must be multiples of
              vae_scale_factor * patch_size (16 for the real models): other sizes are refused here,
              as the pipeline's check_inputs would.
  noise       flow matching: the given latents are used AS GIVEN (FlowMatchEulerDiscreteScheduler has
              no init_noise_sigma; sigma_max = 1), so the policy's unit-variance z is x_1 itself.
  scheduler   native (FlowMatchEulerDiscreteScheduler, shift 3.0 for the released models; SD3.5's
              dynamic shifting, where configured, is computed by the pipeline from the latent size).
              `ddim = False`: --scheduler auto keeps it, ddim is refused, --eta is refused.
  text        encode_prompt(prompt=, prompt_2=None, prompt_3=None, ...): prompt_2/prompt_3 default to
              prompt inside the pipeline. It returns four tensors, all passed back as keyword
              arguments: prompt_embeds (1, 77 + max_sequence_length, joint_attention_dim) = the two
              CLIPs' penultimate hidden states concatenated, zero-padded to the T5 width, then the T5
              states; pooled_prompt_embeds (1, proj_1 + proj_2) = the two CLIP projections; the
              negative pair ("" as the pipeline does) only when guidance > 1 (CFG: the transformer
              sees 2 rows per image). max_sequence_length is the pipeline's default (256), left
              unpassed both when encoding and when calling, so the two agree. A pipeline saved
              without text_encoder_3 gets zero T5 states from the pipeline itself.
  decode      latents / vae.scaling_factor + vae.shift_factor (1.5305, 0.0609 for SD3), vae.decode,
              image_processor.postprocess(output_type="pt"): exactly the pipeline's tail.
  quirks      skip-layer guidance is off (the pipeline's default skip_guidance_layers=None); no
              resolution binning.
  pooled_text the pipeline's own pooled_prompt_embeds (E = proj_1 + proj_2; 2048 for SD3).
"""

from __future__ import annotations

import torch

from findcli.generators.base import Generator


class StableDiffusion3(Generator):
    family = "sd3"
    pipeline_classes = ("StableDiffusion3Pipeline",)
    latent_layout = "CHW"
    ddim = False
    denoiser_attr = "transformer"

    def default_size(self) -> tuple[int, int]:
        pipe = self.pipe
        return pipe.default_sample_size * pipe.vae_scale_factor, pipe.default_sample_size * pipe.vae_scale_factor

    def check_settings(self) -> None:
        super().check_settings()
        m = self.pipe.vae_scale_factor * self.pipe.patch_size
        self.check_multiple(m)

    def natural_shape(self) -> tuple[int, int, int]:
        f = self.pipe.vae_scale_factor
        return self.pipe.transformer.config.in_channels, self.height // f, self.width // f

    def encode(self) -> dict:
        do_cfg = self.settings.guidance > 1.0
        pe, ne, pp, npp = self.pipe.encode_prompt(prompt=self.prompt, prompt_2=None, prompt_3=None,
                                                  device=self.device, num_images_per_prompt=1,
                                                  do_classifier_free_guidance=do_cfg, negative_prompt=None)
        # (1, L, E), (1, P) each; the negative pair is None without CFG.
        return {"prompt_embeds": pe, "negative_prompt_embeds": ne,
                "pooled_prompt_embeds": pp, "negative_pooled_prompt_embeds": npp}

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """What the pipeline does after its loop for output_type="pt", so the decode is timed apart."""
        pipe = self.pipe
        latents = latents / pipe.vae.config.scaling_factor + pipe.vae.config.shift_factor
        img = pipe.vae.decode(latents, return_dict=False)[0]
        return pipe.image_processor.postprocess(img, output_type="pt")

    def pooled_text(self) -> torch.Tensor:
        """The pipeline's pooled prompt embedding (both CLIP projections), (E,)."""
        return self.embeds["pooled_prompt_embeds"][0]
