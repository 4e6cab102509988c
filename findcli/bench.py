"""Benchmarks behind `find bench`: where the time of a FIND iteration goes, and how fast rollouts run.

FIND's cost is almost all rollouts: K latents through T denoising steps (two UNet rows each with
classifier-free guidance), a VAE decode, a reward. Four sections; each is a top-level key of the JSON
(`null` when not run), plus `meta` (card, versions, date, command):

  kernels      the policy kernels: benchmarks/bench_kernels.py's `run(quick, device)`, loaded by file
               path (benchmarks/ is not a package, so it needs a source checkout).
  denoiser     full rollouts (T DDIM steps with CFG, VAE decode) in images/s, per model and setting:
               batch size, eager vs torch.compile (compile time reported apart), SDPA vs xformers.
               Beside each: the UNet forward alone (2·B rows), FLOPs per image counted with
               torch.utils.flop_counter.FlopCounterMode on a meta-device copy (no compute), the achieved
               TFLOP/s and its fraction of the card's dense 16-bit peak (PEAK_TFLOPS; unknown -> null).
  end_to_end   one `find train` iteration (FindTrainer.step) split into denoise / decode / reward /
               update, iterations/s and images/s, for the default preset and for `--preset paper`.
  steps_sweep  T in {10, 20, 50}: rollout time; on the built-in model also the alignment gain of a
               short FIND run at that T (judge success rate, policy minus N(0, I) on the same ε) — a
               related method reports noise-optimisation gains shrinking as steps grow.

Models
  builtin  the shipped shapes model (findcli/shapes/model; skipped with the reason when absent);
           reward: its built-in CLIP, as `find train` uses it.
  sd15     the Stable Diffusion 1.5 architecture built here from its published config with random
           weights (no download): UNet 860 M, VAE, CLIP ViT-L/14 text encoder, 512 px, DDIM.
  tiny     --quick only: the test suite's tiny pipeline (findcli.testing), 16 px images.
  The random models use `colourfulness_reward`, a cheap user-style reward (what `--reward
  module:function` plugs in): its time is the floor of the reward phase, not a CLIP's.

Timing: a warm-up call first (it also absorbs compilation, whose time is reported apart), then
medians: `triton.testing.do_bench` (median mode) for the UNet forward on CUDA; synchronised
`time.perf_counter` medians for whole rollouts (seconds each: do_bench's ~8 calls for its estimate
and warm-up would multiply them) and everything on the CPU. --quick on a CPU runs single-threaded
(as bench_kernels does): on shared cores, intra-op threads turn millisecond calls into stalls.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import torch

from findcli.config import TrainConfig
from findcli.errors import FindError

SECTIONS = ("kernels", "denoiser", "end_to_end", "steps_sweep")
BENCH_DIR = Path(__file__).resolve().parent.parent / "benchmarks"

# Dense (no sparsity) 16-bit tensor-core peaks from the vendor datasheets, TFLOP/s; matched against
# torch.cuda.get_device_name in order. fp32 has no entry: its peak depends on TF32 settings.
PEAK_TFLOPS = (
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100 80GB HBM3", 989.0),  # the SXM card's name
    ("H100 SXM", 989.0),
)

PROMPTS = {
    # Against the shapes model's training bias (spheres sit on cubes, spheres are mostly red, cubes blue).
    "builtin": "a blue sphere on a red cube",
    "sd15": "a photograph of an astronaut riding a horse",
    "tiny": "a photograph of an astronaut riding a horse",
}


@dataclass(frozen=True)
class Plan:
    """Sizes of one benchmark run: FULL is for the GPU, QUICK finishes in under a minute on a CPU."""

    quick: bool
    models: tuple[str, ...]  # denoiser models, in order ("builtin" is skipped with a reason if absent)
    steps: int  # denoiser T (DDIM steps, CFG 7.5)
    batches: dict[str, tuple[int, ...]]  # per model: images per rollout for the eager SDPA rows
    variant_batch: dict[str, int]  # per model: the batch of the xformers and compile rows
    row_budget_s: float  # timed seconds per rollout row (at least MIN_REPS calls)
    e2e_models: tuple[str, ...]
    e2e_overrides: dict[str, dict]  # per preset: TrainConfig overrides (quick: fewer steps)
    e2e_warmup: int  # untimed iterations first (lazy init, allocator, cuDNN autotune)
    e2e_iterations: int  # timed iterations, medians reported
    sweep_models: tuple[str, ...]
    sweep_steps: tuple[int, ...]
    sweep_batch: int
    find_iterations: int  # alignment: length of the short FIND run at each T (built-in model only)
    find_batch: int  # K of that run
    eval_n: int  # images per arm of the paired evaluation
    compile: bool  # whether to run the torch.compile rows at all
    notes: tuple[str, ...] = field(default_factory=tuple)


FULL = Plan(
    quick=False, models=("builtin", "sd15"), steps=50,
    batches={"builtin": (1, 8, 64), "sd15": (1, 8, 16)}, variant_batch={"builtin": 8, "sd15": 8},
    row_budget_s=8.0,
    e2e_models=("builtin", "sd15"), e2e_overrides={"default": {}, "paper": {}}, e2e_warmup=1, e2e_iterations=3,
    sweep_models=("builtin", "sd15"), sweep_steps=(10, 20, 50), sweep_batch=8,
    find_iterations=TrainConfig.iterations, find_batch=TrainConfig.batch, eval_n=128, compile=True,  # find train's defaults
)

QUICK = Plan(
    quick=True, models=("tiny", "builtin"), steps=4,
    batches={"tiny": (1, 4), "builtin": (1, 4)}, variant_batch={"tiny": 4, "builtin": 4},
    row_budget_s=0.3,
    e2e_models=("tiny", "builtin"),
    # Same ratio of steps as the presets' 20 : 50, at CPU size; K stays the preset's (8 and 1).
    e2e_overrides={"default": {"steps": 4}, "paper": {"steps": 10}}, e2e_warmup=1, e2e_iterations=2,
    sweep_models=("tiny", "builtin"), sweep_steps=(2, 5, 10), sweep_batch=4,
    find_iterations=2, find_batch=4, eval_n=8, compile=False,
    notes=("quick: CPU-sized smoke run; steps reduced (denoiser T=4, sweep T=2/5/10, e2e T=4 and 10); "
           "torch.compile rows skipped (tens of seconds to compile on a CPU)",),
)

MIN_REPS = 3
MAX_REPS = 30


# ---------------------------------------------------------------------------------------------- sections


def parse_sections(values: list[str] | None) -> list[str]:
    """--only values (repeatable, or comma lists) -> sections in canonical order; all when empty."""
    if not values:
        return list(SECTIONS)
    wanted = []
    for value in values:
        for name in value.split(","):
            name = name.strip().replace("-", "_")
            if not name:
                continue
            if name not in SECTIONS:
                raise FindError(f"unknown benchmark section {name!r} in --only; choose from {', '.join(SECTIONS)} "
                                "(repeat --only or give a comma list)")
            wanted.append(name)
    if not wanted:
        raise FindError(f"--only named no section; choose from {', '.join(SECTIONS)}")
    return [s for s in SECTIONS if s in wanted]


def load_script(name: str):
    """Import benchmarks/<name>.py by file path (benchmarks/ is a folder of scripts, not a package)."""
    path = BENCH_DIR / f"{name}.py"
    if not path.is_file():
        raise FindError(f"{path} is missing: this section runs a script from the source checkout's benchmarks/ "
                        "folder; run find bench from an editable install (pip install -e .) or leave it out of --only")
    spec = importlib.util.spec_from_file_location(f"_findcli_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_bench(sections: list[str], quick: bool, device: torch.device, dtype: torch.dtype,
              compile: bool | None = None, command: str = "find bench",
              log: Callable[[str], None] | None = None,
              on_section: Callable[[dict], None] | None = None) -> dict:
    """Run the chosen sections; returns {"meta", "kernels", "denoiser", "end_to_end", "steps_sweep"}.

    `on_section(result)` is called after each section with the result so far (for incremental JSON).
    """
    plan = QUICK if quick else FULL
    if compile is not None:
        plan = replace(plan, compile=compile)
    log = log or _stderr
    result: dict = {"meta": meta(plan, device, dtype, sections, command)}
    result.update({s: None for s in SECTIONS})
    models = Models(device, dtype, log)
    with _threads_for(plan, device):
        for section in sections:
            log(f"[{section}]")
            t0 = time.perf_counter()
            if section == "kernels":
                result["kernels"] = load_script("bench_kernels").run(quick, str(device))
            elif section == "denoiser":
                result["denoiser"] = denoiser(plan, models, log)
            elif section == "end_to_end":
                result["end_to_end"] = end_to_end(plan, models, log)
            elif section == "steps_sweep":
                result["steps_sweep"] = steps_sweep(plan, models, log)
            result["meta"]["section_s"][section] = round(time.perf_counter() - t0, 2)
            if on_section is not None:
                on_section(result)
    return result


def meta(plan: Plan, device: torch.device, dtype: torch.dtype, sections: list[str], command: str) -> dict:
    from findcli import __version__

    versions = {"findcli": __version__, "torch": torch.__version__, "python": platform.python_version()}
    for mod in ("diffusers", "transformers", "triton", "open_clip", "xformers"):
        try:
            versions[mod] = getattr(__import__(mod), "__version__", "installed")
        except Exception:  # noqa: BLE001 - absent or broken: recorded as not available
            versions[mod] = None
    return {
        "card": card_name(device), "device": str(device), "dtype": str(dtype).removeprefix("torch."),
        "peak_tflops": peak_tflops(card_name(device), dtype),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "command": command,
        "quick": plan.quick, "compile": plan.compile, "sections": sections, "section_s": {},
        "threads": 1 if (plan.quick and device.type == "cpu") else torch.get_num_threads(),
        "versions": versions, "notes": list(plan.notes),
    }


def card_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{os.cpu_count()}-core CPU ({platform.machine()}, no GPU)"


def peak_tflops(card: str, dtype: torch.dtype) -> float | None:
    """The card's dense bf16/fp16 tensor-core peak, or None (unknown card, or fp32)."""
    if dtype not in (torch.float16, torch.bfloat16):
        return None
    for key, value in PEAK_TFLOPS:
        if key in card:
            return value
    return None


def _stderr(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


@contextlib.contextmanager
def _threads_for(plan: Plan, device: torch.device):
    threads = torch.get_num_threads()
    if plan.quick and device.type == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------- timing


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device, budget_s: float,
              do_bench: bool = False) -> tuple[float, float, int]:
    """(first-call seconds, median seconds, timed calls). The first call is the warm-up (and compile).

    do_bench=True on CUDA: the median from triton.testing.do_bench (for calls of milliseconds)."""
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    first = time.perf_counter() - t0
    if do_bench and device.type == "cuda":
        import triton.testing

        ms = triton.testing.do_bench(fn, warmup=25, rep=max(100, int(1000 * budget_s)), return_mode="median")
        return first, float(ms) / 1e3, -1  # do_bench picks its own count
    times = []
    start = time.perf_counter()
    while len(times) < MIN_REPS or (time.perf_counter() - start < budget_s and len(times) < MAX_REPS):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return first, statistics.median(times), len(times)


# ---------------------------------------------------------------------------------------------- models


def sd15_configs() -> dict:
    """Stable Diffusion 1.5's published component configs (runwayml/stable-diffusion-v1-5), written out."""
    return {
        "unet": dict(
            sample_size=64, in_channels=4, out_channels=4, center_input_sample=False, flip_sin_to_cos=True,
            freq_shift=0, down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, downsample_padding=1,
            mid_block_scale_factor=1.0, act_fn="silu", norm_num_groups=32, norm_eps=1e-5,
            cross_attention_dim=768, attention_head_dim=8,
        ),
        "vae": dict(
            in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512),
            layers_per_block=2, act_fn="silu", latent_channels=4, norm_num_groups=32, sample_size=512,
            scaling_factor=0.18215,
        ),
        # CLIP ViT-L/14's text tower (openai/clip-vit-large-patch14).
        "text_encoder": dict(
            vocab_size=49408, hidden_size=768, intermediate_size=3072, num_attention_heads=12,
            num_hidden_layers=12, max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5,
            projection_dim=768, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
        ),
        "scheduler": dict(
            num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
            clip_sample=False, set_alpha_to_one=False, steps_offset=1,
        ),
        "tokenizer_max_length": 77,
    }


def build_sd15_pipeline(device: torch.device, dtype: torch.dtype, seed: int = 0):
    """An SD1.5-architecture StableDiffusionPipeline with random weights, built on `device` (no download)."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from findcli.shapes.models import write_tokenizer

    c = sd15_configs()
    torch.manual_seed(seed)
    with torch.device(device):  # initialise on the device: an 860 M-parameter init is slow on a CPU
        unet = UNet2DConditionModel(**c["unet"])
        vae = AutoencoderKL(**c["vae"])
        text_encoder = CLIPTextModel(CLIPTextConfig(**c["text_encoder"]))
    with tempfile.TemporaryDirectory() as d:
        write_tokenizer(d)
        tokenizer = CLIPTokenizer.from_pretrained(d, model_max_length=c["tokenizer_max_length"])
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=DDIMScheduler(**c["scheduler"]), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    pipe = pipe.to(device, dtype)
    pipe.find_source = "random SD1.5 architecture"
    return pipe


def colourfulness_reward(images: torch.Tensor, prompts: list[str]) -> torch.Tensor:  # noqa: ARG001
    """A cheap user-style reward: per image, the mean over pixels of (max − min over RGB), in [0, 1].
    Random-weight models can emit non-finite pixels in half precision; they count as 0 so the
    benchmark's iterations are never skipped."""
    x = torch.nan_to_num(images.float(), nan=0.0, posinf=0.0, neginf=0.0)
    return (x.amax(dim=1) - x.amin(dim=1)).mean(dim=(1, 2))  # (N,)


class Models:
    """Each model built once per run (on first use); a model that cannot be had is a skip reason."""

    def __init__(self, device: torch.device, dtype: torch.dtype, log: Callable[[str], None]):
        self.device, self.dtype, self.log = device, dtype, log
        self._pipes: dict[str, object] = {}
        self._rewards: dict[str, object] = {}

    def pipe(self, name: str):
        """The pipeline, configured as `find train` runs it (SDPA, eager, channels-last on CUDA), or a str reason."""
        if name not in self._pipes:
            from diffusers.utils import logging as diffusers_logging

            from findcli.pipeline import configure_pipeline, load_pipeline

            diffusers_logging.set_verbosity_error()  # its advice on casting random models is noise here
            t0 = time.perf_counter()
            try:
                if name == "builtin":
                    pipe = load_pipeline(None, self.device, self.dtype)
                elif name == "sd15":
                    pipe = build_sd15_pipeline(self.device, self.dtype)
                elif name == "tiny":
                    from findcli.testing import build_tiny_pipeline

                    pipe = build_tiny_pipeline().to(self.device, self.dtype)
                    pipe.find_source = "tiny test pipeline"
                else:
                    raise FindError(f"unknown benchmark model {name!r}")
                configure_pipeline(pipe, attention="sdpa", compile=False)
                self.log(f"  model {name}: ready in {time.perf_counter() - t0:.1f} s")
            except FindError as e:
                pipe = f"skipped: {e}"
                self.log(f"  model {name}: {pipe}")
            self._pipes[name] = pipe
        return self._pipes[name]

    def reward(self, name: str):
        """(reward callable, description): the built-in CLIP on the built-in model, else colourfulness."""
        if name not in self._rewards:
            if name == "builtin":
                from findcli.rewards import build_reward

                self._rewards[name] = (build_reward("clip", self.device, reward_model="builtin"), "clip (built-in CLIP)")
            else:
                self._rewards[name] = (colourfulness_reward, "colourfulness (cheap user-style function)")
        return self._rewards[name]


# ---------------------------------------------------------------------------------------------- FLOPs


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


# ---------------------------------------------------------------------------------------------- denoiser


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
    embeds = roll.prompt_embeds.expand(batch, -1, -1)
    if guidance > 1.0:
        embeds = torch.cat([roll.negative_embeds.expand(batch, -1, -1), embeds])
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
                row["status"] = f"error: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
            finally:
                pipe.unet, pipe.vae.decoder = orig_unet, orig_decoder
                configure_pipeline(pipe, attention="sdpa")
                if compiled:
                    torch._dynamo.reset()
            out["rows"].append(row)
            log(f"  {name} B={batch} {attention}{' compile' if compiled else ''}: "
                + (f"{row['images_per_s']:.3f} images/s" if row["status"] == "ok" else row["status"]))
    return out


# ---------------------------------------------------------------------------------------------- end to end


def _median(ms: list[dict], key: str) -> float:
    return statistics.median(m[key] for m in ms)


def end_to_end(plan: Plan, models: Models, log: Callable[[str], None]) -> dict:
    """FindTrainer.step() on each model, default and paper presets: medians of the timed iterations."""
    from findcli.config import PRESETS
    from findcli.engine import FindTrainer

    out: dict = {"warmup_iterations": plan.e2e_warmup, "timed_iterations": plan.e2e_iterations, "rows": []}
    for name in plan.e2e_models:
        pipe = models.pipe(name)
        for preset in ("default", "paper"):
            row: dict = {"model": name, "preset": preset}
            if isinstance(pipe, str):
                out["rows"].append({**row, "status": pipe})
                continue
            try:
                reward, reward_name = models.reward(name)
                cfg = PRESETS[preset](prompt=PROMPTS[name], **plan.e2e_overrides[preset]).validate()
                row.update(batch=cfg.batch, steps=cfg.steps, eta=cfg.eta, guidance=cfg.guidance, reward=reward_name)
                with tempfile.TemporaryDirectory() as d:
                    trainer = FindTrainer(cfg, pipe, reward, Path(d) / "bench.pt")
                    for _ in range(plan.e2e_warmup):
                        trainer.step()
                    ms = [trainer.step() for _ in range(plan.e2e_iterations)]
                ok = [m for m in ms if not m.get("skipped")]
                if not ok:
                    raise FindError("every timed iteration was skipped (non-finite rewards)")
                parts = {k: _median(ok, k) for k in ("denoise_s", "decode_s", "reward_s", "update_s", "iter_s")}
                parts["other_s"] = max(0.0, parts["iter_s"] - sum(parts[k] for k in ("denoise_s", "decode_s",
                                                                                      "reward_s", "update_s")))
                row.update({k: round(v, 5) for k, v in parts.items()})
                row["share"] = {k.removesuffix("_s"): round(parts[k] / parts["iter_s"], 4)
                                for k in ("denoise_s", "decode_s", "reward_s", "update_s", "other_s")}
                row["iterations_per_s"] = round(1.0 / parts["iter_s"], 4)
                row["images_per_s"] = round(cfg.batch / parts["iter_s"], 4)
                row["status"] = "ok"
            except Exception as e:  # noqa: BLE001 - report and keep going
                row["status"] = f"error: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
            out["rows"].append(row)
            log(f"  {name} {preset}: " + (f"{row['iter_s']:.3f} s/iteration" if row["status"] == "ok" else row["status"]))
    return out


# ---------------------------------------------------------------------------------------------- steps sweep


def steps_sweep(plan: Plan, models: Models, log: Callable[[str], None]) -> dict:
    """Rollout time against T; on the built-in model, FIND's alignment gain at each T."""
    from findcli.config import default
    from findcli.engine import FindTrainer
    from findcli.evaluation import evaluate_prompt
    from findcli.pipeline import SamplerSettings

    out: dict = {"steps": list(plan.sweep_steps), "batch": plan.sweep_batch, "find_iterations": plan.find_iterations,
                 "find_batch": plan.find_batch, "eval_n": plan.eval_n, "rows": []}
    for name in plan.sweep_models:
        pipe = models.pipe(name)
        for steps in plan.sweep_steps:
            row: dict = {"model": name, "steps": steps}
            if isinstance(pipe, str):
                out["rows"].append({**row, "status": pipe})
                continue
            try:
                r = rollout_row(pipe, PROMPTS[name], steps, plan.sweep_batch, plan.row_budget_s)
                row.update(rollout_s=r["rollout_s"], images_per_s=r["images_per_s"], step_ms=r["step_ms"])
                if name == "builtin":
                    reward, reward_name = models.reward(name)
                    cfg = default(prompt=PROMPTS[name], steps=steps, batch=plan.find_batch,
                                  iterations=plan.find_iterations).validate()
                    t0 = time.perf_counter()
                    with tempfile.TemporaryDirectory() as d:
                        trainer = FindTrainer(cfg, pipe, reward, Path(d) / "bench.pt")
                        for _ in range(cfg.iterations):
                            trainer.step()
                    row["find_s"] = round(time.perf_counter() - t0, 3)
                    rec = evaluate_prompt(pipe, PROMPTS[name], SamplerSettings(steps, cfg.guidance, cfg.eta), reward,
                                          plan.eval_n, seed=1, policy=trainer.policy, builtin=True)
                    base, pol = rec["baseline"]["success_rate"], rec["policy"]["success_rate"]
                    row.update(reward=reward_name, baseline_success=base, find_success=pol,
                               gain=round(pol - base, 4), win_rate=rec["policy"]["win_rate"],
                               baseline_reward=round(rec["baseline"]["mean_reward"], 5),
                               find_reward=round(rec["policy"]["mean_reward"], 5))
                else:
                    row["alignment"] = "n/a: success rates need the built-in model's judge"
                row["status"] = "ok"
            except Exception as e:  # noqa: BLE001 - report and keep going
                row["status"] = f"error: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
            out["rows"].append(row)
            log(f"  {name} T={steps}: " + (f"{row['images_per_s']:.3f} images/s"
                                           + (f", gain {row['gain']:+.3f}" if "gain" in row else "")
                                           if row["status"] == "ok" else row["status"]))
    return out


# ---------------------------------------------------------------------------------------------- tables


def _fmt(value, spec: str = ".3f") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return format(value, spec) if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


class _Notes:
    """Long statuses (skip reasons, errors) become a short cell plus a numbered line in the caption."""

    def __init__(self):
        self.reasons: list[str] = []

    def cell(self, status: str | None) -> str:
        if not status or status == "ok":
            return "ok"
        kind, _, reason = status.partition(": ")
        if not reason:
            return status
        if reason not in self.reasons:
            self.reasons.append(reason)
        return f"{kind} [{self.reasons.index(reason) + 1}]"

    def caption(self) -> str | None:
        return "\n".join(f"[{i}] {r}" for i, r in enumerate(self.reasons, 1)) or None


def _table(title: str, columns: tuple[str, ...], left: tuple[str, ...]):
    from rich.table import Table

    t = Table(title=title, caption_justify="left")
    for col in columns:
        t.add_column(col, justify="left" if col in left else "right")
    return t


def tables(result: dict) -> list:
    """Rich tables, one per section that ran."""
    out = []
    m = result.get("meta") or {}
    k = result.get("kernels")
    if k:
        notes = _Notes()
        t = _table(f"kernels — {k.get('device')}, copy {k.get('copy_gbps')} GB/s (read + write)",
                   ("scale", "K", "D", "op", "pass", "impl", "ms", "GB/s", "% copy", "compile s", "status"),
                   ("scale", "op", "pass", "impl", "status"))
        for r in k["rows"]:
            t.add_row(r["scale"], str(r["K"]), str(r["D"]), r["op"], r["pass"], r["impl"], _fmt(r["ms"], ".4f"),
                      _fmt(r["gbps"], ".1f"), _fmt(None if r["frac_of_copy"] is None else 100 * r["frac_of_copy"], ".1f"),
                      _fmt(r.get("compile_s"), ".1f"), notes.cell(r["status"]))
        t.caption = notes.caption()
        out.append(t)
    d = result.get("denoiser")
    if d:
        notes = _Notes()
        t = _table(f"denoiser — full rollouts: T={d['steps']} DDIM steps, CFG {d['guidance']}, VAE decode; "
                   f"{m.get('card', '')}, {m.get('dtype', '')}, peak {_fmt(d['peak_tflops'], '.0f')} TFLOP/s",
                   ("model", "B", "attention", "compile", "images/s", "ms/step", "UNet ms", "decode s",
                    "GFLOP/image", "TFLOP/s", "% peak", "compile s", "status"),
                   ("model", "attention", "compile", "status"))
        for name, info in d["models"].items():
            if info.get("status") != "ok":
                t.add_row(name, *[""] * 11, notes.cell(info.get("status")))
        for r in d["rows"]:
            g = d["models"].get(r["model"], {}).get("gflop_per_image")
            ok = r["status"] == "ok"
            t.add_row(r["model"], str(r["batch"]), r["attention"], "yes" if r["compile"] else "no",
                      _fmt(r.get("images_per_s"), ".3f"), _fmt(r.get("step_ms"), ".2f"), _fmt(r.get("unet_ms"), ".2f"),
                      _fmt(r.get("decode_s"), ".4f"), _fmt(g if ok else None, ".4g"), _fmt(r.get("tflops"), ".3g"),
                      _fmt(None if r.get("frac_of_peak") is None else 100 * r["frac_of_peak"], ".1f"),
                      _fmt(r.get("compile_s"), ".1f"), notes.cell(r["status"]))
        t.caption = "\n".join(x for x in ("UNet ms: one forward on the 2·B rows of a CFG step; ms/step: the "
                                           "pipeline's denoising time per step (scheduler and CFG included)",
                                           notes.caption()) if x)
        out.append(t)
    e = result.get("end_to_end")
    if e:
        notes = _Notes()
        t = _table(f"end to end — one find train iteration (median of {e['timed_iterations']} after "
                   f"{e['warmup_iterations']} warm-up)",
                   ("model", "preset", "K", "T", "denoise s", "decode s", "reward s", "update s", "other s",
                    "iteration s", "iterations/s", "images/s", "status"), ("model", "preset", "status"))
        rewards = []
        for r in e["rows"]:
            t.add_row(r["model"], r["preset"], _fmt(r.get("batch"), "d"), _fmt(r.get("steps"), "d"),
                      *(_fmt(r.get(c), ".4f") for c in ("denoise_s", "decode_s", "reward_s", "update_s", "other_s",
                                                        "iter_s")),
                      _fmt(r.get("iterations_per_s"), ".3f"), _fmt(r.get("images_per_s"), ".3f"),
                      notes.cell(r["status"]))
            if r.get("reward") and f"{r['model']}: {r['reward']}" not in rewards:
                rewards.append(f"{r['model']}: {r['reward']}")
        t.caption = "\n".join(x for x in (("reward — " + "; ".join(rewards)) if rewards else None, notes.caption()) if x)
        out.append(t)
    s = result.get("steps_sweep")
    if s:
        notes = _Notes()
        t = _table(f"steps sweep — rollouts of {s['batch']} images; alignment: FIND {s['find_iterations']} "
                   f"iterations × K={s['find_batch']}, then n={s['eval_n']} paired images per arm",
                   ("model", "T", "images/s", "ms/step", "baseline success", "FIND success", "gain", "win rate",
                    "status"), ("model", "status"))
        for r in s["rows"]:
            t.add_row(r["model"], str(r["steps"]), _fmt(r.get("images_per_s"), ".3f"), _fmt(r.get("step_ms"), ".2f"),
                      _fmt(r.get("baseline_success"), ".3f"), _fmt(r.get("find_success"), ".3f"),
                      _fmt(r.get("gain"), "+.3f"), _fmt(r.get("win_rate"), ".3f"),
                      notes.cell(r["status"] if r["status"] != "ok" else r.get("alignment", "ok")))
        t.caption = notes.caption()
        out.append(t)
    return out


# ---------------------------------------------------------------------------------------------- scripts


def script_main(section: str, argv: list[str] | None = None) -> int:
    """The `python benchmarks/bench_<section>.py` entry point: one section, a table, optional JSON."""
    import argparse
    import json

    from rich.console import Console

    from findcli.pipeline import resolve_device, resolve_dtype

    parser = argparse.ArgumentParser(description=f"find bench --only {section}")
    parser.add_argument("--quick", action="store_true", help="CPU-sized run (under a minute)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--dtype", default="auto", help="auto (fp16 on CUDA, fp32 on CPU), fp32, fp16 or bf16")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    parser.add_argument("--json", default=None, help="write the result here as JSON")
    args = parser.parse_args(argv)
    try:
        dev = resolve_device(args.device)
        result = run_bench([section], args.quick, dev, resolve_dtype(args.dtype, dev),
                           compile=False if args.no_compile else None, command=" ".join(["python", *sys.argv]))
    except FindError as e:
        _stderr(f"error: {e}")
        return 2
    if args.json:
        from findcli.atomic import write_text

        write_text(args.json, json.dumps(result, indent=2) + "\n")
    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = max(console.width, 220)  # logs and pipes: keep each row on one line
    for table in tables(result):
        console.print(table)
    return 0
