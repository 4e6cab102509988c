"""`find eval` JSON interface on a non-built-in model (reward only; the judge knows only the shapes world)."""

import json

import torch
from typer.testing import CliRunner

from findcli.main import app
from findcli.policy import GaussianPolicy, save_policy

PROMPT = "a red cube on a blue sphere"


def test_eval_json_keys_and_pairing(tiny_pipeline_dir, tmp_path):
    (tmp_path / "bright.py").write_text("def reward(images, prompts):\n    return images.mean((1, 2, 3))\n")
    reward = f"{tmp_path / 'bright.py'}:reward"
    # A policy that only shifts μ: with eta 0 and the same ε, the images differ from the baseline's.
    policy = GaussianPolicy((4, 8, 8), torch.full((256,), 0.5))
    save_policy(tmp_path / "p.pt", policy, {"model": str(tiny_pipeline_dir), "prompt": PROMPT, "steps": 2,
                                            "guidance": 3.0, "eta": 0.0, "reward": reward})
    args = ["eval", "--prompt", PROMPT, "--n", "6", "--seed", "3", "--device", "cpu", "--kernels", "torch"]
    res = CliRunner().invoke(app, [*args, "--policy", str(tmp_path / "p.pt"), "--json", str(tmp_path / "e.json")])
    assert res.exit_code == 0, res.output
    rec = json.loads((tmp_path / "e.json").read_text())
    assert {"prompt", "n", "baseline", "policy", "per_constraint"} <= set(rec)
    assert rec["n"] == 6 and rec["prompt"] == PROMPT
    assert set(rec["baseline"]) == {"success_rate", "mean_reward"}
    assert rec["baseline"]["success_rate"] is None  # no judge outside the shapes world
    assert rec["policy"]["mean_reward"] != rec["baseline"]["mean_reward"]
    assert 0.0 <= rec["policy"]["win_rate"] <= 1.0

    # Without a policy, the baseline arm is the same paired draw: identical reward for the same seed.
    res = CliRunner().invoke(app, [*args, "--model", str(tiny_pipeline_dir), "--reward", reward, "--steps", "2", "--guidance", "3",
                                   "--json", str(tmp_path / "b.json")])
    assert res.exit_code == 0, res.output
    base = json.loads((tmp_path / "b.json").read_text())
    assert "policy" not in base
    assert base["baseline"]["mean_reward"] == rec["baseline"]["mean_reward"]
