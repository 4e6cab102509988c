"""Paired evaluation of a prompt: N(0, I) vs a FIND policy on the same ε, by reward and, on the
built-in shapes model, by the programmatic judge (success rate and per-constraint rates).

The JSON record per prompt (other tools parse these keys):
  {"prompt", "n", "seed", "category",
   "baseline": {"success_rate", "mean_reward"},
   "policy":   {"success_rate", "mean_reward", "win_rate"}        (only when a policy is given)
   "per_constraint": {"baseline": {name: rate}, "policy": {name: rate}}}
success_rate is null (and per_constraint empty) on models other than the built-in one: the judge
only knows the shapes world.
"""

from __future__ import annotations

import torch

from findcli.pipeline import SamplerSettings
from findcli.policy import GaussianPolicy
from findcli.sampling import draw, paired_win_rate


def _arm(images: torch.Tensor, prompt: str, reward, spec) -> tuple[dict, dict, torch.Tensor]:
    r = reward(images, [prompt] * images.shape[0]).float().cpu()
    arm = {"success_rate": None, "mean_reward": float(r.mean())}
    constraints: dict = {}
    if spec is not None:
        from findcli.shapes.judge import judge

        ok, per = judge(images.cpu(), spec)
        arm["success_rate"] = float(ok.float().mean())
        constraints = {k: float(v.float().mean()) for k, v in per.items()}
    return arm, constraints, r


def evaluate_prompt(pipe, prompt: str, settings: SamplerSettings, reward, n: int, seed: int,
                    policy: GaussianPolicy | None = None, builtin: bool = True, max_batch: int = 16,
                    category: str | None = None) -> dict:
    spec = None
    if builtin:
        from findcli.shapes.world import parse_prompt

        spec = parse_prompt(prompt)
    d = draw(pipe, prompt, settings, seed, n, policy, baseline=True, max_batch=max_batch)
    record: dict = {"prompt": prompt, "n": n, "seed": seed,
                    "category": category or (spec.category() if spec is not None else None)}
    base, base_c, br = _arm(d.baseline_images, prompt, reward, spec)
    record["baseline"] = base
    record["per_constraint"] = {"baseline": base_c} if spec is not None else {}
    if policy is not None:
        pol, pol_c, pr = _arm(d.policy_images, prompt, reward, spec)
        pol["win_rate"] = paired_win_rate(pr, br)
        record["policy"] = pol
        if spec is not None:
            record["per_constraint"]["policy"] = pol_c
    return record


def summarize(records: list[dict]) -> dict:
    """Per-category and overall means of success rate and reward, each arm, **paired**: when some
    prompts have a policy, both arms are averaged over those prompts only (so a gain is never a
    difference between two prompt sets). Per row: `prompts` (all), `prompts_with_policy`, `baseline`,
    `policy` (absent when no prompt has one) and, when the subsets differ, `baseline_all` (the
    baseline over every prompt of the row)."""

    def mean_arm(arms: list[dict]) -> dict:
        sr = [a["success_rate"] for a in arms if a["success_rate"] is not None]
        return {"success_rate": sum(sr) / len(sr) if sr else None,
                "mean_reward": sum(a["mean_reward"] for a in arms) / len(arms)}

    out: dict = {}
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(r.get("category") or "all", []).append(r)
    groups["overall"] = records
    for name, rs in groups.items():
        paired = [r for r in rs if "policy" in r]
        row: dict = {"prompts": len(rs), "prompts_with_policy": len(paired)}
        if paired:
            row["baseline"] = mean_arm([r["baseline"] for r in paired])
            row["policy"] = mean_arm([r["policy"] for r in paired])
            if len(paired) < len(rs):
                row["baseline_all"] = mean_arm([r["baseline"] for r in rs])
        else:
            row["baseline"] = mean_arm([r["baseline"] for r in rs])
        out[name] = row
    return out


def rank_auc(score: torch.Tensor, positive: torch.Tensor) -> float:
    """ROC AUC of `score` for the boolean labels `positive`: P(a random positive scores above a random
    negative), ties counted one half (0.5 = the score is blind to the label, 1 = it separates them).
    NaN when either class is empty. Used to ask whether a reward sees what the judge checks."""
    score, positive = score.float().flatten(), positive.bool().flatten()
    pos, neg = score[positive], score[~positive]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    d = pos[:, None] - neg[None, :]
    return ((d > 0).float() + 0.5 * (d == 0).float()).mean().item()
