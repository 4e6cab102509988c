"""Tiny seeded diffusers components for tests and CPU-sized benchmarks (no downloads).

`build_tiny_pipeline()` is the test suite's recipe (tests/conftest.py), kept here so that library
code — `find bench --quick` — can build the same pipeline without importing the tests.
"""

from __future__ import annotations

import torch


def tiny_sd_parts(vae_seed: int | None = None, text_seed: int | None = None):
    """(vae, text_encoder, tokenizer, scheduler) of the tiny SD recipe: a 2-block VAE
    (vae_scale_factor 2), a 2-layer CLIP text encoder (hidden 16) whose tokenizer is written from
    open_clip's bundled BPE, DDIM. Each seed, when given, seeds that module; None continues the
    caller's RNG stream (what build_tiny_pipeline does, so its weights never change)."""
    import tempfile

    from diffusers import AutoencoderKL, DDIMScheduler
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from findcli.shapes import write_tokenizer

    if vae_seed is not None:
        torch.manual_seed(vae_seed)
    vae = AutoencoderKL(
        block_out_channels=(8, 16), in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=4,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2, sample_size=16,
    )
    if text_seed is not None:
        torch.manual_seed(text_seed)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=16, intermediate_size=32, num_attention_heads=2, num_hidden_layers=2,
        max_position_embeddings=32, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407, projection_dim=16,
    ))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    with tempfile.TemporaryDirectory() as d:
        write_tokenizer(d)
        tokenizer = CLIPTokenizer.from_pretrained(d)
    return vae, text_encoder, tokenizer, scheduler


def build_tiny_pipeline():
    """A StableDiffusionPipeline of random tiny components (in the spirit of diffusers' own
    get_dummy_components): latent 4×8×8, images 16×16, a 2-layer CLIP text encoder whose tokenizer
    is built from open_clip's bundled BPE file. Seeded: the same weights on every call."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16, norm_num_groups=4, attention_head_dim=4,
    )
    vae, text_encoder, tokenizer, scheduler = tiny_sd_parts()  # continues seed 0's stream after the UNet
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe
