"""Half-precision UNets on the CPU attend in fp32 (findcli.pipeline.Fp32AttnProcessor), and what
`--dtype auto` means per model (findcli.pipeline.resolve_dtype).

Oracles:
  * one diffusers `Attention` module run by diffusers' plain `AttnProcessor` in float64, on inputs
    that are exactly representable in bf16: the fp32-attention path must land within bf16's output
    rounding of it (|err| <= 2^-8 relative to the output's scale: it is cast back to bf16 once);
  * a tiny AnimateDiff pipeline in fp32 with the stock SDPA processor: the same pipeline cast to bf16
    and configured for the CPU keeps every non-attention weight in bf16, every attention weight in
    fp32, and its videos stay within bf16 rounding accumulated over a 2-step rollout of the fp32 ones;
  * the dtype table written out by hand (CPU/CUDA x built-in image/video/other x native bf16 or not).
"""

import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor, AttnProcessor2_0

from findcli import pipeline as P
from findcli import shapes
from findcli.generators import SamplerSettings, generator_for
from findcli.testing_unet_video import build_tiny_animatediff

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one intra-op thread for the module


def _bf16_exact(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(torch.bfloat16)


@pytest.mark.parametrize("batch,seq,context", [(37, 8, None), (3, 21, 5), (1, 1, None)])
def test_fp32_attention_in_a_bf16_module_matches_float64_plain_processor(batch, seq, context):
    """Temporal-like (many sequences of 8), cross-attention with an odd context length, a single token."""
    torch.manual_seed(0)
    attn = Attention(query_dim=24, heads=3, dim_head=8, cross_attention_dim=16 if context else None, bias=True)
    x = _bf16_exact(batch, seq, 24, seed=1)
    enc = _bf16_exact(batch, context, 16, seed=2) if context else None

    ref_mod = Attention(query_dim=24, heads=3, dim_head=8, cross_attention_dim=16 if context else None, bias=True)
    ref_mod.load_state_dict(attn.state_dict())
    ref_mod.double().set_processor(AttnProcessor())
    with torch.no_grad():
        ref = ref_mod(x.double(), encoder_hidden_states=None if enc is None else enc.double())

    attn.float().set_processor(P.Fp32AttnProcessor())  # what configure_pipeline does to each Attention
    with torch.no_grad():
        out = attn(x, encoder_hidden_states=enc)
    assert out.dtype == torch.bfloat16 and out.shape == ref.shape
    scale = ref.abs().max().item()
    err = (out.double() - ref).abs().max().item()
    assert err <= 2 ** -8 * scale, (err, scale)


@pytest.fixture(scope="module")
def video_pipes():
    ref = build_tiny_animatediff()
    P.configure_pipeline(ref, attention="sdpa")  # fp32: the stock SDPA processor
    half = build_tiny_animatediff()
    half.to(torch.bfloat16)
    used = P.configure_pipeline(half, attention="sdpa")
    return ref, half, used


def test_bf16_unet_on_cpu_attends_in_fp32_and_keeps_the_rest_bf16(video_pipes):
    ref, half, used = video_pipes
    assert used["attention"] == "sdpa" and used["attention_dtype"] == "fp32"
    attn_params = {id(p) for m in half.unet.modules() if isinstance(m, Attention) for p in m.parameters()}
    assert attn_params, "the tiny UNet has attention modules"
    for p in half.unet.parameters():
        assert p.dtype == (torch.float32 if id(p) in attn_params else torch.bfloat16)
    assert {type(p) for p in half.unet.attn_processors.values()} == {P.Fp32AttnProcessor}
    # The fp32 pipeline is left as before: stock processors, nothing cast.
    assert {type(p) for p in ref.unet.attn_processors.values()} == {AttnProcessor2_0}
    assert all(p.dtype == torch.float32 for p in ref.unet.parameters())


def test_bf16_video_rollout_with_fp32_attention_stays_near_fp32_rollout(video_pipes):
    ref, half, _ = video_pipes
    settings = SamplerSettings(steps=2, guidance=4.0, frames=3)
    z = torch.randn(3, 4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    a = generator_for(ref, "a red cube", settings, max_batch=16)(z).float()
    b = generator_for(half, "a red cube", settings, max_batch=16)(z).float()
    assert a.shape == b.shape and torch.isfinite(b).all()
    # bf16 keeps 8 bits of mantissa: each of the ~50 layers of 2 UNet steps and the decoder rounds by
    # <= 2^-9 relative; pixels in [0, 1] then move by well under 2 grey levels on average. Observed:
    # mean 0.0026, max 0.020 (all-bf16 attention: 0.0027, 0.017; fp32 attention is for speed on CPU).
    assert (a - b).abs().mean() < 2 / 255, (a - b).abs().mean()
    assert (a - b).abs().max() < 0.1, (a - b).abs().max()


def test_fp16_weights_on_cpu_also_attend_in_fp32():
    pipe = build_tiny_animatediff()
    pipe.unet.to(torch.float16)
    assert P.configure_pipeline(pipe, attention="sdpa")["attention_dtype"] == "fp32"


@pytest.mark.parametrize("native", [True, False])
def test_auto_dtype_table(monkeypatch, native, tmp_path):
    monkeypatch.setattr(P, "cpu_has_native_bf16", lambda: native)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    video = torch.bfloat16 if native else torch.float32
    assert P.resolve_dtype("auto", cpu, "builtin-video") == video
    assert P.resolve_dtype("auto", cpu, str(shapes.VIDEO_MODEL_DIR)) == video  # the shipped folder by path
    for model in (None, "builtin", str(tmp_path), "org/some-model"):
        assert P.resolve_dtype("auto", cpu, model) == torch.float32
    for model in (None, "builtin", "builtin-video", "org/some-model"):
        assert P.resolve_dtype("auto", cuda, model) == torch.float16
    # An explicit choice is never overridden.
    assert P.resolve_dtype("fp32", cpu, "builtin-video") == torch.float32
    assert P.resolve_dtype("bf16", cpu, "builtin") == torch.bfloat16
