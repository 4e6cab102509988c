"""The built-in video generator's architecture and location (issue 14, generator part).

The generator is a stock diffusers `AnimateDiffPipeline` directory: the built-in image generator's
frozen VAE, text encoder, tokenizer, DDIM scheduler and UNet (`findcli/shapes/model/`), with a
`MotionAdapter` trained from scratch by `python -m findcli.shapes.training motion`. The pipeline merges
the two into one `UNetMotionModel` (the image UNet's layers run per frame; after each of its resnet /
attention layers a temporal transformer attends over the frames at every latent pixel), and its saved
directory holds that merged model as `unet` plus the adapter alone as `motion_adapter`, so both

    DiffusionPipeline.from_pretrained(DIR)        # AnimateDiffPipeline, 64 px frames, 4x16x16 latents
    MotionAdapter.from_pretrained(DIR / "motion_adapter")   # + findcli/shapes/model/unet

load it. The motion modules see no text (diffusers builds them with cross_attention_dim=None): what a
prompt says about motion reaches them only through the image UNet's spatial cross-attention.

This module is light: diffusers and torch are imported inside the functions. Nothing here imports the
training package.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
# Where a trained video generator is to live (not shipped yet: see benchmarks/TRAINING_LOG.md).
VIDEO_MODEL_DIR = HERE / "model"

TRAIN_FRAMES = 8  # frames per training clip (world.FRAMES)


def motion_adapter_config(heads: int = 4, max_frames: int = 16, transformer_layers: int = 1) -> dict:
    """A MotionAdapter matching the built-in image UNet (findcli.shapes.models.unet_config): one motion
    module per resnet (layers_per_block 1, as the UNet), at its block widths 32, 64, 64 and in its mid
    block. `heads` temporal attention heads (head dim 32/heads and 64/heads), GroupNorm of 8 groups
    (divides every width), sinusoidal frame positions up to `max_frames` (no weights: only the longest
    clip the pipeline accepts)."""
    from findcli.shapes.models import unet_config

    unet = unet_config()
    return dict(
        block_out_channels=tuple(unet["block_out_channels"]),
        motion_layers_per_block=unet["layers_per_block"],
        motion_transformer_layers_per_block=transformer_layers,
        motion_mid_block_layers_per_block=1,
        motion_transformer_layers_per_mid_block=transformer_layers,
        motion_num_attention_heads=heads,
        motion_norm_num_groups=8,
        motion_max_seq_length=max_frames,
        use_motion_mid_block=True,
    )


def build_motion_adapter(seed: int = 0, **config):
    """A fresh MotionAdapter (`motion_adapter_config(**config)`), seeded, with the output projection of
    every temporal transformer set to zero, as AnimateDiff initialises its motion modules: each module
    is then the identity (it adds a zero residual), so the merged UNetMotionModel starts as exactly the
    image UNet applied frame by frame (tested)."""
    import torch
    from diffusers import MotionAdapter

    torch.manual_seed(seed)
    adapter = MotionAdapter(**motion_adapter_config(**config))
    with torch.no_grad():
        for name, module in adapter.named_modules():
            if name.endswith("proj_out") and isinstance(module, torch.nn.Linear):
                module.weight.zero_()
                module.bias.zero_()
    return adapter


def adapter_of(unet_motion, adapter_config: dict):
    """The MotionAdapter holding `unet_motion`'s motion modules (a copy): the inverse of
    `UNetMotionModel.from_unet2d(unet, adapter)`'s `load_motion_modules`."""
    from diffusers import MotionAdapter

    adapter = MotionAdapter(**adapter_config).to(unet_motion.dtype)
    for mine, theirs in zip(adapter.down_blocks, unet_motion.down_blocks):
        mine.motion_modules.load_state_dict(theirs.motion_modules.state_dict())
    for mine, theirs in zip(adapter.up_blocks, unet_motion.up_blocks):
        mine.motion_modules.load_state_dict(theirs.motion_modules.state_dict())
    if adapter.mid_block is not None:
        adapter.mid_block.motion_modules.load_state_dict(unet_motion.mid_block.motion_modules.state_dict())
    return adapter
