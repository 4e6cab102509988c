"""`find eval`: paired success rate and reward of N(0, I) vs a policy, per prompt or over a suite."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Optional

import typer

from findcli.commands import options as o
from findcli.commands.common import console, default_reward, load, reward_for, runtime
from findcli.errors import FindError


def slug(prompt: str) -> str:
    """File-name form of a prompt: policies for a suite live at DIR/<slug>.pt."""
    return re.sub(r"[^a-z0-9]+", "_", prompt.lower()).strip("_")[:80]


def eval_(
    prompt: Annotated[Optional[str], typer.Option("--prompt", help="one prompt to evaluate")] = None,
    prompts: Annotated[Optional[Path], typer.Option("--prompts", help="a suite file, one prompt per line")] = None,
    policy: Annotated[Optional[Path], typer.Option("--policy", help="policy file for --prompt")] = None,
    policy_dir: Annotated[Optional[Path], typer.Option("--policy-dir", help="for --prompts: DIR/<slug>.pt per "
                                                       "prompt (missing ones: baseline only)")] = None,
    n: Annotated[int, typer.Option("--n", help="images per arm (paired ε)")] = 64,
    seed: o.Seed = 0,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="write the results as JSON")] = None,
    model: o.Model = None,
    steps: Annotated[Optional[int], typer.Option("--steps", help="DDIM steps (default: the policy's, else 20)")] = None,
    guidance: Annotated[Optional[float], typer.Option("--guidance", help="guidance (default: the policy's, else 7.5)")] = None,
    reward: o.Reward = None,
    reward_model: o.RewardModel = None,
    max_batch: o.MaxBatch = 16,
    device: o.Device = o.DeviceChoice.auto,
    dtype: o.Dtype = o.DtypeChoice.auto,
    kernels: o.Kernels = None,
) -> None:
    """Success rate (built-in model) and mean reward, baseline vs policy on the same ε."""
    from findcli import atomic
    from findcli.evaluation import evaluate_prompt, summarize
    from findcli.pipeline import SamplerSettings, is_builtin
    from findcli.policy import load_policy

    if (prompt is None) == (prompts is None):
        raise FindError("give exactly one of --prompt TEXT or --prompts FILE")
    if not 1 <= n <= 100_000:
        raise FindError(f"--n must be between 1 and 100000 (got {n})")
    if policy is not None and prompts is not None:
        raise FindError("--policy goes with --prompt; for a suite use --policy-dir DIR (DIR/<slug>.pt per prompt)")
    if json_out is not None:
        from findcli.atomic import check_writable

        check_writable(json_out)
    items: list[tuple[str, Path | None]]
    categories: dict[str, str] = {}
    if prompts is not None:
        if not prompts.is_file():
            raise FindError(f"prompt file {str(prompts)!r} does not exist")
        lines = [ln.split("\t")[-1].strip() for ln in prompts.read_text().splitlines()]
        lines = [ln for ln in lines if ln and not ln.startswith("#")]
        if not lines:
            raise FindError(f"{str(prompts)!r} holds no prompts (one per line; # starts a comment)")
        items = [(p, (policy_dir / f"{slug(p)}.pt") if policy_dir else None) for p in lines]
    else:
        if not prompt.strip():
            raise FindError("the prompt is empty; pass --prompt \"a red cube on a blue sphere\"")
        items = [(" ".join(prompt.split()), policy)]

    pfs = {}
    for p, path in items:
        if path is not None and (policy is not None or path.exists()):
            pfs[p] = load_policy(path)
    first_meta = next(iter(pfs.values())).meta if pfs else {}
    model = model or first_meta.get("model")
    builtin = is_builtin(model)
    if builtin:
        from findcli.shapes.judge import load_suite
        from findcli.shapes.world import parse_prompt

        for p, _ in items:
            parse_prompt(p)  # unknown words: one line listing the known ones, before loading anything
        if prompts is not None:
            categories = {p: c for c, p in load_suite(prompts)}
    dev, dt = runtime(device.value, dtype.value, kernels.value if kernels else None)
    pipe, _ = load(model, dev, dt)
    from findcli.pipeline import latent_shape
    from findcli.policy import check_latent_shape

    for pf in pfs.values():  # every policy must fit this model before any image is drawn
        check_latent_shape(pf.policy, latent_shape(pipe, pf.meta.get("height"), pf.meta.get("width")),
                           pf.meta.get("model"))
    reward_fn, _ = reward_for(reward or first_meta.get("reward") or default_reward(model),
                              reward_model or first_meta.get("reward_model"), model, dev)

    from rich.progress import Progress

    records = []
    with Progress(console=console) as progress:
        task = progress.add_task("eval", total=len(items))
        for p, _ in items:
            pf = pfs.get(p)
            meta = pf.meta if pf else {}
            settings = SamplerSettings(steps or meta.get("steps", 20),
                                       guidance if guidance is not None else meta.get("guidance", 7.5),
                                       meta.get("eta", 0.0), meta.get("height"), meta.get("width"))
            records.append(evaluate_prompt(pipe, p, settings, reward_fn, n, seed, pf.policy if pf else None,
                                           builtin, max_batch, categories.get(p)))
            progress.advance(task)

    from rich.table import Table

    table = Table(title=f"find eval  n={n} seed={seed}  reward={reward_fn.spec}")
    for col in ("prompt", "baseline success", "policy success", "baseline reward", "policy reward", "win rate"):
        table.add_column(col, justify="left" if col == "prompt" else "right")

    def pct(x):
        return "-" if x is None else f"{100 * x:.1f}%"

    for r in records:
        pol = r.get("policy", {})
        table.add_row(r["prompt"], pct(r["baseline"]["success_rate"]), pct(pol.get("success_rate")),
                      f"{r['baseline']['mean_reward']:.4f}",
                      f"{pol['mean_reward']:.4f}" if pol else "-", f"{pol['win_rate']:.3f}" if pol else "-")
    console.print(table)
    result: dict | list = records[0] if prompts is None else {"results": records, "summary": summarize(records)}
    if prompts is not None:
        s = result["summary"]["overall"]
        console.print(f"overall: {json.dumps(s)}")
    if json_out is not None:
        atomic.write_text(json_out, json.dumps(result, indent=2))
        console.print(f"wrote {json_out}")
