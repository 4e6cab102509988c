"""Tests for the prompt-conditioned policy (findcli/conditional.py).

Oracles: closed form at initialisation (the untrained network is N(0, I) for every prompt); a
synthetic reward with a known per-prompt optimum (−MSE to the image decoded from z*_p, a different
z* per prompt), toward which each prompt's μ must move and away from the other prompt's; the
per-prompt advantage's invariance to r -> a·r + b (same trajectory); the file round trip.
"""

from __future__ import annotations

import pytest
import torch

from findcli.conditional import (ConditionalConfig, ConditionalPolicy, _group_advantages, iteration_prompts,
                                 is_conditional, load_conditional, save_conditional, train_conditional)
from findcli.errors import FindError

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPTS = ["a photo of a cat", "a watercolor of a lighthouse"]
SAMPLER = dict(steps=2, guidance=3.0)


@pytest.fixture(scope="module")
def pipe(tiny_pipeline_dir):
    from findcli.pipeline import load_pipeline

    return load_pipeline(str(tiny_pipeline_dir), torch.device("cpu"), torch.float32)


@pytest.fixture(scope="module")
def targets(pipe):
    """Per prompt a z* and the image it decodes to: the synthetic reward's optimum."""
    from findcli.pipeline import Rollout, SamplerSettings

    out = {}
    for i, p in enumerate(PROMPTS):
        z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(100 + i))
        out[p] = (z, Rollout(pipe, p, SamplerSettings(**SAMPLER))(z))
    return out


def _reward(targets, a: float = 1.0, b: float = 0.0):
    def reward(images, prompts):
        t = torch.cat([targets[p][1] for p in prompts])
        return a * (-100.0 * ((images - t) ** 2).flatten(1).mean(1)) + b
    return reward


def test_untrained_policy_is_the_standard_normal_for_every_prompt():
    pol = ConditionalPolicy((4, 8, 8), 16, rank=4, hidden=8)
    for seed in range(3):
        mu, log_sigma = pol(torch.randn(16, generator=torch.Generator().manual_seed(seed)))
        assert torch.equal(mu, torch.zeros(256)) and torch.equal(log_sigma, torch.zeros(256))


def test_iteration_prompts_cover_every_prompt_equally_per_epoch():
    seen = [i for it in range(6) for i in iteration_prompts(5, 5, 0, it)]
    assert all(seen.count(i) == 6 for i in range(5))
    # P < N: one permutation per epoch, sliced; 3 epochs of 6 prompts in slices of 4 = 18 draws
    seen = [i for it in range(9) for i in iteration_prompts(6, 4, 1, it)]
    assert all(seen.count(i) == 6 for i in range(6))


def test_group_advantages_are_invariant_to_affine_reward_scale():
    r = torch.randn(3, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for a, b in [(1e-3, 5.0), (1e3, -2.0)]:
        torch.testing.assert_close(_group_advantages(a * r + b), _group_advantages(r), rtol=1e-4, atol=1e-4)
    assert torch.equal(_group_advantages(torch.ones(2, 4)), torch.zeros(2, 4))  # no spread, no signal


def _cfg(**kw):
    base = dict(rank=8, hidden=32, iterations=14, prompts_per_iteration=2, batch=8, net_lr=1e-2, steps=SAMPLER["steps"],
                guidance=SAMPLER["guidance"], max_batch=16)
    return ConditionalConfig(**{**base, **kw})


def test_each_prompt_moves_toward_its_own_optimum(pipe, targets):
    res = train_conditional(pipe, PROMPTS, _reward(targets), _cfg())
    first = sum(m["reward_mean"] for m in res.metrics[:2]) / 2
    last = sum(m["reward_mean"] for m in res.metrics[-2:]) / 2
    assert last > first, (first, last)
    from findcli.pipeline import text_features

    feats = [text_features(pipe, p) for p in PROMPTS]
    mus = [res.policy(f)[0].detach() for f in feats]
    zs = [targets[p][0].flatten() for p in PROMPTS]
    cos = torch.nn.functional.cosine_similarity
    for i in range(2):
        assert cos(mus[i], zs[i], dim=0) > cos(mus[i], zs[1 - i], dim=0) + 0.05
    # the difference of the two μ points along the difference of the two optima
    assert cos(mus[0] - mus[1], zs[0] - zs[1], dim=0) > 0.1
    assert res.images == 14 * 2 * 8


def test_training_is_invariant_to_the_rewards_affine_scale(pipe, targets):
    runs = [train_conditional(pipe, PROMPTS, _reward(targets, a, b), _cfg(iterations=3)) for a, b in [(1.0, 0.0),
                                                                                                      (1e3, 7.0)]]
    for (k, v), w in zip(runs[0].policy.state_dict().items(), runs[1].policy.state_dict().values()):
        torch.testing.assert_close(v, w, rtol=1e-4, atol=1e-4, msg=k)


def test_file_round_trip_and_one_line_errors(tmp_path):
    pol = ConditionalPolicy((4, 8, 8), 16, rank=4, hidden=8)
    with torch.no_grad():
        pol.mu0.add_(0.5)
        pol.mlp[-1].bias.add_(0.1)
    f = tmp_path / "cond.pt"
    save_conditional(f, pol, {"model": "m", "prompts": PROMPTS})
    assert is_conditional(f)
    back, meta = load_conditional(f)
    assert meta["prompts"] == PROMPTS
    t = torch.randn(16)
    for x, y in zip(pol(t), back(t)):
        assert torch.equal(x, y)
    policy = back.policy_for(t)
    assert policy.latent_shape == (4, 8, 8)
    with pytest.raises(FindError, match="does not exist"):
        load_conditional(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(FindError, match="corrupt"):
        load_conditional(tmp_path / "junk.pt")
    assert not is_conditional(tmp_path / "junk.pt")
    with pytest.raises(FindError, match="rank must be"):
        ConditionalConfig(rank=0).validate()


def test_sample_and_eval_draw_from_a_conditional_policy_for_any_prompt(tmp_path):
    """On the built-in model: a conditional file gives a prompt it never saw the network's N(μ_p, σ_p²);
    `find sample --prompt` draws exactly what that GaussianPolicy draws, `find eval --prompts` serves
    every prompt of a suite, and a per-prompt policy refuses another prompt in one line."""
    import json

    from typer.testing import CliRunner

    from findcli import shapes
    from findcli.conditional import conditional_meta, ConditionalResult, policy_file_for
    from findcli.main import app
    from findcli.pipeline import latent_shape, load_pipeline, text_features

    pipe = load_pipeline(None, torch.device("cpu"), torch.float32)
    cfg = ConditionalConfig(rank=4, hidden=16, steps=2)
    prompts = ["a red cube on a blue sphere", "two red spheres"]
    pol = ConditionalPolicy(latent_shape(pipe), text_features(pipe, prompts[0]).numel(), 4, 16)
    with torch.no_grad():
        pol.mu0.add_(0.3)
        pol.mlp[-1].bias.normal_(0, 0.5, generator=torch.Generator().manual_seed(0))
    f = tmp_path / "cond.pt"
    save_conditional(f, pol, conditional_meta(pipe, cfg, prompts, "find-shapes-detector", ConditionalResult(pol)))
    unseen = "a green pyramid to the left of a yellow cube"
    expected = policy_file_for(pol, {}, pipe, unseen).policy
    assert expected.mu.abs().sum() > 0
    runner = CliRunner()
    res = runner.invoke(app, ["sample", "--policy", str(f), "--prompt", unseen, "--n", "2", "--out-dir",
                              str(tmp_path / "s"), "--no-reward", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    rec = json.loads((tmp_path / "s" / "rewards.json").read_text())
    assert rec["prompt"] == unseen and rec["steps"] == 2
    # the PNGs are the draw of the GaussianPolicy the network gives the unseen prompt
    import numpy as np
    from PIL import Image

    from findcli.pipeline import to_pil
    from findcli.sampling import draw, settings_from_meta

    d = draw(pipe, unseen, settings_from_meta({"steps": 2}), 0, 2, expected, False, 16, purpose="sample")
    for i, img in enumerate(to_pil(d.policy_images)):
        assert np.array_equal(np.array(img), np.array(Image.open(tmp_path / "s" / f"policy_{i:04d}.png")))
    # a per-prompt policy refuses another prompt
    from findcli.policy import save_policy

    save_policy(tmp_path / "one.pt", expected, {"model": "builtin", "prompt": prompts[0], "steps": 2, "guidance": 7.5,
                                                "eta": 0.0, "seed": 0})
    res = runner.invoke(app, ["sample", "--policy", str(tmp_path / "one.pt"), "--prompt", unseen, "--n", "1",
                              "--out-dir", str(tmp_path / "s3"), "--device", "cpu"])
    assert res.exit_code != 0 and "draws only that prompt" in res.output
    res = runner.invoke(app, ["sample", "--policy", str(f), "--n", "1", "--out-dir", str(tmp_path / "s2"),
                              "--device", "cpu"])
    assert res.exit_code != 0 and "give the prompt" in res.output
    suite = tmp_path / "suite.txt"
    suite.write_text(f"position\t{unseen}\ncounting\tthree red cubes\n")
    res = runner.invoke(app, ["eval", "--prompts", str(suite), "--policy", str(f), "--n", "2", "--device", "cpu",
                              "--json", str(tmp_path / "e.json")])
    assert res.exit_code == 0, res.output
    out = json.loads((tmp_path / "e.json").read_text())
    assert [r["prompt"] for r in out["results"]] == [unseen, "three red cubes"]
    assert all("policy" in r for r in out["results"])
    assert shapes.is_builtin(rec["model"])


def test_find_train_conditional_writes_a_policy_file_and_refuses_bad_input(tmp_path):
    import json as _json

    from typer.testing import CliRunner

    from findcli.main import app

    suite = tmp_path / "set.txt"
    suite.write_text("position\ta red cube on a blue sphere\ncounting\ttwo red spheres\n"
                     "a red cube on a blue sphere\n")  # a duplicate: trained once, with a warning
    out = tmp_path / "cond.pt"
    runner = CliRunner()
    base = ["train", "--prompts", str(suite), "--conditional", "--device", "cpu"]
    res = runner.invoke(app, base + ["--out", str(out), "--iterations", "2", "--batch", "2", "--steps", "2",
                                     "--prompts-per-iteration", "2"])
    assert res.exit_code == 0, res.output
    assert "duplicate" in res.output
    pol, meta = load_conditional(out)
    assert meta["prompts"] == ["a red cube on a blue sphere", "two red spheres"]
    assert meta["config"]["iterations"] == 2 and meta["steps"] == 2 and meta["train_images"] == 2 * 2 * 2
    assert meta["model"] == "builtin" and _json.dumps(meta)
    # bad input: one line each, exit != 0, no file written
    for extra, msg in [(["--out", str(tmp_path / "a.pt"), "--replay", "2"], "per-prompt trainer"),
                       ([], "--out COND.pt"),
                       (["--out", str(tmp_path / "b.pt"), "--prompts-per-iteration", "0"], "prompts_per_iteration"),
                       (["--out", str(tmp_path / "b.pt"), "--arch", "transformer"], "arch must be one of")]:
        res = runner.invoke(app, base + extra)
        assert res.exit_code != 0 and msg in res.output, res.output
    bad = tmp_path / "bad.txt"
    bad.write_text("a red cube on a blue sphere\na dragon\n")
    res = runner.invoke(app, ["train", "--prompts", str(bad), "--conditional", "--out", str(tmp_path / "c.pt")])
    assert res.exit_code != 0 and "outside the built-in grammar" in res.output
    assert not (tmp_path / "a.pt").exists() and not (tmp_path / "b.pt").exists() and not (tmp_path / "c.pt").exists()
    for opt in (["--net-lr", "0.1"], ["--arch", "tokens"]):
        res = runner.invoke(app, ["train", "a red cube", *opt])
        assert res.exit_code != 0 and "--conditional" in res.output


def test_distill_fits_per_prompt_policies_it_can_represent():
    # three prompts' (μ, log σ) lie in a rank-3 affine span, which rank 4 can represent exactly
    g = torch.Generator().manual_seed(0)
    text = torch.randn(3, 16, generator=g)
    mu, log_sigma = torch.randn(3, 256, generator=g) * 0.5, torch.randn(3, 256, generator=g) * 0.1 - 0.3
    from findcli.conditional import distill

    pol = ConditionalPolicy((4, 8, 8), 16, rank=4, hidden=32, text_mean=text.mean(0), text_std=text.std(0))
    curve = distill(pol, text, mu, log_sigma, steps=400, lr=1e-2, weight_decay=0.0)
    assert curve[-1] < 0.02 * curve[0], (curve[0], curve[-1])
    m, s = pol(text)
    assert (m - mu).abs().max() < 0.15 and (s - log_sigma).abs().max() < 0.1


def test_fixed_sigma_keeps_sigma_one_while_mu_learns(pipe, targets):
    res = train_conditional(pipe, PROMPTS, _reward(targets), _cfg(iterations=3, learn_sigma=False))
    from findcli.pipeline import text_features

    for p in PROMPTS:
        mu, log_sigma = res.policy(text_features(pipe, p))
        assert torch.equal(log_sigma, torch.zeros_like(log_sigma)) and mu.abs().sum() > 0


# ---------------------------------------------------------------- the tokens architecture


def _tokens_policy(shape=(4, 8, 8), axis=0, **kw):
    from findcli.conditional import TokenConditionalPolicy

    torch.manual_seed(0)
    return TokenConditionalPolicy(shape, 16, 8, **{"pool": 2, "key_dim": 4, "modes": 3, "channel_axis": axis, **kw})


def test_untrained_tokens_policy_is_the_standard_normal_for_every_prompt():
    pol = _tokens_policy()
    g = torch.Generator().manual_seed(1)
    mu, log_sigma = pol(torch.randn(3, 16, generator=g), torch.randn(3, 5, 8, generator=g))
    assert torch.equal(mu, torch.zeros(3, 256)) and torch.equal(log_sigma, torch.zeros(3, 256))


@pytest.mark.parametrize("shape,axis", [((4, 8, 8), 0), ((4, 3, 7, 5), 0), ((3, 4, 7, 5), 1)])
def test_tokens_policy_puts_each_channel_where_the_latent_layout_has_it(shape, axis):
    # closed form: with V's bias e_c (μ half) and nothing else, every cell's attention sums to 1 over
    # the real tokens and the null (whose value is 0), so Δμ = (1 − a_null) e_c: channel c, and only c,
    # moves, at every position (odd H, W: the nearest upsample is cropped to the latent)
    pol = _tokens_policy(shape, axis)
    with torch.no_grad():
        pol.value.bias[2] = 1.0
    g = torch.Generator().manual_seed(2)
    text, tok = torch.randn(16, generator=g), torch.randn(5, 8, generator=g)
    mu, log_sigma = pol(text, tok)
    m = mu.reshape(shape).movedim(axis, 0)  # (C, [F,] H, W)
    a = pol.attention(text[None], tok[None])[0]  # (S, 5 tokens + null)
    torch.testing.assert_close(a.sum(-1), torch.ones(a.shape[0]))
    # the expected channel-2 map: 1 − a_null per grid cell, each cell repeated over its pool×pool pixels
    h, w = shape[-2:]
    cell = (1 - a[:, -1]).reshape(-1, *pol.grid[-2:])
    want = cell.repeat_interleave(2, -2).repeat_interleave(2, -1)[..., :h, :w].reshape(m[2].shape)
    torch.testing.assert_close(m[2], want)
    assert torch.equal(m[[0, 1]], torch.zeros_like(m[[0, 1]])) and torch.equal(log_sigma, torch.zeros_like(log_sigma))


def _composition_oracle(policy, steps: int = 1500) -> None:
    """Prompts of two words (a, b) from 4, token features one-hot(word) ⊕ one-hot(slot), a pooled
    feature (their mean) that does not know the order; the target μ is word a's channel vector on the
    left half of a (2, 4, 4) latent and b's on the right. `policy`, distilled on 10 of the 12 ordered
    pairs, must give the 2 held-out pairs their composed μ."""
    from findcli.conditional import distill

    g = torch.Generator().manual_seed(0)
    vocab = torch.randn(4, 2, generator=g) * 1.5  # word -> (channel 0, channel 1) value
    pairs = [(a, b) for a in range(4) for b in range(4) if a != b]
    held = [(0, 1), (3, 2)]

    def tokens(a, b):
        t = torch.zeros(2, 8)
        t[0, a], t[0, 4 + 0] = 1.0, 1.0
        t[1, b], t[1, 4 + 1] = 1.0, 1.0
        return t

    def target(a, b):
        m = torch.zeros(2, 4, 4)
        m[:, :, :2] = vocab[a].view(2, 1, 1)
        m[:, :, 2:] = vocab[b].view(2, 1, 1)
        return m.flatten()

    train = [p for p in pairs if p not in held]
    tok = torch.stack([tokens(*p) for p in train])
    curve = distill(policy, tok.mean(1), torch.stack([target(*p) for p in train]), torch.zeros(len(train), 32),
                    steps=steps, lr=3e-2, weight_decay=0.0, tokens=tok)
    assert curve[-1] < 0.01 * curve[0], (curve[0], curve[-1])
    for p in held:
        t = tokens(*p)
        mu, _ = policy(t.mean(0), t)
        err = (mu - target(*p)).pow(2).mean() / target(*p).pow(2).mean()
        assert err < 0.05, (p, float(err))


def test_tokens_policy_composes_words_it_saw_apart_into_a_pair_it_never_saw():
    """The composition oracle (`_composition_oracle`) for the tokens network (it can represent the
    target: the left cells attend the slot-1 token, the right cells the slot-2 one)."""
    from findcli.conditional import TokenConditionalPolicy

    torch.manual_seed(0)
    _composition_oracle(TokenConditionalPolicy((2, 4, 4), 8, 8, pool=2, key_dim=8, modes=2))


@pytest.mark.parametrize("arch", ["tokens", "slots"])
def test_token_policies_train_file_round_trip_and_sample_for_any_prompt(pipe, targets, tmp_path, arch):
    from findcli.conditional import conditional_meta, policy_file_for

    res = train_conditional(pipe, PROMPTS, _reward(targets), _cfg(arch=arch, iterations=4, net_lr=3e-2))
    assert res.policy.kind == arch and res.images == 4 * 2 * 8
    head = res.policy.value if arch == "tokens" else res.policy.code  # zero-initialised: it moved
    assert any(v.abs().sum() > 0 for v in (head.weight, head.bias))
    f = tmp_path / "tok.pt"
    save_conditional(f, res.policy, conditional_meta(pipe, _cfg(arch=arch), PROMPTS, "synthetic", res))
    back, meta = load_conditional(f)
    assert back.kind == arch
    for p in [*PROMPTS, "a prompt it never saw"]:
        a, b = policy_file_for(res.policy, meta, pipe, p).policy, policy_file_for(back, meta, pipe, p).policy
        assert torch.equal(a.mu, b.mu) and torch.equal(a.log_sigma, b.log_sigma)
    with pytest.raises(FindError, match="arch must be one of"):
        ConditionalConfig(arch="transformer").validate()


@pytest.mark.parametrize("arch", ["mlp", "tokens", "slots"])
def test_sigma_frozen_then_reopened_starts_at_one_and_then_learns(pipe, targets, arch):
    # a network fitted with σ = 1 (set_learn_sigma(False), as conditional_distill.py --sigma-one does)
    # and trained on with σ learned (train_conditional(init=...)) starts at σ = 1 for every prompt
    # and its σ then moves
    from findcli.pipeline import Rollout, SamplerSettings

    cfg = _cfg(arch=arch, iterations=3)
    frozen = train_conditional(pipe, PROMPTS, _reward(targets), _cfg(arch=arch, iterations=2, learn_sigma=False)).policy
    ro = [Rollout(pipe, p, SamplerSettings(**SAMPLER)) for p in PROMPTS]
    text = torch.stack([r.text_features() for r in ro])
    tokens = torch.stack([r.token_text() for r in ro])
    assert torch.equal(frozen(text, tokens)[1], torch.zeros(2, frozen.dim))
    frozen.set_learn_sigma(True)
    assert torch.equal(frozen(text, tokens)[1], torch.zeros(2, frozen.dim))  # reopened: still σ = 1
    res = train_conditional(pipe, PROMPTS, _reward(targets), cfg, init=frozen)
    assert res.policy(text, tokens)[1].abs().sum() > 0


# ---------------------------------------------------------------- the slots architecture


def _slots_policy(shape=(4, 8, 8), axis=0, **kw):
    from findcli.conditional import SlotConditionalPolicy

    torch.manual_seed(0)
    return SlotConditionalPolicy(shape, 16, 8, **{"pool": 2, "role_rank": 3, "bias_rank": 2, "channel_axis": axis, **kw})


@pytest.mark.parametrize("shape,axis", [((4, 8, 8), 0), ((4, 3, 7, 5), 0), ((3, 4, 7, 5), 1)])
def test_untrained_slots_policy_is_the_standard_normal_for_every_prompt(shape, axis):
    pol = _slots_policy(shape, axis)
    g = torch.Generator().manual_seed(1)
    mu, log_sigma = pol(torch.randn(3, 16, generator=g), torch.randn(3, 5, 8, generator=g))
    d = pol.dim
    assert torch.equal(mu, torch.zeros(3, d)) and torch.equal(log_sigma, torch.zeros(3, d))


@pytest.mark.parametrize("shape,axis", [((4, 8, 8), 0), ((4, 3, 7, 5), 0), ((3, 4, 7, 5), 1)])
def test_slots_policy_equals_a_float64_loop_over_tokens_cells_and_channels(shape, axis):
    """Oracle: the formula of the class docstring written as explicit loops in float64 (per token j,
    cell s, channel c) from the float32 network's own weights, upsampled by repeating each cell over
    its pool×pool latent pixels (cropped at odd sizes), with every weight random (nothing zero, so
    each term is exercised); the network runs in float32, so float32 tolerance."""
    from findcli.policy import MIN_LOG_SIGMA

    pol = _slots_policy(shape, axis)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in pol.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        for b in ("text_mean", "text_std", "token_mean", "token_std"):
            getattr(pol, b).copy_(torch.rand(getattr(pol, b).shape, generator=g) + 0.5)
    text, tok = torch.randn(16, generator=g), torch.randn(5, 8, generator=g)
    mu, log_sigma = pol(text, tok)
    P = {k: v.detach().double() for k, v in [*pol.named_parameters(), *pol.named_buffers()]}
    gs = (text.double() - P["text_mean"]) / P["text_std"]
    ts = (tok.double() - P["token_mean"]) / P["token_std"]
    c_n, grid = pol.channels, pol.grid
    cells = int(torch.tensor(grid).prod())
    want = torch.zeros(c_n, cells, dtype=torch.float64)
    role_p = P["role_prompt.weight"] @ gs + P["role_prompt.bias"]
    for j in range(ts.shape[0]):
        code = P["code.weight"] @ ts[j] + P["code.bias"]
        role = (P["role_token.weight"] @ ts[j] + P["role_token.bias"]) * role_p
        for s in range(cells):
            m = sum(role[r] * P["U"][r, s] for r in range(pol.role_rank))
            for c in range(c_n):
                want[c, s] += m * code[c]
    want += ((P["layout.weight"] @ gs + P["layout.bias"]) @ P["Ub"]).reshape(c_n, cells)
    full = want.reshape(c_n, *grid).repeat_interleave(2, -2).repeat_interleave(2, -1)[..., :pol.h, :pol.w]
    full = full.reshape(c_n, *pol.lead, pol.h, pol.w).movedim(0, axis).reshape(-1) + P["mu0"]
    torch.testing.assert_close(mu.double(), full, rtol=1e-5, atol=1e-4)
    want_ls = (P["s0"] + P["log_scale.weight"] @ gs + P["log_scale.bias"]).clamp(min=MIN_LOG_SIGMA)
    torch.testing.assert_close(log_sigma.double(), want_ls, rtol=1e-5, atol=1e-5)


def test_slots_policy_composes_words_it_saw_apart_into_a_pair_it_never_saw():
    """The composition oracle (`_composition_oracle`) for the slots network, at the smallest ranks that
    represent the target (two slot masks, no layout term needed); measured: relative error ≈ 1e-7.
    With spare capacity (role_rank 4, bias_rank 1) the 10 pairs are fitted as well but the held-out
    ones miss by 50-300%."""
    from findcli.conditional import SlotConditionalPolicy

    torch.manual_seed(0)
    _composition_oracle(SlotConditionalPolicy((2, 4, 4), 8, 8, pool=2, role_rank=2, bias_rank=1))


def test_kl_between_gaussians_equals_torch_distributions_in_float64():
    """The KL the conditional policy's kl_to "start" uses (findcli.kernels.gaussian.kl_to_gaussian), batched
    over prompts."""
    from findcli.kernels.gaussian import kl_to_gaussian as kl_gaussians

    g = torch.Generator().manual_seed(3)
    mu, ls, mr, lr = (torch.randn(3, 7, generator=g, dtype=torch.float64) * s for s in (1.0, 0.5, 1.0, 0.5))
    want = torch.distributions.kl_divergence(torch.distributions.Normal(mu, ls.exp()),
                                             torch.distributions.Normal(mr, lr.exp())).mean(-1)
    torch.testing.assert_close(kl_gaussians(mu, ls, mr, lr), want, rtol=1e-12, atol=1e-12)
    assert torch.equal(kl_gaussians(mu, ls, mu, ls), torch.zeros(3, dtype=torch.float64))


def test_kl_to_an_untrained_start_equals_the_kl_to_the_standard_normal(pipe, targets):
    """Untrained, the network is N(0, I) for every prompt, so a KL to its frozen copy is FIND's KL to
    N(0, I): the same trajectory (kl_weight large so that the term matters)."""
    runs = [train_conditional(pipe, PROMPTS, _reward(targets), _cfg(iterations=3, kl_weight=0.5, kl_to=k))
            for k in ("standard", "start")]
    for (k, v), w in zip(runs[0].policy.state_dict().items(), runs[1].policy.state_dict().values()):
        torch.testing.assert_close(v, w, rtol=1e-5, atol=1e-6, msg=k)


def test_kl_to_the_start_holds_a_trained_start_where_the_reward_teaches_nothing(pipe):
    """A constant reward gives zero advantages: with kl_to "start" nothing pulls the network off its
    start (zero gradient, Adam does not move), while FIND's KL pulls it toward N(0, I)."""
    start = train_conditional(pipe, PROMPTS, lambda x, p: x.flatten(1).mean(1), _cfg(iterations=2, kl_weight=0.0)).policy
    init = {k: v.clone() for k, v in start.state_dict().items()}
    flat = lambda x, p: torch.ones(x.shape[0])  # noqa: E731
    moved = {}
    for k in ("start", "standard"):
        start.load_state_dict(init)
        res = train_conditional(pipe, PROMPTS, flat, _cfg(iterations=2, kl_weight=0.5, kl_to=k), init=start)
        moved[k] = max((res.policy.state_dict()[n] - v).abs().max().item() for n, v in init.items())
    assert moved["start"] == 0.0 and moved["standard"] > 1e-3, moved


def test_tune_layout_moves_only_the_whole_prompt_terms(pipe, targets):
    res0 = train_conditional(pipe, PROMPTS, _reward(targets), _cfg(arch="slots", role_rank=2, bias_rank=2, iterations=1))
    init = {k: v.clone() for k, v in res0.policy.state_dict().items()}
    res = train_conditional(pipe, PROMPTS, _reward(targets), _cfg(arch="slots", role_rank=2, bias_rank=2, iterations=2,
                                                                  tune="layout", net_lr=0.05), init=res0.policy)
    after = res.policy.state_dict()
    changed = {k for k, v in init.items() if not torch.equal(v, after[k])}
    assert changed and changed <= {"layout.weight", "layout.bias", "Ub", "log_scale.weight", "log_scale.bias"}, changed
    assert "Ub" in changed
    # the module it leaves behind is not stuck: tune "all" from it trains the codes again
    frozen = {k: v.clone() for k, v in res.policy.state_dict().items()}
    res = train_conditional(pipe, PROMPTS, _reward(targets), _cfg(arch="slots", role_rank=2, bias_rank=2, iterations=1,
                                                                  net_lr=0.05), init=res.policy)
    assert not torch.equal(res.policy.state_dict()["code.weight"], frozen["code.weight"])
    with pytest.raises(FindError, match="tune=layout"):
        _cfg(tune="layout").validate()
