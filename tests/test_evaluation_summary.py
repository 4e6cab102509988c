"""`summarize` is paired: both arms over the prompts that have a policy. Oracle: hand-computed means."""

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
