"""`find sample --policy out.pt`: draw images from a learned policy (optionally beside N(0, I)).
Parses, calls findcli.sampling.run_sample, prints the table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from findcli.commands import options as o
from findcli.commands.common import console


def sample(
    policy: Annotated[Path, typer.Option("--policy", help="policy file written by find train")],
    prompt: Annotated[Optional[str], typer.Option("--prompt", help="for a conditional policy (find train --prompts "
                                                  "FILE --conditional): the prompt to draw, seen in training or not")] = None,
    n: Annotated[int, typer.Option("--n", help="images to draw")] = 8,
    seed: o.Seed = 0,
    out_dir: Annotated[Path, typer.Option("--out-dir", help="folder for PNGs, grid and rewards.json")] = Path("samples"),
    baseline: Annotated[bool, typer.Option("--baseline", help="also draw N(0, I) with the same ε and compare")] = False,
    model: o.Model = None,
    steps: Annotated[Optional[int], typer.Option("--steps", help="override the policy's DDIM steps")] = None,
    guidance: Annotated[Optional[float], typer.Option("--guidance", help="override the guidance scale")] = None,
    height: o.Height = None,
    width: o.Width = None,
    frames: o.Frames = None,
    reward: o.Reward = None,
    reward_model: o.RewardModel = None,
    no_reward: Annotated[bool, typer.Option("--no-reward", help="skip scoring (no reward model needed)")] = False,
    max_batch: o.MaxBatch = 16,
    device: o.Device = o.DeviceChoice.auto,
    dtype: o.Dtype = o.DtypeChoice.auto,
    kernels: o.Kernels = None,
    attention: o.Attention = o.AttentionChoice.sdpa,
    compile: o.Compile = False,
) -> None:
    """Draw --n images from the policy; write PNGs, a grid and a JSON of rewards."""
    from rich.table import Table

    from findcli.sampling import SampleRequest, run_sample

    request = SampleRequest(policy=policy, prompt=prompt, n=n, seed=seed, out_dir=out_dir, baseline=baseline, model=model,
                            steps=steps, guidance=guidance, height=height, width=width, frames=frames, reward=reward, reward_model=reward_model,
                            score=not no_reward, max_batch=max_batch, device=device.value, dtype=dtype.value,
                            kernels=kernels.value if kernels else None, attention=attention.value, compile=compile)
    if console.is_terminal:
        with console.status(f"sampling {n} image(s){' and the N(0, I) baseline' if baseline else ''} …"):
            record = run_sample(request)
    else:
        record = run_sample(request)
    if "mean_policy_reward" in record:
        table = Table(title=f"{record['prompt']!r}  n={n} seed={seed}")
        table.add_column("draw")
        table.add_column("mean reward", justify="right")
        table.add_column("paired win rate", justify="right")
        table.add_row("FIND policy", f"{record['mean_policy_reward']:.4f}",
                      f"{record['win_rate']:.3f}" if baseline else "-")
        if baseline:
            table.add_row("N(0, I)", f"{record['mean_baseline_reward']:.4f}", f"{1 - record['win_rate']:.3f}")
        console.print(table)
    what = "video(s) (GIF)" if record.get("video") else "image(s)"
    console.print(f"wrote {n} {what}{' per arm' if baseline else ''}, grid and rewards.json to {out_dir}")
