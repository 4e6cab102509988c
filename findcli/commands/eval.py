"""`find eval`: paired success rate and reward of N(0, I) vs a policy, per prompt or over a suite.
Parses, calls findcli.evaluation.run_eval, prints the table (and writes --json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from findcli.commands import options as o
from findcli.commands.common import Progress, console


def eval_(
    prompt: Annotated[Optional[str], typer.Option("--prompt", help="one prompt to evaluate")] = None,
    prompts: Annotated[Optional[Path], typer.Option("--prompts", help="a suite file, one prompt per line")] = None,
    policy: Annotated[Optional[Path], typer.Option("--policy", help="policy file for --prompt; a conditional "
                                                   "policy also for --prompts")] = None,
    policy_dir: Annotated[Optional[Path], typer.Option("--policy-dir", help="for --prompts: DIR/<slug>.pt per "
                                                       "prompt (missing ones: baseline only)")] = None,
    n: Annotated[int, typer.Option("--n", help="images per arm (paired ε)")] = 64,
    seed: o.Seed = 0,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="write the results as JSON")] = None,
    model: o.Model = None,
    steps: Annotated[Optional[int], typer.Option("--steps", help="DDIM steps (default: the policy's, else 20)")] = None,
    guidance: Annotated[Optional[float], typer.Option("--guidance", help="guidance (default: the policy's, else 7.5)")] = None,
    height: o.Height = None,
    width: o.Width = None,
    frames: o.Frames = None,
    scheduler: Annotated[Optional[str], typer.Option("--scheduler", help="auto, ddim or native (default: the "
                                                     "policy's, else auto)")] = None,
    reward: o.Reward = None,
    reward_model: o.RewardModel = None,
    max_batch: o.MaxBatch = 16,
    device: o.Device = o.DeviceChoice.auto,
    dtype: o.Dtype = o.DtypeChoice.auto,
    kernels: o.Kernels = None,
) -> None:
    """Success rate (built-in model) and mean reward, baseline vs policy on the same ε."""
    from rich.table import Table

    from findcli import atomic
    from findcli.evaluation import EvalRequest, run_eval

    if json_out is not None:
        atomic.check_writable(json_out)
    request = EvalRequest(prompt=prompt, prompts=prompts, policy=policy, policy_dir=policy_dir, n=n, seed=seed,
                          model=model, steps=steps, guidance=guidance, height=height, width=width, frames=frames,
                          scheduler=scheduler, reward=reward, reward_model=reward_model,
                          max_batch=max_batch, device=device.value, dtype=dtype.value,
                          kernels=kernels.value if kernels else None)
    progress: Progress | None = None

    def on_prompt(done: int, total: int) -> None:
        nonlocal progress
        if progress is None:
            progress = Progress("eval", total).__enter__()
        progress.update(done)

    try:
        out = run_eval(request, on_prompt)
    finally:
        if progress is not None:
            progress.__exit__(None, None, None)

    table = Table(title=f"find eval  n={n} seed={seed}  reward={out['reward']}")
    for col in ("prompt", "baseline success", "policy success", "baseline reward", "policy reward", "win rate"):
        table.add_column(col, justify="left" if col == "prompt" else "right")

    def pct(x):
        return "-" if x is None else f"{100 * x:.1f}%"

    for r in out["records"]:
        pol = r.get("policy", {})
        table.add_row(r["prompt"], pct(r["baseline"]["success_rate"]), pct(pol.get("success_rate")),
                      f"{r['baseline']['mean_reward']:.4f}",
                      f"{pol['mean_reward']:.4f}" if pol else "-", f"{pol['win_rate']:.3f}" if pol else "-")
    console.print(table)
    result = out["result"]
    if prompts is not None:
        console.print(f"overall: {json.dumps(result['summary']['overall'])}")
    if json_out is not None:
        atomic.write_text(json_out, json.dumps(result, indent=2))
        console.print(f"wrote {json_out}")
