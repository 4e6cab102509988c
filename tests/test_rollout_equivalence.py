"""The throughput options change nothing beyond floating-point rounding.

Oracle: the stock diffusers pipeline call `pipe(prompt=..., latents=z, output_type="pt")` on the CPU
tiny pipeline in fp32, eager, diffusers' plain attention where stated. Each speed option (one batched
call vs chunks of one, PyTorch SDPA vs diffusers' plain AttnProcessor, channels-last, torch.compile)
must give the same images.

Tolerance (ATOL, on images in [0, 1]): these options only reassociate fp32 sums (other kernels, other
blocking, fused reductions). Each layer then moves by O(u · log2 n) relative, u = 6e-8, n ≤ a few
hundred terms (≈ 1e-6), and a rollout here passes ~100 layers (2 steps × UNet + VAE decoder), so
the bound is ~1e-4; observed differences are ~2e-6. 1e-4 is also 1/40 of one 8-bit grey level: a
failure means a change one could see, not rounding.
"""

import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor

from findcli.pipeline import Rollout, SamplerSettings, configure_pipeline, load_pipeline
from findcli.testing import build_tiny_pipeline

ATOL = 1e-4
PROMPT = "a red cube on a blue sphere"
SETTINGS = SamplerSettings(steps=2, guidance=7.5, eta=0.0)  # CFG on: the UNet sees 2 rows per image


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one intra-op thread for the module


@pytest.fixture(scope="module")
def pipe():
    return build_tiny_pipeline()


@pytest.fixture(scope="module")
def z():
    # K = 3: not a power of two, and more than one chunk when max_batch = 1 or 2.
    return torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def stock(pipe, z):
    """The oracle: diffusers' own call, plain attention processor, contiguous memory, eager."""
    pipe.unet.set_attn_processor(AttnProcessor())
    pipe.vae.set_attn_processor(AttnProcessor())
    with torch.no_grad():
        return pipe(prompt=[PROMPT] * z.shape[0], latents=z, num_inference_steps=SETTINGS.steps,
                    guidance_scale=SETTINGS.guidance, eta=SETTINGS.eta, output_type="pt").images.float()


def _plain(pipe):
    """Back to the oracle's configuration."""
    pipe.unet.set_attn_processor(AttnProcessor())
    pipe.vae.set_attn_processor(AttnProcessor())
    pipe.unet.to(memory_format=torch.contiguous_format)
    pipe.vae.to(memory_format=torch.contiguous_format)


def test_rollout_with_sdpa_matches_stock_pipeline_call_with_plain_attention(pipe, z, stock):
    used = configure_pipeline(pipe, attention="sdpa", compile=False, channels_last=False)
    try:
        assert used["attention"] == "sdpa"
        images = Rollout(pipe, PROMPT, SETTINGS, max_batch=16)(z)
        assert images.shape == stock.shape == (3, 3, 16, 16)
        torch.testing.assert_close(images, stock, atol=ATOL, rtol=0)
    finally:
        _plain(pipe)


def test_rollout_with_plain_attention_matches_stock_pipeline_call(pipe, z, stock):
    # Same processor as the oracle: only the prompt-embedding path and the separate decode differ.
    images = Rollout(pipe, PROMPT, SETTINGS, max_batch=16)(z)
    torch.testing.assert_close(images, stock, atol=ATOL, rtol=0)


@pytest.mark.parametrize("max_batch", [1, 2])
def test_chunked_rollout_matches_one_batch(pipe, z, stock, max_batch):
    images = Rollout(pipe, PROMPT, SETTINGS, max_batch=max_batch)(z)
    torch.testing.assert_close(images, stock, atol=ATOL, rtol=0)


def test_channels_last_matches_contiguous(pipe, z, stock):
    used = configure_pipeline(pipe, attention="sdpa", compile=False, channels_last=True)
    try:
        assert used["channels_last"] is True
        assert pipe.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
        images = Rollout(pipe, PROMPT, SETTINGS, max_batch=16)(z)
        torch.testing.assert_close(images, stock, atol=ATOL, rtol=0)
    finally:
        _plain(pipe)


def test_compiled_rollout_matches_eager(z, stock):
    """torch.compile of the UNet and the VAE decoder (inductor, C++ on the CPU). The tiniest
    configuration: compiling takes ~10 s with a warm inductor cache, ~100 s cold on a busy 2-core CPU."""
    pipe = build_tiny_pipeline()  # its own copy: compile wraps the modules
    used = configure_pipeline(pipe, attention="sdpa", compile=True, channels_last=False)
    assert used["compile"] is True
    assert hasattr(pipe.unet, "_orig_mod") and hasattr(pipe.vae.decoder, "_orig_mod")
    images = Rollout(pipe, PROMPT, SETTINGS, max_batch=16)(z)
    torch.testing.assert_close(images, stock, atol=ATOL, rtol=0)


def test_xformers_matches_sdpa(z):
    from findcli.bench import _xformers_reason

    if not torch.cuda.is_available():
        pytest.skip("xformers attention needs a CUDA GPU")
    pipe = build_tiny_pipeline().to("cuda")
    reason = _xformers_reason(pipe)
    if reason is not None:
        pytest.skip(reason)
    xf = Rollout(pipe, PROMPT, SETTINGS)(z.cuda())
    configure_pipeline(pipe, attention="sdpa")
    sdpa = Rollout(pipe, PROMPT, SETTINGS)(z.cuda())
    torch.testing.assert_close(xf, sdpa, atol=ATOL, rtol=0)


def test_rollout_tensors_equal_stock_pipeline_bitwise(tiny_pipeline_dir):
    pipe = load_pipeline(str(tiny_pipeline_dir), torch.device("cpu"), torch.float32)
    z = torch.randn(5, 4, 8, 8, generator=torch.Generator().manual_seed(4))
    ours = Rollout(pipe, PROMPT, SamplerSettings(steps=3, guidance=5.0), max_batch=2)(z)  # chunks of 2, 2, 1
    stock = pipe(PROMPT, latents=z, num_inference_steps=3, guidance_scale=5.0, num_images_per_prompt=5,
                 output_type="pt").images
    # Chunking changes the batch size of every matmul; CPU kernels may reduce in another order then, so
    # compare chunked runs to within fp32 rounding and the unchunked run bit for bit.
    torch.testing.assert_close(ours, stock, rtol=0, atol=1e-5)
    whole = Rollout(pipe, PROMPT, SamplerSettings(steps=3, guidance=5.0), max_batch=16)(z)
    assert torch.equal(whole, stock)
