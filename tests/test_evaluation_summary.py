"""findcli.evaluation's arithmetic: `summarize` is paired (both arms over the prompts that have a policy;
oracle: hand-computed means), and `rank_auc` (oracle: the pairs counted by hand)."""

import math

import pytest
import torch

from findcli.errors import FindError
from findcli.evaluation import summarize


def rec(category, base, pol=None):
    r = {"category": category, "baseline": {"success_rate": base, "mean_reward": base}}
    if pol is not None:
        r["policy"] = {"success_rate": pol, "mean_reward": pol, "win_rate": 0.5}
    return r


def test_baseline_is_averaged_over_the_prompts_that_have_a_policy():
    s = summarize([rec("position", 0.2, 0.6), rec("position", 0.8), rec("counting", 0.4, 0.3)])
    pos = s["position"]
    assert pos["prompts"] == 2 and pos["prompts_with_policy"] == 1
    assert pos["baseline"]["success_rate"] == 0.2 and pos["policy"]["success_rate"] == 0.6  # not (0.2 + 0.8) / 2
    assert abs(pos["baseline_all"]["success_rate"] - 0.5) < 1e-12
    ov = s["overall"]
    assert ov["prompts"] == 3 and ov["prompts_with_policy"] == 2
    assert abs(ov["baseline"]["success_rate"] - 0.3) < 1e-12 and abs(ov["policy"]["success_rate"] - 0.45) < 1e-12
    assert "baseline_all" not in s["counting"]


def test_without_any_policy_the_baseline_covers_every_prompt():
    s = summarize([rec("single", 1.0), rec("single", 0.5)])
    assert s["single"]["prompts_with_policy"] == 0 and "policy" not in s["single"]
    assert s["single"]["baseline"]["success_rate"] == 0.75


def test_rank_auc_against_hand_counted_pairs():
    """Oracle: counting the positive/negative pairs by hand."""
    from findcli.evaluation import rank_auc

    # positives 3, 1; negatives 2, 1, 0: pairs (3>2, 3>1, 3>0, 1<2, 1=1, 1>0) -> (3 + 1 + 0.5 + 1) / 6
    score = torch.tensor([3.0, 2.0, 1.0, 1.0, 0.0])
    label = torch.tensor([True, False, True, False, False])
    assert rank_auc(score, label) == pytest.approx(4.5 / 6)
    assert rank_auc(score, ~label) == pytest.approx(1.5 / 6)  # flipping the labels mirrors it
    assert rank_auc(torch.ones(4), torch.tensor([True, False, True, False])) == 0.5  # a blind score
    assert rank_auc(torch.arange(4.0), torch.tensor([False, False, True, True])) == 1.0
    assert math.isnan(rank_auc(torch.ones(3), torch.ones(3, dtype=torch.bool)))


def test_success_rate_is_evaluate_prompts_arm_on_the_same_draw():
    """Oracle: evaluate_prompt's paired record (both arms from one draw); success_rate judges one arm
    alone and must give exactly its success rate, for a policy and for N(0, I)."""
    from findcli.evaluation import evaluate_prompt, success_rate
    from findcli.pipeline import SamplerSettings, load_pipeline
    from findcli.policy import GaussianPolicy
    from findcli.shapes.judge import judge_reward

    pipe = load_pipeline(None, torch.device("cpu"), torch.float32)
    g = torch.Generator().manual_seed(0)
    pol = GaussianPolicy((4, 16, 16), torch.randn(1024, generator=g), torch.full((1024,), -0.5))
    settings, prompt = SamplerSettings(steps=4), "two red cubes"
    rec = evaluate_prompt(pipe, prompt, settings, judge_reward, 6, 3, pol)
    assert success_rate(pipe, prompt, settings, 3, 6, pol) == rec["policy"]["success_rate"]
    assert success_rate(pipe, prompt, settings, 3, 6) == rec["baseline"]["success_rate"]
    with pytest.raises(FindError, match="judge"):
        success_rate(pipe, prompt, settings, 3, 2, builtin=False)
