"""Tests for the conditional policy's layout teacher and its context-free features
(findcli/inversion.py, findcli/shapes/layouts.py, findcli.conditional's features "words" and teacher
"layouts", `find train --prompts FILE --conditional --teacher layouts`).

Oracles: stock diffusers' DDIM inversion (StableDiffusionDiffEditPipeline.invert, inpaint strength 1,
no regularisation) on the same latents; the block mean written as float64 loops; the tokenizer's ids and
the embedding table indexed by hand; the renderer, VAE and stock inversion composed by hand for the
teacher's targets; the distilled network's own forward pass for what the CLI wrote and draws.
"""

from __future__ import annotations

import math

import pytest
import torch

from findcli.errors import FindError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny(tiny_pipeline_dir):
    from findcli.pipeline import load_pipeline

    return load_pipeline(str(tiny_pipeline_dir), torch.device("cpu"), torch.float32)


@pytest.fixture(scope="module")
def builtin():
    from findcli.pipeline import load_pipeline

    return load_pipeline(None, torch.device("cpu"), torch.float32)


def _stock_invert(pipe, latents, prompts, steps, guidance):
    """z_T from diffusers' own inversion loop (DiffEdit's), one prompt at a time."""
    from diffusers import DDIMInverseScheduler, StableDiffusionDiffEditPipeline

    edit = StableDiffusionDiffEditPipeline(vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer,
                                           unet=pipe.unet, scheduler=pipe.scheduler,
                                           inverse_scheduler=DDIMInverseScheduler.from_config(pipe.scheduler.config),
                                           safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    edit.set_progress_bar_config(disable=True)
    out = [edit.invert(prompt=p, image=z[None], num_inference_steps=steps, inpaint_strength=1.0,
                       guidance_scale=guidance, output_type="latent").latents[:, 0] for p, z in zip(prompts, latents)]
    return torch.cat(out)


@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_ddim_invert_equals_stock_diffusers_inversion_on_the_same_latents(tiny, guidance):
    from findcli.inversion import ddim_invert

    prompts = ["a photo of a cat", "a watercolor of a lighthouse"]
    z0 = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    ours = ddim_invert(tiny, z0, prompts, steps=5, guidance=guidance)
    stock = _stock_invert(tiny, z0, prompts, 5, guidance)
    assert ours.shape == z0.shape
    torch.testing.assert_close(ours, stock, rtol=1e-4, atol=1e-5)
    assert (ours - z0).abs().mean() > 0.01  # it moved: the comparison is not of two copies of z0


def test_ddim_invert_refuses_a_pipeline_it_cannot_drive(tiny):
    from findcli.inversion import ddim_invert

    class NoUnet:
        pass

    with pytest.raises(FindError, match="UNet pipeline"):
        ddim_invert(NoUnet(), torch.zeros(1, 4, 8, 8), ["x"])
    with pytest.raises(FindError, match="1 latents for 2 prompts"):
        ddim_invert(tiny, torch.zeros(1, 4, 8, 8), ["x", "y"])


def test_lowpass_equals_a_float64_block_mean_loop():
    from findcli.shapes.layouts import lowpass

    shape = (3, 4, 6)
    mu = torch.randn(2, math.prod(shape), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out = lowpass(mu, shape, 2).reshape(2, *shape)
    m = mu.reshape(2, *shape)
    for n in range(2):
        for c in range(3):
            for i in range(4):
                for j in range(6):
                    bi, bj = i // 2 * 2, j // 2 * 2
                    want = sum(m[n, c, bi + a, bj + b].item() for a in range(2) for b in range(2)) / 4
                    assert abs(out[n, c, i, j].item() - want) < 1e-12
    assert torch.equal(lowpass(mu, shape, 1), mu)
    with pytest.raises(FindError, match="multiples of 4"):
        lowpass(mu, shape, 4)


def test_layout_targets_are_the_stock_inversion_of_the_rendered_scene(builtin):
    """The teacher's μ: the renderer's scene (seed 3), VAE-encoded (mean, scaled), inverted by stock
    diffusers, averaged over 2 × 2 latent cells; log σ = log 0.4."""
    from findcli.shapes.layouts import layout_targets
    from findcli.shapes.world import parse_prompt, render

    prompts = ["a red cube on a blue sphere", "two green pyramids"]
    mu, log_sigma = layout_targets(builtin, prompts, sigma=0.4, pool=2, render_seed=3, steps=4, batch=1)
    vae = builtin.vae
    img = torch.cat([render([parse_prompt(p)], torch.Generator().manual_seed(3)) for p in prompts])
    z0 = vae.encode(img * 2 - 1).latent_dist.mean * vae.config.scaling_factor
    zt = _stock_invert(builtin, z0, prompts, 4, 1.0).double()
    c, h, w = zt.shape[1:]
    blocks = zt.reshape(2, c, h // 2, 2, w // 2, 2).mean((3, 5))
    want = blocks.repeat_interleave(2, 2).repeat_interleave(2, 3).reshape(2, -1)
    torch.testing.assert_close(mu.double(), want, rtol=1e-4, atol=1e-4)
    assert torch.allclose(log_sigma, torch.full_like(mu, math.log(0.4)))
    assert not torch.allclose(mu[0], mu[1], atol=1e-2)  # the two prompts' layouts differ


def test_layout_targets_of_several_render_seeds_are_the_mean_of_each_seeds(builtin):
    from findcli.shapes.layouts import layout_targets

    prompts = ["a red cube above a blue sphere", "three yellow cubes"]
    each = [layout_targets(builtin, prompts, render_seed=s, steps=3)[0] for s in (5, 6)]
    both, _ = layout_targets(builtin, prompts, render_seed=5, steps=3, render_seeds=2)
    torch.testing.assert_close(both, (each[0] + each[1]) / 2, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(each[0], each[1], atol=1e-2)
    with pytest.raises(FindError, match="render_seeds must be an integer >= 1"):
        layout_targets(builtin, prompts, render_seeds=0)


def test_word_features_equal_a_hand_lookup_of_ids_embeddings_and_positions(builtin):
    from findcli.conditional import WORD_POSITIONS as P, word_features

    prompt = "a red cube to the left of a blue sphere"
    pooled, tokens = word_features(builtin, prompt)
    ids = builtin.tokenizer(prompt).input_ids  # <bos> words <eos>
    n = len(ids)
    table = builtin.text_encoder.get_input_embeddings().weight.detach().float()
    assert tokens.shape == (2 * P, table.shape[1] + 2 * P)
    for j in range(2 * P):
        if j >= n:
            assert tokens[j].abs().sum() == 0  # rows after <eos> are zero
            continue
        assert torch.equal(tokens[j, :table.shape[1]], table[ids[j]])
        start, end = tokens[j, table.shape[1]:table.shape[1] + P], tokens[j, table.shape[1] + P:]
        assert start.argmax().item() == min(j, P - 1) and start.sum() == 1
        assert end.argmax().item() == min(n - 1 - j, P - 1) and end.sum() == 1
    torch.testing.assert_close(pooled, table[ids].mean(0))
    # context-free: "red" has the same features beside other words (at the same position)
    _, other = word_features(builtin, "a red sphere to the left of a green cube")
    j = ids.index(builtin.tokenizer("red").input_ids[1])
    assert torch.equal(other[j, :table.shape[1]], tokens[j, :table.shape[1]])


def test_prompt_features_words_for_any_arch_and_encoder_unchanged(builtin):
    from findcli.conditional import prompt_features, word_features
    from findcli.pipeline import Rollout, SamplerSettings

    ps = ["two red spheres", "a blue cube"]
    text, tokens = prompt_features(builtin, ps, "words", "slots")
    assert torch.equal(tokens[1], word_features(builtin, ps[1])[1]) and torch.equal(text[0], word_features(builtin, ps[0])[0])
    text, tokens = prompt_features(builtin, ps, "encoder", "mlp")
    assert tokens is None and torch.equal(text[1], Rollout(builtin, ps[1], SamplerSettings()).text_features().float())
    with pytest.raises(FindError, match="features must be one of"):
        prompt_features(builtin, ps, "letters", "mlp")


def test_config_teacher_defaults_validation_and_sets():
    from findcli.conditional import ConditionalConfig, parse_sets

    cfg = ConditionalConfig.with_teacher_defaults({"teacher": "layouts"})
    assert (cfg.arch, cfg.features, cfg.role_rank, cfg.bias_rank, cfg.iterations) == ("slots", "words", 24, 12, 0)
    cfg = ConditionalConfig.with_teacher_defaults({"teacher": "layouts", "arch": "mlp", "iterations": 0})
    assert cfg.arch == "mlp" and cfg.features == "words"
    cfg.validate()  # iterations 0 is allowed with a teacher...
    with pytest.raises(FindError, match="iterations must be an integer >= 1"):
        ConditionalConfig(iterations=0).validate()  # ... and not without one
    for bad, msg in [({"teacher": "parse"}, "teacher must be one of"), ({"features": "bytes"}, "features must be"),
                     ({"teacher_sigma": 0.0}, "teacher_sigma must be > 0")]:
        with pytest.raises(FindError, match=msg):
            ConditionalConfig(**bad).validate()
    assert parse_sets(["role_rank=24", "teacher_sigma=0.5", "features=words", "learn_sigma=false"]) == {
        "role_rank": 24, "teacher_sigma": 0.5, "features": "words", "learn_sigma": False}
    for bad, msg in [("colour=red", "FIELD=VALUE"), ("role_rank", "FIELD=VALUE"), ("role_rank=x", "takes a int"),
                     ("learn_sigma=maybe", "takes a bool")]:
        with pytest.raises(FindError, match=msg):
            parse_sets([bad])


def test_find_train_teacher_layouts_writes_the_distilled_network_and_serves_unseen_prompts(builtin, tmp_path):
    """--teacher layouts --iterations 0: the file holds the network teacher_policy distils (same seed:
    the same weights), on word features, and `find sample --prompt` draws from that network's output for
    a prompt outside the set; with --iterations 1 the FIND step starts from the distilled network."""
    import numpy as np
    from PIL import Image
    from typer.testing import CliRunner

    from findcli.conditional import ConditionalConfig, load_conditional, policy_file_for, teacher_policy, word_features
    from findcli.main import app
    from findcli.pipeline import to_pil
    from findcli.sampling import draw, settings_from_meta

    prompts = ["a red cube on a blue sphere", "a green pyramid under a yellow cube", "three red spheres"]
    suite = tmp_path / "set.txt"
    suite.write_text("".join(f"{p}\n" for p in prompts))
    out = tmp_path / "cond.pt"
    runner = CliRunner()
    base = ["train", "--prompts", str(suite), "--conditional", "--teacher", "layouts", "--device", "cpu",
            "--steps", "2", "--set", "distill_steps=30", "--set", "role_rank=4"]
    res = runner.invoke(app, base + ["--out", str(out)])  # --teacher layouts: no FIND iterations unless asked
    assert res.exit_code == 0, res.output
    assert "teacher: 3 prompts rendered and inverted" in res.output
    pol, meta = load_conditional(out)
    assert pol.kind == "slots" and pol.features == "words" and pol.role_rank == 4 and pol.bias_rank == 12
    assert meta["config"]["teacher"] == "layouts" and meta["teacher"]["prompts"] == 3 and meta["train_images"] == 0
    assert meta["teacher"]["distill_loss_last"] < meta["teacher"]["distill_loss_first"]
    cfg = ConditionalConfig.with_teacher_defaults({"teacher": "layouts", "steps": 2, "distill_steps": 30,
                                                   "role_rank": 4, "iterations": 0})
    ref, _ = teacher_policy(builtin, prompts, cfg)
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(pol.state_dict()[k], v, rtol=0, atol=0, msg=k)
    unseen = "a yellow sphere to the left of a green cube"
    expected = ref.policy_for(*word_features(builtin, unseen))
    served = policy_file_for(pol, meta, builtin, unseen).policy
    assert torch.equal(served.mu, expected.mu) and torch.equal(served.log_sigma, expected.log_sigma)
    assert expected.mu.abs().mean() > 0.01
    res = runner.invoke(app, ["sample", "--policy", str(out), "--prompt", unseen, "--n", "2", "--out-dir",
                              str(tmp_path / "s"), "--no-reward", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    d = draw(builtin, unseen, settings_from_meta({"steps": 2}), 0, 2, expected, False, 16, purpose="sample")
    for i, img in enumerate(to_pil(d.policy_images)):
        assert np.array_equal(np.array(img), np.array(Image.open(tmp_path / "s" / f"policy_{i:04d}.png")))
    # one FIND iteration from the distilled start: images drawn from it, and the network moved off it
    out1 = tmp_path / "cond1.pt"
    res = runner.invoke(app, base + ["--iterations", "1", "--batch", "2", "--prompts-per-iteration", "2",
                                     "--out", str(out1)])
    assert res.exit_code == 0, res.output
    pol1, meta1 = load_conditional(out1)
    assert meta1["train_images"] == 4
    moved = max((pol1.state_dict()[k] - v).abs().max().item() for k, v in ref.state_dict().items())
    assert 0 < moved < 1.0


def test_find_train_init_from_a_conditional_file_equals_train_conditional_from_that_network(builtin, tmp_path):
    """--conditional --init COND.pt: the FIND iterations on another prompt set start from the file's network,
    with its architecture, features and sampler (oracle: train_conditional called on the loaded network
    with the same config gives the same weights); the file records where it started. A per-prompt
    `find train PROMPT --init COND.pt` starts from the network's prediction for PROMPT (oracle: the same
    run started from that prediction saved as a per-prompt policy file)."""
    from typer.testing import CliRunner

    from findcli.conditional import ConditionalConfig, load_conditional, policy_file_for, train_conditional
    from findcli.main import app
    from findcli.policy import load_policy, save_policy
    from findcli.training import build_reward, default_reward

    runner = CliRunner()
    teach, find_set = tmp_path / "teach.txt", tmp_path / "find.txt"
    teach.write_text("a red cube on a blue sphere\nthree red spheres\n")
    find_set.write_text("a green pyramid under a yellow cube\ntwo blue cubes\n")
    cond = tmp_path / "cond.pt"
    res = runner.invoke(app, ["train", "--prompts", str(teach), "--conditional", "--teacher", "layouts", "--device",
                              "cpu", "--steps", "2", "--set", "distill_steps=20", "--set", "role_rank=4", "--out", str(cond)])
    assert res.exit_code == 0, res.output
    start, _ = load_conditional(cond)
    out = tmp_path / "tuned.pt"
    res = runner.invoke(app, ["train", "--prompts", str(find_set), "--conditional", "--init", str(cond), "--device", "cpu",
                              "--iterations", "2", "--batch", "2", "--set", "tune=layout", "--set", "kl_to=start",
                              "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert f"from {cond}" in res.output
    pol, meta = load_conditional(out)
    c = meta["config"]
    assert (pol.kind, pol.features, pol.role_rank, c["steps"], c["teacher"], c["tune"]) == ("slots", "words", 4, 2, "none", "layout")
    assert meta["init"]["path"] == str(cond) and meta["init"]["prompts"] == 2 and meta["init"]["teacher"]["kind"] == "layouts"
    assert meta["train_images"] == 2 * 2 * 2 and meta["prompts"] == find_set.read_text().split("\n")[:2]
    cfg = ConditionalConfig(**c)
    reward, _ = build_reward(default_reward(None), None, None, torch.device("cpu"))
    ref = train_conditional(builtin, meta["prompts"], reward, cfg, init=load_conditional(cond)[0]).policy
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(pol.state_dict()[k], v, rtol=0, atol=0, msg=k)
    moved = max((pol.state_dict()[k] - v).abs().max().item() for k, v in start.state_dict().items())
    assert moved > 0
    # one prompt, per-prompt FIND from the network's prediction for it
    prompt = "a yellow sphere to the left of a green cube"
    pf = policy_file_for(start, load_conditional(cond)[1], builtin, prompt)
    save_policy(tmp_path / "pred.pt", pf.policy, pf.meta)
    outs = []
    for init in (cond, tmp_path / "pred.pt"):
        o = tmp_path / f"one_{init.stem}.pt"
        res = runner.invoke(app, ["train", prompt, "--init", str(init), "--device", "cpu", "--steps", "2",
                                  "--iterations", "1", "--batch", "2", "--out", str(o)])
        assert res.exit_code == 0, res.output
        outs.append(load_policy(o).policy)
    assert torch.equal(outs[0].mu, outs[1].mu) and torch.equal(outs[0].log_sigma, outs[1].log_sigma)
    assert not torch.equal(outs[0].mu, torch.zeros_like(outs[0].mu))


def test_find_train_conditional_init_refuses_bad_input_in_one_line(tiny_pipeline_dir, tmp_path):
    from typer.testing import CliRunner

    from findcli.conditional import SlotConditionalPolicy, save_conditional
    from findcli.main import app
    from findcli.policy import GaussianPolicy, save_policy

    suite = tmp_path / "set.txt"
    suite.write_text("a red cube on a blue sphere\n")
    net = SlotConditionalPolicy((4, 8, 8), 16, 16, 2, 4, 2, 0)
    net.features = "words"
    cond = tmp_path / "cond.pt"
    save_conditional(cond, net, {"model": "builtin", "prompts": ["a red cube"],
                                 "config": {"arch": "slots", "features": "words", "role_rank": 4, "bias_rank": 2, "steps": 3}})
    per_prompt = tmp_path / "one.pt"
    save_policy(per_prompt, GaussianPolicy((4, 8, 8)), {"prompt": "a red cube", "model": "builtin", "steps": 3,
                                                        "guidance": 7.5, "eta": 0.0, "seed": 0})
    runner = CliRunner()
    base = ["train", "--prompts", str(suite), "--conditional", "--device", "cpu"]
    cases = [
        (["--init", str(cond), "--teacher", "layouts"], "drop --teacher"),
        (["--init", str(cond), "--set", "role_rank=8"], "slots network with role_rank=4"),
        (["--init", str(cond), "--arch", "mlp"], "drop --arch"),
        (["--init", str(per_prompt)], "is not a findcli conditional policy"),
        (["--init", str(tmp_path / "missing.pt")], "does not exist"),
        (["--init", str(cond), "--model", str(tiny_pipeline_dir)], "was trained for model 'builtin'"),
    ]
    for extra, msg in cases:
        res = runner.invoke(app, base + extra + ["--out", str(tmp_path / "out.pt")])
        assert res.exit_code != 0 and msg in res.output, (extra, res.output)
        assert len(res.output.strip().splitlines()) == 1, res.output
    assert not (tmp_path / "out.pt").exists()


def test_find_train_teacher_refuses_bad_input_in_one_line(tiny_pipeline_dir, tmp_path):
    from typer.testing import CliRunner

    from findcli.main import app

    suite = tmp_path / "set.txt"
    suite.write_text("a red cube on a blue sphere\n")
    runner = CliRunner()
    base = ["train", "--prompts", str(suite), "--conditional", "--device", "cpu"]
    cases = [
        (["--teacher", "layouts", "--model", str(tiny_pipeline_dir), "--out", str(tmp_path / "a.pt")], "built-in image world"),
        (["--teacher", "parse", "--out", str(tmp_path / "b.pt")], "teacher must be one of"),
        (["--features", "letters", "--out", str(tmp_path / "c.pt")], "features must be one of"),
        (["--set", "colour=red", "--out", str(tmp_path / "d.pt")], "FIELD=VALUE"),
        (["--set", "arch=slots", "--arch", "mlp", "--out", str(tmp_path / "e.pt")], "repeats --arch"),
        (["--iterations", "0", "--out", str(tmp_path / "f.pt")], "iterations must be an integer >= 1"),
    ]
    for extra, msg in cases:
        res = runner.invoke(app, base + extra)
        assert res.exit_code != 0 and msg in res.output, (extra, res.output)
        assert len(res.output.strip().splitlines()) == 1, res.output
    assert not any(tmp_path.glob("*.pt"))
    for opt in (["--teacher", "layouts"], ["--features", "words"], ["--set", "role_rank=4"]):
        res = runner.invoke(app, ["train", "a red cube", *opt])
        assert res.exit_code != 0 and "--conditional" in res.output


def test_files_written_before_features_existed_read_the_encoder(tmp_path):
    from findcli.conditional import ConditionalPolicy, load_conditional, save_conditional

    pol = ConditionalPolicy((4, 8, 8), 16, 4, 8)
    f = tmp_path / "old.pt"
    save_conditional(f, pol, {"model": "x"})
    blob = torch.load(f, weights_only=True)
    del blob["arch"]["features"]
    torch.save(blob, f)
    assert load_conditional(f)[0].features == "encoder"
    blob["arch"]["features"] = "letters"
    torch.save(blob, f)
    with pytest.raises(FindError, match="malformed"):
        load_conditional(f)
