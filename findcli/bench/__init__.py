"""Benchmarks behind `find bench`: where the time of a FIND iteration goes, and how fast rollouts run.

FIND's cost is almost all rollouts: K latents through T denoising steps (two UNet rows each with
classifier-free guidance), a VAE decode, a reward. Four sections; each is a top-level key of the JSON
(`null` when not run), plus `meta` (card, versions, date, command):

  kernels      the policy kernels (eager vs torch.compile vs Triton), GB/s against a device copy.
  denoiser     full rollouts (T DDIM steps with CFG, VAE decode) in images/s, per model and setting:
               batch size, eager vs torch.compile (compile time reported apart), SDPA vs xformers.
               Beside each: the UNet forward alone (2·B rows), FLOPs per image counted with
               torch.utils.flop_counter.FlopCounterMode on a meta-device copy (no compute), the achieved
               TFLOP/s and its fraction of the card's dense 16-bit peak (PEAK_TFLOPS; unknown -> null).
               --model-family FAMILY: instead, each family's rollouts (tiny with --quick; else its
               reference architecture with random weights at its native resolution, GPU only).
  end_to_end   one `find train` iteration (FindTrainer.step) split into denoise / decode / reward /
               update, iterations/s and images/s, for the default preset and for `--preset paper`.
  steps_sweep  T in {10, 20, 50}: rollout time; on the built-in model also the alignment gain of a
               short FIND run at that T (judge success rate, policy minus N(0, I) on the same ε) — a
               related method reports noise-optimisation gains shrinking as steps grow.

Modules (all of it installs with the package; the scripts in benchmarks/ are thin entry points that
call `script_main` or `kernels.run`, and results are written where --json says, never beside code):

  timing       time_call: the one timing helper (warm-up, CUDA sync, medians; do_bench on CUDA)
  plans        Plan, FULL, QUICK (sizes of a run), SECTIONS, PROMPTS
  models       the builtin / sd15 (random SD1.5 architecture) / tiny pipelines and their rewards
  families     --model-family: each family's tiny pipeline, or its reference architecture (random weights)
  flops        FLOPs per image on a meta-device copy (sd rows) or around two real rollouts (family rows),
               the cards' peak table
  meta         the result's `meta` key
  kernels, denoiser, end_to_end, steps_sweep   one module per section
  runner       parse_sections, run_bench, script_main
  tables       the rich tables `find bench` prints

Timing: a warm-up call first (it also absorbs compilation, whose time is reported apart), then
medians: `triton.testing.do_bench` (median mode) for the UNet forward and the kernels on CUDA;
synchronised `time.perf_counter` medians for whole rollouts (seconds each: do_bench's ~8 calls for
its estimate and warm-up would multiply them) and everything on the CPU. --quick on a CPU runs
single-threaded: on shared cores, intra-op threads turn millisecond calls into stalls.
"""

from findcli.bench.denoiser import (
    _xformers_reason as _xformers_reason,  # tests/test_rollout_equivalence.py
)
from findcli.bench.denoiser import rollout_row
from findcli.bench.flops import PEAK_TFLOPS, flops_per_image, peak_tflops, rollout_flops
from findcli.bench.meta import card_name, meta
from findcli.bench.models import (
    Models,
    build_sd15_pipeline,
    colourfulness_reward,
    sd15_configs,
)
from findcli.bench.plans import PROMPTS, SECTIONS, Plan
from findcli.bench.runner import parse_families, parse_sections, run_bench, script_main
from findcli.bench.tables import tables
from findcli.bench.timing import Timing, time_call

__all__ = [
    "PEAK_TFLOPS", "PROMPTS", "SECTIONS", "Models", "Plan", "Timing", "build_sd15_pipeline", "card_name",
    "colourfulness_reward", "flops_per_image", "meta", "parse_families", "parse_sections", "peak_tflops",
    "rollout_flops", "rollout_row", "run_bench", "script_main", "sd15_configs", "tables", "time_call",
]
