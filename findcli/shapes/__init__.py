"""The built-in shapes world, as the rest of findcli sees it: the one seam.

Nothing outside `findcli.shapes` needs to know where the shipped model lives, which words its
prompts may use, how its images are judged or which reward suits it; it asks here:

  is_builtin(model)        is this --model (or a policy's recorded model) the built-in one?
  MODEL_ID                 how policies record it ("builtin", never a path: policies travel)
  model_dir()              the shipped pipeline folder (one-line error when it is missing)
  model_version()          a fingerprint of the shipped generator's weights, recorded beside MODEL_ID
  check_prompt(prompt)     parse against the grammar; one-line error listing the known words
  judge_images(images, p)  the programmatic judge: success per image and per constraint
  category(prompt)         the prompt's template category (position, counting, ...)
  load_suite(path)         (category, prompt) pairs of a suite file
  DEFAULT_REWARD           the reward `find train`/`find eval` use on it when none is given
  CLIP_MODEL               the --reward-model `clip` uses on it when none is given
  detector_reward(device)  the `find-shapes-detector` reward (DEFAULT_REWARD)
  builtin_clip_spec()      (open_clip name, checkpoint) of the shipped CLIP, registered with open_clip

This module is light (no torch at import): the CLI imports it before deciding anything heavy.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODEL_DIR = HERE / "model"  # a diffusers StableDiffusionPipeline folder (see models.py)
MODEL_ID = "builtin"
# The shipped model's location inside any installed findcli: a policy written before policies recorded
# MODEL_ID holds an absolute path ending so, which is the built-in model wherever it was trained.
_LEGACY_SUFFIX = ("findcli", "shapes", "model")

# `find train`'s reward on the built-in model when --reward is not given: the built-in detector,
# chosen by measurement (benchmarks/RESULTS.md §6: AUC of its score for the judge's success on the
# generator's own images ≥ 0.97 on six of the seven relations vs 0.47-0.85 for the built-in CLIP).
DEFAULT_REWARD = "find-shapes-detector"
CLIP_MODEL = "builtin"  # --reward-model for `clip` on this model: the shipped CLIP
CLIP_NAME = "find-shapes-clip"  # its open_clip architecture name (the config find-shapes-clip.json beside this file)


def is_builtin(model: str | None) -> bool:
    """True for None/""/"builtin", the shipped folder itself, and a legacy absolute path to a
    findcli/shapes/model folder that does not exist here (a policy trained in another install)."""
    if model in (None, "", MODEL_ID):
        return True
    path = Path(str(model)).expanduser()
    try:
        if path.resolve() == MODEL_DIR:
            return True
    except OSError:
        return False
    return path.is_absolute() and path.parts[-3:] == _LEGACY_SUFFIX and not path.exists()


def model_dir() -> Path:
    from findcli.errors import FindError

    if not (MODEL_DIR / "model_index.json").is_file():
        raise FindError(f"the built-in shapes model is missing from {MODEL_DIR}; reinstall findcli or pass "
                        "--model PATH_OR_HUB_ID")
    return MODEL_DIR


@functools.lru_cache(maxsize=1)
def model_version() -> str:
    """'shapes-' + 12 hex digits of BLAKE2b over the generator's config and weight files (a few MB):
    a policy records it so that a retrained built-in model is noticed when the policy is used."""
    h = hashlib.blake2b(digest_size=6)
    folder = model_dir()
    for part in ("model_index.json", "scheduler", "text_encoder", "unet", "vae"):
        p = folder / part
        for f in sorted(p.rglob("*")) if p.is_dir() else [p]:
            if f.is_file():
                h.update(f.relative_to(folder).as_posix().encode())
                h.update(f.read_bytes())
    return "shapes-" + h.hexdigest()


def check_prompt(prompt: str):
    """The prompt's parsed Spec; FindError (one line, the known words) when outside the grammar."""
    from findcli.shapes.world import parse_prompt

    return parse_prompt(prompt)


def category(prompt: str) -> str:
    return check_prompt(prompt).category()


def judge_images(images, prompt: str):
    """(success (N,) bool, {constraint: (N,) bool}) of images (N, 3, 64, 64) in [0, 1] for `prompt`."""
    from findcli.shapes.judge import judge

    return judge(images.cpu(), check_prompt(prompt))


def load_suite(path) -> list[tuple[str, str]]:
    from findcli.shapes.judge import load_suite as _load

    return _load(path)


def detector_reward(device):
    """The `find-shapes-detector` reward (float32 always: 0.2 M parameters)."""
    from findcli.shapes.detector import DetectorReward

    return DetectorReward(device)


def builtin_clip_spec() -> tuple[str, str]:
    from findcli.shapes.models import builtin_clip_spec as spec

    return spec()


def register_builtin_clip() -> None:
    from findcli.shapes.models import register_builtin_clip as register

    register()


def write_tokenizer(out_dir) -> None:
    """The shipped tokenizer files (open_clip's BPE as a CLIPTokenizer), for tiny test pipelines too."""
    from findcli.shapes.models import write_tokenizer as write

    write(out_dir)
