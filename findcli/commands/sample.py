"""`find sample --policy out.pt`: draw images from a learned policy (optionally beside N(0, I))."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from findcli.commands import options as o
from findcli.commands.common import console, load, runtime
from findcli.errors import FindError


def sample(
    policy: Annotated[Path, typer.Option("--policy", help="policy file written by find train")],
    n: Annotated[int, typer.Option("--n", help="images to draw")] = 8,
    seed: o.Seed = 0,
    out_dir: Annotated[Path, typer.Option("--out-dir", help="folder for PNGs, grid and rewards.json")] = Path("samples"),
    baseline: Annotated[bool, typer.Option("--baseline", help="also draw N(0, I) with the same ε and compare")] = False,
    model: o.Model = None,
    steps: Annotated[Optional[int], typer.Option("--steps", help="override the policy's DDIM steps")] = None,
    guidance: Annotated[Optional[float], typer.Option("--guidance", help="override the guidance scale")] = None,
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
    from findcli import atomic
    from findcli.commands.common import reward_for
    from findcli.pipeline import SamplerSettings, grid, latent_shape, to_pil
    from findcli.policy import check_latent_shape, load_policy
    from findcli.sampling import draw, paired_win_rate

    if not 1 <= n <= 100_000:
        raise FindError(f"--n must be between 1 and 100000 (got {n})")
    if max_batch < 1:
        raise FindError(f"--max-batch must be at least 1 (got {max_batch})")
    pf = load_policy(policy)
    meta = pf.meta
    from findcli.atomic import check_writable

    check_writable(out_dir / "rewards.json")
    dev, dt = runtime(device.value, dtype.value, kernels.value if kernels else None)
    model = model or meta.get("model")
    pipe, _ = load(model, dev, dt, attention.value, compile)
    shape = latent_shape(pipe, meta.get("height"), meta.get("width"))
    check_latent_shape(pf.policy, shape, meta.get("model"))
    prompt = meta["prompt"]
    settings = SamplerSettings(steps or meta["steps"], meta["guidance"] if guidance is None else guidance,
                               meta["eta"], meta.get("height"), meta.get("width"))
    with console.status(f"sampling {n} image(s){' and the N(0, I) baseline' if baseline else ''} …"):
        d = draw(pipe, prompt, settings, seed, n, pf.policy, baseline, max_batch, purpose="sample")
    record: dict = {"prompt": prompt, "policy": str(policy), "model": pipe.find_source, "seed": seed, "n": n,
                    "steps": settings.steps, "guidance": settings.guidance, "eta": settings.eta}
    if not no_reward:
        reward_fn, _ = reward_for(reward or meta.get("reward") or "clip", reward_model or meta.get("reward_model"),
                                  model, dev)
        record["reward"] = reward_fn.spec
        pr = reward_fn(d.policy_images, [prompt] * n).float().cpu()
        record["policy_rewards"] = pr.tolist()
        record["mean_policy_reward"] = float(pr.mean())
        if baseline:
            br = reward_fn(d.baseline_images, [prompt] * n).float().cpu()
            record["baseline_rewards"] = br.tolist()
            record["mean_baseline_reward"] = float(br.mean())
            record["win_rate"] = paired_win_rate(pr, br)

    out_dir.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(to_pil(d.policy_images)):
        atomic.write_with(out_dir / f"policy_{i:04d}.png", img.save)
    atomic.write_with(out_dir / "grid.png", grid(d.policy_images).save)
    if baseline:
        for i, img in enumerate(to_pil(d.baseline_images)):
            atomic.write_with(out_dir / f"baseline_{i:04d}.png", img.save)
        atomic.write_with(out_dir / "grid_baseline.png", grid(d.baseline_images).save)
    atomic.write_text(out_dir / "rewards.json", json.dumps(record, indent=2))

    if "mean_policy_reward" in record:
        from rich.table import Table

        table = Table(title=f"{prompt!r}  n={n} seed={seed}")
        table.add_column("draw")
        table.add_column("mean reward", justify="right")
        table.add_column("paired win rate", justify="right")
        table.add_row("FIND policy", f"{record['mean_policy_reward']:.4f}",
                      f"{record['win_rate']:.3f}" if baseline else "-")
        if baseline:
            table.add_row("N(0, I)", f"{record['mean_baseline_reward']:.4f}", f"{1 - record['win_rate']:.3f}")
        console.print(table)
    console.print(f"wrote {n} image(s){' per arm' if baseline else ''}, grid and rewards.json to {out_dir}")
