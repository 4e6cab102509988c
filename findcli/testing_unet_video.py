"""Tiny seeded UNet video pipelines (AnimateDiff, ModelScope text-to-video) for tests and CPU-sized
benchmarks: random weights built in code, no downloads.

Both share the tiny SD recipe of findcli.testing: a 2-block VAE (vae_scale_factor 2, so 16 px
frames have 8x8 latents), a 2-layer CLIP text encoder (hidden 16) with the tokenizer written from
open_clip's bundled BPE (findcli.shapes.write_tokenizer), and DDIM. Seeded: the same weights on every
call. The denoisers follow the shapes of diffusers' own dummy components for these pipelines.
"""

from __future__ import annotations

import torch


def _text_parts():
    """The tiny SD recipe's VAE (seed 1), text encoder (seed 2), tokenizer and DDIM."""
    from findcli.testing import tiny_sd_parts

    return tiny_sd_parts(vae_seed=1, text_seed=2)


def build_tiny_animatediff():
    """An AnimateDiffPipeline: a tiny UNet2DConditionModel (sample 8, 2 blocks of 8/16 channels) and a
    MotionAdapter of the same blocks; the pipeline builds the UNetMotionModel from the two. Frames
    16x16 px, latents (4, F, 8, 8)."""
    from diffusers import AnimateDiffPipeline, MotionAdapter, UNet2DConditionModel

    vae, text_encoder, tokenizer, scheduler = _text_parts()
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16, norm_num_groups=4, attention_head_dim=4,
    )
    torch.manual_seed(3)
    adapter = MotionAdapter(block_out_channels=(8, 16), motion_layers_per_block=1, motion_norm_num_groups=4,
                            motion_num_attention_heads=2, motion_max_seq_length=32)
    pipe = AnimateDiffPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                               motion_adapter=adapter, scheduler=scheduler, feature_extractor=None,
                               image_encoder=None)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_tiny_modelscope():
    """A TextToVideoSDPipeline (ModelScope text-to-video): a tiny UNet3DConditionModel (sample 8, 2
    blocks of 8/16 channels, temporal convolutions and attention). Frames 16x16 px, latents (4, F, 8, 8)."""
    from diffusers import TextToVideoSDPipeline, UNet3DConditionModel

    vae, text_encoder, tokenizer, scheduler = _text_parts()
    torch.manual_seed(0)
    unet = UNet3DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"), up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
        cross_attention_dim=16, attention_head_dim=4, norm_num_groups=4,
    )
    pipe = TextToVideoSDPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                 scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe
