"""Tiny seeded SDXL and PixArt pipelines for tests and CPU-sized benchmarks (random weights, no downloads).

Both make 16×16 images from 4×8×8 latents (a 2-block VAE: vae_scale_factor 2) and use the CLIP
tokenizer findcli.shapes.write_tokenizer writes (vocab 49408) in every tokenizer slot, T5 included.

    build_tiny_sdxl()                       StableDiffusionXLPipeline, EulerDiscreteScheduler (as SDXL ships)
    build_tiny_pixart("sigma" | "alpha")    PixArtSigmaPipeline / PixArtAlphaPipeline, DPMSolverMultistepScheduler,
                                            a transformer predicting learned sigma (out_channels 8 = 2 × 4)
"""

from __future__ import annotations

import torch


def _tokenizer():
    import tempfile

    from transformers import CLIPTokenizer

    from findcli.shapes import write_tokenizer

    with tempfile.TemporaryDirectory() as d:
        write_tokenizer(d)
        return CLIPTokenizer.from_pretrained(d)


def _vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=(8, 16), in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=4,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2, sample_size=16,
    )


def build_tiny_sdxl():
    """A StableDiffusionXLPipeline of random tiny components (the layout of diffusers' SDXL dummy
    components, smaller): a text-time UNet (addition_time_embed_dim 4: 6 time ids × 4 + the 8-wide
    pooled projection = 32 inputs), CLIPTextModel (hidden 8) + CLIPTextModelWithProjection (hidden 8,
    projection 8) whose penultimate hidden states concatenate to cross_attention_dim 16. Seeded."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=4, transformer_layers_per_block=(1, 1), projection_class_embeddings_input_dim=32,
        cross_attention_dim=16, norm_num_groups=4,
    )
    vae = _vae()
    config = dict(vocab_size=49408, hidden_size=8, intermediate_size=16, num_attention_heads=2, num_hidden_layers=2,
                  max_position_embeddings=32, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
                  projection_dim=8, hidden_act="gelu")
    text_encoder = CLIPTextModel(CLIPTextConfig(**config))
    text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**config))
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       steps_offset=1, timestep_spacing="leading")
    tokenizer = _tokenizer()
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
                                     tokenizer=tokenizer, tokenizer_2=_tokenizer(), unet=unet, scheduler=scheduler,
                                     force_zeros_for_empty_prompt=True, add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_tiny_pixart(alpha_or_sigma: str = "sigma"):
    """A PixArt-Σ (or -α) pipeline of random tiny components (the layout of diffusers' PixArt dummy
    components, smaller): PixArtTransformer2DModel (2 layers, 2 heads × 4, patch 2, caption_channels
    16, out_channels 8: learned sigma), a 1-layer T5EncoderModel (d_model 16, vocab 49408). Seeded."""
    from diffusers import DPMSolverMultistepScheduler, PixArtAlphaPipeline, PixArtSigmaPipeline, \
        PixArtTransformer2DModel
    from transformers import T5Config, T5EncoderModel

    if alpha_or_sigma not in ("alpha", "sigma"):
        raise ValueError(f"alpha_or_sigma must be 'alpha' or 'sigma' (got {alpha_or_sigma!r})")
    torch.manual_seed(0)
    transformer = PixArtTransformer2DModel(
        sample_size=8, num_layers=2, patch_size=2, attention_head_dim=4, num_attention_heads=2, caption_channels=16,
        in_channels=4, cross_attention_dim=8, out_channels=8, attention_bias=True, activation_fn="gelu-approximate",
        num_embeds_ada_norm=1000, norm_type="ada_norm_single", norm_elementwise_affine=False, norm_eps=1e-6,
    )
    vae = _vae()
    text_encoder = T5EncoderModel(T5Config(
        vocab_size=49408, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2, relative_attention_num_buckets=8,
        relative_attention_max_distance=32, dropout_rate=0.0, feed_forward_proj="gated-gelu", pad_token_id=49407,
        eos_token_id=49407, decoder_start_token_id=0,
    ))
    scheduler = DPMSolverMultistepScheduler()
    cls = PixArtSigmaPipeline if alpha_or_sigma == "sigma" else PixArtAlphaPipeline
    pipe = cls(tokenizer=_tokenizer(), text_encoder=text_encoder, vae=vae, transformer=transformer,
               scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe
