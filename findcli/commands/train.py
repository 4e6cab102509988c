"""`find train PROMPT`: learn the initial-noise distribution N(μ, σ²) for one prompt; `find train
--prompts FILE --out-dir DIR`: one policy per prompt of a set.

The command parses its options into a findcli.training.TrainRequest (for a set, wrapped in a
findcli.prompt_sets.PromptSetRequest), calls training.train (prompt_sets.train_prompt_set), and prints
the events it is sent; the rules (presets, resume, outputs, signals, ranks) live in the library.
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
KlToChoice = choice("KlToChoice", CHOICES["kl_to"])
AdvNormChoice = choice("AdvNormChoice", CHOICES["adv_norm"])
KeepChoice = choice("KeepChoice", CHOICES["keep"])
SchedulerChoice = choice("SchedulerChoice", CHOICES["scheduler"])


def train(
    prompt: Annotated[Optional[str], typer.Argument(help="the text the model should follow")] = None,
    prompts: Annotated[Optional[Path], typer.Option("--prompts", help="train one policy per prompt of FILE (one "
                                                    "per line; category<TAB>prompt allowed; # comments) into "
                                                    "--out-dir; rerunning the command resumes it")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out-dir", help="with --prompts: DIR/<slug>.pt per prompt "
                                                    "(what find eval --policy-dir reads) and DIR/index.json")] = None,
    conditional: Annotated[bool, typer.Option("--conditional", help="with --prompts: train ONE prompt-conditioned "
                                              "policy (text feature -> N(μ, σ²)) over the set into --out, which then "
                                              "serves any prompt (find sample --prompt, find eval)")] = False,
    prompts_per_iteration: Annotated[Optional[int], typer.Option("--prompts-per-iteration", help="--conditional: "
                                                                 "prompts drawn per iteration (default 8)")] = None,
    net_lr: Annotated[Optional[float], typer.Option("--net-lr", help="--conditional: Adam lr of the network and its "
                                                    "bases (--lr: of the shared per-element μ0, log σ0)")] = None,
    arch: Annotated[Optional[str], typer.Option("--arch", help="--conditional: the network, mlp (pooled text "
                                                "feature -> low-rank basis), tokens (a coarse latent grid "
                                                "attending to the prompt's token embeddings) or slots (each "
                                                "token's code placed by its role's mask)")] = None,
    teacher: Annotated[Optional[str], typer.Option("--teacher", help="--conditional: layouts = first distil the "
                                                   "network to DDIM inversions of scenes the built-in renderer "
                                                   "draws for each prompt (built-in model only; then slots on "
                                                   "word features unless --arch/--features say otherwise); FIND "
                                                   "iterations from there only with --iterations N (measured not "
                                                   "to raise held-out success: RESULTS.md §10.7)")] = None,
    features: Annotated[Optional[str], typer.Option("--features", help="--conditional: what the network reads, "
                                                    "encoder (the text encoder's embeddings) or words (each "
                                                    "token's word embedding and position, context-free)")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="--conditional: FIELD=VALUE of the conditional "
                                                      "config (findcli.conditional.ConditionalConfig), e.g. "
                                                      "role_rank=24; repeatable")] = None,
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
    kl_weight: Annotated[Optional[float], typer.Option("--kl-weight", help="weight of the KL pull (to --kl-to's target)")] = None,
    kl: Annotated[Optional[KlChoice], typer.Option("--kl", help="exact (closed form) or l2 (official proxy)")] = None,
    kl_to: Annotated[Optional[KlToChoice], typer.Option("--kl-to", help="the KL pull's target: start (the "
                                                        "distribution the run starts from: N(0, I), or --init's "
                                                        "policy) or standard (always N(0, I))")] = None,
    reward_weight: Annotated[Optional[float], typer.Option("--reward-weight", help="advantage multiplier")] = None,
    value_lr: Annotated[Optional[float], typer.Option("--value-lr", help="value net learning rate")] = None,
    value_steps: Annotated[Optional[int], typer.Option("--value-steps", help="value net steps per iteration "
                                                       "(default 4; paper preset 1)")] = None,
    adv_norm: Annotated[Optional[AdvNormChoice], typer.Option("--adv-norm", help="running: advantages in units of "
                                                              "the running reward std (invariant to the reward's "
                                                              "scale); none: raw r - V (official)")] = None,
    norm_window: Annotated[Optional[int], typer.Option("--norm-window", help="rewards in the running std")] = None,
    adv_std_floor: Annotated[Optional[float], typer.Option("--adv-std-floor", help="the running std never falls "
                                                           "below this fraction of the reward's declared range "
                                                           "(0: no floor)")] = None,
    adv_std_floor_above: Annotated[Optional[float], typer.Option("--adv-std-floor-above", help="the floor binds "
                                                                 "only while the running mean reward is at or above "
                                                                 "this fraction of the declared range (0: always)")] = None,
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
    init: Annotated[Optional[Path], typer.Option("--init", help="start from this policy instead of N(0, I) (with --conditional: a conditional policy file; the run keeps its network and sampler)")] = None,
    init_dir: Annotated[Optional[Path], typer.Option("--init-dir", help="with --prompts: start each prompt from "
                                                     "INIT/<slug>.pt (e.g. another set's --out-dir) instead of "
                                                     "N(0, I); a prompt without one there is listed as failed")] = None,
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
    """Learn N(μ, σ²) over the initial latent so the frozen model follows PROMPT (or each prompt of
    --prompts FILE).

    Several processes (torchrun --nproc-per-node N -m findcli train ..., or accelerate launch -m
    findcli train ...; one GPU per rank): with --prompts the prompts are dealt round-robin to the
    ranks (each policy as one process trains it); with one PROMPT each iteration's --batch images
    are split across the ranks and the policy gradient is all-reduced.
    """
    from findcli.errors import INTERRUPTED_EXIT
    from findcli.training import TrainRequest, train as run_training

    overrides = enum_values(dict(
        iterations=iterations, batch=batch, lr=lr, steps=steps, guidance=guidance, eta=eta, baseline=baseline,
        height=height, width=width, frames=frames, scheduler=scheduler,
        replay=replay, inner_epochs=inner_epochs, clip=clip, clip_ref=clip_ref, kl_weight=kl_weight, kl=kl, kl_to=kl_to,
        reward_weight=reward_weight, value_lr=value_lr, value_steps=value_steps, seed=seed,
        checkpoint_every=checkpoint_every, max_batch=max_batch, adv_norm=adv_norm, norm_window=norm_window,
        adv_std_floor=adv_std_floor, adv_std_floor_above=adv_std_floor_above,
        d_invariant=d_invariant, keep=keep, validate_every=validate_every, validate_n=validate_n))
    request = TrainRequest(prompt=prompt, out=out, overrides=overrides, preset=preset.value if preset else None,
                           model=model, reward=reward, reward_model=reward_model, check_reward=check_reward,
                           init=init, resume=resume, device=device.value, dtype=dtype.value,
                           kernels=kernels.value if kernels else None, attention=attention.value, compile=compile)
    if init_dir is not None and (prompts is None or conditional):
        from findcli.errors import FindError

        raise FindError("--init-dir goes with --prompts FILE --out-dir DIR, one policy per prompt (for one prompt use "
                        "--init FILE.pt)")
    cond_opts = {"prompts_per_iteration": prompts_per_iteration, "net_lr": net_lr, "arch": arch, "teacher": teacher,
                 "features": features}
    if conditional:
        _train_conditional(prompts, out, out_dir, request, cond_opts, set_ or [])
        return
    if any(v is not None for v in cond_opts.values()) or set_:
        from findcli.errors import FindError

        raise FindError("--prompts-per-iteration, --net-lr, --arch, --teacher, --features and --set go with --prompts "
                        "FILE --conditional")
    if prompts is not None or out_dir is not None:
        _train_set(prompts, out_dir, request, init_dir)
        return
    view = _TrainView(quiet=_rank() != 0)
    try:
        outcome = run_training(request, view)
    finally:
        view.close()
    if outcome.result.interrupted:
        raise typer.Exit(INTERRUPTED_EXIT)


def _train_conditional(prompts, out, out_dir, request, cond_opts: dict, sets: list[str]) -> None:
    """--prompts FILE --conditional --out cond.pt: one network over the set (findcli.conditional)."""
    from findcli.conditional import SHARED_OPTIONS, ConditionalRequest, parse_sets, train_conditional_file
    from findcli.errors import FindError

    if prompts is None or out is None:
        raise FindError("--conditional needs --prompts FILE and --out COND.pt")
    from findcli.distributed import world_from_env

    if world_from_env().size > 1:
        raise FindError("--conditional trains in one process; run it without torchrun / accelerate launch")
    if request.prompt is not None or out_dir is not None or request.resume:
        raise FindError("--conditional takes --prompts FILE and --out COND.pt; drop PROMPT, --out-dir, --resume")
    if request.check_reward or request.preset or request.attention != "sdpa" or request.compile:
        raise FindError("--conditional does not take --check-reward, --preset, --attention or --compile")
    given = {k: v for k, v in request.overrides.items() if v is not None}
    refused = sorted(set(given) - SHARED_OPTIONS)
    if refused:
        raise FindError(f"--conditional trains one network for every prompt; {', '.join('--' + k.replace('_', '-') for k in refused)} "
                        "belong(s) to the per-prompt trainer: drop it")
    given.update({k: v for k, v in cond_opts.items() if v is not None})
    for k, v in parse_sets(sets).items():
        if k in given:
            raise FindError(f"--set {k}= repeats --{k.replace('_', '-')}: give it once")
        given[k] = v
    view = _ConditionalView()
    try:
        train_conditional_file(ConditionalRequest(prompts, out, given, request.model, request.reward,
                                                  request.reward_model, request.device, request.dtype,
                                                  request.kernels, request.init), view)
    finally:
        view.close()


class _ConditionalView:
    def __init__(self):
        self.progress: Progress | None = None

    def close(self) -> None:
        if self.progress is not None:
            self.progress.__exit__(None, None, None)
            self.progress = None

    def __call__(self, kind: str, data: dict) -> None:
        if kind == "start":
            cfg = data["cfg"]
            self.iterations = cfg.iterations
            console.print("find train --conditional", style="bold", end=" ")
            net = {"tokens": f"arch=tokens pool={cfg.pool}", "slots": f"arch=slots pool={cfg.pool} role_rank={cfg.role_rank}"}.get(
                cfg.arch, f"arch=mlp rank={cfg.rank}")
            console.print(f"{len(data['prompts'])} prompts  reward={data['reward']}  {net}  "
                          f"{min(cfg.prompts_per_iteration, len(data['prompts']))} prompts x {cfg.batch} images per iteration, "
                          f"{cfg.iterations} iterations")
            if data.get("init") is not None:
                console.print(f"from {data['init']} ({cfg.arch} on {cfg.features} features, DDIM {cfg.steps}, "
                              f"guidance {cfg.guidance}); tune={cfg.tune} kl_to={cfg.kl_to} β={cfg.kl_weight}")
            if cfg.teacher != "none":
                console.print(f"teacher {cfg.teacher}: σ={cfg.teacher_sigma} render_seed={cfg.render_seed}, "
                              f"distilled to {cfg.arch} on {cfg.features} features in {cfg.distill_steps} steps")
        elif kind in ("teacher", "distill"):
            done, total = (data["done"], data["total"]) if kind == "teacher" else (data["step"], data["steps"])
            if self.progress is None or self.progress.name != kind:
                self.close()
                self.progress = Progress(kind, total).__enter__()
            self.progress.update(done, f"loss={data['loss']:.4f}" if kind == "distill" else "rendered and inverted")
        elif kind == "iteration":
            if self.progress is None or self.progress.name != "train":
                self.close()
                self.progress = Progress("train", self.iterations).__enter__()
            m = data["metrics"]
            self.progress.update(m["iteration"] + 1, f"r={m['reward_mean']:.3f} |μ|={m['mu_norm_mean']:.3f} "
                                 f"σ={m['sigma_mean']:.3f} clip={m.get('clipfrac', 0.0):.2f}")
        elif kind == "done":
            self.close()
            res = data["result"]
            if res.teacher:
                t = res.teacher
                console.print(f"teacher: {t['prompts']} prompts rendered and inverted in {t['teacher_s']:.0f} s, "
                              f"distilled in {t['distill_s']:.0f} s (loss {t['distill_loss_first']:.4f} -> "
                              f"{t['distill_loss_last']:.4f})")
            console.print(f"trained on {res.images} images in {res.wall_s:.0f} s; wrote {data['out']} "
                          f"(find sample --policy {data['out']} --prompt \"...\")")


def _rank() -> int:
    """This process's rank (torchrun / accelerate launch); ranks other than 0 print nothing but errors."""
    from findcli.distributed import world_from_env
    from findcli.errors import FindError

    try:
        return world_from_env().rank
    except FindError:
        return 0  # the library says what is wrong with the environment


def _train_set(prompts: Path | None, out_dir: Path | None, request, init_dir: Path | None = None) -> None:
    from findcli.errors import INTERRUPTED_EXIT, FindError
    from findcli.prompt_sets import PromptSetRequest, train_prompt_set

    if prompts is None:
        raise FindError("--out-dir goes with --prompts FILE (for one prompt use --out FILE.pt)")
    view = _PromptSetView(quiet=_rank() != 0)
    try:
        outcome = train_prompt_set(PromptSetRequest(prompts, out_dir, request, init_dir), view)
    finally:
        view.close()
    if outcome.interrupted:
        raise typer.Exit(INTERRUPTED_EXIT)
    if outcome.failed and outcome.rank == 0:
        names = ", ".join(repr(p) for p in list(outcome.failed)[:5]) + (", ..." if len(outcome.failed) > 5 else "")
        raise FindError(f"{len(outcome.failed)} of {len(outcome.plan.items)} prompts failed: {names}; each error is in "
                        f"{outcome.path}; fix or remove them, and rerun the same command to retry them", exit_code=1)


def live_line(m: dict) -> str:
    """The progress bar's text for one iteration's metrics."""
    if m.get("skipped"):
        return "batch skipped (non-finite reward)"
    if m.get("waiting_for_spread"):
        return f"r={m['reward_mean']:.3f} (waiting for a spread of rewards to set the reward units)"
    live = (f"r={m['reward_mean']:.3f} [{m['reward_min']:.3f},{m['reward_max']:.3f}] "
            f"kl0={m['kl_to_prior']:.4f} |μ|={m['mu_abs_mean']:.3f} σ={m['sigma_mean']:.3f} "
            f"clip={m['clipfrac']:.2f} {m['images_per_s']:.1f} img/s")
    if m.get("check_mean") is not None:
        live += f" check={m['check_mean']:.3f}"
    if m.get("validation_score") is not None:
        live += f" val={m['validation_score']:.3f} (best @{m['best_iteration']})"
    return live


class _TrainView:
    """Prints what training.train reports: a header, the progress, a summary (rank 0 only: `quiet`)."""

    def __init__(self, quiet: bool = False):
        self.status = None
        self.progress: Progress | None = None
        self.quiet = quiet

    def close(self) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None
        if self.progress is not None:
            self.progress.__exit__(None, None, None)
            self.progress = None

    def __call__(self, kind: str, data: dict) -> None:
        if not self.quiet:
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
                      f"attention={used['attention']}{'(fp32)' if used.get('attention_dtype') else ''} preset={cfg.preset}")
        console.print(f"  latent={list(t.shape)}  reward={data['reward']}"
                      f"{'  check=' + data['check'] if data['check'] else ''}  keep={cfg.keep}  "
                      f"{summarize_config(cfg)}")
        world = data.get("world")
        if world is not None and world.distributed:
            console.print(f"  ranks={world.size}: each iteration's {cfg.batch} images split across them "
                          f"(≤{-(-cfg.batch // world.size)} per rank), the policy gradient all-reduced")
        if data["resumed_from"] is not None:
            console.print(f"resuming from iteration {data['resumed_from']}/{cfg.iterations}")
        if not console.is_terminal:
            console.print("progress: one line every few iterations (stdout is not a terminal)")
        self.progress = Progress("train", cfg.iterations, t.iteration).__enter__()

    def on_compiled(self, data: dict) -> None:
        console.print(f"  compile + warm-up: {data['seconds']:.1f} s (not counted in the iteration timings)")

    def on_iteration(self, m: dict) -> None:
        self.progress.update(m["iteration"] + 1, live_line(m))

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
            which = (f"the policy after iteration {trainer.best['iteration']}" if trainer.best["iteration"] else
                     "the starting policy (no later one scored higher)")
            last = ", not the last one" if trainer.best["iteration"] != trainer.iteration else ", the last one"
            console.print(f"kept: {which} (validation score {trainer.best['score']:.4f} by the "
                          f"{trainer.best['scored_by']} reward){last}")
        for name, path in result.files.items():
            console.print(f"  {name}: {path}")


class _PromptSetView:
    """Prints what prompt_sets.train_prompt_set reports (rank 0; the other ranks only their errors):
    the plan, a bar over the prompts (every rank's, from the index) with one under it for the current
    prompt's iterations, a line per finished prompt, and the table at the end."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.progress: Progress | None = None
        self.iters: Progress | None = None
        self.iterations = 0

    def close(self) -> None:
        if self.iters is not None:
            self.iters.__exit__(None, None, None)
            self.iters = None
        if self.progress is not None:
            self.progress.__exit__(None, None, None)
            self.progress = None

    def __call__(self, kind: str, data: dict) -> None:
        if kind == "prompt_done" and data["error"] is not None:
            self._traceback(data["error"])  # every rank: whose code failed, and where
        if self.quiet:
            return
        handler = getattr(self, "on_" + kind, None)
        if handler is not None:
            handler(data)

    @staticmethod
    def _traceback(error: BaseException) -> None:
        import sys
        import traceback

        from findcli.errors import FindError, UserCodeError

        if isinstance(error, UserCodeError):
            error = error.original
        elif isinstance(error, (FindError, KeyboardInterrupt)) or not isinstance(error, Exception):
            return
        traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)

    def on_set_start(self, data: dict) -> None:
        from findcli.pipeline import warn

        plan, world, to_run = data["plan"], data["world"], data["to_run"]
        self.iterations = plan.config["iterations"]
        skipped = [it for it in plan.items if it.action == "skip"]
        invalid = [it for it in plan.items if it.action == "invalid"]
        if plan.duplicates:
            warn(f"the prompt file repeats {len(plan.duplicates)} prompt(s); each is trained once: "
                 + ", ".join(repr(p) for p in plan.duplicates))
        console.print("find train --prompts", style="bold", end=" ")
        console.print(f"{len(plan.items)} prompts -> {data['out_dir']}  to train: {len(to_run)} "
                      f"({sum(it.action == 'resume' for it in to_run)} resumed)  already done: {len(skipped)}  "
                      f"not trainable: {len(invalid)}  iterations={self.iterations} batch={plan.config['batch']}")
        if world.distributed:
            console.print(f"  ranks={world.size}: prompts dealt round-robin ({len(data['mine'])} on rank 0), "
                          "each trained as one process would")
        if data.get("init_file"):
            console.print(f"  new prompts start from {data['init_file']}'s prediction for each (--init)")
        else:
            starts = {str(Path(it.init).parent) for it in to_run if it.init}
            if starts:
                console.print(f"  new prompts start from their policy in {', '.join(sorted(starts))} (--init-dir)")
        for it in invalid:
            console.print(f"  not trained: {it.prompt!r}: {it.error}")
        if not console.is_terminal and to_run:
            console.print("progress: plain lines (stdout is not a terminal)")
        if to_run:
            self.progress = Progress("prompts", len(to_run)).__enter__()

    def on_prompt_start(self, data: dict) -> None:
        item = data["item"]
        start = item.resume_from or 0
        if not console.is_terminal:
            resumed = f" (resuming from iteration {start})" if item.action == "resume" else ""
            console.print(f"prompt {data['position'] + 1}/{data['count']} of this rank: {item.prompt!r}{resumed}")
        name = item.prompt if len(item.prompt) <= 40 else item.prompt[:39] + "…"
        self.iters = self.progress.child(name, self.iterations, start) if self.progress else None

    def on_start(self, data: dict) -> None:
        for path in data["cleaned"]:
            console.print(f"removed a temp file left by a killed run: {path}")

    def on_iteration(self, m: dict) -> None:
        if self.iters is not None:
            self.iters.update(m["iteration"] + 1, live_line(m))

    def on_set_progress(self, data: dict) -> None:
        if self.progress is not None:
            self.progress.update(data["finished"])

    def on_prompt_done(self, data: dict) -> None:
        if self.iters is not None:
            self.iters.__exit__(None, None, None)
            self.iters = None
        item, e = data["item"], data["entry"]
        status = e.get("status")
        if status == "done":
            first, last = e.get("first_reward_mean"), (e.get("final_stats") or {}).get("reward_mean")
            r = f"  reward {first:.4f} -> {last:.4f}" if first is not None and last is not None else ""
            console.print(f"done {item.prompt!r}{r}  {e.get('wall_s', 0):.1f} s  ({item.file})")
        elif status == "interrupted":
            console.print(f"interrupted {item.prompt!r} at iteration {e.get('iterations', '?')} ({e.get('error') or ''})")
        else:
            console.print(f"failed {item.prompt!r}: {e.get('error')}")

    def on_set_done(self, data: dict) -> None:
        from rich.table import Table

        self.close()
        o = data["outcome"]
        if o.rank != 0:
            return
        table = Table(title=f"find train --prompts  ranks={o.world_size}  {o.wall_s:.1f} s")
        for col in ("prompt", "status", "iters", "r first", "r last", "s"):
            table.add_column(col, justify="left" if col in ("prompt", "status") else "right")
        for it in o.plan.items:
            e = o.index["prompts"].get(it.prompt, {})
            first, last = e.get("first_reward_mean"), (e.get("final_stats") or {}).get("reward_mean")
            table.add_row(it.prompt, e.get("status", "?"), str(e.get("iterations", "-")),
                          "-" if first is None else f"{first:.3f}", "-" if last is None else f"{last:.3f}",
                          "-" if e.get("wall_s") is None else f"{e['wall_s']:.1f}")
        console.print(table)
        console.print(f"index: {o.path}  (find eval --prompts FILE --policy-dir {o.path.parent})")
        if o.interrupted:
            console.print("interrupted: rerun the same command to resume")
