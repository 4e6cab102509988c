"""The built-in video generator's training stage (`python -m findcli.shapes.training motion`): an
AnimateDiff MotionAdapter on the frozen built-in image generator (findcli.shapes.video.models,
findcli.shapes.training.motion). CPU, one thread, tiny budgets (a few steps, pools of a few clips).

Oracles: the image UNet applied frame by frame (what the zero-initialised motion modules must start
as); the stock `DiffusionPipeline.from_pretrained` / `MotionAdapter.from_pretrained` loaders; findcli's
own AnimateDiff adapter (load_pipeline + Rollout); byte equality of two runs' weight files."""

from pathlib import Path

import pytest
import torch

from findcli.shapes import models as M
from findcli.shapes.training import motion as T
from findcli.shapes.video import models as VM

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: one intra-op thread for the module

TINY = ["pool_size=4", "batch=2", "eval_clips=2", "log_every=1", "warmup=1"]
WEIGHTS = ("unet/diffusion_pytorch_model.safetensors", "motion_adapter/diffusion_pytorch_model.safetensors")


def run_stage(out: Path, seed: int = 0, steps: int = 2) -> None:
    from findcli.shapes.training.__main__ import main

    try:
        main(["motion", "--seed", str(seed), "--steps", str(steps), "--out", str(out), "--set", *TINY])
    finally:
        torch.set_flush_denormal(False)  # main() sets it for the process


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("motion") / "pipe"
    run_stage(out)
    return out


@pytest.fixture(scope="module")
def parts():
    return T.load_parts(M.BUILTIN_MODEL_DIR)


def test_motion_unet_starts_as_the_image_unet_frame_by_frame(parts):
    from diffusers import UNetMotionModel

    unet2d, *_ = parts
    model = UNetMotionModel.from_unet2d(unet2d, VM.build_motion_adapter(0)).eval()
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 4, 3, 16, 16, generator=g)  # (B, C, F, h, w)
    cond = torch.randn(2, 32, 128, generator=g)
    t = torch.tensor([10, 700])
    with torch.no_grad():
        video = model(z, t, cond.repeat_interleave(3, dim=0)).sample
        frames = unet2d(z.transpose(1, 2).flatten(0, 1), t.repeat_interleave(3), cond.repeat_interleave(3, dim=0)).sample
    torch.testing.assert_close(video, frames.view(2, 3, 4, 16, 16).transpose(1, 2), rtol=0, atol=1e-5)


def test_a_few_steps_reduce_the_loss_on_a_fixed_batch_and_move_only_the_motion_modules(parts):
    unet2d, vae, text, tok, sched = parts
    cfg = T.MotionTrainConfig(frames=4)
    model, _, trainable = T.build_model(cfg, unet2d)
    assert trainable and all("motion_modules" in n for n in trainable)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if n not in trainable}
    means, stds, ids, _ = T.build_pool(cfg, vae, tok, torch.Generator().manual_seed(3), 2, stage_log=False)
    g = torch.Generator().manual_seed(4)
    z0 = (means.float() + stds.float() * torch.randn(means.shape, generator=g)) * vae.config.scaling_factor
    noise = torch.randn(z0.shape, generator=g)
    t = torch.tensor([300, 600])
    a = sched.alphas_cumprod[t].float().view(-1, 1, 1, 1, 1)
    zt = a.sqrt() * z0 + (1 - a).sqrt() * noise
    with torch.no_grad():
        cond = text(ids).last_hidden_state.repeat_interleave(cfg.frames, dim=0)
    opt = torch.optim.AdamW(trainable.values(), lr=2e-3)
    losses = []
    for _ in range(8):
        loss = (model(zt, t, cond).sample - noise).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.97 * losses[0], losses
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)
    # text_kv=1 adds exactly the spatial cross-attention key/value projections
    _, _, more = T.build_model(T.MotionTrainConfig(text_kv=1), unet2d)
    extra = set(more) - set(trainable)
    assert extra and all(".attentions." in n and (".attn2.to_k." in n or ".attn2.to_v." in n) for n in extra)


def test_stage_writes_a_stock_animatediff_pipeline_that_findcli_samples(trained, parts):
    from diffusers import AnimateDiffPipeline, DiffusionPipeline, MotionAdapter, UNetMotionModel
    from safetensors import safe_open

    from findcli.pipeline import Rollout, SamplerSettings, latent_shape, load_pipeline

    for rel in WEIGHTS:
        with safe_open(str(trained / rel), "pt") as f:
            assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    stock = DiffusionPipeline.from_pretrained(trained)
    assert isinstance(stock, AnimateDiffPipeline) and isinstance(stock.unet, UNetMotionModel)
    assert stock.text_encoder.dtype == stock.unet.dtype == torch.float32
    # the adapter alone + the shipped image UNet rebuilds the saved unet (text_kv=0: image UNet untouched)
    adapter = MotionAdapter.from_pretrained(trained / "motion_adapter")
    rebuilt = UNetMotionModel.from_unet2d(parts[0], adapter).state_dict()
    saved = stock.unet.state_dict()
    assert rebuilt.keys() == saved.keys()
    assert all(torch.equal(rebuilt[k].half(), saved[k].half()) for k in saved)

    pipe = load_pipeline(str(trained), torch.device("cpu"), torch.float32)
    settings = SamplerSettings(steps=2, guidance=3.0, frames=VM.TRAIN_FRAMES)
    assert latent_shape(pipe, frames=VM.TRAIN_FRAMES) == (4, VM.TRAIN_FRAMES, 16, 16)
    z = torch.randn(2, 4, VM.TRAIN_FRAMES, 16, 16, generator=torch.Generator().manual_seed(0))
    video = Rollout(pipe, "a red cube moving left", settings)(z)
    assert video.shape == (2, VM.TRAIN_FRAMES, 3, 64, 64) and video.dtype == torch.float32
    assert 0.0 <= video.min() and video.max() <= 1.0


def test_stage_is_deterministic_from_the_seed(trained, tmp_path):
    again = tmp_path / "again"
    run_stage(again)
    for rel in WEIGHTS:
        assert (trained / rel).read_bytes() == (again / rel).read_bytes(), rel


def test_noised_batch_t_focus_zero_is_the_uniform_draw_and_one_lands_every_t_in_the_upper_half():
    """Oracle: the draw sequence written out by hand (rows, z0 noise, dropout, t, ε from one generator
    in that order). t_focus = 0 must reproduce it bit for bit (older runs stay reproducible); t_focus = 1
    puts every t in [T/2, T); t_focus = 0.5 redraws about half of the rows."""
    from findcli.shapes.training.common import noised_batch

    T_ = 1000
    means, stds = torch.randn(6, 4, 3, 8, 8), torch.rand(6, 4, 3, 8, 8)
    ids, empty = torch.arange(6 * 5).view(6, 5), torch.zeros(1, 5, dtype=torch.long)
    acp = torch.linspace(0.999, 0.01, T_)

    def batch(t_focus, n=64):
        return noised_batch(means, stds, ids, empty, n, 0.1, acp, 0.5, T_, torch.Generator().manual_seed(3), t_focus)

    g = torch.Generator().manual_seed(3)
    idx = torch.randint(0, 6, (64,), generator=g)
    z0 = (means[idx] + stds[idx] * torch.randn(means[idx].shape, generator=g)) * 0.5
    drop = torch.rand(64, generator=g) < 0.1
    t = torch.randint(0, T_, (64,), generator=g)
    eps = torch.randn(z0.shape, generator=g)
    a = acp[t].view(-1, 1, 1, 1, 1)
    zt, t0, e0, tok = batch(0.0)
    assert torch.equal(t0, t) and torch.equal(e0, eps) and torch.equal(zt, a.sqrt() * z0 + (1 - a).sqrt() * eps)
    assert torch.equal(tok[drop], empty.expand(int(drop.sum()), -1)) and torch.equal(tok[~drop], ids[idx][~drop])
    _, t1, _, _ = batch(1.0)
    assert (t1 >= T_ // 2).all() and (t1 < T_).all()
    _, th, _, _ = batch(0.5, n=4000)
    assert 0.70 < (th >= T_ // 2).float().mean() < 0.80  # 0.5 + 0.5 × 0.5 of the rows in the upper half
