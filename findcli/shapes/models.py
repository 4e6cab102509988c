"""The built-in models of the shapes world: their architectures, where they live, how to load them.

Two models ship in `findcli/shapes/model/`, both trained from scratch by `findcli.shapes.training`:

- the generator, a standard diffusers `StableDiffusionPipeline` directory (unet, vae, text_encoder,
  tokenizer, scheduler, model_index.json) small enough to sample on a CPU: 64×64 images, a 4×
  AutoencoderKL to 4×16×16 latents, a ~1.7M-parameter UNet, a 3-layer CLIP text encoder;
- the reward, a small CLIP in open_clip's own format: the architecture is the JSON config
  `find-shapes-clip.json` beside this file, registered with open_clip by `register_builtin_clip()`,
  and the weights are `model/clip/open_clip_model.safetensors`, so that
  `open_clip.create_model_and_transforms(*builtin_clip_spec())` loads it exactly as it loads ViT-L-14.

This module is light: torch, diffusers, transformers and open_clip are imported inside the functions.
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Default --model of every command: a StableDiffusionPipeline directory.
BUILTIN_MODEL_DIR = HERE / "model"
# open_clip names a registered config by its file's stem.
CLIP_NAME = "find-shapes-clip"
CLIP_CONFIG = HERE / f"{CLIP_NAME}.json"
CLIP_CHECKPOINT = BUILTIN_MODEL_DIR / "clip" / "open_clip_model.safetensors"

IMAGE_SIZE = 64  # pixels, square
LATENT_CHANNELS = 4
LATENT_SIZE = 16  # = IMAGE_SIZE / 4: the VAE halves twice
# Tokens per prompt for the generator's text encoder (start + ≤30 BPE tokens + end). Scene captions
# use ~12; the stock pipeline pads every prompt to this length, so it sets the cross-attention cost.
TEXT_LENGTH = 32
TEXT_WIDTH = 128  # generator text encoder hidden size = UNet cross_attention_dim
VOCAB_SIZE = 49408  # open_clip's BPE vocabulary: 256 bytes + 256 bytes</w> + 48894 merges + 2 specials


def builtin_clip_spec() -> tuple[str, str]:
    """(open_clip model name, checkpoint path) of the built-in reward CLIP; registers the config."""
    register_builtin_clip()
    return CLIP_NAME, str(CLIP_CHECKPOINT)


def register_builtin_clip() -> None:
    """Make `CLIP_NAME` known to open_clip (idempotent)."""
    import open_clip

    if CLIP_NAME not in open_clip.list_models():
        open_clip.add_model_config(CLIP_CONFIG)


# --- generator components -------------------------------------------------------------------------


def vae_config() -> dict:
    # Three blocks = two 2× downsamples: 64 px -> 16 latent. One resnet per block and 16 channels at
    # full resolution keep encode/decode cheap: flat-coloured scenes need little capacity there.
    return dict(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(16, 32, 64),
        layers_per_block=1,
        latent_channels=LATENT_CHANNELS,
        norm_num_groups=8,
        sample_size=IMAGE_SIZE,
        scaling_factor=1.0,  # replaced by 1/std of the trained latents (train.py measures it)
    )


def unet_config() -> dict:
    # Resolutions 16, 8, 4. No attention at 16×16 (256 tokens: the CPU cost is there); cross-attention
    # to the prompt at 8×8 and 4×4 is where colours and shapes bind to positions.
    return dict(
        sample_size=LATENT_SIZE,
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        norm_num_groups=16,
        cross_attention_dim=TEXT_WIDTH,
        attention_head_dim=8,
    )


def text_encoder_config() -> dict:
    return dict(
        vocab_size=VOCAB_SIZE,
        hidden_size=TEXT_WIDTH,
        intermediate_size=4 * TEXT_WIDTH,
        num_hidden_layers=3,
        num_attention_heads=4,
        max_position_embeddings=77,
        hidden_act="quick_gelu",
        bos_token_id=VOCAB_SIZE - 2,
        eos_token_id=VOCAB_SIZE - 1,
        pad_token_id=VOCAB_SIZE - 1,
    )


def scheduler_config() -> dict:
    # Stable Diffusion's schedule: scaled-linear betas, ε-prediction, no clipping (latents are not in
    # [-1, 1]). The final ᾱ ≈ 0.0047 leaves a little signal in z_T, which is what FIND exploits.
    return dict(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="epsilon",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        timestep_spacing="leading",
    )


def build_vae(seed: int = 0):
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(**vae_config())


def build_unet(seed: int = 0):
    import torch
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(**unet_config())


def build_text_encoder(seed: int = 0):
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    return CLIPTextModel(CLIPTextConfig(**text_encoder_config()))


def build_scheduler():
    from diffusers import DDIMScheduler

    return DDIMScheduler(**scheduler_config())


def write_tokenizer(out_dir: str | Path) -> None:
    """Write a Hugging Face CLIPTokenizer (vocab.json, merges.txt, configs) built from open_clip's BPE file.

    The ids equal open_clip's: both come from the same merges list in the same order; only the two
    special tokens are spelled the Hugging Face way.
    """
    from open_clip.tokenizer import SimpleTokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    oc = SimpleTokenizer()
    rename = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
    vocab = {rename.get(tok, tok): i for tok, i in oc.encoder.items()}
    assert len(vocab) == VOCAB_SIZE, len(vocab)
    merges = sorted(oc.bpe_ranks, key=oc.bpe_ranks.__getitem__)
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    (out / "special_tokens_map.json").write_text(
        json.dumps({"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "unk_token": "<|endoftext|>"})
    )
    (out / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "CLIPTokenizer",
                "model_max_length": TEXT_LENGTH,
                "bos_token": "<|startoftext|>",
                "eos_token": "<|endoftext|>",
                "pad_token": "<|endoftext|>",
                "unk_token": "<|endoftext|>",
                "do_lower_case": True,
            },
            indent=2,
        )
    )


def load_tokenizer(path: str | Path):
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(path))
