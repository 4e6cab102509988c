"""One adapter per diffusers pipeline family, behind one protocol (findcli.generators.base.Generator).

    gen = generator_for(pipe, prompt, SamplerSettings(...), max_batch)
    gen.latent_shape      the policy's per-sample latent shape, natural (unpacked) layout
    gen(z, seed)          z (K, *latent_shape) -> images (K, 3, H, W) or videos (K, F, 3, H, W) in [0, 1]
    gen.text_features()   (E,) pooled text feature for the value net
    gen.last_timing       {"denoise_s", "decode_s"} of the last call

Families register below by pipeline class name; an unsupported pipeline gets one line naming the
supported ones. `configure_scheduler` applies --scheduler auto|ddim|native at load time.
"""

from __future__ import annotations

import functools
import importlib

from findcli.errors import FindError
from findcli.generators.base import Generator, SamplerSettings

# family module -> its Generator class name; modules are imported only when their family is used.
FAMILIES: dict[str, tuple[str, str]] = {
    "sd": ("findcli.generators.sd", "StableDiffusion"),
    "sdxl": ("findcli.generators.sdxl", "StableDiffusionXL"),
    "pixart": ("findcli.generators.pixart", "PixArt"),
    "sd3": ("findcli.generators.sd3", "StableDiffusion3"),
    "flux": ("findcli.generators.flux", "Flux"),
    "animatediff": ("findcli.generators.animatediff", "AnimateDiff"),
    "modelscope": ("findcli.generators.modelscope", "ModelScope"),
    "cogvideox": ("findcli.generators.cogvideox", "CogVideoX"),
    "wan": ("findcli.generators.wan", "Wan"),
}

SCHEDULERS = ("auto", "ddim", "native")


@functools.lru_cache(maxsize=1)
def _family_classes() -> tuple[type[Generator], ...]:
    out = []
    for module, name in FAMILIES.values():
        try:
            out.append(getattr(importlib.import_module(module), name))
        except ModuleNotFoundError as e:  # a family not written yet, or one needing a newer diffusers
            if e.name != module and not str(e.name or "").startswith("diffusers"):
                raise
            continue
    return tuple(out)


def supported_pipelines() -> list[str]:
    return sorted(c for cls in _family_classes() for c in cls.pipeline_classes)


def family_class(pipe) -> type[Generator]:
    """The Generator class that drives `pipe`: the first class in its MRO a family claims."""
    classes = _family_classes()
    for k in type(pipe).__mro__:
        for cls in classes:
            if k.__name__ in cls.pipeline_classes:
                return cls
    raise FindError(f"{type(pipe).__name__} is not a pipeline find can drive; supported: "
                    f"{', '.join(supported_pipelines())}")


def generator_for(pipe, prompt: str, settings: SamplerSettings, max_batch: int = 16) -> Generator:
    return family_class(pipe)(pipe, prompt, settings, max_batch)


def configure_scheduler(pipe, choice: str = "auto") -> str:
    """--scheduler: `ddim` (SD-family ε/v models: with eta 0 the image is a function of z alone),
    `native` (the model's own), `auto` = ddim where the family allows it and the model is not a
    few-step one (LCM, TCD, Turbo/Lightning/Hyper checkpoints keep theirs). Returns the class used."""
    from diffusers import DDIMScheduler

    if choice not in SCHEDULERS:
        raise FindError(f"--scheduler must be auto, ddim or native (got {choice!r})")
    cls = family_class(pipe)
    current = type(pipe.scheduler).__name__
    if choice == "ddim" and not cls.ddim:
        raise FindError(f"--scheduler ddim does not apply to {cls.family} models ({current}); use auto or native")
    few_step = current in ("LCMScheduler", "TCDScheduler") or any(
        w in str(pipe.config.get("_name_or_path", "") or "").lower()
        for w in ("turbo", "lightning", "hyper", "lcm"))
    if choice == "ddim" or (choice == "auto" and cls.ddim and not few_step):
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    return type(pipe.scheduler).__name__


__all__ = ["Generator", "SamplerSettings", "generator_for", "family_class", "configure_scheduler",
           "supported_pipelines", "FAMILIES", "SCHEDULERS"]
