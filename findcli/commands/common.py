"""Small helpers the commands share: runtime setup, pipeline + reward construction, console."""

from __future__ import annotations

import sys
from pathlib import Path

from rich.console import Console

from findcli.errors import FindError

console = Console(stderr=False, highlight=False)


def runtime(device: str, dtype: str, kernels: str | None = None):
    """Resolve --device/--dtype/--kernels once, with one-line errors."""
    from findcli.kernels import get_backend, set_backend
    from findcli.pipeline import resolve_device, resolve_dtype

    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    if kernels is not None:  # otherwise $FIND_KERNELS (read by the dispatcher), else auto
        set_backend(kernels)
    get_backend(dev)  # forcing triton where it cannot run is an error now, not after model loading
    return dev, dt


def load(model, dev, dt, attention: str = "sdpa", compile: bool = False):
    from findcli.pipeline import configure_pipeline, load_pipeline

    with console.status(f"loading {model or 'the built-in shapes model'} …"):
        pipe = load_pipeline(model, dev, dt)
        used = configure_pipeline(pipe, attention=attention, compile=compile)
    return pipe, used


# `find train`'s reward on the built-in shapes model when --reward is not given: the built-in detector,
# chosen by measurement (benchmarks/RESULTS.md §6: AUC of its score for the judge's success on the
# generator's own images ≥ 0.97 on six of the seven relations vs 0.47-0.85 for the built-in CLIP).
# Other models keep TrainConfig.reward ("clip").
BUILTIN_DEFAULT_REWARD = "find-shapes-detector"


def default_reward(model) -> str:
    """The reward used when none is given: the detector on the built-in model, clip elsewhere."""
    from findcli.config import TrainConfig
    from findcli.pipeline import is_builtin

    return BUILTIN_DEFAULT_REWARD if is_builtin(model) else TrainConfig.reward


def reward_for(spec, reward_model, model, dev):
    """Build the reward; `clip` on the built-in model defaults to the built-in CLIP."""
    from findcli.pipeline import is_builtin
    from findcli.rewards import build_reward

    if reward_model is None and is_builtin(model):
        reward_model = "builtin"
    return build_reward(spec, dev, reward_model=reward_model), reward_model


def check_out_path(path: Path, suffix: str | None = None) -> Path:
    from findcli.atomic import check_writable

    path = check_writable(path)
    if suffix and path.suffix != suffix:
        raise FindError(f"--out {str(path)!r} should end in {suffix}, e.g. out{suffix}")
    return path


def eprint(message: str) -> None:
    sys.stderr.write(message + "\n")
