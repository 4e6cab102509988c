"""Section `denoiser`: full rollouts (T DDIM steps with CFG, VAE decode) in images/s, per model and setting.

Settings: batch size, eager vs torch.compile (compile time reported apart), SDPA vs xformers. Beside
each: the UNet forward alone (2·B rows), FLOPs per image (findcli.bench.flops), the achieved TFLOP/s
and its fraction of the card's dense 16-bit peak (unknown card or fp32 -> null).

With --model-family (run_families): instead of those rows, each family's rollouts through its
Generator (findcli.generators) — its tiny random pipeline with --quick, else its reference
architecture with random weights at its native resolution (findcli.bench.families; skipped without
CUDA) — with the family's own scheduler choice (as find train loads it), default guidance and the
plan's steps: images (videos) per second at batch 1 and the plan's batches, denoise vs decode,
FLOPs per image counted around two real rollouts (findcli.bench.flops.rollout_flops), TFLOP/s and
fraction of peak. JSON: denoiser.families {family: info} and denoiser.family_rows [row, ...].

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


def denoiser(plan: Plan, models: Models, log: Callable[[str], None], families: list[str] | None = None) -> dict:
    """The section: the sd rows of `plan.models` (builtin, sd15, tiny) or, with `families`
    (--model-family), one set of rows per family instead (under "families" and "family_rows")."""
    from findcli.pipeline import configure_pipeline, latent_shape

    device, dtype = models.device, models.dtype
    peak = peak_tflops(card_name(device), dtype)
    out: dict = {"steps": plan.steps, "guidance": 7.5, "peak_tflops": peak, "models": {}, "rows": [],
                 "families": {}, "family_rows": []}
    if families:
        out["families"], out["family_rows"] = run_families(plan, families, device, dtype, log)
        return out
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


# ---------------------------------------------------------------------------------------------- families

NEEDS_GPU = "needs a GPU (CPU numbers only with --quick)"


def _call_default(pipe, name: str):
    import inspect

    return inspect.signature(type(pipe).__call__).parameters[name].default


def _family_settings(pipe, family: str, plan: Plan):
    from findcli.bench.families import size_for
    from findcli.generators import SamplerSettings

    size = size_for(family, plan.quick)
    steps = plan.family_steps or int(_call_default(pipe, "num_inference_steps"))
    guidance = float(_call_default(pipe, "guidance_scale"))
    kw = {} if size is None else dict(height=size[0], width=size[1], frames=size[2] if len(size) > 2 else None)
    return SamplerSettings(steps=steps, guidance=guidance, eta=0.0, **kw)


def family_row(gen, z: torch.Tensor, steps: int, budget_s: float, min_reps: int) -> dict:
    """Time full rollouts of z (one Generator call; denoise vs decode from gen.last_timing)."""
    parts: list[dict] = []

    def call():
        gen(z)
        parts.append(dict(gen.last_timing))

    first, median, reps = time_call(call, gen.device, budget_s, min_reps=min_reps)
    timed = parts[1:]
    denoise = statistics.median(p["denoise_s"] for p in timed)
    decode = statistics.median(p["decode_s"] for p in timed)
    n = z.shape[0]
    row = {"rollout_s": round(median, 5), "images_per_s": round(n / median, 4), "denoise_s": round(denoise, 5),
           "decode_s": round(decode, 5), "step_ms": round(1e3 * denoise / steps, 4), "first_call_s": round(first, 3),
           "reps": reps}
    if gen.video:
        row["frames_per_s"] = round(n * gen.frames / median, 3)
    return row


def run_families(plan: Plan, names: list[str], device: torch.device, dtype: torch.dtype,
                 log: Callable[[str], None]) -> tuple[dict, list[dict]]:
    """The --model-family rows: per family its info (source, size, FLOPs per image from two counted
    rollouts, findcli.bench.flops.rollout_flops) and one row per batch (batch 1 first): images/s,
    denoise vs decode, ms/step, achieved TFLOP/s and fraction of the card's peak.

    --quick: the family's tiny random pipeline. Otherwise its reference architecture at its native
    resolution (findcli.bench.families), skipped without CUDA ("needs a GPU") and for families that
    have none here. One family in memory at a time."""
    import gc

    from diffusers.utils import logging as diffusers_logging

    from findcli.bench import families as fam

    diffusers_logging.set_verbosity_error()  # its advice on casting random models is noise here
    peak = peak_tflops(card_name(device), dtype)
    infos: dict = {}
    rows: list[dict] = []
    for name in names:
        batches = tuple(dict.fromkeys((1, *plan.family_batches.get(name, plan.family_batches.get("default", (1,))))))
        size = "tiny" if plan.quick else "full"
        base = {"family": name, "size": size, "dtype": str(dtype).removeprefix("torch.")}
        info: dict = {"status": None, "size": size}
        if not plan.quick and name in fam.REFERENCE:
            ref = fam.REFERENCE[name]
            info.update(config_source=ref["source"], resolution=list(ref["resolution"]),
                        media="video" if len(ref["resolution"]) > 2 else "image", text_encoders=ref["text_encoders"])
        reason = None
        if not plan.quick and name not in fam.FULL_SIZE:
            reason = f"no full-size reference architecture for {name} here (its tiny pipeline runs with --quick)"
        elif not plan.quick and device.type != "cuda":
            reason = NEEDS_GPU
        if reason is None:
            family_rows: list[dict] = []
            try:
                _run_family(plan, name, batches, base, info, family_rows, device, dtype, peak, log)
            except Exception as e:  # noqa: BLE001 - a family that cannot be built or counted: report, keep going
                info["status"] = error_status(e)
                done = {r["batch"] for r in family_rows}
                family_rows += [{**base, "batch": b, "status": error_status(e)} for b in batches if b not in done]
                log(f"  {name} ({size}): {error_status(e)}")
            infos[name] = info
            rows += family_rows
        else:
            infos[name] = {**info, "status": f"skipped: {reason}"}
            rows += [{**base, "batch": b, "status": f"skipped: {reason}"} for b in batches]
            log(f"  {name} ({size}): skipped: {reason}")
        gc.collect()  # the family's pipeline went with _run_family's frame
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return infos, rows


def _run_family(plan: Plan, name: str, batches: tuple[int, ...], base: dict, info: dict, rows: list[dict],
                device: torch.device, dtype: torch.dtype, peak: float | None, log: Callable[[str], None]) -> None:
    """Build one family's pipeline, count its FLOPs, time its rows (into `info` and `rows`)."""
    import time

    from findcli.bench import families as fam
    from findcli.bench.flops import rollout_flops
    from findcli.bench.plans import FAMILY_PROMPT
    from findcli.generators import configure_scheduler
    from findcli.pipeline import Rollout, configure_pipeline
    from findcli.pipeline import denoiser as denoiser_of

    t0 = time.perf_counter()
    pipe = fam.build_quick_pipeline(name, device, dtype) if plan.quick else fam.build_full_pipeline(name, device, dtype)
    scheduler = configure_scheduler(pipe, "auto")  # as find train loads it
    configure_pipeline(pipe, attention="sdpa", compile=False)
    build_s = time.perf_counter() - t0
    settings = _family_settings(pipe, name, plan)
    counted = rollout_flops(pipe, FAMILY_PROMPT, settings)
    gen = Rollout(pipe, FAMILY_PROMPT, settings, max_batch=max(batches))
    net = denoiser_of(pipe)
    step_g, decode_g = counted["step_flops"] / 1e9, counted["decode_flops"] / 1e9
    per_image = counted["per_image_flops"] / 1e9
    media = "video" if gen.video else "image"
    info.update({
        "status": "ok", "source": pipe.find_source, "pipeline": type(pipe).__name__, "scheduler": scheduler,
        "resolution": [gen.height, gen.width] + ([gen.frames] if gen.video else []), "latent": list(gen.latent_shape),
        "media": media, "denoiser": type(net).__name__,
        "denoiser_params_m": round(sum(p.numel() for p in net.parameters()) / 1e6, 2),
        "vae_params_m": round(sum(p.numel() for p in pipe.vae.parameters()) / 1e6, 2),
        "steps": settings.steps, "guidance": settings.guidance,
        "cfg_rows": 2 if any(k.startswith("negative") for k in gen.embeds) else 1,
        "step_gflop": round(step_g, 6), "decode_gflop": round(decode_g, 6), "gflop_per_image": round(per_image, 6),
        "flop_method": "FlopCounterMode around two real rollouts (steps 1 and 2, batch 1, same z): step = F(2) - F(1), "
                       "decode = 2 F(1) - F(2), per image = steps x step + decode",
        "attention_flops": counted["attention"], "build_s": round(build_s, 2),
    })
    if plan.quick:
        info["text_encoders"] = "the tiny pipeline's own (they run once per prompt, not per image)"
    info["ceiling_images_per_s"] = round(peak * 1e12 / (per_image * 1e9), 4) if peak else None
    log(f"  {name} ({base['size']}): {per_image:.4g} GFLOP per {media}, built in {build_s:.1f} s")
    z_all = torch.randn(max(batches), *gen.latent_shape, generator=torch.Generator("cpu").manual_seed(0))
    for b in batches:
        row = {**base, "batch": b, "steps": settings.steps}
        try:
            r = family_row(gen, z_all[:b], settings.steps, plan.row_budget_s, plan.family_min_reps)
            tflops = per_image * r["images_per_s"] / 1e3
            r["tflops"] = round(tflops, 6)
            r["frac_of_peak"] = round(tflops / peak, 4) if peak else None
            row.update(r, status="ok")
        except Exception as e:  # noqa: BLE001 - out of memory, a backend failure: report, keep going
            if device.type == "cuda":
                torch.cuda.empty_cache()
            row["status"] = error_status(e)
        rows.append(row)
        log(f"  {name} B={b}: " + (f"{row['images_per_s']:.4g} {media}s/s" if row["status"] == "ok" else row["status"]))
