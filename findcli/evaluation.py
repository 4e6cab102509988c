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

import json
import re
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from findcli import limits
from findcli.errors import FindError
from findcli.pipeline import SamplerSettings
from findcli.policy import GaussianPolicy
from findcli.sampling import check_family, draw, paired_win_rate, settings_from_meta


def slug(prompt: str) -> str:
    """File-name form of a prompt: policies for a suite live at DIR/<slug>.pt."""
    return re.sub(r"[^a-z0-9]+", "_", prompt.lower()).strip("_")[:80]


def read_suite(path: str | Path) -> list[tuple[str, str | None]]:
    """(prompt, category or None) per line of a suite file: `category<TAB>prompt` or a bare prompt;
    blank lines and # comments skipped. (On the built-in model shapes.load_suite also checks every
    prompt against the grammar and gives bare prompts their template's category.)"""
    path = Path(path)
    if not path.is_file():
        raise FindError(f"prompt file {str(path)!r} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise FindError(f"cannot read prompt file {str(path)!r} ({type(e).__name__}); pass a UTF-8 text file") from None
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        category, _, prompt = line.rpartition("\t")
        out.append((" ".join(prompt.split()), category.strip() or None))
    if not out:
        raise FindError(f"{str(path)!r} holds no prompts (one per line; # starts a comment)")
    return out


def _world(builtin):
    """evaluate_prompt's `builtin`: True (the image world, as before worlds), False/None, or a World."""
    from findcli import shapes

    return shapes.IMAGE_WORLD if builtin is True else builtin or None


def _arm(images: torch.Tensor, prompt: str, reward, world) -> tuple[dict, dict, torch.Tensor]:
    r = reward(images, [prompt] * images.shape[0]).float().cpu()
    arm = {"success_rate": None, "mean_reward": float(r.mean())}
    constraints: dict = {}
    if world is not None:
        ok, per = world.judge_images(images, prompt)
        arm["success_rate"] = float(ok.float().mean())
        constraints = {k: float(v.float().mean()) for k, v in per.items()}
    return arm, constraints, r


def evaluate_prompt(pipe, prompt: str, settings: SamplerSettings, reward, n: int, seed: int,
                    policy: GaussianPolicy | None = None, builtin: bool = True, max_batch: int = 16,
                    category: str | None = None) -> dict:
    """One prompt's paired record. `builtin`: True for the built-in image world's judge, a
    findcli.shapes.World for that world's, False for no judge (success_rate None)."""
    world = _world(builtin)
    if world is not None:
        category = category or world.category(prompt)
    d = draw(pipe, prompt, settings, seed, n, policy, baseline=True, max_batch=max_batch)
    record: dict = {"prompt": prompt, "n": n, "seed": seed, "category": category}
    base, base_c, br = _arm(d.baseline_images, prompt, reward, world)
    record["baseline"] = base
    record["per_constraint"] = {"baseline": base_c} if world is not None else {}
    if policy is not None:
        pol, pol_c, pr = _arm(d.policy_images, prompt, reward, world)
        pol["win_rate"] = paired_win_rate(pr, br)
        record["policy"] = pol
        if world is not None:
            record["per_constraint"]["policy"] = pol_c
    return record


def success_rate(pipe, prompt: str, settings: SamplerSettings, seed: int, n: int,
                 policy: GaussianPolicy | None = None, builtin: bool = True, max_batch: int = 16) -> float:
    """The judge's success rate on one arm of `evaluate_prompt`'s draw alone: `policy`'s n eval-namespace
    images (None: N(0, I)'s), without the other arm or a reward (analyses that judge many policies on
    one prompt draw its baseline once)."""
    world = _world(builtin)
    if world is None:
        raise FindError("success_rate needs a world with a judge (builtin=True or a findcli.shapes.World)")
    d = draw(pipe, prompt, settings, seed, n, policy, baseline=policy is None, max_batch=max_batch)
    ok, _ = world.judge_images(d.baseline_images if policy is None else d.policy_images, prompt)
    return float(ok.float().mean())


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


# ---------------------------------------------------------------------------------------------- `find eval`


@dataclass
class EvalRequest:
    prompt: str | None = None  # one prompt ...
    prompts: Path | None = None  # ... or a suite file
    policy: Path | None = None  # the policy of --prompt
    policy_dir: Path | None = None  # for a suite: DIR/<slug>.pt per prompt (missing ones: baseline only)
    n: int = 64  # images per arm, paired ε
    seed: int = 0  # the eval namespace's seed (never a training draw)
    model: str | None = None  # None: the policies' model, else the built-in one
    steps: int | None = None  # None: each policy's, else 20
    guidance: float | None = None  # None: each policy's, else 7.5
    height: int | None = None  # None: each policy's, else the model's default (a policy's size is its own)
    width: int | None = None
    frames: int | None = None
    scheduler: str | None = None  # None: the policy's, else auto
    reward: list[str] | None = None  # None: the first policy's reward, else the model's default
    reward_model: str | None = None
    max_batch: int = 16
    device: str = "auto"
    dtype: str = "auto"
    kernels: str | None = None


def run_eval(request: EvalRequest, on_prompt: Callable[[int, int], None] | None = None) -> dict:
    """`find eval`: every check before any model loads, then one paired record per prompt.
    Returns {"records", "reward", "result"}: result is the JSON `--json` writes (a record for
    --prompt; {"results", "summary"} for --prompts). `on_prompt(done, total)` reports progress."""
    from findcli import shapes
    from findcli.pipeline import latent_shape, load_runtime
    from findcli.policy import check_latent_shape, load_policy
    from findcli.training import build_reward, default_reward

    r = request
    if (r.prompt is None) == (r.prompts is None):
        raise FindError("give exactly one of --prompt TEXT or --prompts FILE")
    limits.check_all({"n": r.n, "seed": r.seed, "steps": r.steps, "guidance": r.guidance, "max_batch": r.max_batch,
                      "height": r.height, "width": r.width, "frames": r.frames})
    from findcli import conditional

    # A conditional policy (find train --prompts FILE --conditional) serves every prompt, seen or not.
    cond = conditional.load_if_conditional(r.policy) if r.policy is not None else None
    if r.policy is not None and r.prompts is not None and cond is None:
        raise FindError("--policy goes with --prompt (or is a conditional policy); for a suite use --policy-dir DIR "
                        "(DIR/<slug>.pt per prompt)")
    if cond is not None and r.policy_dir is not None:
        raise FindError("give either a conditional --policy or --policy-dir, not both")
    if r.prompts is not None:
        suite = read_suite(r.prompts)
        items = [(p, r.policy if cond else (r.policy_dir / f"{slug(p)}.pt") if r.policy_dir else None, c)
                 for p, c in suite]
    else:
        if not r.prompt.strip():
            raise FindError("the prompt is empty; pass --prompt \"a red cube on a blue sphere\"")
        items = [(" ".join(r.prompt.split()), r.policy, None)]
    pfs = {} if cond else {p: load_policy(path) for p, path, _ in items
                           if path is not None and (r.policy is not None or path.exists())}
    first_meta = cond[1] if cond else next(iter(pfs.values())).meta if pfs else {}
    model = r.model or first_meta.get("model")
    world = shapes.world_of(model)
    if world is not None:  # unknown words: one line listing the known ones (and the suite's line), before loading anything
        if r.prompts is not None:
            world.load_suite(r.prompts)
        for p, _, _ in items:
            world.check_prompt(p)
    settings = {p: settings_from_meta(first_meta if cond else pfs[p].meta if p in pfs else {}, r.steps, r.guidance,
                                      r.height, r.width, r.frames, r.scheduler, source=str(path))
                for p, path, _ in items}
    if world is not None and world.default_frames:  # the built-in video model's clip length unless set
        settings = {p: s if s.frames else dataclasses.replace(s, frames=world.default_frames) for p, s in settings.items()}
    # one pipeline for every prompt: the scheduler of --scheduler, else of the first policy (settings_from_meta)
    dev, _, pipe, _ = load_runtime(model, r.device, r.dtype, r.kernels, scheduler=next(iter(settings.values())).scheduler)
    if cond:  # each prompt's N(μ, σ²) from its text feature
        pfs = {p: conditional.policy_file_for(cond[0], cond[1], pipe, p) for p, _, _ in items}
    for p, path, _ in items:  # every policy must fit this model before any image is drawn
        if p in pfs:
            s = settings[p]
            check_family(pfs[p].meta, pipe, str(path))
            check_latent_shape(pfs[p].policy, latent_shape(pipe, s.height, s.width, s.frames), pfs[p].meta.get("model"))
    reward_fn, _ = build_reward(r.reward or first_meta.get("reward") or default_reward(model),
                                r.reward_model or first_meta.get("reward_model"), model, dev)
    records = []
    for i, (p, _, category) in enumerate(items):
        pf = pfs.get(p)
        records.append(evaluate_prompt(pipe, p, settings[p], reward_fn, r.n, r.seed, pf.policy if pf else None,
                                       world or False, r.max_batch, category))
        if on_prompt is not None:
            on_prompt(i + 1, len(items))
    result: dict = records[0] if r.prompts is None else {"results": records, "summary": summarize(records)}
    json.dumps(result)
    return {"records": records, "reward": reward_fn.spec, "result": result}
