"""FLOPs per image and the cards' dense 16-bit peaks: the sd rows count the UNet and VAE on a
meta-device copy (no compute); the --model-family rows count two real rollouts (`rollout_flops`)."""

from __future__ import annotations

import contextlib

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


def unet_flop_counts(pipe, guidance: float, latent: tuple[int, int, int]) -> tuple[int, int]:
    """(UNet FLOPs of one CFG step on its rows, VAE decode FLOPs of one image), counted by FlopCounterMode
    on a meta-device copy: the raw counts behind `flops_per_image`."""
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
    return unet_flops, decode_flops


def flops_per_image(pipe, steps: int, guidance: float, latent: tuple[int, int, int]) -> dict:
    """FLOPs of one image's rollout, counted by FlopCounterMode on a meta-device copy (shapes only).

    per image = steps × UNet(rows) + VAE decode(1 image), rows = 2 with CFG (guidance > 1) else 1.
    The text encoder runs once per prompt, not per image, and is left out; so is the scheduler's
    elementwise update. Attention is counted through diffusers' plain AttnProcessor (the same
    matmuls as SDPA; the counter has no formula for CPU SDPA kernels). The method of the sd rows
    (builtin, sd15, tiny); the --model-family rows use `rollout_flops`."""
    rows = 2 if guidance > 1.0 else 1
    unet_flops, decode_flops = unet_flop_counts(pipe, guidance, latent)
    return {"unet_gflop_per_row": round(unet_flops / rows / 1e9, 3), "decode_gflop": round(decode_flops / 1e9, 3),
            "gflop_per_image": round((steps * unet_flops + decode_flops) / 1e9, 3)}


def rollout_flops(pipe, prompt: str, settings, z: torch.Tensor | None = None, cpu_math_attention: bool = True) -> dict:
    """FLOPs of one sample's rollout for any family, counted by FlopCounterMode around REAL rollouts.

    Two calls of the family's Generator on the same z (batch 1): one with steps=1, one with steps=2.
    Each count is steps × step + decode, so step = F(2) − F(1) and decode = 2·F(1) − F(2); per image
    (per video for video families) = settings.steps × step + decode. The step is whatever the
    pipeline runs per step: both classifier-free-guidance rows where the pipeline builds them, FLUX's
    guidance embedding (no CFG rows), the time/text embeddings recomputed each step. The prompt is
    encoded when the Generator is built, outside the counter: text encoders run once per prompt and
    are not per-image cost. The scheduler's elementwise update has no FLOP formula and is left out.

    Attention: torch.utils.flop_counter has formulas for the CUDA SDPA kernels (flash, efficient,
    cudnn), so on CUDA attention is counted as it runs. On the CPU the counter has NO formula for the
    SDPA kernel PyTorch uses there (_scaled_dot_product_flash_attention_for_cpu): the transformer
    families' attention FLOPs would be missing. So on the CPU the two counting calls run under the
    math SDPA backend, which the counter sees as its two batched matmuls (4·B·H·L·S·D, the same as the
    CUDA formula); the timed rollouts keep the default backend. `attention` in the result says which
    (cpu_math_attention=False counts with the default CPU kernel: attention missing, as a check).
    Returns raw counts (FLOPs, not GFLOPs)."""
    import dataclasses

    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from findcli.pipeline import Rollout

    counts = []
    cpu = False
    for steps in (1, 2):
        gen = Rollout(pipe, prompt, dataclasses.replace(settings, steps=steps), max_batch=1)
        cpu = gen.device.type == "cpu"
        if z is None:
            g = torch.Generator("cpu").manual_seed(0)
            z = torch.randn(1, *gen.latent_shape, generator=g)
        backend = sdpa_kernel(SDPBackend.MATH) if cpu and cpu_math_attention else contextlib.nullcontext()
        with backend, FlopCounterMode(display=False) as fc:
            gen(z[:1])
        counts.append(fc.get_total_flops())
    f1, f2 = counts
    step, decode = f2 - f1, 2 * f1 - f2
    return {"step_flops": step, "decode_flops": decode, "per_image_flops": settings.steps * step + decode,
            "attention": ("counted: the CPU counting calls ran under the math SDPA backend (the counter has "
                          "no formula for the CPU SDPA kernel)" if cpu_math_attention else
                          "NOT counted: the counter has no formula for the CPU SDPA kernel") if cpu else
                         "counted: the counter's formulas for the CUDA SDPA kernels (flash/efficient/cudnn)"}
