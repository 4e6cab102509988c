"""Shared test fixtures: tiny seeded diffusers components built on the CPU, no downloads."""

import os

# Triton kernels run on the CPU through the interpreter in CI; must be set before triton is imported.
os.environ.setdefault("TRITON_INTERPRET", "1")
# Nothing in the test suite may reach a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))


def build_tiny_pipeline():
    """A StableDiffusionPipeline of random tiny components (in the spirit of diffusers' own
    get_dummy_components): latent 4×8×8, images 16×16, a 2-layer CLIP text encoder whose tokenizer
    is built from open_clip's bundled BPE file."""
    import tempfile

    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from findcli.shapes.models import write_tokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16, norm_num_groups=4, attention_head_dim=4,
    )
    vae = AutoencoderKL(
        block_out_channels=(8, 16), in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=4,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2, sample_size=16,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=16, intermediate_size=32, num_attention_heads=2, num_hidden_layers=2,
        max_position_embeddings=32, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407, projection_dim=16,
    ))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    with tempfile.TemporaryDirectory() as d:
        write_tokenizer(d)
        tokenizer = CLIPTokenizer.from_pretrained(d)
    return StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


@pytest.fixture(scope="session")
def tiny_pipeline_dir(tmp_path_factory):
    """The tiny pipeline saved with save_pretrained: what `--model PATH` loads."""
    path = tmp_path_factory.mktemp("tiny-sd")
    build_tiny_pipeline().save_pretrained(path)
    return path
