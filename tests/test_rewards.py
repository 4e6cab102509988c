"""Tests for findcli.rewards: spec parsing, tensor preprocessing, CLIPScore, user functions, error paths.

Everything runs on the CPU, offline, against a tiny random open_clip model (tests/_tiny_clip.py).
Oracles: open_clip's own eval transform and encode_image/encode_text evaluated in float64; the
weighted sum of separately built components; hand-written expected parse results.
"""

from __future__ import annotations

import socket
import sys
import types

import open_clip
import pytest
import torch

from _tiny_clip import make_tiny_clip, make_tiny_pickscore
from findcli import rewards
from findcli.errors import FindError
from findcli.rewards import build_reward, canonical_spec, parse_reward_spec, preprocess_images

PROMPTS = ["a red circle", "a blue square", "a red circle", "two green triangles", "noise", "a cat"]


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> str:
    return make_tiny_clip(tmp_path_factory.mktemp("tiny_clip"))


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """An empty HF cache and HOME, and no sockets: any lookup must fail fast with FindError."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))

    def no_network(*args, **kwargs):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)


def _mid_range_images(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    # Values in [0.3, 0.7]: antialiased bicubic overshoot is a fraction of the input range (< 0.2 of
    # 0.4 here), so results stay inside [0, 1] and the PIL-mimicking clamp in preprocess_images is
    # inactive — which lets open_clip's own (unclamped) tensor transform serve as the oracle.
    g = torch.Generator().manual_seed(seed)
    return 0.3 + 0.4 * torch.rand(n, 3, h, w, generator=g)


def _float64_reference(tiny_clip: str, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
    """cos(image, text) with open_clip's own model, eval transform and tokenizer, all in float64."""
    arch, ckpt = tiny_clip.split(":", 1)
    model, _, preprocess_val = open_clip.create_model_and_transforms(arch, pretrained=ckpt)
    model = model.double().eval()
    with torch.no_grad():
        pixels = torch.stack([preprocess_val(img) for img in images.double()])
        img = model.encode_image(pixels)
        txt = model.encode_text(open_clip.get_tokenizer(arch)(prompts))
    img = img / img.norm(dim=-1, keepdim=True)
    txt = txt / txt.norm(dim=-1, keepdim=True)
    return (img * txt).sum(-1)


# ---------------------------------------------------------------------------------------------
# Spec parsing
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("clip", [("clip", 1.0)]),
        ("CLIP", [("clip", 1.0)]),
        ("clip=1,pickscore=0.5", [("clip", 1.0), ("pickscore", 0.5)]),
        (["clip=1", "m:f=2"], [("clip", 1.0), ("m:f", 2.0)]),
        (" clip = 2.5 , hpsv2=-1 ", [("clip", 2.5), ("hpsv2", -1.0)]),
        ("pkg.mod:score=1e-1", [("pkg.mod:score", 0.1)]),
        ("path/to/my_reward.py:score", [("path/to/my_reward.py:score", 1.0)]),
        (["imagereward,clip=3"], [("imagereward", 1.0), ("clip", 3.0)]),
    ],
)
def test_parse_reward_spec_matches_hand_written_expectation(spec, expected):
    assert parse_reward_spec(spec) == expected


@pytest.mark.parametrize(
    "spec, fragment",
    [
        ("", "clip, pickscore, imagereward, hpsv2, find-shapes-detector, find-shapes-video-clip, or module:function"),
        ("clipp", "clip, pickscore, imagereward, hpsv2, find-shapes-detector, find-shapes-video-clip, or module:function"),
        ("clip=abc", "not a number"),
        ("clip=nan", "finite non-zero"),
        ("clip=inf", "finite non-zero"),
        ("clip=0", "finite non-zero"),
        ("clip,clip=2", "twice"),
        (":f", "module:function"),
        ("mod:not-an-identifier", "module:function"),
    ],
)
def test_parse_reward_spec_errors_say_what_is_valid(spec, fragment):
    with pytest.raises(FindError) as info:
        parse_reward_spec(spec)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_canonical_spec_round_trips():
    parsed = parse_reward_spec("clip, mymod:score=0.5")
    assert canonical_spec(parsed) == "clip=1.0,mymod:score=0.5"
    assert parse_reward_spec(canonical_spec(parsed)) == parsed


# ---------------------------------------------------------------------------------------------
# Tensor preprocessing
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n, h, w", [(3, 40, 48), (1, 32, 32), (2, 20, 28), (2, 64, 33)])
def test_preprocess_matches_open_clip_eval_transform_in_float64(tiny_clip, n, h, w):
    arch, ckpt = tiny_clip.split(":", 1)
    model, _, preprocess_val = open_clip.create_model_and_transforms(arch, pretrained=ckpt)
    cfg = model.visual.preprocess_cfg
    images = _mid_range_images(n, h, w)
    expected = torch.stack([preprocess_val(img) for img in images.double()])
    got = preprocess_images(images, cfg["size"], cfg["mean"], cfg["std"], cfg["interpolation"], cfg["resize_mode"])
    assert got.shape == expected.shape == (n, 3, 32, 32)
    assert got.dtype == torch.float32
    # float32 vs float64 arithmetic on values of magnitude <= ~3 after normalisation: ~1e-6 error.
    torch.testing.assert_close(got.double(), expected, atol=1e-5, rtol=1e-5)


def test_preprocess_clamps_resized_values_like_pil_uint8():
    # A 0/1 checkerboard makes bicubic overshoot below 0 and above 1; PIL stores uint8, so clamp.
    board = ((torch.arange(40)[:, None] + torch.arange(40)[None, :]) % 2).float().expand(1, 3, 40, 40)
    out = preprocess_images(board, 32, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    assert out.min() >= 0.0 and out.max() <= 1.0


@pytest.mark.parametrize("mode, h, w", [("squash", 40, 20), ("longest", 40, 20)])
def test_preprocess_squash_and_longest_shapes(mode, h, w):
    out = preprocess_images(torch.full((2, 3, h, w), 0.5), 32, (0.5,) * 3, (0.5,) * 3, resize_mode=mode)
    assert out.shape == (2, 3, 32, 32)
    if mode == "longest":
        # 40x20 -> 32x16 centred, padded with fill colour 0 -> (0 - 0.5) / 0.5 = -1 at the sides.
        # The resized constant carries fp32 rounding of the interpolation weights (~1e-7).
        assert torch.all(out[..., :, :8] == -1.0) and torch.all(out[..., :, 24:] == -1.0)
        torch.testing.assert_close(out[..., :, 8:24], torch.zeros(2, 3, 32, 16), atol=1e-6, rtol=0)


# ---------------------------------------------------------------------------------------------
# CLIPScore
# ---------------------------------------------------------------------------------------------


def test_clip_reward_matches_float64_clipscore_reference(tiny_clip):
    images = _mid_range_images(len(PROMPTS), 40, 48, seed=1)
    reward = build_reward("clip", torch.device("cpu"), reward_model=tiny_clip)
    cos_ref = _float64_reference(tiny_clip, images, PROMPTS)
    # The random tiny model gives cosines of both signs, so the max(cos, 0) clamp is exercised.
    assert (cos_ref > 0).any() and (cos_ref < 0).any()
    scorer = reward.components[0][2].scorer
    # fp32 two-layer width-32 model vs float64: ~1e-6 absolute on unit-norm dot products.
    torch.testing.assert_close(scorer.cosine(images, PROMPTS).double(), cos_ref, atol=1e-5, rtol=0)
    expected = 2.5 * cos_ref.clamp_min(0)
    got = reward(images, PROMPTS)
    assert got.shape == (len(PROMPTS),) and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), expected, atol=2.5e-5, rtol=0)
    assert reward.spec == "clip=1.0"


def test_clip_reward_is_chunk_invariant_and_gradient_free(tiny_clip, monkeypatch):
    images = _mid_range_images(5, 32, 32, seed=2).requires_grad_(True)
    prompts = PROMPTS[:5]
    reward = build_reward("clip", "cpu", reward_model=tiny_clip)
    whole = reward(images, prompts)
    monkeypatch.setattr(rewards, "IMAGE_CHUNK", 2)  # chunks of 2, 2, 1
    chunked = reward(images, prompts)
    # Same fp32 kernels on smaller batches: identical up to reduction-order rounding.
    torch.testing.assert_close(chunked, whole, atol=1e-6, rtol=0)
    assert not whole.requires_grad


def test_clip_text_features_encoded_once_per_prompt(tiny_clip):
    reward = build_reward("clip", "cpu", reward_model=tiny_clip)
    scorer = reward.components[0][2].scorer
    calls = []
    tokenizer = scorer.tokenizer

    def counting_tokenizer(texts, *args, **kwargs):
        calls.append(list(texts))
        return tokenizer(texts, *args, **kwargs)

    scorer.tokenizer = counting_tokenizer
    images = _mid_range_images(len(PROMPTS), 32, 32)
    first = reward(images, PROMPTS)
    second = reward(images, PROMPTS)
    assert calls == [list(dict.fromkeys(PROMPTS))]  # one batch of distinct prompts, never again
    torch.testing.assert_close(first, second, atol=0, rtol=0)


def test_builtin_reward_model_resolves_through_shapes_module(tiny_clip, monkeypatch):
    """`--reward-model builtin` asks the seam, findcli.shapes.builtin_clip_spec, for its CLIP."""
    import findcli.shapes

    arch, ckpt = tiny_clip.split(":", 1)
    asked = []
    monkeypatch.setattr(findcli.shapes, "builtin_clip_spec", lambda: (asked.append(True), (arch, ckpt))[1])
    images = _mid_range_images(3, 48, 48)
    builtin = build_reward("clip", "cpu", reward_model="builtin")(images, PROMPTS[:3])
    explicit = build_reward("clip", "cpu", reward_model=tiny_clip)(images, PROMPTS[:3])
    assert asked == [True]
    torch.testing.assert_close(builtin, explicit, atol=0, rtol=0)


def test_builtin_architecture_with_other_weights_registers_itself(tmp_path, monkeypatch):
    """`--reward-model find-shapes-clip:/path` (e.g. a retrained reward CLIP) works in a process where
    nothing has registered the built-in config yet."""
    from open_clip import factory

    from findcli.rewards import resolve_clip_model
    from findcli.shapes import models as shapes_models

    monkeypatch.delitem(factory._MODEL_CONFIGS, shapes_models.CLIP_NAME, raising=False)
    ckpt = tmp_path / "other.safetensors"
    ckpt.write_bytes(b"x")
    assert resolve_clip_model(f"{shapes_models.CLIP_NAME}:{ckpt}") == (shapes_models.CLIP_NAME, str(ckpt), {})
    assert shapes_models.CLIP_NAME in open_clip.list_models()


def test_builtin_shapes_clip_config_goes_through_the_open_clip_path(tmp_path, monkeypatch):
    # The real built-in config (context length 32, 64 px images) with seeded random weights, since
    # the trained checkpoint may not exist yet; the float64 oracle uses the same architecture.
    from findcli.shapes import models as shapes_models

    shapes_models.register_builtin_clip()
    torch.manual_seed(0)
    ckpt = tmp_path / "builtin_random.pt"
    torch.save(open_clip.create_model(shapes_models.CLIP_NAME).state_dict(), ckpt)
    monkeypatch.setattr(shapes_models, "CLIP_CHECKPOINT", ckpt)
    images = _mid_range_images(3, 64, 64)
    got = build_reward("clip", "cpu", reward_model="builtin")(images, PROMPTS[:3])
    cos_ref = _float64_reference(f"{shapes_models.CLIP_NAME}:{ckpt}", images, PROMPTS[:3])
    # fp32 4-layer width-128 model vs float64, times 2.5: a few 1e-6 absolute.
    torch.testing.assert_close(got.double(), 2.5 * cos_ref.clamp_min(0), atol=2.5e-5, rtol=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_clip_reward_fp16_on_cuda_matches_fp32_cpu(tiny_clip):
    images = _mid_range_images(8, 64, 64)
    reward_gpu = build_reward("clip", torch.device("cuda"), reward_model=tiny_clip)
    assert next(reward_gpu.components[0][2].scorer.model.parameters()).dtype == torch.float16
    got = reward_gpu(images.cuda(), PROMPTS + PROMPTS[:2])
    assert got.device.type == "cuda" and got.dtype == torch.float32
    ref = build_reward("clip", "cpu", reward_model=tiny_clip)(images, PROMPTS + PROMPTS[:2])
    # fp16 has a 2^-11 ~ 5e-4 unit roundoff; a few layers of accumulation, times 2.5: 1e-2 absolute.
    torch.testing.assert_close(got.cpu(), ref, atol=1e-2, rtol=0)


def test_pickscore_matches_float64_clip_forward_logits(tmp_path):
    # A tiny random CLIPModel + processor stand in for PickScore_v1 (same classes, same loading with
    # local_files_only=True). Oracle: the stock CLIPModel forward in float64, whose logits_per_image
    # diagonal is logit_scale.exp() * cos(image_i, text_i).
    from transformers import CLIPModel, CLIPTokenizer

    model_dir, processor_dir = make_tiny_pickscore(tmp_path)
    scorer = rewards.PickScore(torch.device("cpu"), torch.float32, model_id=model_dir, processor_id=processor_dir)
    images = _mid_range_images(4, 40, 36, seed=4)
    prompts = PROMPTS[:4]
    got = scorer(images, prompts)

    ref_model = CLIPModel.from_pretrained(model_dir, local_files_only=True).double().eval()
    tokens = CLIPTokenizer.from_pretrained(processor_dir, local_files_only=True)(prompts, padding=True, return_tensors="pt")
    pixels = preprocess_images(images.double(), 32, scorer.mean, scorer.std).double()  # checked against open_clip above
    with torch.no_grad():
        logits = ref_model(pixel_values=pixels, **tokens).logits_per_image  # (N, N)
    expected = logits.diagonal()
    assert got.shape == (4,) and got.dtype == torch.float32
    # logit_scale.exp() = 1/0.07 ~ 14.3 times an fp32 cosine error of ~1e-6: 1e-4 absolute.
    torch.testing.assert_close(got.double(), expected, atol=1e-4, rtol=0)


# ---------------------------------------------------------------------------------------------
# User functions and linear combination
# ---------------------------------------------------------------------------------------------

USER_MODULE = """
import torch

def score(images, prompts):
    # mean brightness plus prompt length: easy to recompute in the test
    return images.mean(dim=(1, 2, 3)) + torch.tensor([len(p) for p in prompts], dtype=images.dtype)

def wrong_shape(images, prompts):
    return torch.zeros(len(prompts), 1)

def non_finite(images, prompts):
    return torch.full((len(prompts),), float("nan"))

not_callable = 3
"""


@pytest.fixture
def user_file(tmp_path):
    path = tmp_path / "my_reward.py"
    path.write_text(USER_MODULE)
    return path


def _user_expected(images, prompts):
    return images.double().mean(dim=(1, 2, 3)) + torch.tensor([len(p) for p in prompts], dtype=torch.float64)


def test_user_function_from_file_path(user_file):
    images = _mid_range_images(4, 16, 16)
    reward = build_reward(f"{user_file}:score", "cpu")
    # float32 mean of 768 values in [0.3, 0.7] plus an integer: ~1e-6 absolute.
    torch.testing.assert_close(reward(images, PROMPTS[:4]).double(), _user_expected(images, PROMPTS[:4]), atol=1e-5, rtol=0)


def test_user_function_from_dotted_module(user_file, monkeypatch):
    package = user_file.parent / "findtest_rewards_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "scoring.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(user_file.parent))
    images = _mid_range_images(2, 8, 8)
    got = build_reward("findtest_rewards_pkg.scoring:score=2", "cpu")(images, PROMPTS[:2])
    torch.testing.assert_close(got.double(), 2 * _user_expected(images, PROMPTS[:2]), atol=2e-5, rtol=0)


def test_linear_combination_equals_weighted_sum_of_components(tiny_clip, user_file):
    images = _mid_range_images(len(PROMPTS), 40, 40, seed=3)
    combined = build_reward(["clip=0.5", f"{user_file}:score=-2"], "cpu", reward_model=tiny_clip)
    clip_alone = build_reward("clip", "cpu", reward_model=tiny_clip)(images, PROMPTS)
    user_alone = build_reward(f"{user_file}:score", "cpu")(images, PROMPTS)
    # Same fp32 components, one multiply-add each: exact up to one rounding of the sum.
    torch.testing.assert_close(combined(images, PROMPTS), 0.5 * clip_alone - 2 * user_alone, atol=1e-5, rtol=0)
    assert combined.spec == f"clip=0.5,{user_file}:score=-2.0"
    values = combined.component_values(images, PROMPTS)
    assert list(values) == ["clip", f"{user_file}:score"]


def test_user_function_non_finite_values_pass_through(user_file):
    got = build_reward(f"{user_file}:non_finite", "cpu")(torch.rand(3, 3, 8, 8), PROMPTS[:3])
    assert got.shape == (3,) and torch.isnan(got).all()


@pytest.mark.parametrize(
    "target, fragment",
    [
        ("{file}:missing", "has no function 'missing'"),
        ("{file}:not_callable", "has no function 'not_callable'"),
        ("{dir}/nope.py:score", "does not exist"),
        ("findtest_no_such_module_xyz:score", "cannot import reward module"),
    ],
)
def test_user_function_load_errors(user_file, target, fragment):
    spec = target.format(file=user_file, dir=user_file.parent)
    with pytest.raises(FindError) as info:
        build_reward(spec, "cpu")
    assert fragment in str(info.value)


def test_user_function_wrong_shape_is_a_find_error(user_file):
    reward = build_reward(f"{user_file}:wrong_shape", "cpu")
    with pytest.raises(FindError, match=r"shape \(3, 1\).*shape \(3,\)"):
        reward(torch.rand(3, 3, 8, 8), PROMPTS[:3])


def test_prompt_count_must_match_images(user_file):
    reward = build_reward(f"{user_file}:score", "cpu")
    with pytest.raises(FindError, match="one prompt per image"):
        reward(torch.rand(3, 3, 8, 8), PROMPTS[:2])


# ---------------------------------------------------------------------------------------------
# Error paths: reward-model strings, uncached hub weights, missing packages
# ---------------------------------------------------------------------------------------------


def test_bare_checkpoint_path_asks_for_arch(tiny_clip):
    ckpt = tiny_clip.split(":", 1)[1]
    with pytest.raises(FindError, match=r"ARCH:.*ViT-L-14:"):
        build_reward("clip", "cpu", reward_model=ckpt)


@pytest.mark.parametrize(
    "reward_model, fragment",
    [
        ("NoSuchArch-99:openai", "unknown open_clip architecture"),
        ("ViT-B-32:/no/such/file.pt", "does not exist"),
        ("ViT-B-32:not_a_tag", "neither an open_clip tag"),
        ("ViT-B-32", "must be ARCH:TAG"),
    ],
)
def test_bad_reward_model_strings(reward_model, fragment):
    with pytest.raises(FindError) as info:
        build_reward("clip", "cpu", reward_model=reward_model)
    assert fragment in str(info.value)


def test_uncached_default_clip_names_file_and_hf_hub_offline(offline):
    with pytest.raises(FindError) as info:
        build_reward("clip", "cpu")  # reward_model None -> ViT-L-14:openai
    message = str(info.value)
    assert "HF_HUB_OFFLINE" in message
    assert "hf download timm/vit_large_patch14_clip_224.openai" in message
    assert "ViT-L-14:/path/to/checkpoint" in message


def test_cached_hub_weights_are_found_without_network(offline, tmp_path):
    # Put a fake file where huggingface_hub's cache layout keeps it; resolution must return it.
    import huggingface_hub.constants

    repo = tmp_path / "hf" / "models--timm--vit_large_patch14_clip_224.openai"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "open_clip_model.safetensors").write_bytes(b"")
    assert huggingface_hub.constants.HF_HUB_CACHE == str(tmp_path / "hf")
    arch, path, cfg = rewards.resolve_clip_model("ViT-L-14:openai")
    assert arch == "ViT-L-14" and path == str(snapshot / "open_clip_model.safetensors")
    assert cfg["quick_gelu"] is True  # the openai tag's activation is forced on the architecture


def test_legacy_openai_download_is_found_and_marked_torchscript(offline, tmp_path):
    # open_clip's pre-hub downloads live in ~/.cache/clip/<basename of url>; when the hub copy is
    # absent that file is used, and it is a TorchScript archive (loaded with weights_only=False).
    url = open_clip.get_pretrained_cfg("ViT-L-14", "openai")["url"]
    legacy = tmp_path / "home" / ".cache" / "clip" / url.rsplit("/", 1)[1]
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(b"")
    arch, path, cfg = rewards.resolve_clip_model("ViT-L-14:openai")
    assert path == str(legacy) and cfg["torchscript"] is True


def test_uncached_pickscore_names_repos_and_hf_hub_offline(offline):
    with pytest.raises(FindError) as info:
        build_reward("pickscore", "cpu")
    message = str(info.value)
    assert "HF_HUB_OFFLINE" in message and "yuvalkirstain/PickScore_v1" in message
    assert "laion/CLIP-ViT-H-14-laion2B-s32B-b79K" in message


def test_uncached_hpsv2_names_file_and_hf_hub_offline(offline):
    with pytest.raises(FindError) as info:
        build_reward("hpsv2", "cpu")
    message = str(info.value)
    assert "HF_HUB_OFFLINE" in message and "hf download xswu/HPSv2 HPS_v2.1_compressed.pt" in message


def test_missing_imagereward_package_names_the_extra(monkeypatch):
    # None in sys.modules makes the import fail whether or not the package is installed.
    monkeypatch.setitem(sys.modules, "ImageReward", None)
    monkeypatch.setitem(sys.modules, "ImageReward.ImageReward", None)
    with pytest.raises(FindError, match=r"pip install 'findcli\[rewards\]'"):
        build_reward("imagereward", "cpu")


def test_uncached_imagereward_weights_name_files_and_hf_hub_offline(offline, monkeypatch):
    package = types.ModuleType("ImageReward")
    module = types.ModuleType("ImageReward.ImageReward")
    module.ImageReward = object
    package.ImageReward = module
    monkeypatch.setitem(sys.modules, "ImageReward", package)
    monkeypatch.setitem(sys.modules, "ImageReward.ImageReward", module)
    with pytest.raises(FindError) as info:
        build_reward("imagereward", "cpu")
    message = str(info.value)
    assert "ImageReward.pt" in message and "med_config.json" in message and "HF_HUB_OFFLINE" in message
    assert "hf download THUDM/ImageReward" in message
