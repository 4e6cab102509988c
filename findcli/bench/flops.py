"""FLOPs per image (counted on a meta-device copy, no compute) and the cards' dense 16-bit peaks."""

from __future__ import annotations

import torch

# Dense (no sparsity) 16-bit tensor-core peaks from the vendor datasheets, TFLOP/s; matched against
# torch.cuda.get_device_name in order. fp32 has no entry: its peak depends on TF32 settings.
PEAK_TFLOPS = (
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100 80GB HBM3", 989.0),  # the SXM card's name
    ("H100 SXM", 989.0),
)


def peak_tflops(card: str, dtype: torch.dtype) -> float | None:
    """The card's dense bf16/fp16 tensor-core peak, or None (unknown card, or fp32)."""
    if dtype not in (torch.float16, torch.bfloat16):
        return None
    for key, value in PEAK_TFLOPS:
        if key in card:
            return value
    return None


def flops_per_image(pipe, steps: int, guidance: float, latent: tuple[int, int, int]) -> dict:
    """FLOPs of one image's rollout, counted by FlopCounterMode on a meta-device copy (shapes only).

    per image = steps × UNet(rows) + VAE decode(1 image), rows = 2 with CFG (guidance > 1) else 1.
    The text encoder runs once per prompt, not per image, and is left out; so is the scheduler's
    elementwise update. Attention is counted through diffusers' plain AttnProcessor (the same
    matmuls as SDPA; the counter has no formula for CPU SDPA kernels)."""
    from diffusers.models.attention_processor import AttnProcessor
    from torch.utils.flop_counter import FlopCounterMode

    unet = getattr(pipe.unet, "_orig_mod", pipe.unet)
    rows = 2 if guidance > 1.0 else 1
    c, h, w = latent
    length = pipe.tokenizer.model_max_length
    with torch.device("meta"):
        unet_m = type(unet).from_config(unet.config)
        vae_m = type(pipe.vae).from_config(pipe.vae.config)
    unet_m.set_attn_processor(AttnProcessor())
    vae_m.set_attn_processor(AttnProcessor())
    with torch.no_grad():
        with FlopCounterMode(display=False) as fc:
            unet_m(torch.empty(rows, c, h, w, device="meta"), torch.tensor(500, device="meta"),
                   encoder_hidden_states=torch.empty(rows, length, unet.config.cross_attention_dim, device="meta"))
        unet_flops = fc.get_total_flops()
        with FlopCounterMode(display=False) as fc:
            vae_m.decode(torch.empty(1, c, h, w, device="meta"))
        decode_flops = fc.get_total_flops()
    return {"unet_gflop_per_row": round(unet_flops / rows / 1e9, 3), "decode_gflop": round(decode_flops / 1e9, 3),
            "gflop_per_image": round((steps * unet_flops + decode_flops) / 1e9, 3)}
