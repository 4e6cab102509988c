"""Section `denoiser`: full rollouts (T DDIM steps with CFG, VAE decode) in images/s, per model and setting.

Settings: batch size, eager vs torch.compile (compile time reported apart), SDPA vs xformers. Beside
each: the UNet forward alone (2·B rows), FLOPs per image (findcli.bench.flops), the achieved TFLOP/s
and its fraction of the card's dense 16-bit peak (unknown card or fp32 -> null).

Timing (findcli.bench.timing.time_call): whole rollouts are synchronised `time.perf_counter`
medians (seconds each: do_bench's ~8 calls for its estimate and warm-up would multiply them); the
UNet forward is `triton.testing.do_bench`'s median on CUDA.
"""

from __future__ import annotations

import statistics
from typing import Callable

import torch

from findcli.bench.flops import flops_per_image, peak_tflops
from findcli.bench.meta import card_name
from findcli.bench.models import Models
from findcli.bench.plans import PROMPTS, Plan, error_status
from findcli.bench.timing import time_call


def _xformers_reason(pipe) -> str | None:
    """None when xformers attention can be enabled on this pipeline, else why not (one line)."""
    if pipe.unet.device.type != "cuda":
        return "xformers attention needs a CUDA GPU"
    try:
        import xformers  # noqa: F401

        pipe.enable_xformers_memory_efficient_attention()
    except Exception as e:  # noqa: BLE001 - import errors and kernel-load errors alike
        return f"xformers unavailable ({str(e).splitlines()[0][:160] if str(e) else type(e).__name__})"
    return None


def _latents(pipe, n: int, seed: int = 0) -> torch.Tensor:
    from findcli.pipeline import latent_shape
    from findcli.seeds import noise_seed

    g = torch.Generator("cpu").manual_seed(noise_seed("bench", seed))  # the benchmarks' own namespace
    return torch.randn(n, *latent_shape(pipe), generator=g).to(pipe.unet.device)


def rollout_row(pipe, prompt: str, steps: int, batch: int, budget_s: float, guidance: float = 7.5) -> dict:
    """Time full rollouts of `batch` images (one pipeline call) and the UNet forward alone."""
    from findcli.pipeline import Rollout, SamplerSettings

    device = pipe.unet.device
    roll = Rollout(pipe, prompt, SamplerSettings(steps=steps, guidance=guidance, eta=0.0), max_batch=batch)
    z = _latents(pipe, batch)
    parts: list[dict] = []

    def call():
        roll(z)
        parts.append(dict(roll.last_timing))

    first, median, reps = time_call(call, device, budget_s)
    timed = parts[1:]
    denoise = statistics.median(p["denoise_s"] for p in timed)
    decode = statistics.median(p["decode_s"] for p in timed)

    # The UNet forward alone on the 2·B rows of one CFG step, called exactly as the pipeline calls it
    # (same kwargs, so a compiled UNet reuses its graph).
    rows = 2 * batch if guidance > 1.0 else batch
    embeds = roll.embeds["prompt_embeds"].expand(batch, -1, -1)  # the SD-family adapter's encoded prompt
    if guidance > 1.0:
        embeds = torch.cat([roll.embeds["negative_prompt_embeds"].expand(batch, -1, -1), embeds])
    x = torch.cat([z] * (rows // batch)).to(pipe.unet.dtype)
    pipe.scheduler.set_timesteps(steps, device=device)
    t = pipe.scheduler.timesteps[0]

    def unet_call():
        with torch.no_grad():
            pipe.unet(x, t, encoder_hidden_states=embeds, timestep_cond=None, cross_attention_kwargs=None,
                      added_cond_kwargs=None, return_dict=False)

    _, unet_s, _ = time_call(unet_call, device, min(budget_s, 1.0), do_bench=True)
    return {
        "rollout_s": round(median, 5), "images_per_s": round(batch / median, 4),
        "denoise_s": round(denoise, 5), "decode_s": round(decode, 5),
        "step_ms": round(1e3 * denoise / steps, 4), "unet_ms": round(1e3 * unet_s, 4),
        "first_call_s": round(first, 3), "reps": reps,
    }


def denoiser(plan: Plan, models: Models, log: Callable[[str], None]) -> dict:
    from findcli.pipeline import configure_pipeline, latent_shape

    device, dtype = models.device, models.dtype
    peak = peak_tflops(card_name(device), dtype)
    out: dict = {"steps": plan.steps, "guidance": 7.5, "peak_tflops": peak, "models": {}, "rows": []}
    for name in plan.models:
        pipe = models.pipe(name)
        if isinstance(pipe, str):
            out["models"][name] = {"status": pipe}
            continue
        shape = latent_shape(pipe)
        flops = flops_per_image(pipe, plan.steps, 7.5, shape)
        px = shape[1] * pipe.vae_scale_factor, shape[2] * pipe.vae_scale_factor
        info = {"status": "ok", "source": pipe.find_source, "resolution": list(px), "latent": list(shape),
                "unet_params_m": round(sum(p.numel() for p in pipe.unet.parameters()) / 1e6, 2), **flops}
        if peak:
            info["ceiling_images_per_s"] = round(peak * 1e12 / (flops["gflop_per_image"] * 1e9), 3)
        out["models"][name] = info
        vb = plan.variant_batch[name]
        variants = [("sdpa", False, b) for b in plan.batches[name]] + [("xformers", False, vb), ("sdpa", True, vb)]
        for attention, compiled, batch in variants:
            row = {"model": name, "batch": batch, "attention": attention, "compile": compiled,
                   "dtype": str(dtype).removeprefix("torch."), "steps": plan.steps}
            if compiled and not plan.compile:
                out["rows"].append({**row, "status": "skipped: " + ("quick mode: torch.compile on a CPU takes tens "
                                                                    "of seconds" if plan.quick else "--no-compile")})
                continue
            if attention == "xformers":
                reason = _xformers_reason(pipe)
                if reason is not None:
                    configure_pipeline(pipe, attention="sdpa")
                    out["rows"].append({**row, "status": f"skipped: {reason}"})
                    log(f"  {name} xformers: {reason}")
                    continue
            orig_unet, orig_decoder = pipe.unet, pipe.vae.decoder
            try:
                used = configure_pipeline(pipe, attention=attention, compile=compiled)
                row["channels_last"] = used["channels_last"]
                r = rollout_row(pipe, PROMPTS[name], plan.steps, batch, plan.row_budget_s)
                if compiled:  # the first call compiled the UNet and the decoder: keep it out of the medians
                    r["compile_s"] = round(r["first_call_s"] - r["rollout_s"], 2)
                tflops = flops["gflop_per_image"] * r["images_per_s"] / 1e3
                r["tflops"] = round(tflops, 4)
                r["frac_of_peak"] = round(tflops / peak, 4) if peak else None
                row.update(r, status="ok")
            except Exception as e:  # noqa: BLE001 - out of memory, a backend failure: report, keep going
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                row["status"] = error_status(e)
            finally:
                pipe.unet, pipe.vae.decoder = orig_unet, orig_decoder
                configure_pipeline(pipe, attention="sdpa")
                if compiled:
                    torch._dynamo.reset()
            out["rows"].append(row)
            log(f"  {name} B={batch} {attention}{' compile' if compiled else ''}: "
                + (f"{row['images_per_s']:.3f} images/s" if row["status"] == "ok" else row["status"]))
    return out
