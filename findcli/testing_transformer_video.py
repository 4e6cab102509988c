"""Tiny seeded CogVideoX and Wan text-to-video pipelines (random weights, no downloads) for tests and
CPU-sized benchmarks, in the spirit of diffusers' own get_dummy_components for these pipelines.

Every tokenizer slot gets the project's CLIPTokenizer (findcli.shapes.write_tokenizer: open_clip's
BPE), so the T5/UMT5 encoders have vocab_size 49408. The schedulers are the families' real ones, set
as the released checkpoints set them (CogVideoX-2b: CogVideoXDDIMScheduler, v-prediction, zero-SNR
betas, snr_shift_scale 3, trailing spacing; Wan 2.1: UniPC with flow sigmas, flow_shift 3).

    build_tiny_cogvideox()  16x16 px, 9 frames -> latents (B, 3, 4, 2, 2)  frames first (FCHW)
    build_tiny_wan()        16x16 px, 5 frames -> latents (B, 4, 2, 2, 2)  channels first (CFHW)
"""

from __future__ import annotations

import tempfile

import torch


# Modules built in code start in training mode (from_pretrained would call .eval()): the T5 dropout
# would make every encode differ. The encoders also get dropout_rate 0 so a stray .train() changes nothing.


def _tokenizer():
    from transformers import CLIPTokenizer

    from findcli.shapes import write_tokenizer

    with tempfile.TemporaryDirectory() as d:
        write_tokenizer(d)
        return CLIPTokenizer.from_pretrained(d)


def build_tiny_cogvideox(scheduler: str = "ddim"):
    """A CogVideoXPipeline of random tiny components. The VAE keeps CogVideoX's four 3-D blocks (spatial
    factor 8, temporal 4: smaller does not fit its convolutions), so 16x16 px is a 2x2 latent, one
    2x2 patch per latent frame; 9 frames -> 3 latent frames. The transformer reads 16 text tokens
    (max_text_seq_length), which the pipeline must be told as max_sequence_length. `scheduler`:
    "ddim" (CogVideoXDDIMScheduler, deterministic) or "dpm" (CogVideoXDPMScheduler, stochastic)."""
    from diffusers import (AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXDPMScheduler, CogVideoXPipeline,
                           CogVideoXTransformer3DModel)
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(0)
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=4, time_embed_dim=4,
        text_embed_dim=16, num_layers=1, sample_width=2, sample_height=2, sample_frames=9, patch_size=2,
        temporal_compression_ratio=4, max_text_seq_length=16,
    )
    torch.manual_seed(0)
    vae = AutoencoderKLCogVideoX(
        in_channels=3, out_channels=3, down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4, block_out_channels=(4, 4, 4, 4), latent_channels=4,
        layers_per_block=1, norm_num_groups=2, temporal_compression_ratio=4, scaling_factor=1.15258426,
    )
    torch.manual_seed(0)
    text_encoder = T5EncoderModel(T5Config(
        vocab_size=49408, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2, relative_attention_num_buckets=8,
        relative_attention_max_distance=16, dropout_rate=0.0, pad_token_id=49407, eos_token_id=49407,
        decoder_start_token_id=49407,
    ))
    common = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                  num_train_timesteps=1000, prediction_type="v_prediction", rescale_betas_zero_snr=True,
                  set_alpha_to_one=True, snr_shift_scale=3.0, steps_offset=0, timestep_spacing="trailing")
    sched = CogVideoXDDIMScheduler(**common) if scheduler == "ddim" else CogVideoXDPMScheduler(**common)
    pipe = CogVideoXPipeline(tokenizer=_tokenizer(), text_encoder=text_encoder.eval(), vae=vae.eval(),
                             transformer=transformer.eval(), scheduler=sched)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def build_tiny_wan():
    """A WanPipeline (Wan 2.1 layout: one transformer, no transformer_2) of random tiny components: a
    4-channel Wan VAE (spatial factor 8, temporal 4; its own latents_mean/std so that the decode's
    per-channel de-normalisation is exercised), a 2-layer transformer with (1, 2, 2) patches and a
    1-layer UMT5 encoder. 16x16 px, 5 frames -> latents (4, 2, 2, 2)."""
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(0)
    vae = AutoencoderKLWan(
        base_dim=4, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True],
        latents_mean=[-0.25, 0.1, 0.4, -0.05], latents_std=[1.5, 0.8, 2.0, 1.2],
    )
    torch.manual_seed(0)
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=4, out_channels=4,
        text_dim=16, freq_dim=32, ffn_dim=32, num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
    )
    torch.manual_seed(0)
    text_encoder = UMT5EncoderModel(UMT5Config(
        vocab_size=49408, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2, relative_attention_num_buckets=8,
        relative_attention_max_distance=16, dropout_rate=0.0, pad_token_id=49407, eos_token_id=49407,
        decoder_start_token_id=49407,
    ))
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0,
                                        num_train_timesteps=1000)
    pipe = WanPipeline(tokenizer=_tokenizer(), text_encoder=text_encoder.eval(), vae=vae.eval(),
                       transformer=transformer.eval(), scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe
