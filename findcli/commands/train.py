"""`find train PROMPT`: learn the initial-noise distribution N(μ, σ²) for one prompt."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from findcli.commands import options as o
from findcli.commands.common import check_out_path, console, default_reward, load, reward_for, runtime
from findcli.errors import FindError


class PresetChoice(str, Enum):
    default = "default"
    paper = "paper"


class BaselineChoice(str, Enum):
    value = "value"
    group = "group"
    none = "none"


class ClipRefChoice(str, Enum):
    behaviour = "behaviour"
    initial = "initial"


class KlChoice(str, Enum):
    exact = "exact"
    l2 = "l2"


class AdvNormChoice(str, Enum):
    running = "running"
    none = "none"


class KeepChoice(str, Enum):
    last = "last"
    best = "best"


def train(
    prompt: Annotated[Optional[str], typer.Argument(help="the text the model should follow")] = None,
    out: Annotated[Path, typer.Option("--out", help="policy file to write (.pt)")] = Path("out.pt"),
    model: o.Model = None,
    preset: Annotated[PresetChoice, typer.Option("--preset", help="default (measured best) or paper "
                                                 "(official code's settings)")] = PresetChoice.default,
    iterations: Annotated[Optional[int], typer.Option("--iterations", help="sample+update rounds")] = None,
    batch: Annotated[Optional[int], typer.Option("--batch", help="K: latents drawn per iteration")] = None,
    lr: Annotated[Optional[float], typer.Option("--lr", help="Adam learning rate on μ, log σ")] = None,
    steps: Annotated[Optional[int], typer.Option("--steps", help="DDIM denoising steps")] = None,
    guidance: Annotated[Optional[float], typer.Option("--guidance", help="classifier-free guidance scale")] = None,
    eta: Annotated[Optional[float], typer.Option("--eta", help="DDIM eta (0 = deterministic sampler)")] = None,
    baseline: Annotated[Optional[BaselineChoice], typer.Option("--baseline", help="advantage baseline: value "
                                                               "(reward calibration), group, none")] = None,
    replay: Annotated[Optional[int], typer.Option("--replay", help="M: recent batches reused per update")] = None,
    inner_epochs: Annotated[Optional[int], typer.Option("--inner-epochs", help="policy steps per iteration")] = None,
    clip: Annotated[Optional[float], typer.Option("--clip", help="ratio clip ε (per-dimension-mean log-prob ratio)")] = None,
    clip_ref: Annotated[Optional[ClipRefChoice], typer.Option("--clip-ref", help="behaviour (PPO) or initial "
                                                              "(official: hard clamp vs N(0,I))")] = None,
    kl_weight: Annotated[Optional[float], typer.Option("--kl-weight", help="weight of the KL pull to N(0, I)")] = None,
    kl: Annotated[Optional[KlChoice], typer.Option("--kl", help="exact (closed form) or l2 (official proxy)")] = None,
    reward_weight: Annotated[Optional[float], typer.Option("--reward-weight", help="advantage multiplier")] = None,
    value_lr: Annotated[Optional[float], typer.Option("--value-lr", help="value net learning rate")] = None,
    adv_norm: Annotated[Optional[AdvNormChoice], typer.Option("--adv-norm", help="running: advantages in units of "
                                                              "the running reward std (invariant to the reward's "
                                                              "scale); none: raw r - V (official)")] = None,
    norm_window: Annotated[Optional[int], typer.Option("--norm-window", help="rewards in the running std")] = None,
    d_invariant: Annotated[Optional[bool], typer.Option("--d-invariant/--no-d-invariant", help="scale the loss by "
                                                        "the latent size D so the step does not shrink with D")] = None,
    reward: o.Reward = None,
    reward_model: o.RewardModel = None,
    check_reward: Annotated[Optional[str], typer.Option("--check-reward", help="a second reward scored on every "
                                                        "batch and logged, never in the gradient (same SPEC "
                                                        "forms as --reward)")] = None,
    keep: Annotated[Optional[KeepChoice], typer.Option("--keep", help="last, or best: the policy whose fixed "
                                                       "validation draw scores highest on the check reward (else "
                                                       "the main reward)")] = None,
    validate_every: Annotated[Optional[int], typer.Option("--validate-every", help="--keep best: validate every N "
                                                          "iterations")] = None,
    validate_n: Annotated[Optional[int], typer.Option("--validate-n", help="--keep best: images in the validation "
                                                      "draw")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="seed of ε and of the value-net init")] = None,
    init: Annotated[Optional[Path], typer.Option("--init", help="start from this policy instead of N(0, I)")] = None,
    resume: Annotated[Optional[Path], typer.Option("--resume", help="continue the run saved in this policy "
                                                   "file exactly (its settings are reused)")] = None,
    checkpoint_every: Annotated[Optional[int], typer.Option("--checkpoint-every", help="save every N iterations")] = None,
    max_batch: Annotated[Optional[int], typer.Option("--max-batch", help="images per pipeline call")] = None,
    device: o.Device = o.DeviceChoice.auto,
    dtype: o.Dtype = o.DtypeChoice.auto,
    kernels: o.Kernels = None,
    attention: o.Attention = o.AttentionChoice.sdpa,
    compile: o.Compile = False,
) -> None:
    """Learn N(μ, σ²) over the initial latent so the frozen model follows PROMPT."""
    from findcli.config import PRESETS, TrainConfig
    from findcli.engine import FindTrainer, summarize_config
    from findcli.pipeline import check_prompt
    from findcli.policy import check_latent_shape, load_policy

    overrides = {k: (v.value if isinstance(v, Enum) else v) for k, v in dict(
        iterations=iterations, batch=batch, lr=lr, steps=steps, guidance=guidance, eta=eta, baseline=baseline,
        replay=replay, inner_epochs=inner_epochs, clip=clip, clip_ref=clip_ref, kl_weight=kl_weight, kl=kl,
        reward_weight=reward_weight, value_lr=value_lr, seed=seed, checkpoint_every=checkpoint_every,
        max_batch=max_batch, adv_norm=adv_norm, norm_window=norm_window, d_invariant=d_invariant, keep=keep,
        validate_every=validate_every, validate_n=validate_n).items() if v is not None}

    resumed = None
    if resume is not None:
        resumed = load_policy(resume)
        if resumed.train_state is None:
            raise FindError(f"{str(resume)!r} holds no training state (written by an older or a finished-and-"
                            "stripped run); start a new run, optionally with --init it")
        if "adv_norm" not in resumed.meta.get("config", {}):
            raise FindError(f"{str(resume)!r} was written by an older findcli (other noise seeds and update); it "
                            f"cannot be resumed exactly: start a new run, optionally with --init {resume}")
        cfg = TrainConfig.from_dict(resumed.meta["config"])
        changed = set(overrides) - {"iterations", "checkpoint_every", "max_batch"}
        if check_reward is not None:
            changed.add("check_reward")
        if changed or (prompt is not None and " ".join(prompt.split()) != cfg.prompt):
            raise FindError("--resume reuses the run's own settings; only --iterations, --checkpoint-every and "
                            f"--max-batch may change (got {', '.join(sorted(changed)) or 'a different prompt'})")
        for k in ("iterations", "checkpoint_every", "max_batch"):
            if k in overrides:
                setattr(cfg, k, overrides[k])
        if model is not None:
            cfg.model = model
    else:
        if prompt is None:
            raise FindError("give a prompt, e.g. find train \"a red cube on a blue sphere\" (or --resume out.pt)")
        cfg = PRESETS[preset.value](**overrides)
        cfg.prompt, cfg.model = prompt, model
        cfg.reward = ",".join(reward) if reward else default_reward(model)
        cfg.reward_model = reward_model
        cfg.check_reward = check_reward
    if not cfg.prompt.strip():
        raise FindError("the prompt is empty; give the text to follow, e.g. find train \"a red cube on a blue sphere\"")
    cfg.validate()
    out = check_out_path(out if resume is None or out != Path("out.pt") else resume, ".pt")

    dev, dt = runtime(device.value, dtype.value, kernels.value if kernels else None)
    from findcli.pipeline import is_builtin

    if is_builtin(cfg.model):
        from findcli.shapes.world import parse_prompt

        parse_prompt(cfg.prompt)  # the built-in model knows a small vocabulary: say which words, early
    pipe, used = load(cfg.model, dev, dt, attention.value, compile)
    cfg.prompt = check_prompt(pipe, cfg.prompt)
    reward_fn, cfg.reward_model = reward_for(cfg.reward, cfg.reward_model, cfg.model, dev)
    check_fn = None
    if cfg.check_reward:
        check_fn, cfg.check_reward_model = reward_for(cfg.check_reward, cfg.check_reward_model, cfg.model, dev)

    trainer = FindTrainer(cfg, pipe, reward_fn, out, check_reward=check_fn)
    if resumed is not None:
        check_latent_shape(resumed.policy, trainer.shape, resumed.meta.get("model"))
        trainer.load_train_state(resumed.policy.to(dev), resumed.train_state)
    elif init is not None:
        start = load_policy(init, expected_shape=trainer.shape)
        trainer.init_from(start.policy.mu, start.policy.log_sigma)

    console.print(f"[bold]find train[/] {cfg.prompt!r}  model={pipe.find_source}  device={dev.type} "
                  f"dtype={str(dt).removeprefix('torch.')} kernels={trainer.kernel_backend} "
                  f"attention={used['attention']} preset={cfg.preset}")
    console.print(f"  latent={list(trainer.shape)}  reward={reward_fn.spec}"
                  f"{f'  check={check_fn.spec}' if check_fn is not None else ''}  keep={cfg.keep}  "
                  f"{summarize_config(cfg)}")

    if compile:
        with console.status("compiling the UNet and VAE decoder (one warm-up rollout) …"):
            used["compile_s"] = trainer.warmup()
        console.print(f"  compile + warm-up: {used['compile_s']:.1f} s (not counted in the iteration timings)")

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
        TimeRemainingColumn

    with Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), TextColumn("{task.fields[live]}"), console=console,
                  transient=False) as progress:
        task = progress.add_task("train", total=cfg.iterations, completed=trainer.iteration, live="")

        def on_iteration(m: dict) -> None:
            if m.get("skipped"):
                live = "batch skipped (non-finite reward)"
            elif m.get("waiting_for_spread"):
                live = f"r={m['reward_mean']:.3f} (waiting for a spread of rewards to set the reward units)"
            else:
                live = (f"r={m['reward_mean']:.3f} [{m['reward_min']:.3f},{m['reward_max']:.3f}] "
                        f"kl0={m['kl_to_prior']:.4f} |μ|={m['mu_abs_mean']:.3f} σ={m['sigma_mean']:.3f} "
                        f"clip={m['clipfrac']:.2f} {m['images_per_s']:.1f} img/s")
                if m.get("check_mean") is not None:
                    live += f" check={m['check_mean']:.3f}"
                if m.get("validation_score") is not None:
                    live += f" val={m['validation_score']:.3f} (best @{m['best_iteration']})"
            progress.update(task, completed=trainer.iteration, live=live)

        result = trainer.run(on_iteration)

    first = next((m for m in result.metrics if not m.get("skipped")), None)
    last = next((m for m in reversed(result.metrics) if not m.get("skipped")), None)
    if result.interrupted:
        console.print(f"interrupted at iteration {trainer.iteration}/{cfg.iterations}; checkpoint saved to {out} "
                      f"(continue with: find train --resume {out})")
    if first and last:
        console.print(f"reward (batch mean): first {first['reward_mean']:.4f} -> last {last['reward_mean']:.4f}")
        if first.get("check_mean") is not None and last.get("check_mean") is not None:
            console.print(f"check reward (batch mean): first {first['check_mean']:.4f} -> last {last['check_mean']:.4f}")
    if trainer.check_failed:
        console.print("check reward: failed during the run and was dropped (see the warning above)")
    if cfg.keep == "best" and trainer.best is not None:
        console.print(f"kept: the policy after iteration {trainer.best['iteration']} (validation score "
                      f"{trainer.best['score']:.4f} by the {trainer.best['scored_by']} reward), not the last one")
    for name, path in result.files.items():
        console.print(f"  {name}: {path}")
