"""Reward functions r(x_0, c): score a batch of decoded images against their prompts.

`build_reward("clip=1,pickscore=0.5", device)` returns a `Reward`: a callable taking images
(N, 3, H, W) float in [0, 1] on any device and N prompts, returning (N,) float32 on the images'
device, computed without gradient. Several `name=weight` components combine linearly.

Components:
- `clip`: CLIPScore (Hessel et al. 2021), 2.5 * max(cos(image, text), 0), through open_clip. The
  model is `--reward-model` ("ViT-L-14:openai" by default; "ARCH:TAG" for any open_clip pretrained
  tag; "ARCH:/path/ckpt" for a local checkpoint; "builtin" for the CLIP shipped with the built-in
  shapes model).
- `pickscore`: logit_scale * cos from yuvalkirstain/PickScore_v1 (transformers CLIPModel).
- `imagereward`: ImageReward-v1.0 (needs the `image-reward` package: the `rewards` extra).
- `hpsv2`: HPS v2.1, cos(image, text) of an open_clip ViT-H-14 with the xswu/HPSv2 checkpoint
  (the score the hpsv2 package reports; open_clip loads it, so the package itself is not needed).
- `find-shapes-detector`: for the built-in shapes world only, a GenEval-style prompt-satisfaction
  score in [0, 2] from a small object detector trained on the renderer's ground truth
  (`findcli.shapes.detector`; weights ship in the package). A prompt outside the shapes grammar
  raises the grammar's FindError.
- `find-shapes-video-clip`: for the built-in video world (`--model builtin-video`), a small
  video–text model in the role of ViCLIP (`findcli.shapes.video.reward`): a per-frame conv encoder
  with temporal pooling and a text encoder over the video grammar, trained contrastively on rendered
  clips with motion-swapped hard negatives; logit_scale × cosine.
- `module:function` or `path/file.py:function`: a user function
  `(images (N,3,H,W) in [0,1], prompts: list[str]) -> tensor (N,)`.

Nothing here downloads. Weights are looked up in the local caches first (huggingface_hub's
`try_to_load_from_cache`, open_clip's `~/.cache/clip`, `local_files_only=True` for transformers);
a missing package or file raises a one-line FindError saying what to install or pre-download.

Every image model runs batched, in float16 on CUDA and float32 on the CPU unless `dtype` says
otherwise; image resizing and normalisation are done on tensors, batched, following the model's own
preprocessing configuration (resize shortest side, centre crop, normalise).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import math
import os
import sys
from pathlib import Path
from typing import Callable, Protocol

import torch
import torch.nn.functional as F

from findcli.errors import FindError

BUILTIN_REWARDS = ("clip", "pickscore", "imagereward", "hpsv2", "find-shapes-detector", "find-shapes-video-clip")
DEFAULT_CLIP_MODEL = "ViT-L-14:openai"
EXTRA_HINT = "pip install 'findcli[rewards]'"
CLIPSCORE_WEIGHT = 2.5  # w in CLIPScore = w * max(cos, 0) (Hessel et al. 2021)
IMAGE_CHUNK = 32  # images per forward pass: bounds activation memory for ViT-L/H at 224 px

PICKSCORE_MODEL = "yuvalkirstain/PickScore_v1"
PICKSCORE_PROCESSOR = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
HPSV2_REPO = "xswu/HPSv2"
HPSV2_FILE = "HPS_v2.1_compressed.pt"
IMAGEREWARD_REPO = "THUDM/ImageReward"
IMAGEREWARD_FILES = ("ImageReward.pt", "med_config.json")

_VALID_NAMES = ", ".join(BUILTIN_REWARDS) + ", or module:function"
_OFFLINE_NOTE = "find never downloads at run time (keep HF_HUB_OFFLINE=1 set)"


class Reward(Protocol):
    spec: str  # canonical spec string, e.g. "clip=1.0,mymod:score=0.5"

    def __call__(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor: ...


# --------------------------------------------------------------------------------------------
# Spec parsing
# --------------------------------------------------------------------------------------------


def parse_reward_spec(spec: str | list[str]) -> list[tuple[str, float]]:
    """Parse "clip", "clip=1,pickscore=0.5" or ["clip=1", "m:f=2"] into [(name, weight), ...].

    A bare name has weight 1. Names are the built-ins (case-insensitive) or `module:function`.
    Weights must be finite and non-zero; a name may appear once.
    """
    items = [spec] if isinstance(spec, str) else list(spec)
    parts = [p.strip() for item in items for p in str(item).split(",")]
    parts = [p for p in parts if p]
    if not parts:
        raise FindError(f"--reward is empty; give one or more of {_VALID_NAMES}, optionally as name=weight.")
    parsed: list[tuple[str, float]] = []
    for part in parts:
        name, eq, weight_text = part.rpartition("=")
        if not eq:
            name, weight = part, 1.0
        else:
            name = name.strip()
            try:
                weight = float(weight_text)
            except ValueError:
                raise FindError(f"reward weight {weight_text!r} in {part!r} is not a number; write name=weight, e.g. clip=1.0.")
            if not math.isfinite(weight) or weight == 0.0:
                raise FindError(f"reward weight in {part!r} must be a finite non-zero number.")
        if ":" in name:
            module, _, func = name.rpartition(":")
            if not module or not func.isidentifier():
                raise FindError(f"reward {name!r} is not module:function; valid names are {_VALID_NAMES}.")
        else:
            name = name.lower()
            if name not in BUILTIN_REWARDS:
                raise FindError(f"unknown reward {name!r}; valid names are {_VALID_NAMES}.")
        if any(n == name for n, _ in parsed):
            raise FindError(f"reward {name!r} is given twice; give each reward once with its weight.")
        parsed.append((name, weight))
    return parsed


def canonical_spec(components: list[tuple[str, float]]) -> str:
    """The spec string stored in policy metadata: "name=weight,..." with weights as Python floats."""
    return ",".join(f"{name}={float(weight)!r}" for name, weight in components)


# --------------------------------------------------------------------------------------------
# Shared pieces: dtype choice, tensor preprocessing, cache lookups
# --------------------------------------------------------------------------------------------


def _model_dtype(device: torch.device, dtype: torch.dtype | None) -> torch.dtype:
    """float16 on CUDA, float32 elsewhere, unless the caller fixes it."""
    if dtype is not None:
        return dtype
    return torch.float16 if torch.device(device).type == "cuda" else torch.float32


def _pair(size) -> tuple[int, int]:
    if isinstance(size, (tuple, list)):
        return int(size[0]), int(size[1])
    return int(size), int(size)


def preprocess_images(
    images: torch.Tensor,
    size,
    mean,
    std,
    interpolation: str = "bicubic",
    resize_mode: str = "shortest",
    fill_color: int = 0,
    shortest_edge: int | None = None,
) -> torch.Tensor:
    """Batched tensor version of open_clip's / CLIP's eval transform: (N,3,H,W) in [0,1] -> normalised (N,3,h,w) fp32.

    Steps, as torchvision does them on PIL images:
      1. resize: "shortest" scales the short side to the target (long side truncated as torchvision
         does; `shortest_edge` overrides the short-side length for processors that resize and crop
         to different sizes), "squash" scales both sides to the target, "longest" scales the long
         side then pads;
         antialiased bicubic (or bilinear) interpolation, as PIL's resize;
      2. clamp to [0, 1]: PIL writes uint8 after resizing, so bicubic overshoot is cut there too;
      3. centre crop (or pad) to the target size;
      4. subtract the mean and divide by the std, per channel.
    """
    x = images.float()  # (N, 3, H, W)
    th, tw = _pair(size)
    h, w = x.shape[-2:]
    if resize_mode == "squash":
        new_h, new_w = th, tw
    elif resize_mode == "longest":
        scale = min(th / h, tw / w)
        new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    else:
        if th == tw or shortest_edge is not None:
            short, long = (h, w) if h <= w else (w, h)
            target = shortest_edge if shortest_edge is not None else th
            new_short, new_long = target, int(target * long / short)
            new_h, new_w = (new_short, new_long) if h <= w else (new_long, new_short)
        else:
            scale = max(th / h, tw / w)
            new_h, new_w = round(h * scale), round(w * scale)
    if (new_h, new_w) != (h, w):
        mode = "bilinear" if interpolation == "bilinear" else "bicubic"
        x = F.interpolate(x, size=(new_h, new_w), mode=mode, align_corners=False, antialias=True)
        x = x.clamp(0.0, 1.0)
    # Centre crop, or pad with the fill colour where the image is smaller than the target.
    if new_h < th or new_w < tw:
        pad_h, pad_w = max(th - new_h, 0), max(tw - new_w, 0)
        x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), value=fill_color / 255.0)
        new_h, new_w = x.shape[-2:]
    top = int(round((new_h - th) / 2.0))
    left = int(round((new_w - tw) / 2.0))
    x = x[..., top : top + th, left : left + tw]
    mean_t = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - mean_t) / std_t


def _hub_cached(repo_id: str, filenames) -> str | None:
    """Path of the first of `filenames` present in the local Hugging Face cache, without any request."""
    from huggingface_hub import try_to_load_from_cache

    for filename in filenames:
        path = try_to_load_from_cache(repo_id, filename)
        if isinstance(path, str) and os.path.isfile(path):
            return path
    return None


def _check_images(images: torch.Tensor, prompts: list[str]) -> None:
    if not ((images.ndim == 4 and images.shape[1] == 3) or (images.ndim == 5 and images.shape[2] == 3)):
        raise FindError(f"rewards take images shaped (N, 3, H, W) or videos (N, F, 3, H, W); got {tuple(images.shape)}.")
    if len(prompts) != images.shape[0]:
        raise FindError(f"rewards take one prompt per image; got {images.shape[0]} images and {len(prompts)} prompts.")


def over_frames(fn: Callable, videos: torch.Tensor, prompts: list[str]) -> torch.Tensor:
    """An image reward lifted to video: the mean over frames of its score of each frame,
    r(video) = (1/F) Σ_f r(frame_f). videos (N, F, 3, H, W) -> (N,)."""
    n, f = videos.shape[:2]
    frames = videos.reshape(n * f, *videos.shape[2:])
    scores = fn(frames, [p for p in prompts for _ in range(f)])
    return torch.as_tensor(scores).reshape(n, f).float().mean(dim=1)


# --------------------------------------------------------------------------------------------
# open_clip scorers: clip (CLIPScore) and hpsv2
# --------------------------------------------------------------------------------------------


def resolve_clip_model(reward_model: str | None) -> tuple[str, str, dict]:
    """Turn a --reward-model string into (open_clip architecture, local checkpoint path, tag config).

    None -> ViT-L-14:openai; "builtin" -> the shapes model's CLIP; "ARCH:TAG" -> the tag's weights
    from the local cache (FindError naming the file to pre-download when absent); "ARCH:/path" ->
    that file. The tag config carries the tag's preprocessing (mean, std, ...) and quick_gelu flag.
    """
    import open_clip

    if reward_model is None:
        reward_model = DEFAULT_CLIP_MODEL
    if reward_model == "builtin":
        from findcli import shapes

        arch, checkpoint = shapes.builtin_clip_spec()
        if not os.path.isfile(checkpoint):
            raise FindError(
                f"the built-in CLIP checkpoint {checkpoint} is missing; retrain it (README: Development) "
                f"(or reinstall findcli), or pass --reward-model ARCH:TAG."
            )
        return arch, str(checkpoint), {}
    arch, colon, source = reward_model.partition(":")
    from findcli import shapes

    if arch == shapes.CLIP_NAME:  # the built-in architecture with other weights (e.g. retrained)
        shapes.register_builtin_clip()
    if not colon or not source:
        if os.path.exists(reward_model) or os.sep in reward_model:
            raise FindError(
                f"--reward-model {reward_model!r} is a path; name its architecture too, as ARCH:{reward_model} "
                f"(e.g. ViT-L-14:{reward_model})."
            )
        raise FindError(f"--reward-model {reward_model!r} must be ARCH:TAG (e.g. {DEFAULT_CLIP_MODEL}) or ARCH:/path/to/checkpoint.")
    if arch not in open_clip.list_models():
        raise FindError(f"unknown open_clip architecture {arch!r} in --reward-model; see open_clip.list_models() (e.g. ViT-L-14).")
    tag_cfg = open_clip.get_pretrained_cfg(arch, source)
    if tag_cfg:
        path = _cached_open_clip_weights(arch, source, tag_cfg)
        tag_cfg = dict(tag_cfg)
        # OpenAI's original downloads (~/.cache/clip/*.pt) are TorchScript archives, which
        # torch.load refuses with weights_only=True; they are the checksummed official files.
        tag_cfg["torchscript"] = "openaipublic" in tag_cfg.get("url", "") and os.path.dirname(path) == os.path.expanduser("~/.cache/clip")
        return arch, path, tag_cfg
    if os.path.isfile(source):
        return arch, source, {}
    if os.sep in source or os.path.splitext(source)[1]:
        raise FindError(f"CLIP checkpoint {source} does not exist; give an existing file as {arch}:/path/to/checkpoint.")
    tags = ", ".join(open_clip.list_pretrained_tags_by_model(arch)) or "none"
    raise FindError(f"{source!r} is neither an open_clip tag for {arch} (known: {tags}) nor a checkpoint file.")


def _cached_open_clip_weights(arch: str, tag: str, cfg: dict) -> str:
    """Where open_clip would find the tag's weights locally; FindError saying how to pre-download if nowhere."""
    if cfg.get("file"):
        return cfg["file"]
    hub = cfg.get("hf_hub", "")
    url = cfg.get("url", "")
    if hub:
        # open_clip's convention: "org/repo/file" names a file, "org/repo/" the default file.
        repo_id, filename = os.path.split(hub)
        filename = filename or "open_clip_pytorch_model.bin"
        # open_clip prefers a .safetensors twin of the named file; accept either.
        stem = filename.rsplit(".", 1)[0]
        twins = ["open_clip_model.safetensors"] if filename == "open_clip_pytorch_model.bin" else [stem + ".safetensors"]
        found = _hub_cached(repo_id, twins + [filename])
        if found:
            return found
    if url:
        legacy = os.path.join(os.path.expanduser("~/.cache/clip"), os.path.basename(url))
        if os.path.isfile(legacy):
            return legacy
    if hub:
        how = f"`hf download {repo_id} {filename}`"
    else:
        how = f"downloading {url} into ~/.cache/clip/"
    raise FindError(
        f"CLIP weights {arch}:{tag} are not in the local cache and {_OFFLINE_NOTE}; pre-download them on a networked machine with "
        f"{how}, or pass --reward-model {arch}:/path/to/checkpoint."
    )


@functools.lru_cache(maxsize=None)
def _open_clip_tokenizer(arch: str):
    # Building open_clip's BPE tokenizer reads 49k merges (~0.5 s); it holds no per-model state.
    import open_clip

    return open_clip.get_tokenizer(arch)


class OpenClipScorer:
    """An open_clip model built once, with its tokenizer, tensor preprocessing and a per-prompt text-feature cache.

    `cosine(images, prompts)` -> (N,) float32 cos(image_features, text_features) on the model's device.
    """

    def __init__(self, arch: str, checkpoint: str, tag_cfg: dict, device: torch.device, dtype: torch.dtype):
        import open_clip

        self.device = torch.device(device)
        self.dtype = dtype
        precision = {torch.float16: "fp16", torch.bfloat16: "bf16"}.get(dtype, "fp32")
        try:
            model, _, _ = open_clip.create_model_and_transforms(
                arch,
                pretrained=checkpoint,
                precision=precision,
                device=self.device,
                force_quick_gelu=bool(tag_cfg.get("quick_gelu", False)),
                image_mean=tag_cfg.get("mean"),
                image_std=tag_cfg.get("std"),
                image_interpolation=tag_cfg.get("interpolation"),
                image_resize_mode=tag_cfg.get("resize_mode"),
                weights_only=not tag_cfg.get("torchscript", False),
            )
        except FindError:
            raise
        except Exception as exc:  # a wrong architecture for the file, a corrupt file, ...
            raise FindError(f"could not load CLIP {arch} from {checkpoint}: {type(exc).__name__}: {exc}") from exc
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = _open_clip_tokenizer(arch)
        self.preprocess_cfg = dict(model.visual.preprocess_cfg)
        self._text_features: dict[str, torch.Tensor] = {}

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """(N,3,H,W) in [0,1] -> the model's normalised input, fp32 on the model's device."""
        c = self.preprocess_cfg
        return preprocess_images(
            images.to(self.device),
            c["size"],
            c["mean"],
            c["std"],
            c.get("interpolation", "bicubic"),
            c.get("resize_mode", "shortest"),
            c.get("fill_color", 0),
        )

    @torch.no_grad()
    def text_features(self, prompts: list[str]) -> torch.Tensor:
        """(N, D) unit-norm fp32 text features; each distinct prompt is encoded once per scorer."""
        missing = list(dict.fromkeys(p for p in prompts if p not in self._text_features))
        if missing:
            tokens = self.tokenizer(missing).to(self.device)
            features = F.normalize(self.model.encode_text(tokens).float(), dim=-1)
            self._text_features.update(zip(missing, features))
        return torch.stack([self._text_features[p] for p in prompts])

    @torch.no_grad()
    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """(N, D) unit-norm fp32 image features, in chunks of IMAGE_CHUNK images."""
        out = []
        for chunk in images.split(IMAGE_CHUNK):
            pixels = self.preprocess(chunk).to(self.dtype)
            out.append(F.normalize(self.model.encode_image(pixels).float(), dim=-1))
        return torch.cat(out)

    @torch.no_grad()
    def cosine(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        return (self.image_features(images) * self.text_features(prompts)).sum(-1)


class ClipScore:
    """CLIPScore (Hessel et al. 2021): 2.5 * max(cos(E_image(x), E_text(c)), 0), in [0, 2.5].

    The 2.5 weight stretches typical cosines (0.2-0.4 for matching pairs) to roughly 0.5-1; the clamp
    at 0 means an unrelated image scores 0 rather than a negative number.
    """

    def __init__(self, reward_model: str | None, device: torch.device, dtype: torch.dtype):
        arch, checkpoint, tag_cfg = resolve_clip_model(reward_model)
        self.scorer = OpenClipScorer(arch, checkpoint, tag_cfg, device, dtype)

    def __call__(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        return CLIPSCORE_WEIGHT * self.scorer.cosine(images, prompts).clamp_min(0.0)


class HpsV2:
    """HPS v2.1: cos(image, text) of open_clip ViT-H-14 fine-tuned on human preferences (xswu/HPSv2)."""

    def __init__(self, device: torch.device, dtype: torch.dtype):
        import open_clip

        checkpoint = _hub_cached(HPSV2_REPO, [HPSV2_FILE])
        if checkpoint is None:
            raise FindError(
                f"HPSv2 weights are not in the local cache and {_OFFLINE_NOTE}; pre-download them on a networked machine with "
                f"`hf download {HPSV2_REPO} {HPSV2_FILE}`."
            )
        tag_cfg = dict(open_clip.get_pretrained_cfg("ViT-H-14", "laion2b_s32b_b79k"))
        self.scorer = OpenClipScorer("ViT-H-14", checkpoint, tag_cfg, device, dtype)

    def __call__(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        return self.scorer.cosine(images, prompts)


# --------------------------------------------------------------------------------------------
# transformers / package-based scorers
# --------------------------------------------------------------------------------------------


def _height_width(size) -> tuple[int, int]:
    """(h, w) from an image processor's crop_size: a dict (transformers 4), a SizeDict (5) or an int."""
    if isinstance(size, int):
        return size, size
    if isinstance(size, dict):
        return int(size["height"]), int(size["width"])
    return int(size.height), int(size.width)


class PickScore:
    """PickScore (Kirstain et al. 2023): logit_scale * cos(image, text) of yuvalkirstain/PickScore_v1.

    The processor (tokenizer and image statistics) is laion/CLIP-ViT-H-14-laion2B-s32B-b79K's, as in
    the reference code; both are loaded with local_files_only=True.
    """

    def __init__(
        self,
        device: torch.device,
        dtype: torch.dtype,
        model_id: str = PICKSCORE_MODEL,
        processor_id: str = PICKSCORE_PROCESSOR,
    ):
        from transformers import AutoProcessor, CLIPModel

        self.device = torch.device(device)
        self.dtype = dtype
        try:
            processor = AutoProcessor.from_pretrained(processor_id, local_files_only=True)
            model = CLIPModel.from_pretrained(model_id, local_files_only=True, dtype=dtype)
        except OSError as exc:
            raise FindError(
                f"PickScore files are not in the local cache and {_OFFLINE_NOTE}; pre-download them on a networked machine with "
                f"`hf download {model_id}` and `hf download {processor_id} --include '*.json' '*.txt'`."
            ) from exc
        self.model = model.to(self.device).eval().requires_grad_(False)
        self.tokenizer = processor.tokenizer
        ip = processor.image_processor
        self.size = _height_width(ip.crop_size)
        size = ip.size if isinstance(ip.size, dict) else vars(ip.size)
        self.shortest_edge = int(size["shortest_edge"]) if size.get("shortest_edge") else None
        self.mean, self.std = tuple(ip.image_mean), tuple(ip.image_std)
        self._text_features: dict[str, torch.Tensor] = {}

    @staticmethod
    def _pooled(out) -> torch.Tensor:
        # transformers 5 returns a model output whose pooler_output is the projected feature; 4.x a tensor.
        return out.pooler_output if hasattr(out, "pooler_output") else out

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        missing = list(dict.fromkeys(p for p in prompts if p not in self._text_features))
        if missing:
            tokens = self.tokenizer(missing, padding=True, truncation=True, max_length=77, return_tensors="pt").to(self.device)
            feats = F.normalize(self._pooled(self.model.get_text_features(**tokens)).float(), dim=-1)
            self._text_features.update(zip(missing, feats))
        text = torch.stack([self._text_features[p] for p in prompts])
        image = []
        for chunk in images.split(IMAGE_CHUNK):
            pixels = preprocess_images(
                chunk.to(self.device), self.size, self.mean, self.std, shortest_edge=self.shortest_edge
            ).to(self.dtype)
            image.append(F.normalize(self._pooled(self.model.get_image_features(pixel_values=pixels)).float(), dim=-1))
        image = torch.cat(image)
        return self.model.logit_scale.exp().float() * (image * text).sum(-1)


class ImageRewardScore:
    """ImageReward-v1.0 (Xu et al. 2023), batched on tensors: BLIP cross-attention features -> MLP -> standardised score."""

    def __init__(self, device: torch.device, dtype: torch.dtype):
        try:
            from ImageReward.ImageReward import ImageReward as ImageRewardModel
        except ImportError as exc:
            raise FindError(f"the imagereward reward needs the image-reward package; install it with {EXTRA_HINT}.") from exc
        root = os.path.expanduser("~/.cache/ImageReward")
        missing = [f for f in IMAGEREWARD_FILES if not os.path.isfile(os.path.join(root, f))]
        if missing:
            raise FindError(
                f"ImageReward files {', '.join(missing)} are not in {root} and {_OFFLINE_NOTE}; pre-download them on a networked machine with "
                f"`hf download {IMAGEREWARD_REPO} {' '.join(IMAGEREWARD_FILES)} --local-dir {root}`."
            )
        if _hub_cached("bert-base-uncased", ["vocab.txt"]) is None:
            raise FindError(
                f"ImageReward's BERT tokenizer is not in the local cache and {_OFFLINE_NOTE}; pre-download it on a networked machine with "
                "`hf download bert-base-uncased vocab.txt tokenizer_config.json config.json`."
            )
        self.device = torch.device(device)
        self.dtype = dtype
        model = ImageRewardModel(med_config=os.path.join(root, "med_config.json"), device=self.device)
        # A plain state dict (ImageReward's own loader calls load_state_dict on it): no pickle needed.
        state = torch.load(os.path.join(root, "ImageReward.pt"), map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=False)
        self.model = model.to(self.device, dtype).eval().requires_grad_(False)
        self._tokens: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        blip = self.model.blip
        for p in dict.fromkeys(prompts):
            if p not in self._tokens:
                t = blip.tokenizer(p, padding="max_length", truncation=True, max_length=35, return_tensors="pt")
                self._tokens[p] = (t.input_ids[0].to(self.device), t.attention_mask[0].to(self.device))
        ids = torch.stack([self._tokens[p][0] for p in prompts])
        mask = torch.stack([self._tokens[p][1] for p in prompts])
        clip_mean, clip_std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
        out = []
        for start in range(0, len(prompts), IMAGE_CHUNK):
            sl = slice(start, start + IMAGE_CHUNK)
            pixels = preprocess_images(images[sl].to(self.device), 224, clip_mean, clip_std).to(self.dtype)
            image_embeds = blip.visual_encoder(pixels)
            image_atts = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=self.device)
            text = blip.text_encoder(
                ids[sl], attention_mask=mask[sl], encoder_hidden_states=image_embeds,
                encoder_attention_mask=image_atts, return_dict=True,
            )
            features = text.last_hidden_state[:, 0, :]  # (n, 768): the [CLS] token
            out.append(self.model.mlp(features).float().squeeze(-1))
        return (torch.cat(out) - self.model.mean) / self.model.std


# --------------------------------------------------------------------------------------------
# User functions
# --------------------------------------------------------------------------------------------


def load_user_function(name: str) -> Callable:
    """Import `module:function` (dotted module) or `path/to/file.py:function`."""
    module_name, _, func_name = name.rpartition(":")
    if module_name.endswith(".py") or os.path.isfile(module_name):
        path = Path(module_name)
        if not path.is_file():
            raise FindError(f"reward module file {module_name} does not exist.")
        unique = f"_findcli_reward_{abs(hash(str(path.resolve())))}"
        module_spec = importlib.util.spec_from_file_location(unique, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[unique] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:
            del sys.modules[unique]
            from findcli.errors import UserCodeError

            raise UserCodeError(f"importing reward file {module_name} failed: {type(exc).__name__}: {exc} (the "
                                "traceback above is from that file)", exc) from exc
    else:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise FindError(f"cannot import reward module {module_name!r} ({exc}); put it on PYTHONPATH or give path/to/file.py:{func_name}.") from exc
    func = getattr(module, func_name, None)
    if func is None or not callable(func):
        raise FindError(f"reward module {module_name!r} has no function {func_name!r}.")
    return func


class UserReward:
    """Wraps a user function; checks it returns N values. Non-finite values pass through (the trainer handles them).
    It receives what the model makes: images (N, 3, H, W), or videos (N, F, 3, H, W) from a video family."""

    accepts_video = True

    def __init__(self, name: str):
        self.name = name
        self.func = load_user_function(name)
        if getattr(self.func, "value_range", None) is not None:  # the function's declared range, if any
            self.value_range = self.func.value_range

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        try:
            out = self.func(images, list(prompts))
        except Exception as exc:  # noqa: BLE001 - the user's bug: keep its traceback, name the reward
            from findcli.errors import UserCodeError

            raise UserCodeError(f"the reward function {self.name} raised {type(exc).__name__}: "
                                f"{str(exc).splitlines()[0] if str(exc) else ''} (the traceback above is from "
                                "that function; fix it and re-run)", exc) from exc
        try:
            out = torch.as_tensor(out)
        except Exception as exc:
            raise FindError(f"reward function {self.name} returned {type(out).__name__}, not a tensor of N={len(prompts)} numbers.") from exc
        if out.shape != (images.shape[0],):
            raise FindError(f"reward function {self.name} returned shape {tuple(out.shape)}; it must return shape ({images.shape[0]},), one value per image.")
        return out.detach().to(device=images.device, dtype=torch.float32)


# --------------------------------------------------------------------------------------------
# Linear combination and the factory
# --------------------------------------------------------------------------------------------


def reward_range(fn) -> tuple[float, float] | None:
    """A reward's declared `value_range = (lo, hi)` (the values it can take), checked, or None when it
    declares none. The built-in detector declares (0, 2); a `module:function` reward may set the
    attribute on its function."""
    rng = getattr(fn, "value_range", None)
    if rng is None:
        return None
    lo, hi = (float(x) for x in rng)
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise FindError(f"a reward's value_range must be two finite numbers lo < hi (got {rng!r})")
    return lo, hi


def reward_span(fn) -> float | None:
    """hi - lo of `reward_range(fn)`, or None. TrainConfig.adv_std_floor is a fraction of this span."""
    rng = reward_range(fn)
    return None if rng is None else rng[1] - rng[0]


class CombinedReward:
    """sum_k w_k * r_k(images, prompts); each component built once, at construction."""

    def __init__(self, components: list[tuple[str, float, Callable]]):
        self.components = components
        self.spec = canonical_spec([(n, w) for n, w, _ in components])
        # The sum's range, when every component declares one: each w_k·[lo_k, hi_k] (ends swapped for
        # w_k < 0) summed, so its span is Σ |w_k| · span_k.
        ranges = [reward_range(fn) for _, _, fn in components]
        if all(r is not None for r in ranges):
            ends = [sorted((w * lo, w * hi)) for (_, w, _), (lo, hi) in zip(components, ranges)]
            self.value_range = (sum(e[0] for e in ends), sum(e[1] for e in ends))

    def component_values(self, images: torch.Tensor, prompts: list[str]) -> dict[str, torch.Tensor]:
        """Each component's unweighted (N,) float32 values on the images' device, for logging."""
        _check_images(images, prompts)
        video = images.ndim == 5
        # A user function gets what the model makes (images, or videos (N, F, 3, H, W)); the built-in
        # image rewards score videos frame by frame, averaged (over_frames).
        return {n: (over_frames(fn, images, prompts) if video and not getattr(fn, "accepts_video", False)
                    else fn(images, prompts)).to(device=images.device, dtype=torch.float32)
                for n, _, fn in self.components}

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        values = self.component_values(images, prompts)
        total = torch.zeros(images.shape[0], dtype=torch.float32, device=images.device)
        for name, weight, _ in self.components:
            total = total + weight * values[name]
        return total


def build_reward(
    spec: str | list[str],
    device: torch.device,
    dtype: torch.dtype | None = None,
    reward_model: str | None = None,
) -> Reward:
    """Build the reward named by `spec` on `device` (fp16 on CUDA, fp32 on the CPU unless `dtype`).

    `reward_model` selects the CLIP for `clip`: None -> ViT-L-14:openai, "builtin" -> the shapes
    model's CLIP, "ARCH:TAG" or "ARCH:/path/ckpt". Missing packages or weights raise FindError now.
    """
    device = torch.device(device)
    model_dtype = _model_dtype(device, dtype)
    components: list[tuple[str, float, Callable]] = []
    for name, weight in parse_reward_spec(spec):
        if name == "clip":
            fn: Callable = ClipScore(reward_model, device, model_dtype)
        elif name == "pickscore":
            fn = PickScore(device, model_dtype)
        elif name == "imagereward":
            fn = ImageRewardScore(device, model_dtype)
        elif name == "hpsv2":
            fn = HpsV2(device, model_dtype)
        elif name == "find-shapes-detector":
            from findcli import shapes

            fn = shapes.detector_reward(device)
        elif name == "find-shapes-video-clip":
            from findcli import shapes

            fn = shapes.video_clip_reward(device)
        else:
            fn = UserReward(name)
        components.append((name, weight, fn))
    return CombinedReward(components)
