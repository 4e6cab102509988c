"""The comparison harness (issue 13) on the tiny pipeline: every method runs under the same counters.
Oracles: the cost of one rollout counted by hand (steps × CFG rows × images), best-of-N's N reward
calls per image, and the harness's own bookkeeping (curve points, time-to-reach from the curves)."""

import math

import pytest
import torch

from findcli.bench.compare import CompareConfig, break_even, break_even_markdown, diversity, noise_margin, feature_diversity, markdown, mean_table, merge, run_compare, speedup_markdown, speedups, time_to_reach
from findcli.errors import FindError
from findcli.testing import build_tiny_pipeline

PROMPT = "a red cube on a blue sphere"


def brightness(images, prompts):  # differentiable: ReNO can ascend it
    return images.mean((1, 2, 3))


@pytest.fixture(scope="module")
def pipe():
    from findcli.generators import configure_scheduler

    p = build_tiny_pipeline()
    configure_scheduler(p, "auto")
    return p


def test_every_method_runs_and_costs_are_counted_the_same_way(pipe):
    def pooled(images):  # a feature map for the feature diversity
        return torch.nn.functional.adaptive_avg_pool2d(images, 2).flatten(1)

    seen = []
    cfg = CompareConfig(prompts=(PROMPT,), methods=("find", "best-of-n", "reno"), budget_s=1e9, eval_every=2,
                        eval_n=3, steps=2, n_candidates=4, reno_iterations=2, max_steps=4, reno_n=2,
                        overrides={"find": {"batch": 2}}, features=pooled)
    result = run_compare(pipe, brightness, cfg, progress=lambda r: seen.append(list(r["prompts"][PROMPT]["methods"])))
    # saved after each method, and once more when the prompt is complete
    assert seen == [["find"], ["find", "best-of-n"], ["find", "best-of-n", "reno"], ["find", "best-of-n", "reno"]]
    recs = result["prompts"][PROMPT]["methods"]
    rows_per_image = 2 * 2  # 2 DDIM steps × 2 CFG rows
    find = recs["find"]
    assert [p["step"] for p in find["curve"]] == [0, 2, 4]
    assert find["curve"][0]["train_reward"] is None  # nothing trained yet
    # the training batches' mean reward between evaluations, as the trainer reported it
    assert all(isinstance(p["train_reward"], float) for p in find["curve"][1:])
    assert find["train_cost"]["unet_rows"] == 4 * 2 * rows_per_image  # 4 iterations × K = 2
    assert find["train_cost"]["reward_calls"] == 4 * 2
    assert find["delivery_cost_per_image"]["unet_rows"] == rows_per_image  # the base model's cost
    assert find["delivery_cost_per_image"]["reward_calls"] == 0
    bon = recs["best-of-n"]
    assert bon["train_cost"]["unet_rows"] == 0
    assert bon["delivery_cost_per_image"]["reward_calls"] == 4
    assert bon["delivery_cost_per_image"]["unet_rows"] == 4 * rows_per_image
    reno = recs["reno"]
    assert reno["final"]["n"] == 2 and find["final"]["n"] == 3  # ReNO delivers its own count
    assert reno["delivery_cost_per_image"]["reward_calls"] == 2  # one per iteration
    # 2 iterations × 4 forward rows, plus checkpointing's recompute in the 1 backward pass (the last
    # iteration only scores): 8 + 4
    assert reno["delivery_cost_per_image"]["unet_rows"] == 2 * rows_per_image + rows_per_image
    for rec in recs.values():
        assert 0.0 <= rec["final"]["success_rate"] <= 1.0 and rec["final"]["diversity"] >= 0
        assert rec["final"]["feature_diversity"] >= -1e-6
    assert set(result["prompts"][PROMPT]["reach"]) == {"find"}
    assert "| a red cube on a blue sphere | find |" in markdown(result)


def test_time_to_reach_reads_the_curves():
    curve = [{"train": {"wall_s": t}, "success_rate": s} for t, s in ((0, 0.1), (5, 0.4), (9, 0.8))]
    recs = {"find": {"curve": curve, "final": curve[-1]},
            "best-of-n": {"curve": [{"train": {"wall_s": 0}, "success_rate": 0.5}],
                          "final": {"success_rate": 0.5}},
            "reno": {"curve": [{"train": {"wall_s": 0}, "success_rate": 0.9}], "final": {"success_rate": 0.9}}}
    assert time_to_reach(recs) == {"find": {"best-of-n": 9, "reno": None}}


def _rec(points):
    curve = [{"train": {"wall_s": t}, "success_rate": s} for t, s in points]
    return {"curve": curve, "final": curve[-1]}


def test_speedup_is_the_ratio_of_times_to_the_slower_methods_final_success():
    # dpok reaches its final 0.5 at 200 s (first point >= 0.5, though it dips after); find gets to 0.5 at 20 s
    recs = {"find": _rec([(0, 0.1), (10, 0.3), (20, 0.6), (30, 0.9)]),
            "dpok": _rec([(0, 0.1), (100, 0.2), (200, 0.5), (250, 0.4), (300, 0.5)]),
            "ddpo": _rec([(0, 0.2), (150, 0.1), (300, 0.2)]),  # never above its start
            "best-of-n": _rec([(0, 1.0)])}  # delivery methods are not part of the ratio
    sp = speedups(recs)
    assert set(sp) == {"find", "dpok", "ddpo"} and "best-of-n" not in sp["find"]
    fd = sp["find"]["dpok"]
    assert (fd["target"], fd["t_self"], fd["t_other"]) == (0.5, 200, 20)
    assert fd["ratio"] == pytest.approx(10.0) and fd["a_final_not_worse"]
    assert sp["find"]["ddpo"]["ratio"] is None and "beyond noise" in sp["find"]["ddpo"]["note"]
    back = sp["dpok"]["find"]  # dpok never reached find's 0.9
    assert back["ratio"] is None and back["t_other"] is None and not back["a_final_not_worse"]
    # a method whose first evaluation already matches: no ratio, said why
    recs["find"] = _rec([(0, 0.6), (30, 0.9)])
    assert "first evaluation" in speedups(recs)["find"]["dpok"]["note"]
    table = speedup_markdown({"prompts": {"p": {"methods": recs, "speedup": speedups(recs)}}})
    assert "| p | find | dpok | 0.500 | 200 | 0 | – (find's first evaluation already matched dpok's final success) | yes |" \
        in table and "| p | dpok |" not in table  # only FIND against the fine-tuning methods


def test_a_rise_within_noise_is_not_learning():
    # 4 of 32 -> 5 of 32: one image, well inside two standard errors (about 0.12 here)
    recs = {"find": _rec([(0, 0.1), (10, 0.9)]), "dpok": _rec([(0, 4 / 32), (140, 5 / 32)])}
    for rec in recs.values():
        for p in rec["curve"]:
            p["n"] = 32
    assert "beyond noise" in speedups(recs)["find"]["dpok"]["note"]
    recs["dpok"] = _rec([(0, 4 / 32), (140, 16 / 32)])  # 12.5% -> 50%: learned
    for p in recs["dpok"]["curve"]:
        p["n"] = 32
    assert speedups(recs)["find"]["dpok"]["ratio"] == pytest.approx(140 / 10)
    assert noise_margin({"success_rate": 0.0, "n": 32}) == pytest.approx(2 * math.sqrt((1 / 34) * (33 / 34) / 32))


def _full(points, train_s=10.0):
    rec = _rec(points)
    for p in rec["curve"]:
        p.update(mean_reward=p["success_rate"] * 2, diversity=1.0, n=4)
    rec.update(train_cost={"wall_s": train_s, "unet_rows": 1, "reward_calls": 1},
               delivery_cost_per_image={"wall_s": 0.1, "unet_rows": 40, "reward_calls": 0})
    return rec


def test_break_even_is_training_time_over_the_per_image_saving():
    recs = {"find": _full([(0, 0.1), (20, 0.5), (40, 0.9)]), "best-of-n": _full([(0, 0.5)]),
            "reno": _full([(0, 0.95)])}
    recs["best-of-n"]["delivery_cost_per_image"]["wall_s"] = 2.1  # find: 0.1 s per image
    be = break_even(recs)
    assert be["find"]["best-of-n"]["images"] == pytest.approx(20 / (2.1 - 0.1))  # 10 images
    assert be["find"]["reno"]["images"] is None and "never reached" in be["find"]["reno"]["note"]
    recs["reno"] = _full([(0, 0.5)])  # reachable, but no cheaper per image (0.1 s both)
    assert "not cheaper" in break_even(recs)["find"]["reno"]["note"]
    table = break_even_markdown({"prompts": {"p": {"break_even": be}}})
    assert "| p | find | best-of-n | 20 | 0.100 | 2.100 | 10 |" in table


def test_merge_and_mean_over_prompts():
    a = {"prompts": {"p": {"methods": {"find": _full([(0, 0.2), (5, 1.0), (9, 0.5)])}}}}
    b = {"prompts": {"q": {"methods": {"find": _full([(0, 0.0), (9, 0.25)], train_s=30.0)}}}}
    merged = merge([a, b])
    assert list(merged["prompts"]) == ["p", "q"]
    # final (0.5 + 0.25) / 2, peak (1.0 + 0.25) / 2, train s (10 + 30) / 2
    assert "| find | 2 | 0.375 | 0.625 | 0.750 | 1.00 | – | 20 | 0.100 | 40 | 0 |" in mean_table(merged)
    with pytest.raises(FindError, match="more than one file"):
        merge([a, a])
    with pytest.raises(FindError, match="unfinished"):
        merge([{"prompts": {"r": {"methods": {}, "partial": True}}}])


def test_feature_diversity_is_the_mean_pairwise_cosine_distance():
    assert feature_diversity(torch.eye(3)) == pytest.approx(1.0)  # orthogonal: cos 0 for every pair
    assert feature_diversity(torch.tensor([[1.0, 0.0]] * 4) * torch.arange(1, 5.0)[:, None]) == pytest.approx(0.0)
    f = torch.randn(5, 7, dtype=torch.float64)
    u = f / f.norm(dim=1, keepdim=True)
    oracle = sum(1 - float(u[i] @ u[j]) for i in range(5) for j in range(5) if i != j) / 20
    assert feature_diversity(f) == pytest.approx(oracle, rel=1e-5)


def test_diversity_is_zero_for_copies_and_positive_otherwise():
    x = torch.rand(1, 3, 16, 16).repeat(4, 1, 1, 1)
    assert diversity(x) == pytest.approx(0.0, abs=1e-6)
    assert diversity(torch.rand(4, 3, 16, 16)) > 0.1


def test_unknown_method_and_prompt_are_one_line(pipe):
    with pytest.raises(FindError, match="unknown comparison method"):
        run_compare(pipe, brightness, CompareConfig(methods=("magic",)))
    with pytest.raises(FindError, match="banana"):
        run_compare(pipe, brightness, CompareConfig(prompts=("a red banana",), methods=("find",)))


def test_compare_is_a_find_bench_section_only_when_named():
    from findcli.bench.runner import parse_sections

    assert "compare" not in parse_sections(None)
    assert parse_sections(["compare"]) == ["compare"] and parse_sections(["kernels,compare"]) == ["kernels", "compare"]
