"""The pipelines `find bench --model-family` runs: each family's tiny random pipeline (--quick), or its
denoiser and VAE at the published architecture of a reference checkpoint with random weights.

  --quick     the family's tiny seeded pipeline (the library builders in findcli.testing*), CPU-sized,
              at the tiny size TINY_SIZES gives (else the family's default size for that pipeline).
  full size   REFERENCE[family]: the denoiser, VAE and scheduler configs of the reference checkpoint,
              written out below with the file each number comes from; random weights, seeded; built
              directly on the target device in the target dtype (no fp32 copy on the CPU first); the
              rollout runs at the checkpoint's native resolution. Text encoders run once per prompt, not
              per image, so they are built SMALL — one layer — but with the hidden sizes the denoiser
              reads (and the CLIP tokenizer of findcli.shapes in every tokenizer slot, so the T5/UMT5
              vocabularies are 49408 rather than their published 32128 / 256384).

  sd     runwayml/stable-diffusion-v1-5 (findcli.bench.models.sd15_configs), 512 px
  sdxl   stabilityai/stable-diffusion-xl-base-1.0 (unet/, vae/, scheduler/ config.json), 1024 px
  flux   black-forest-labs/FLUX.1-dev (transformer/, vae/, scheduler/ config.json), 1024 px
  wan    Wan-AI/Wan2.1-T2V-1.3B-Diffusers (transformer/, vae/ config.json; the original repo's
         config.json: dim 1536, 30 layers, 12 heads, ffn 8960), 480×832, 81 frames
  Other families (pixart, sd3, animatediff, modelscope, cogvideox) have no reference architecture
  here yet: their full-size rows are skipped with that reason (their tiny pipelines run with --quick).

Published parameter counts of the denoisers (PUBLISHED_PARAMS; tests/test_bench.py checks the meta-device
builds against them): the model cards' nominal sizes are SDXL's 2.6 B UNet (Podell et al. 2023,
"SDXL", arXiv:2307.01952, Table 1), FLUX.1-dev's "12 billion parameter rectified flow transformer"
(black-forest-labs/FLUX.1-dev model card) and Wan2.1's "T2V-1.3B" (Wan-AI/Wan2.1-T2V-1.3B model card);
the exact counts are those of the released safetensors weights (the Hub's parameter count of
unet/diffusion_pytorch_model.safetensors, transformer/*.safetensors), 2,567,463,684, 11,901,408,320
and 1,418,996,800.
"""

from __future__ import annotations

import contextlib
import tempfile

import torch

from findcli.errors import FindError

# Tiny pipelines whose family default size is not tiny: FLUX defaults to 128 × vae_scale_factor
# whatever the transformer, Wan to its stock call's 480×832×81.
TINY_SIZES: dict[str, tuple[int, ...]] = {"flux": (16, 16), "wan": (16, 16, 5)}

CLIP_VOCAB = 49408  # the CLIP tokenizer every tokenizer slot gets (findcli.shapes.write_tokenizer)

REFERENCE: dict[str, dict] = {
    "sd": {
        "source": "runwayml/stable-diffusion-v1-5: unet/, vae/, text_encoder/ config.json (findcli.bench.models."
                  "sd15_configs)",
        "resolution": (512, 512),
        "text_encoders": "CLIP ViT-L/14 text tower at its published size (12 layers; the existing sd15 model)",
    },
    "sdxl": {
        "source": "stabilityai/stable-diffusion-xl-base-1.0: unet/config.json, vae/config.json, "
                  "scheduler/scheduler_config.json",
        "resolution": (1024, 1024),
        "denoiser": dict(
            sample_size=128, in_channels=4, out_channels=4, act_fn="silu", flip_sin_to_cos=True, freq_shift=0,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            block_out_channels=(320, 640, 1280), layers_per_block=2, transformer_layers_per_block=(1, 2, 10),
            attention_head_dim=(5, 10, 20), cross_attention_dim=2048, use_linear_projection=True,
            addition_embed_type="text_time", addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=2816,  # 1280 pooled + 6 time ids × 256
            norm_num_groups=32, norm_eps=1e-5, downsample_padding=1, mid_block_scale_factor=1,
        ),
        "vae": dict(
            in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512),
            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
            layers_per_block=2, act_fn="silu", norm_num_groups=32, sample_size=1024, scaling_factor=0.13025,
            force_upcast=True,
        ),
        "scheduler": ("EulerDiscreteScheduler", dict(
            num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
            prediction_type="epsilon", interpolation_type="linear", steps_offset=1, timestep_spacing="leading",
            use_karras_sigmas=False,
        )),
        # CLIP ViT-L/14 (hidden 768) + OpenCLIP ViT-bigG/14 (hidden 1280, projection 1280): their
        # penultimate hidden states concatenate to cross_attention_dim 2048; one layer each here.
        "text": {
            "text_encoder": dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                                 hidden_act="quick_gelu", projection_dim=768),
            "text_encoder_2": dict(hidden_size=1280, intermediate_size=5120, num_attention_heads=20,
                                   hidden_act="gelu", projection_dim=1280),
        },
        "text_encoders": "1-layer CLIP text models at the published hidden sizes (768; 1280 with projection "
                         "1280): they run once per prompt, not per image",
    },
    "flux": {
        "source": "black-forest-labs/FLUX.1-dev: transformer/config.json, vae/config.json, "
                  "scheduler/scheduler_config.json",
        "resolution": (1024, 1024),
        "denoiser": dict(
            patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
            num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True,
            axes_dims_rope=(16, 56, 56),
        ),
        "vae": dict(
            in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(128, 256, 512, 512),
            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
            layers_per_block=2, act_fn="silu", norm_num_groups=32, sample_size=1024, scaling_factor=0.3611,
            shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False, mid_block_add_attention=True,
            force_upcast=True,
        ),
        "scheduler": ("FlowMatchEulerDiscreteScheduler", dict(
            num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
            base_image_seq_len=256, max_image_seq_len=4096,
        )),
        # CLIP ViT-L/14 text (pooled 768 = pooled_projection_dim) and T5 v1.1 XXL (d_model 4096 =
        # joint_attention_dim; d_ff 10240, 64 heads × 64); one layer each here.
        "text": {
            "text_encoder": dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                                 hidden_act="quick_gelu", projection_dim=768),
            "text_encoder_2": dict(d_model=4096, d_kv=64, d_ff=10240, num_heads=64, feed_forward_proj="gated-gelu"),
        },
        "text_encoders": "1-layer CLIP text model (pooled 768) and 1-layer T5 encoder (d_model 4096): they run "
                         "once per prompt, not per image",
    },
    "wan": {
        "source": "Wan-AI/Wan2.1-T2V-1.3B-Diffusers: transformer/config.json, vae/config.json (the original "
                  "Wan-AI/Wan2.1-T2V-1.3B config.json: dim 1536, num_layers 30, num_heads 12, ffn_dim 8960)",
        "resolution": (480, 832, 81),
        "denoiser": dict(
            patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16, out_channels=16,
            text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
            qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024,
        ),
        # The Wan 2.1 VAE: AutoencoderKLWan's defaults are that checkpoint's (base_dim 96, z_dim 16,
        # dim_mult 1,2,4,4, 2 res blocks, temporal downsampling in the last two stages, its latents_mean/std).
        "vae": dict(base_dim=96, z_dim=16, dim_mult=(1, 2, 4, 4), num_res_blocks=2, attn_scales=(),
                    temperal_downsample=(False, True, True)),
        "scheduler": ("UniPCMultistepScheduler", dict(
            prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0, num_train_timesteps=1000,
        )),
        # UMT5-XXL's encoder (d_model 4096 = text_dim; d_ff 10240, 64 heads × 64); one layer here.
        "text": {"text_encoder": dict(d_model=4096, d_kv=64, d_ff=10240, num_heads=64, feed_forward_proj="gated-gelu")},
        "text_encoders": "1-layer UMT5 encoder (d_model 4096): it runs once per prompt, not per video",
    },
}

# Exact parameter counts of the released denoiser weights (see the module docstring for the sources).
PUBLISHED_PARAMS: dict[str, int] = {"sdxl": 2_567_463_684, "flux": 11_901_408_320, "wan": 1_418_996_800}

FULL_SIZE = tuple(REFERENCE)  # families with a full-size architecture here


def tiny_builder(family: str):
    """The family's tiny seeded pipeline builder (findcli.testing*)."""
    from findcli import testing, testing_sd3_flux, testing_sdxl_pixart, testing_transformer_video, testing_unet_video

    return {
        "sd": testing.build_tiny_pipeline, "sdxl": testing_sdxl_pixart.build_tiny_sdxl,
        "pixart": testing_sdxl_pixart.build_tiny_pixart, "sd3": testing_sd3_flux.build_tiny_sd3,
        "flux": testing_sd3_flux.build_tiny_flux, "animatediff": testing_unet_video.build_tiny_animatediff,
        "modelscope": testing_unet_video.build_tiny_modelscope,
        "cogvideox": testing_transformer_video.build_tiny_cogvideox, "wan": testing_transformer_video.build_tiny_wan,
    }[family]


@contextlib.contextmanager
def on(device: torch.device | str, dtype: torch.dtype):
    """Construct modules on `device` in `dtype` (torch's default device and dtype, restored after):
    full-size weights are initialised where they run, never as an fp32 copy on the CPU first."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(old)


def build_denoiser(family: str):
    """The family's full-size denoiser from REFERENCE (random init), on the current default device/dtype
    (wrap in `on(...)`, or `torch.device("meta")` to count parameters without memory)."""
    from diffusers import FluxTransformer2DModel, UNet2DConditionModel, WanTransformer3DModel

    cls = {"sdxl": UNet2DConditionModel, "flux": FluxTransformer2DModel, "wan": WanTransformer3DModel}[family]
    return cls(**REFERENCE[family]["denoiser"])


def build_vae(family: str):
    from diffusers import AutoencoderKL, AutoencoderKLWan

    c = dict(REFERENCE[family]["vae"])
    if family == "wan":
        return AutoencoderKLWan(**{k: list(v) if isinstance(v, tuple) else v for k, v in c.items()})
    return AutoencoderKL(**c)


def _tokenizer():
    """The CLIP tokenizer at CLIP's 77 tokens (the shipped files say 32: the shapes model's length). The T5
    and UMT5 slots get it too; their pipelines pass max_sequence_length (512) themselves."""
    from transformers import CLIPTokenizer

    from findcli.shapes import write_tokenizer

    with tempfile.TemporaryDirectory() as d:
        write_tokenizer(d)
        return CLIPTokenizer.from_pretrained(d, model_max_length=77)


def _clip(cfg: dict, with_projection: bool):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(vocab_size=CLIP_VOCAB, num_hidden_layers=1, max_position_embeddings=77,
                            bos_token_id=49406, eos_token_id=49407, pad_token_id=49407, **cfg)
    return (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(config)


def _t5(cfg: dict, umt5: bool):
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

    common = dict(vocab_size=CLIP_VOCAB, num_layers=1, dropout_rate=0.0, pad_token_id=49407, eos_token_id=49407,
                  decoder_start_token_id=0, is_encoder_decoder=False, use_cache=False, **cfg)
    return UMT5EncoderModel(UMT5Config(**common)) if umt5 else T5EncoderModel(T5Config(**common))


def _scheduler(family: str):
    import diffusers

    name, cfg = REFERENCE[family]["scheduler"]
    return getattr(diffusers, name)(**cfg)


def build_full_pipeline(family: str, device: torch.device, dtype: torch.dtype, seed: int = 0):
    """The family's pipeline at its reference architecture, random weights (seeded), built on `device`
    in `dtype`; text encoders one layer deep at the hidden sizes the denoiser reads."""
    if family == "sd":
        from findcli.bench.models import build_sd15_pipeline

        return build_sd15_pipeline(device, dtype, seed)
    if family not in REFERENCE:
        raise FindError(f"no full-size reference architecture for {family} here (its tiny pipeline runs with --quick)")
    from diffusers import FluxPipeline, StableDiffusionXLPipeline, WanPipeline

    text = REFERENCE[family]["text"]
    torch.manual_seed(seed)  # seeds the CUDA generators too
    with on(device, dtype):
        denoiser, vae = build_denoiser(family), build_vae(family)
        if family == "sdxl":
            te, te2 = _clip(text["text_encoder"], False), _clip(text["text_encoder_2"], True)
        elif family == "flux":
            te, te2 = _clip(text["text_encoder"], False), _t5(text["text_encoder_2"], umt5=False)
        else:
            te, te2 = _t5(text["text_encoder"], umt5=True), None
    for m in (denoiser, vae, te, te2):
        if m is not None:
            m.eval()  # built in code they start in training mode (dropout); from_pretrained would call eval()
    scheduler = _scheduler(family)
    if family == "sdxl":
        pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=te, text_encoder_2=te2, tokenizer=_tokenizer(),
                                         tokenizer_2=_tokenizer(), unet=denoiser, scheduler=scheduler,
                                         force_zeros_for_empty_prompt=True, add_watermarker=False)
    elif family == "flux":
        pipe = FluxPipeline(transformer=denoiser, scheduler=scheduler, vae=vae, text_encoder=te,
                            tokenizer=_tokenizer(), text_encoder_2=te2, tokenizer_2=_tokenizer())
    else:
        pipe = WanPipeline(tokenizer=_tokenizer(), text_encoder=te, vae=vae, transformer=denoiser, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    pipe.find_source = f"random {family} reference architecture ({REFERENCE[family]['source'].split(':')[0]})"
    return pipe


def build_quick_pipeline(family: str, device: torch.device, dtype: torch.dtype):
    """The family's tiny seeded pipeline on `device` in `dtype`."""
    build = tiny_builder(family)
    pipe = build().to(device, dtype)
    pipe.find_source = f"tiny random {family} pipeline ({build.__module__}.{build.__name__})"
    return pipe


def size_for(family: str, quick: bool) -> tuple[int, ...] | None:
    """(height, width[, frames]) the family's rows run at; None = the pipeline's default."""
    if quick:
        return TINY_SIZES.get(family)
    return REFERENCE[family]["resolution"] if family in REFERENCE else None
