"""FLUX.1 (FluxPipeline): a rectified-flow transformer (FluxTransformer2DModel) over PACKED latents;
text from a CLIPTextModel (pooled output only) and a T5 encoder.

  latents     natural (C, h, w): C = transformer.in_channels // 4 (16 for the real models),
              h = 2 * (height // (vae_scale_factor * 2)), w likewise (the pipeline's prepare_latents).
              The pipeline's `latents=` takes them PACKED into 2x2 patches, (B, (h/2)(w/2), 4C), and a
              4-D tensor fails; pack() is the pipeline's own static FluxPipeline._pack_latents. The
              policy lives on the natural layout (its Gaussian is the same either way: packing is a
              permutation). height and width must be multiples of vae_scale_factor * 2 (16 for the
              real models); the pipeline would only warn and floor them, here other sizes are refused.
  noise       flow matching: latents used AS GIVEN (no init_noise_sigma).
  scheduler   native FlowMatchEulerDiscreteScheduler with dynamic shifting: the pipeline computes the
              shift mu from the packed sequence length (h/2)(w/2) and its own sigmas linspace(1, 1/N, N).
              `ddim = False`: --scheduler auto keeps it, ddim is refused, --eta is refused.
  guidance    no classifier-free guidance rows. FLUX.1-dev (transformer.config.guidance_embeds) takes
              guidance_scale as an embedding input to the transformer; FLUX.1-schnell ignores it.
              --guidance is passed as guidance_scale either way, exactly as a user calls the pipeline.
              The pipeline's true CFG (true_cfg_scale > 1 with a negative prompt) is not used: no
              negative embeddings are built.
  text        encode_prompt(prompt=, prompt_2=None, ...) -> (prompt_embeds (1, max_sequence_length, D)
              from T5, pooled_prompt_embeds (1, 768) CLIP pooler output, text_ids); the first two are
              passed back as keyword arguments; text_ids (zeros) is recomputed by the pipeline when
              embeddings are given. max_sequence_length is the pipeline's default (512), left unpassed.
  decode      FluxPipeline._unpack_latents(latents, height, width, vae_scale_factor), then
              / vae.scaling_factor + vae.shift_factor (0.3611, 0.1159 for FLUX.1), vae.decode,
              image_processor.postprocess(output_type="pt"): exactly the pipeline's tail.
  quirks      the pipeline's default size is 128 * vae_scale_factor (1024 px) whatever the transformer;
              no resolution binning.
  pooled_text the CLIP pooled prompt embedding the pipeline feeds the transformer (E = 768).

Using a policy with stock diffusers: sample z in the natural layout, pack it first, then call the
pipeline with the same prompt, steps, guidance and size the policy was trained at:

    from diffusers import FluxPipeline
    from findcli.policy import load_policy
    pf = load_policy("policy.pt")                            # meta: prompt, steps, guidance, height, width
    C, h, w = pf.policy.latent_shape                         # natural layout (meta["latent_shape"])
    z, _ = pf.policy.sample(seed, n)                         # (n, C, h, w) unit-variance-scaled noise
    latents = FluxPipeline._pack_latents(z, n, C, h, w)      # (n, (h/2)(w/2), 4C): what latents= takes
    images = pipe(prompt, latents=latents, num_inference_steps=steps, guidance_scale=guidance,
                  height=height, width=width, num_images_per_prompt=n).images
"""

from __future__ import annotations

import torch

from findcli.generators.base import Generator


class Flux(Generator):
    family = "flux"
    pipeline_classes = ("FluxPipeline",)
    latent_layout = "CHW"
    ddim = False
    denoiser_attr = "transformer"

    def default_size(self) -> tuple[int, int]:
        pipe = self.pipe
        return pipe.default_sample_size * pipe.vae_scale_factor, pipe.default_sample_size * pipe.vae_scale_factor

    def check_settings(self) -> None:
        super().check_settings()
        m = self.pipe.vae_scale_factor * 2
        self.check_multiple(m)

    def natural_shape(self) -> tuple[int, int, int]:
        f = self.pipe.vae_scale_factor
        return (self.pipe.transformer.config.in_channels // 4,
                2 * (self.height // (f * 2)), 2 * (self.width // (f * 2)))

    def encode(self) -> dict:
        pe, pp, _text_ids = self.pipe.encode_prompt(prompt=self.prompt, prompt_2=None, device=self.device,
                                                    num_images_per_prompt=1)
        return {"prompt_embeds": pe, "pooled_prompt_embeds": pp}  # (1, L, D), (1, E)

    def pack(self, z: torch.Tensor) -> torch.Tensor:
        c, h, w = self.latent_shape
        return self.pipe._pack_latents(z, z.shape[0], c, h, w)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """What the pipeline does after its loop for output_type="pt", so the decode is timed apart."""
        pipe = self.pipe
        latents = pipe._unpack_latents(latents, self.height, self.width, pipe.vae_scale_factor)
        latents = latents / pipe.vae.config.scaling_factor + pipe.vae.config.shift_factor
        img = pipe.vae.decode(latents, return_dict=False)[0]
        return pipe.image_processor.postprocess(img, output_type="pt")

    def pooled_text(self) -> torch.Tensor:
        """The CLIP pooled prompt embedding the pipeline conditions on, (E,)."""
        return self.embeds["pooled_prompt_embeds"][0]
