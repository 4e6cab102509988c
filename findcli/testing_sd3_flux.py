"""Tiny seeded SD3 and FLUX.1 pipelines for tests and CPU-sized benchmarks (random weights, no downloads).

In the spirit of diffusers' own get_dummy_components for these pipelines, but smaller and built
entirely in code: every tokenizer slot (the CLIP ones and the T5 one) holds the CLIPTokenizer that
findcli.shapes.write_tokenizer writes from open_clip's bundled BPE, so the T5 encoders get
vocab_size=49408. Schedulers are the real models' FlowMatchEulerDiscreteScheduler configurations.

    build_tiny_sd3()    StableDiffusion3Pipeline, latents 16x8x8 (patch 2: 16 tokens), images 16x16
    build_tiny_flux()   FluxPipeline, natural latents 4x8x8 (packed (16, 16)) at 16x16 pixels;
                        guidance_embeds=True is FLUX.1-dev-like, False FLUX.1-schnell-like. The
                        pipeline's default size is 128 * vae_scale_factor = 256 px (FLUX hard-codes a
                        default sample size of 128): pass height=width=16 for tiny runs.
"""

from __future__ import annotations

import tempfile

import torch

VOCAB = 49408  # open_clip's BPE, shared by every tokenizer slot


def _tokenizer():
    from transformers import CLIPTokenizer

    from findcli.shapes import write_tokenizer

    with tempfile.TemporaryDirectory() as d:
        write_tokenizer(d)
        return CLIPTokenizer.from_pretrained(d)


def _clip_config(hidden: int, projection: int):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(vocab_size=VOCAB, hidden_size=hidden, intermediate_size=2 * hidden, num_attention_heads=2,
                          num_hidden_layers=2, max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407,
                          pad_token_id=49407, projection_dim=projection, hidden_act="gelu")


def _t5(d_model: int):
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(vocab_size=VOCAB, d_model=d_model, d_kv=8, d_ff=2 * d_model, num_layers=1,
                                   num_heads=2, relative_attention_num_buckets=8, relative_attention_max_distance=32,
                                   dropout_rate=0.0, feed_forward_proj="gated-gelu", is_encoder_decoder=False,
                                   use_cache=False, pad_token_id=49407, eos_token_id=49407))


def _vae(latent_channels: int, scaling_factor: float, shift_factor: float):
    from diffusers import AutoencoderKL

    # Two blocks: vae_scale_factor 2. SD3 and FLUX VAEs have no quant convs.
    return AutoencoderKL(block_out_channels=(8, 8), in_channels=3, out_channels=3, latent_channels=latent_channels,
                         norm_num_groups=4, layers_per_block=1, sample_size=16,
                         down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                         scaling_factor=scaling_factor, shift_factor=shift_factor,
                         use_quant_conv=False, use_post_quant_conv=False)


def build_tiny_sd3():
    """A StableDiffusion3Pipeline of random tiny components: two CLIPTextModelWithProjection (hidden 8,
    projection 8: pooled 16), a 1-layer T5 encoder (d_model 16 = joint_attention_dim), a 1-layer
    SD3Transformer2DModel (patch 2, 16 latent channels, sample_size 8), a 2-block VAE with SD3's
    scaling/shift factors, FlowMatchEulerDiscreteScheduler(shift=3). Seeded: the same weights each call."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection

    torch.manual_seed(0)
    transformer = SD3Transformer2DModel(sample_size=8, patch_size=2, in_channels=16, out_channels=16, num_layers=1,
                                        attention_head_dim=8, num_attention_heads=2, joint_attention_dim=16,
                                        caption_projection_dim=16, pooled_projection_dim=16, pos_embed_max_size=16)
    text_encoder = CLIPTextModelWithProjection(_clip_config(8, 8))
    text_encoder_2 = CLIPTextModelWithProjection(_clip_config(8, 8))
    text_encoder_3 = _t5(16)
    vae = _vae(16, scaling_factor=1.5305, shift_factor=0.0609)
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    pipe = StableDiffusion3Pipeline(transformer=transformer, scheduler=scheduler, vae=vae,
                                    text_encoder=text_encoder, tokenizer=_tokenizer(),
                                    text_encoder_2=text_encoder_2, tokenizer_2=_tokenizer(),
                                    text_encoder_3=text_encoder_3, tokenizer_3=_tokenizer())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_tiny_flux(guidance_embeds: bool = True):
    """A FluxPipeline of random tiny components: a CLIPTextModel (hidden 16: pooled 16), a 1-layer T5
    encoder (d_model 16 = joint_attention_dim), a FluxTransformer2DModel with one double and one
    single block (in_channels 16 = 4 latent channels x 2x2 patch, head dim 16 = rope axes 4+4+8),
    a 2-block VAE with FLUX's scaling/shift factors, FLUX.1-dev's dynamic-shift scheduler.
    guidance_embeds=True: FLUX.1-dev-like (guidance_scale enters the transformer); False: schnell-like."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel

    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                                         attention_head_dim=16, num_attention_heads=2, joint_attention_dim=16,
                                         pooled_projection_dim=16, guidance_embeds=guidance_embeds,
                                         axes_dims_rope=(4, 4, 8))
    text_encoder = CLIPTextModel(_clip_config(16, 16))
    text_encoder_2 = _t5(16)
    vae = _vae(4, scaling_factor=0.3611, shift_factor=0.1159)
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True,
                                                base_shift=0.5, max_shift=1.15, base_image_seq_len=256,
                                                max_image_seq_len=4096)
    pipe = FluxPipeline(transformer=transformer, scheduler=scheduler, vae=vae, text_encoder=text_encoder,
                        tokenizer=_tokenizer(), text_encoder_2=text_encoder_2, tokenizer_2=_tokenizer())
    pipe.set_progress_bar_config(disable=True)
    return pipe
