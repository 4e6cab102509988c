"""PixArt-α and PixArt-Σ (PixArtAlphaPipeline, PixArtSigmaPipeline): a DiT transformer over a T5 text encoder.

Facts the adapter relies on (diffusers 0.42, pipelines/pixart_alpha/):
  latents    (B, 4, h, w), h = height / vae_scale_factor; layout CHW. The pipeline multiplies the given
             latents by scheduler.init_noise_sigma (prepare_latents; 1 for DPM-Solver and DDIM). The
             policy stays on unit-variance noise.
  text       one T5 encoder; encode_prompt returns (prompt_embeds, prompt_attention_mask,
             negative_prompt_embeds, negative_prompt_attention_mask), all four passed as keyword
             arguments (the masks are the transformer's encoder_attention_mask). Negative prompt "" (the
             pipeline's default) encoded when CFG is on, and negative_prompt=None in the call (its
             default "" beside negative_prompt_embeds is a ValueError). clean_caption=False (the call's
             default True needs bs4 + ftfy and rewrites the prompt; a no-op once embeddings are given).
             max_sequence_length is the pipeline's own default (α 120, Σ 300), in the encode and the call.
  quirks     use_resolution_binning=False is passed on every call: otherwise the pipeline snaps the size to
             its aspect-ratio bins (and raises for a transformer sample_size outside 32/64/128/256), then
             resizes back. The transformer may predict a learned sigma (out_channels = 2 × in_channels):
             the pipeline keeps the first half before the scheduler step. PixArt-α at sample_size 128
             adds resolution / aspect-ratio conditions itself from height and width.
  decode     what __call__ does after its loop without binning: vae.decode(latents.to(vae.dtype) /
             scaling_factor), then image_processor.postprocess(output_type="pt").
  scheduler  ships DPMSolverMultistepScheduler (ε-prediction); --scheduler auto switches to DDIM from its
             config, so eta is allowed; --scheduler native keeps DPM-Solver.
  sizes      height and width multiples of 8 (the pipeline's check) and of vae_scale_factor × patch_size.
             Default: transformer.config.sample_size × vae_scale_factor.
  pooled_text  the mean of the prompt's T5 embeddings over its attention mask, (E,).
"""

from __future__ import annotations

import math

import torch

from findcli.generators.base import Generator


class PixArt(Generator):
    family = "pixart"
    pipeline_classes = ("PixArtAlphaPipeline", "PixArtSigmaPipeline")
    ddim = True
    denoiser_attr = "transformer"

    def default_size(self) -> tuple[int, int]:
        sample = self.pipe.transformer.config.sample_size
        sample = sample if isinstance(sample, int) else sample[0]
        return sample * self.pipe.vae_scale_factor, sample * self.pipe.vae_scale_factor

    def check_settings(self) -> None:
        super().check_settings()
        f, p = self.pipe.vae_scale_factor, self.pipe.transformer.config.patch_size
        m = math.lcm(8, f * p)
        self.check_multiple(m)

    def natural_shape(self) -> tuple[int, int, int]:
        f = self.pipe.vae_scale_factor
        return self.pipe.transformer.config.in_channels, self.height // f, self.width // f

    def encode(self) -> dict:
        do_cfg = self.settings.guidance > 1.0  # the pipeline's test
        pe, pm, ne, nm = self.pipe.encode_prompt(
            prompt=self.prompt, do_classifier_free_guidance=do_cfg, negative_prompt="", num_images_per_prompt=1,
            device=self.device, clean_caption=False)
        embeds = {"prompt_embeds": pe, "prompt_attention_mask": pm}  # (1, L, E), (1, L)
        if do_cfg:
            embeds.update(negative_prompt_embeds=ne, negative_prompt_attention_mask=nm)
        return embeds

    def call_kwargs(self) -> dict:
        # negative_prompt=None: the call's default "" next to negative_prompt_embeds is a ValueError (check_inputs)
        return {**super().call_kwargs(), "negative_prompt": None, "use_resolution_binning": False,
                "clean_caption": False}

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """The tail of PixArt{Alpha,Sigma}Pipeline.__call__ for output_type="pt" without binning, timed apart."""
        pipe = self.pipe
        image = pipe.vae.decode(latents.to(pipe.vae.dtype) / pipe.vae.config.scaling_factor, return_dict=False)[0]
        return pipe.image_processor.postprocess(image, output_type="pt")

    def pooled_text(self) -> torch.Tensor:
        """The prompt's T5 embeddings averaged over its attention mask, (E,)."""
        pe, mask = self.embeds["prompt_embeds"][0].float(), self.embeds["prompt_attention_mask"][0].float()
        return (pe * mask[:, None]).sum(0) / mask.sum().clamp(min=1.0)
