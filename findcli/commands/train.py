"""`find train PROMPT`: learn the initial-noise distribution N(μ, σ²) for one prompt.

The command parses its options into a findcli.training.TrainRequest, calls training.train, and
prints the events it is sent; the rules (presets, resume, outputs, signals) live in the library.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from findcli.commands import options as o
from findcli.commands.common import Progress, choice, console, enum_values, esc
from findcli.config import CHOICES

PresetChoice = choice("PresetChoice", CHOICES["preset"])
BaselineChoice = choice("BaselineChoice", CHOICES["baseline"])
ClipRefChoice = choice("ClipRefChoice", CHOICES["clip_ref"])
KlChoice = choice("KlChoice", CHOICES["kl"])
AdvNormChoice = choice("AdvNormChoice", CHOICES["adv_norm"])
KeepChoice = choice("KeepChoice", CHOICES["keep"])
SchedulerChoice = choice("SchedulerChoice", CHOICES["scheduler"])


def train(
    prompt: Annotated[Optional[str], typer.Argument(help="the text the model should follow")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="policy file to write (.pt; default out.pt, or the "
                                                "resumed run's); its checkpoint OUT.ckpt.pt and side files "
                                                "OUT.metrics.jsonl, OUT.reward_curve.png, OUT.before_after.png "
                                                "go beside it")] = None,
    model: o.Model = None,
    preset: Annotated[Optional[PresetChoice], typer.Option("--preset", help="default (measured best) or paper "
                                                           "(official code's settings)")] = None,
    iterations: Annotated[Optional[int], typer.Option("--iterations", help="sample+update rounds")] = None,
    batch: Annotated[Optional[int], typer.Option("--batch", help="K: latents drawn per iteration")] = None,
    lr: Annotated[Optional[float], typer.Option("--lr", help="Adam learning rate on μ, log σ")] = None,
    steps: Annotated[Optional[int], typer.Option("--steps", help="DDIM denoising steps")] = None,
    guidance: Annotated[Optional[float], typer.Option("--guidance", help="classifier-free guidance scale")] = None,
    eta: Annotated[Optional[float], typer.Option("--eta", help="DDIM eta (0 = deterministic sampler)")] = None,
    height: o.Height = None,
    width: o.Width = None,
    frames: o.Frames = None,
    scheduler: Annotated[Optional[SchedulerChoice], typer.Option("--scheduler", help="auto: DDIM for SD-family "
                                                                 "ε/v models, the model's own for flow-matching and "
                                                                 "few-step ones; ddim; native")] = None,
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
    value_steps: Annotated[Optional[int], typer.Option("--value-steps", help="value net steps per iteration "
                                                       "(default 4; paper preset 1)")] = None,
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
    resume: Annotated[Optional[Path], typer.Option("--resume", help="continue the run of this policy (reads its "
                                                   "checkpoint OUT.ckpt.pt) exactly; its settings are reused")] = None,
    checkpoint_every: Annotated[Optional[int], typer.Option("--checkpoint-every", help="save every N iterations")] = None,
    max_batch: Annotated[Optional[int], typer.Option("--max-batch", help="images per pipeline call")] = None,
    device: o.Device = o.DeviceChoice.auto,
    dtype: o.Dtype = o.DtypeChoice.auto,
    kernels: o.Kernels = None,
    attention: o.Attention = o.AttentionChoice.sdpa,
    compile: o.Compile = False,
) -> None:
    """Learn N(μ, σ²) over the initial latent so the frozen model follows PROMPT."""
    from findcli.errors import INTERRUPTED_EXIT
    from findcli.training import TrainRequest, train as run_training

    overrides = enum_values(dict(
        iterations=iterations, batch=batch, lr=lr, steps=steps, guidance=guidance, eta=eta, baseline=baseline,
        height=height, width=width, frames=frames, scheduler=scheduler,
        replay=replay, inner_epochs=inner_epochs, clip=clip, clip_ref=clip_ref, kl_weight=kl_weight, kl=kl,
        reward_weight=reward_weight, value_lr=value_lr, value_steps=value_steps, seed=seed,
        checkpoint_every=checkpoint_every, max_batch=max_batch, adv_norm=adv_norm, norm_window=norm_window,
        d_invariant=d_invariant, keep=keep, validate_every=validate_every, validate_n=validate_n))
    request = TrainRequest(prompt=prompt, out=out, overrides=overrides, preset=preset.value if preset else None,
                           model=model, reward=reward, reward_model=reward_model, check_reward=check_reward,
                           init=init, resume=resume, device=device.value, dtype=dtype.value,
                           kernels=kernels.value if kernels else None, attention=attention.value, compile=compile)
    view = _TrainView()
    try:
        outcome = run_training(request, view)
    finally:
        view.close()
    if outcome.result.interrupted:
        raise typer.Exit(INTERRUPTED_EXIT)


class _TrainView:
    """Prints what training.train reports: a header, the progress, a summary."""

    def __init__(self):
        self.status = None
        self.progress: Progress | None = None

    def close(self) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None
        if self.progress is not None:
            self.progress.__exit__(None, None, None)
            self.progress = None

    def __call__(self, kind: str, data: dict) -> None:
        getattr(self, "on_" + kind)(data)

    def on_loading(self, data: dict) -> None:
        what = data["model"] or "the built-in shapes model"
        if console.is_terminal:
            self.status = console.status(f"loading {esc(what)} …")
            self.status.start()

    def on_start(self, data: dict) -> None:
        from findcli.engine import summarize_config

        if self.status is not None:
            self.status.stop()
            self.status = None
        t, used = data["trainer"], data["used"]
        cfg = t.cfg
        for path in data["cleaned"]:
            console.print(f"removed a temp file left by a killed run: {path}")
        console.print("find train", style="bold", end=" ")
        console.print(f"{cfg.prompt!r}  model={t.pipe.find_source}  device={data['device'].type} "
                      f"dtype={str(data['dtype']).removeprefix('torch.')} kernels={t.kernel_backend} "
                      f"attention={used['attention']} preset={cfg.preset}")
        console.print(f"  latent={list(t.shape)}  reward={data['reward']}"
                      f"{'  check=' + data['check'] if data['check'] else ''}  keep={cfg.keep}  "
                      f"{summarize_config(cfg)}")
        if data["resumed_from"] is not None:
            console.print(f"resuming from iteration {data['resumed_from']}/{cfg.iterations}")
        if not console.is_terminal:
            console.print("progress: one line every few iterations (stdout is not a terminal)")
        self.progress = Progress("train", cfg.iterations, t.iteration).__enter__()

    def on_compiled(self, data: dict) -> None:
        console.print(f"  compile + warm-up: {data['seconds']:.1f} s (not counted in the iteration timings)")

    def on_iteration(self, m: dict) -> None:
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
        self.progress.update(m["iteration"] + 1, live)

    def on_done(self, data: dict) -> None:
        self.close()
        o = data["outcome"]
        result, trainer, cfg = o.result, o.trainer, o.cfg
        first = next((m for m in result.metrics if not m.get("skipped")), None)
        last = next((m for m in reversed(result.metrics) if not m.get("skipped")), None)
        if result.interrupted:
            console.print(f"interrupted by {result.stop_signal} at iteration {trainer.iteration}/{cfg.iterations}; "
                          f"checkpoint saved to {trainer.checkpoint} (continue with: find train --resume "
                          f"{trainer.out})")
        if first and last and "reward_mean" in first:
            console.print(f"reward (batch mean): first {first['reward_mean']:.4f} -> last {last['reward_mean']:.4f}")
            if first.get("check_mean") is not None and last.get("check_mean") is not None:
                console.print(f"check reward (batch mean): first {first['check_mean']:.4f} -> last "
                              f"{last['check_mean']:.4f}")
        if trainer.check_failed:
            console.print("check reward: failed during the run and was dropped (see the warning above)")
        if cfg.keep == "best" and trainer.best is not None:
            console.print(f"kept: the policy after iteration {trainer.best['iteration']} (validation score "
                          f"{trainer.best['score']:.4f} by the {trainer.best['scored_by']} reward), not the last one")
        for name, path in result.files.items():
            console.print(f"  {name}: {path}")
