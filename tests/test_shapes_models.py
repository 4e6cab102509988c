"""The shipped built-in models: they load offline through the stock libraries, fit the size limits, and work.

Oracles: stock diffusers (`StableDiffusionPipeline.from_pretrained`), open_clip's own loader and
tokenizer, and the renderer's ground truth (true captions vs. their hard negatives).
Tests that need the trained weights skip, with the reason, when the weights are not in the tree.
"""

from __future__ import annotations

import json

import pytest
import torch

from findcli.shapes import models as M

MODEL = M.BUILTIN_MODEL_DIR
MB = 1_000_000  # limits are decimal megabytes, the stricter reading of "16 MB"

needs_pipeline = pytest.mark.skipif(
    not (MODEL / "unet" / "diffusion_pytorch_model.safetensors").is_file(),
    reason="built-in generator weights not trained yet (python -m findcli.shapes.training all --preset cpu)",
)
needs_clip = pytest.mark.skipif(
    not M.CLIP_CHECKPOINT.is_file(),
    reason="built-in CLIP weights not trained yet (python -m findcli.shapes.training clip --preset cpu)",
)

PROMPTS = ["a red cube on a blue sphere", "three purple pyramids", "a white sphere to the left of a green cube", ""]


def test_tokenizer_matches_open_clip_ids(tmp_path):
    """The generator's CLIPTokenizer, built from open_clip's BPE file, gives open_clip's token ids."""
    import open_clip

    M.write_tokenizer(tmp_path)
    hf = M.load_tokenizer(tmp_path)
    oc = open_clip.tokenizer.SimpleTokenizer()
    for p in PROMPTS:
        ids = hf(p).input_ids
        assert ids == [oc.sot_token_id] + oc.encode(p) + [oc.eot_token_id], p
    assert len(hf) == M.VOCAB_SIZE


@needs_pipeline
def test_shipped_files_within_size_limits():
    files = [f for f in MODEL.rglob("*") if f.is_file()]
    for f in files:
        assert f.stat().st_size < 16 * MB, f
    generator = [f for f in files if f.parent.name != "clip"]
    assert sum(f.stat().st_size for f in generator) < 40 * MB
    weights = [f for f in files if f.suffix == ".safetensors"]
    assert {f.parent.name for f in weights} >= {"unet", "vae", "text_encoder"}


@needs_pipeline
def test_shipped_weights_are_fp16_safetensors():
    from safetensors import safe_open

    for f in MODEL.rglob("*.safetensors"):
        with safe_open(str(f), framework="pt") as st:
            dtypes = {st.get_slice(k).get_dtype() for k in st.keys()}
        assert dtypes == {"F16"}, (f, dtypes)


@needs_pipeline
def test_pipeline_loads_offline_with_stock_diffusers_and_makes_a_64px_image():
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    index = json.loads((MODEL / "model_index.json").read_text())
    assert index["requires_safety_checker"] is False
    pipe = StableDiffusionPipeline.from_pretrained(str(MODEL), local_files_only=True)
    assert pipe.safety_checker is None and pipe.feature_extractor is None
    # fp16 files, fp32 modules by default: a half text encoder would break a float UNet on the CPU.
    assert {m.dtype for m in (pipe.unet, pipe.vae, pipe.text_encoder)} == {torch.float32}
    assert isinstance(pipe.scheduler, DDIMScheduler)
    assert pipe.scheduler.config.clip_sample is False
    out = pipe(
        "a red cube on a blue sphere",
        num_inference_steps=3,
        guidance_scale=6.0,
        height=64,
        width=64,
        output_type="pt",
        generator=torch.Generator().manual_seed(0),
    ).images
    assert out.shape == (1, 3, 64, 64)
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


@needs_pipeline
def test_vae_scaling_factor_gives_unit_std_latents():
    """scaling_factor was set to 1/std of posterior samples on biased scenes; check it on fresh ones.

    Tolerance: the factor was measured on 256 images and is checked on 32 (32k latent elements), so
    sampling error is a few percent; fp16 storage adds < 0.1%. [0.8, 1.25] only catches a stale or
    unset factor (1.0 where the latents' std is far from 1).
    """
    from diffusers import AutoencoderKL

    from findcli.shapes.world import render, sample_specs

    vae = AutoencoderKL.from_pretrained(str(MODEL / "vae")).eval()
    g = torch.Generator().manual_seed(123)
    x = render(sample_specs(32, g, biased=True), g, size=64)
    with torch.no_grad():
        z = vae.encode(x * 2 - 1).latent_dist.sample(g) * vae.config.scaling_factor
    assert 0.8 < z.std().item() < 1.25


@needs_clip
def test_builtin_clip_loads_via_open_clip_and_ranks_true_captions_above_hard_negatives():
    """Held-out scenes (a seed the training never draws from): true caption vs. each hard negative.

    The full 1000-scene measurement (>= 95%) is in benchmarks/TRAINING_LOG.md; 100 scenes × 3
    negatives keep this fast, and 0.9 leaves room for the sampling error of ~300 pairs (±2% at 1σ).
    """
    import open_clip

    from findcli.shapes.training.clip import clip_accuracy

    name, ckpt = M.builtin_clip_spec()
    model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=ckpt)
    tokenizer = open_clip.get_tokenizer(name)
    assert preprocess.transforms[0].size == 64
    acc = clip_accuracy(model, tokenizer, n=100, k=3, seed=987_654)
    assert acc["pair_acc"] >= 0.9, acc
    # Against every structural swap (count: 98.9% on 1000 scenes; relation: 66.0%, the CLIP's known
    # weakness on clean renders, see TRAINING_LOG "Reward CLIP v2"); floors that a broken or
    # bag-of-words model (relation at ~50%) fails.
    assert acc["structural_acc_count"] >= 0.9, acc
    assert acc["structural_acc_relation"] >= 0.58, acc


@needs_pipeline
@needs_clip
def test_builtin_clip_sees_the_example_relation_on_the_generators_own_images():
    """Oracle: the programmatic judge. On 128 N(0, I) samples of the example prompt (DDIM 20, CFG 7.5,
    eval seed 7), the CLIP score must rank the judge's successes above its failures. Shipped v2
    weights: AUC 0.643 on this draw (the "eval" noise namespace since 2026-12-01) and 0.747 on the
    draw this test used before (raw seed 7), so n = 128 leaves about ±0.05 of sampling noise; v1, with
    which FIND failed, had 0.59. The floor 0.60 catches a return to a CLIP that cannot see "on"; the
    default reward of the built-in model is now the detector (tests/test_shapes_detector.py)."""
    from findcli.evaluation import rank_auc
    from findcli.pipeline import SamplerSettings, load_pipeline
    from findcli.rewards import OpenClipScorer, resolve_clip_model
    from findcli.sampling import draw
    from findcli.shapes.judge import judge
    from findcli.shapes.world import parse_prompt

    prompt = "a red cube on a blue sphere"
    pipe = load_pipeline(None, torch.device("cpu"), torch.float32)
    images = draw(pipe, prompt, SamplerSettings(20, 7.5, 0.0), 7, 128, None, True, 32).baseline_images
    ok, _ = judge(images, parse_prompt(prompt))
    assert 8 <= int(ok.sum()) <= 64  # enough of each class for the AUC to mean something
    score = OpenClipScorer(*resolve_clip_model("builtin"), torch.device("cpu"), torch.float32).cosine(images, [prompt] * 128)
    auc = rank_auc(score, ok)
    assert auc >= 0.60, auc
