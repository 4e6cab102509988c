"""Guards against reward hacking: --check-reward (logged, never in the gradient) and --keep best.

Oracles: the same run without the check reward (identical μ, σ: the check reward cannot have entered
the gradient); a truncated keep-last run (the policy --keep best keeps equals the policy of that
iteration, bit for bit); a check reward that prefers the prior, so that the kept policy is N(0, I)
exactly (the start is a candidate).
"""

import json

import pytest
import torch
from typer.testing import CliRunner

from findcli.main import app
from findcli.pipeline import Rollout, SamplerSettings, load_pipeline
from findcli.policy import load_checkpoint, load_policy

PROMPT = "a red cube on a blue sphere"
FAST = ["--steps", "2", "--guidance", "3", "--device", "cpu", "--kernels", "torch", "--batch", "4",
        "--replay", "2", "--inner-epochs", "2"]


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def rewards(tiny_pipeline_dir, tmp_path_factory):
    """Module file with: `main` (toward the image of a fixed z*), `far` (the negative of main: a check
    reward that disagrees with it), `boom` (raises on its 2nd call) and `nan` (non-finite on its 2nd call)."""
    pipe = load_pipeline(str(tiny_pipeline_dir), torch.device("cpu"), torch.float32)
    z_star = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(123))
    d = tmp_path_factory.mktemp("guard_rewards")
    torch.save(Rollout(pipe, PROMPT, SamplerSettings(steps=2, guidance=3.0))(z_star), d / "target.pt")
    (d / "guard_rewards.py").write_text(
        "import torch\n"
        f"T = torch.load({str(d / 'target.pt')!r})\n"
        "CALLS = {'boom': 0, 'nan': 0, 'peak': 0}\n"
        "def main(images, prompts):\n"
        "    return -100.0 * ((images - T) ** 2).flatten(1).mean(1)\n"
        "def far(images, prompts):\n"
        "    return -main(images, prompts)\n"
        "def boom(images, prompts):\n"
        "    CALLS['boom'] += 1\n"
        "    if CALLS['boom'] >= 2:\n"
        "        raise RuntimeError('check reward broke')\n"
        "    return main(images, prompts)\n"
        "def peak(images, prompts):\n"
        "    if images.shape[0] != 6:\n"
        "        return main(images, prompts)\n"
        "    CALLS['peak'] += 1\n"
        "    return torch.full((6,), -abs(CALLS['peak'] - 2.0))\n"
        "def nan(images, prompts):\n"
        "    CALLS['nan'] += 1\n"
        "    r = main(images, prompts)\n"
        "    return r * float('nan') if CALLS['nan'] >= 2 else r\n")
    return d / "guard_rewards.py"


def rows(out):
    return [json.loads(line) for line in (out.parent / (out.stem + ".metrics.jsonl")).read_text().splitlines()]


def test_check_reward_is_logged_and_never_enters_the_gradient(tiny_pipeline_dir, rewards, tmp_path):
    a, b = tmp_path / "a" / "out.pt", tmp_path / "b" / "out.pt"
    common = [PROMPT, "--model", tiny_pipeline_dir, "--reward", f"{rewards}:main", "--iterations", 4, *FAST]
    assert invoke("train", *common, "--out", a).exit_code == 0
    res = invoke("train", *common, "--out", b, "--check-reward", f"{rewards}:far")
    assert res.exit_code == 0, res.output
    pa, pb = load_policy(a), load_policy(b)
    assert torch.equal(pa.policy.mu, pb.policy.mu) and torch.equal(pa.policy.log_sigma, pb.policy.log_sigma)
    rb = rows(b)
    assert all(abs(m["check_mean"] + m["reward_mean"]) < 1e-5 for m in rb)  # far = -main, logged per batch
    assert "check_mean" not in rows(a)[0]
    assert (b.parent / "out.reward_curve.png").stat().st_size > 0


@pytest.mark.parametrize("which", ["boom", "nan"])
def test_a_failing_check_reward_warns_once_and_training_continues(tiny_pipeline_dir, rewards, tmp_path, which):
    out = tmp_path / "out.pt"
    res = invoke("train", PROMPT, "--model", tiny_pipeline_dir, "--reward", f"{rewards}:main", "--iterations", 4,
                 "--check-reward", f"{rewards}:{which}", "--out", out, *FAST)
    assert res.exit_code == 0, res.output
    assert res.output.count("check reward") >= 1 and res.output.count("training continues without it") == 1
    r = rows(out)
    assert len(r) == 4 and "check_mean" in r[0] and all("check_mean" not in m for m in r[1:])
    assert load_policy(out).meta["iteration"] == 4


def test_keep_best_keeps_the_start_when_no_later_policy_scores_higher(tiny_pipeline_dir, rewards, tmp_path):
    """`far` = -main: the more FIND follows main, the worse `far` scores, so the best validated policy
    is the one the run started from, N(0, I): μ = 0 and log σ = 0 exactly (closed form)."""
    best = tmp_path / "best" / "out.pt"
    res = invoke("train", PROMPT, "--model", tiny_pipeline_dir, "--reward", f"{rewards}:main", *FAST,
                 "--iterations", 8, "--check-reward", f"{rewards}:far", "--keep", "best", "--validate-every", 2,
                 "--validate-n", 4, "--out", best)
    assert res.exit_code == 0, res.output
    assert "kept: the starting policy" in res.output
    pb = load_policy(best)
    assert pb.meta["kept"]["mode"] == "best" and pb.meta["kept"]["iteration"] == 0
    assert pb.meta["kept"]["scored_by"] == "check" and pb.meta["kept"]["last_iteration"] == 8
    assert torch.equal(pb.policy.mu, torch.zeros_like(pb.policy.mu))
    assert torch.equal(pb.policy.log_sigma, torch.zeros_like(pb.policy.log_sigma))
    r = rows(best)
    start, scores = r[0]["start_validation_score"], [m["validation_score"] for m in r if "validation_score" in m]
    assert len(scores) == 4 and start == pb.meta["kept"]["score"] and start > max(scores)
    # the train state still holds the last policy: --resume continues the run, not the kept one
    assert not torch.equal(load_checkpoint(best)[1]["last_mu"], pb.policy.mu.reshape(-1))


def test_keep_best_keeps_the_policy_the_check_reward_prefers(tiny_pipeline_dir, rewards, tmp_path):
    """`peak` scores the k-th validation draw (k = 1 for the start) -|k - 2|, so the best validated
    policy is the one after --validate-every 2 iterations: equal to a 2-iteration keep-last run."""
    best, short = tmp_path / "best" / "out.pt", tmp_path / "short" / "out.pt"
    common = [PROMPT, "--model", tiny_pipeline_dir, "--reward", f"{rewards}:main", *FAST]
    res = invoke("train", *common, "--iterations", 8, "--check-reward", f"{rewards}:peak", "--keep", "best",
                 "--validate-every", 2, "--validate-n", 6, "--out", best)
    assert res.exit_code == 0, res.output
    assert invoke("train", *common, "--iterations", 2, "--out", short).exit_code == 0
    pb, ps = load_policy(best), load_policy(short)
    assert pb.meta["kept"]["mode"] == "best" and pb.meta["kept"]["iteration"] == 2
    assert pb.meta["kept"]["scored_by"] == "check" and pb.meta["kept"]["last_iteration"] == 8
    assert torch.equal(pb.policy.mu, ps.policy.mu)
    scores = [m["validation_score"] for m in rows(best) if "validation_score" in m]
    assert scores == [0.0, -1.0, -2.0, -3.0] and rows(best)[0]["start_validation_score"] == -1.0


def test_keep_best_without_a_check_reward_scores_the_main_reward(tiny_pipeline_dir, rewards, tmp_path):
    out = tmp_path / "out.pt"
    res = invoke("train", PROMPT, "--model", tiny_pipeline_dir, "--reward", f"{rewards}:main", "--iterations", 4,
                 "--keep", "best", "--validate-every", 2, "--validate-n", 4, "--out", out, *FAST)
    assert res.exit_code == 0, res.output
    kept = load_policy(out).meta["kept"]
    assert kept["scored_by"] == "main" and kept["iteration"] in (2, 4)


def test_keep_best_with_no_validation_possible_is_a_one_line_error(tiny_pipeline_dir, rewards, tmp_path):
    out = tmp_path / "out.pt"
    res = invoke("train", PROMPT, "--model", tiny_pipeline_dir, "--reward", f"{rewards}:main", "--iterations", 1,
                 "--keep", "best", "--out", out, *FAST)
    assert res.exit_code == 2
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "--keep best" in lines[0] and "--iterations" in lines[0], res.output
    assert not out.exists() and list(tmp_path.iterdir()) == []
