"""Sizes of a benchmark run: FULL is for the GPU, QUICK finishes in under a minute on a CPU."""

from __future__ import annotations

from dataclasses import dataclass, field

from findcli.config import TrainConfig

SECTIONS = ("kernels", "denoiser", "end_to_end", "steps_sweep")
# Sections run only when named in --only (not in a bare `find bench`): the method comparison takes
# minutes with --quick and the training budget of every method without it.
OPTIONAL_SECTIONS = ("compare",)

PROMPTS = {
    # Against the shapes model's training bias (spheres sit on cubes, spheres are mostly red, cubes blue).
    "builtin": "a blue sphere on a red cube",
    "sd15": "a photograph of an astronaut riding a horse",
    "tiny": "a photograph of an astronaut riding a horse",
}
FAMILY_PROMPT = "a photograph of an astronaut riding a horse"  # every --model-family row (images and videos)


@dataclass(frozen=True)
class Plan:
    """Sizes of one benchmark run: FULL is for the GPU, QUICK finishes in under a minute on a CPU."""

    quick: bool
    models: tuple[str, ...]  # denoiser models, in order ("builtin" is skipped with a reason if absent)
    steps: int  # denoiser T (DDIM steps, CFG 7.5)
    batches: dict[str, tuple[int, ...]]  # per model: images per rollout for the eager SDPA rows
    variant_batch: dict[str, int]  # per model: the batch of the xformers and compile rows
    row_budget_s: float  # timed seconds per rollout row (at least timing.MIN_REPS calls)
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
    # --model-family rows (findcli.bench.families): denoising steps (None = the pipeline's own default
    # num_inference_steps), images (videos) per rollout per family ("default" for the others; batch 1
    # always runs first), and the fewest timed rollouts per row (full-size video rollouts take minutes).
    family_steps: int | None = None
    family_batches: dict[str, tuple[int, ...]] = field(default_factory=lambda: {"default": (1,)})
    family_min_reps: int = 3


FULL = Plan(
    quick=False, models=("builtin", "sd15"), steps=50,
    batches={"builtin": (1, 8, 64), "sd15": (1, 8, 16)}, variant_batch={"builtin": 8, "sd15": 8},
    row_budget_s=8.0,
    e2e_models=("builtin", "sd15"), e2e_overrides={"default": {}, "paper": {}}, e2e_warmup=1, e2e_iterations=3,
    sweep_models=("builtin", "sd15"), sweep_steps=(10, 20, 50), sweep_batch=8,
    find_iterations=TrainConfig.iterations, find_batch=TrainConfig.batch, eval_n=128, compile=True,  # find train's defaults
    # Each pipeline's own default steps (sdxl 50, flux 28, wan 50); a full-size Wan rollout (81 frames
    # at 480x832, 50 steps, CFG) takes minutes, so it runs at batch 1 only and with 2 timed calls.
    family_steps=None, family_batches={"sd": (1, 8), "sdxl": (1, 4), "flux": (1, 4), "default": (1,)},
    family_min_reps=2,
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
    family_steps=4, family_batches={"default": (1, 2)}, family_min_reps=3,
)


def error_status(e: BaseException) -> str:
    """A row's status for an exception: 'error: Type: first line of the message' (at most 200 characters)."""
    return f"error: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
