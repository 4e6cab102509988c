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
  layout_targets(pipe, ps) the conditional policy's layout teacher: (μ, log σ) per prompt from the DDIM
                           inversion of a scene the renderer draws for it (findcli.shapes.layouts)

Those names are the image world's. There are two built-in worlds, each a `World` with the same
methods (model_dir, model_version, check_prompt, category, judge_images, load_suite, default_reward,
clip_model, default_frames): `world_of(model)` returns the one a --model names, or None for any other
model:

  "builtin"        the shapes images (StableDiffusionPipeline, 64 px; judge: findcli.shapes.judge)
  "builtin-video"  the shapes in motion (AnimateDiffPipeline, 8 frames of 64 px, trained by
                   `python -m findcli.shapes.training motion`; judge: findcli.shapes.video.judge)

This module is light (no torch at import): the CLI imports it before deciding anything heavy.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
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


def model_version() -> str:
    """'shapes-' + 12 hex digits of BLAKE2b over the generator's config and weight files (a few MB):
    a policy records it so that a retrained built-in model is noticed when the policy is used."""
    return IMAGE_WORLD.model_version()


def _fingerprint(prefix: str, folder: Path, parts: tuple[str, ...]) -> str:
    h = hashlib.blake2b(digest_size=6)
    for part in parts:
        p = folder / part
        for f in sorted(p.rglob("*")) if p.is_dir() else [p]:
            if f.is_file():
                h.update(f.relative_to(folder).as_posix().encode())
                h.update(f.read_bytes())
    return prefix + h.hexdigest()


@dataclass(frozen=True)
class World:
    """One built-in world: its shipped generator, grammar, judge and default reward."""

    id: str  # how --model names it and policies record it (never a path: policies travel)
    folder: Path  # the shipped diffusers pipeline folder
    kind: str  # "image" or "video"
    default_reward: str  # the reward find train / find eval use on it when --reward is not given
    clip_model: str  # --reward-model for `clip` on it (the shipped CLIP; per frame for video)
    default_frames: int | None  # video: frames per sample when --frames is not given (the training clips')
    version_parts: tuple[str, ...]  # the files whose bytes make model_version()
    missing_hint: str  # what to do when the folder is missing
    train_defaults: tuple = ()  # (TrainConfig field, value) pairs find train uses on this world unless given
    cpu_dtype: str = "fp32"  # what --dtype auto means on a CPU with native bf16 (findcli.pipeline.resolve_dtype)

    def model_dir(self) -> Path:
        from findcli.errors import FindError

        if not (self.folder / "model_index.json").is_file():
            raise FindError(f"the {self.id} model is missing from {self.folder}; {self.missing_hint}")
        return self.folder

    def model_version(self) -> str:
        """'shapes-' (or 'shapes-video-') + 12 hex digits of BLAKE2b over the generator's files."""
        return _version(self.id)

    def check_prompt(self, prompt: str):
        """The prompt's parsed spec; FindError (one line, the known words) when outside the grammar."""
        if self.kind == "video":
            from findcli.shapes.video.world import parse_video_prompt

            return parse_video_prompt(prompt)
        return check_prompt(prompt)

    def category(self, prompt: str) -> str:
        if self.kind == "video":
            from findcli.shapes.video.world import category as video_category

            return video_category(self.check_prompt(prompt))
        return category(prompt)

    def judge_images(self, images, prompt: str):
        """(success (N,) bool, {constraint: (N,) bool}); images (N, 3, 64, 64) or videos (N, F, 3, 64, 64)."""
        if self.kind == "video":
            from findcli.shapes.video.judge import judge_video

            return judge_video(images.cpu(), self.check_prompt(prompt))
        return judge_images(images, prompt)

    def load_suite(self, path) -> list[tuple[str, str]]:
        if self.kind == "video":
            from findcli.shapes.video.world import load_video_suite

            return load_video_suite(path)
        return load_suite(path)


VIDEO_MODEL_ID = "builtin-video"
VIDEO_MODEL_DIR = HERE / "video" / "model"  # findcli.shapes.video.models.VIDEO_MODEL_DIR
VIDEO_DEFAULT_REWARD = "find-shapes-video-clip"

IMAGE_WORLD = World(MODEL_ID, MODEL_DIR, "image", DEFAULT_REWARD, CLIP_MODEL, None,
                    ("model_index.json", "scheduler", "text_encoder", "unet", "vae"),
                    "reinstall findcli or pass --model PATH_OR_HUB_ID")
VIDEO_WORLD = World(VIDEO_MODEL_ID, VIDEO_MODEL_DIR, "video", VIDEO_DEFAULT_REWARD, CLIP_MODEL, 8,
                    ("model_index.json", "scheduler", "text_encoder", "unet", "motion_adapter", "vae"),
                    "train it with `python -m findcli.shapes.training motion --preset cpu --out "
                    "findcli/shapes/video/model` (benchmarks/TRAINING_LOG.md) or pass --model PATH",
                    # A video rollout is 8 frames: 100 iterations of 8 clips would take ~25 min on 2 CPU
                    # cores; 30 fit issue 14's 5-minute budget (chosen for time, RESULTS.md §11).
                    train_defaults=(("iterations", 30),),
                    # bf16 weights with fp32 attention: judge verdicts equal fp32's on the same ε and the
                    # rollout is 1.39x faster on an AVX512-BF16 CPU; FIND gains a few points less (RESULTS.md §11).
                    cpu_dtype="bf16")
WORLDS = {w.id: w for w in (IMAGE_WORLD, VIDEO_WORLD)}


@functools.lru_cache(maxsize=2)
def _version(world_id: str) -> str:
    w = WORLDS[world_id]
    return _fingerprint("shapes-" if w.kind == "image" else "shapes-video-", w.model_dir(), w.version_parts)


def world_of(model: str | None) -> World | None:
    """The built-in world a --model (or a policy's recorded model) names, or None for any other model."""
    if is_builtin(model):
        return IMAGE_WORLD
    if model == VIDEO_MODEL_ID:
        return VIDEO_WORLD
    try:
        if Path(str(model)).expanduser().resolve() == VIDEO_MODEL_DIR:
            return VIDEO_WORLD
    except OSError:
        return None
    return None


def video_clip_reward(device):
    """The `find-shapes-video-clip` reward: the built-in video world's video-text model."""
    from findcli.shapes.video.reward import VideoClipReward

    return VideoClipReward(device)


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


def layout_targets(pipe, prompts: list[str], **options):
    """The layout teacher's (μ, log σ), (N, D) each, for `prompts` on the built-in image `pipe`
    (findcli.shapes.layouts.layout_targets: its options sigma, pool, render_seed, steps, guidance, batch,
    on_batch, render_seeds)."""
    from findcli.shapes.layouts import layout_targets as targets

    return targets(pipe, prompts, **options)


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
