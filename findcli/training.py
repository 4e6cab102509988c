"""`find train` as one library call: from what the user asked (a TrainRequest) to a finished,
interrupted or refused run. The command parses its options into a request, calls `train`, and
prints the events it is sent; benchmarks and notebooks can call `train` the same way.

Order of work, each step failing with one line before the next, slower one starts:
  1. the config: a preset plus overrides, or the resumed run's own (config.resume_config's rules);
     every number checked (limits), the prompt checked against the built-in grammar;
  2. the output: writable, locked against a second writer (atomic.OutputLock), stale temp files of
     a killed run removed;
  3. the pipeline, the reward(s), the trainer (resumed or started from --init);
  4. the loop (engine.FindTrainer.run): SIGINT/SIGTERM/SIGHUP save and stop it; before it starts
     they abort (nothing to save yet).

Events sent to `on_event(kind, data)`: "loading" {model}, "start" {trainer, reward, check, used,
device, dtype, resumed_from, cleaned, world}, "compiled" {seconds}, "iteration" {metrics}, "done" {outcome}.

Several processes (torchrun / accelerate launch set RANK, WORLD_SIZE, LOCAL_RANK): each iteration's K
samples are split across the ranks (findcli.distributed: sample sharding, one GPU per rank); every
rank runs this function, rank 0 alone takes the output lock and writes the files. `find train
--prompts` (findcli.prompt_sets) shards prompts instead and calls this with split_samples=False.
"""

from __future__ import annotations

import contextlib
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from findcli import atomic, report
from findcli.config import PRESETS, TrainConfig, resume_config
from findcli.errors import Aborted, FindError

Event = Callable[[str, dict], None]


@dataclass
class TrainRequest:
    prompt: str | None = None  # the text to follow (None: only with resume)
    out: Path | None = None  # the policy file to write; None: out.pt, or the resumed run's own
    overrides: dict = field(default_factory=dict)  # TrainConfig fields given explicitly (e.g. {"batch": 4})
    preset: str | None = None  # None: "default" (on --resume: the run's own)
    model: str | None = None  # --model; None: the built-in model (on --resume: the run's own)
    reward: list[str] | None = None  # --reward specs; None: the model's default reward
    reward_model: str | None = None
    check_reward: str | None = None
    init: Path | None = None  # start from this policy's μ, σ
    resume: Path | None = None  # continue this run (its policy OUT.pt or checkpoint OUT.ckpt.pt)
    device: str = "auto"
    dtype: str = "auto"
    kernels: str | None = None
    attention: str = "sdpa"
    compile: bool = False
    # Split each iteration's K samples across the ranks of the environment (RANK/WORLD_SIZE)? None:
    # when it names several ranks; False: never (find train --prompts shards prompts instead).
    split_samples: bool | None = None


@dataclass
class RuntimeCache:
    """Loaded pipelines and rewards that the runs of one process share (find train --prompts trains
    prompt after prompt on one pipeline): loading is not repeated, and no run's numbers change (the
    pipeline and rewards are frozen)."""
    runtimes: dict = field(default_factory=dict)  # (model, device, dtype, kernels, attention, compile, scheduler) -> (device, dtype, pipe, used)
    rewards: dict = field(default_factory=dict)  # (spec, reward_model, model, device) -> (reward, reward_model used)

    def runtime(self, model, device, dtype, kernels, attention, compile, scheduler):
        from findcli.pipeline import load_runtime, setup_runtime

        key = (model, device, dtype, kernels, attention, compile, scheduler)
        if key not in self.runtimes:
            self.runtimes[key] = load_runtime(model, device, dtype, kernels, attention, compile, scheduler)
        else:
            setup_runtime(device, dtype, kernels, model)  # the kernels backend as load_runtime sets it
        dev, dt, pipe, used = self.runtimes[key]
        return dev, dt, pipe, dict(used)

    def reward(self, spec, reward_model, model, device):
        key = (spec, reward_model, model, str(device))
        if key not in self.rewards:
            built = build_reward(spec, reward_model, model, device)
            self.rewards[key] = self.rewards[(spec, built[1], model, str(device))] = built  # asked for, and as resolved
        return self.rewards[key]


@dataclass
class TrainOutcome:
    cfg: TrainConfig
    trainer: object  # engine.FindTrainer
    result: object  # engine.TrainResult
    resumed_from: int | None = None  # the iteration a resumed run continued from


def default_reward(model: str | None) -> str:
    """The reward used when none is given: a built-in world's own, clip elsewhere."""
    from findcli import shapes

    world = shapes.world_of(model)
    return world.default_reward if world is not None else TrainConfig.reward


def build_reward(spec, reward_model: str | None, model: str | None, device):
    """The reward named by `spec`; `clip` on the built-in model defaults to the built-in CLIP.
    Returns (reward, the reward_model actually used)."""
    from findcli import shapes
    from findcli.rewards import build_reward as build

    world = shapes.world_of(model)
    if reward_model is None and world is not None:
        reward_model = world.clip_model
    return build(spec, device, reward_model=reward_model), reward_model


def _policy_path_of(resume: Path) -> Path:
    return resume.with_name(resume.name[: -len(".ckpt.pt")] + ".pt") if resume.name.endswith(".ckpt.pt") else resume


def plan(request: TrainRequest) -> tuple[TrainConfig, dict | None, Path]:
    """(config, the resumed train_state or None, the output path), all checked; loads no model."""
    from findcli import shapes
    from findcli.pipeline import model_id
    from findcli.policy import load_checkpoint

    state = None
    if request.resume is not None:
        meta, state = load_checkpoint(request.resume)
        saved = meta.get("config")
        if not isinstance(saved, dict) or "adv_norm" not in saved:
            raise FindError(f"{str(request.resume)!r} was written by an older findcli (other noise seeds and update); "
                            "it cannot be resumed exactly: start a new run, optionally with --init "
                            f"{_policy_path_of(request.resume)}")
        same_prompt = request.prompt is None or " ".join(request.prompt.split()) == saved.get("prompt")
        recorded = meta.get("model")
        # a local folder that no longer exists (moved, another machine): any --model may stand in for it
        moved = recorded not in (None, *shapes.WORLDS) and Path(str(recorded)).is_absolute() \
            and not Path(str(recorded)).exists()
        other_model = request.model is not None and model_id(request.model) != model_id(recorded) and not moved
        cfg = resume_config(saved, request.overrides, {
            "prompt": None if same_prompt else request.prompt, "preset": request.preset,
            "reward": request.reward, "reward_model": request.reward_model, "check_reward": request.check_reward,
            "init": request.init, "model": request.model if other_model else None}, str(request.resume))
        if request.model is not None:
            cfg.model = request.model
        out = request.out or _policy_path_of(request.resume)
    else:
        if request.prompt is None:
            raise FindError("give a prompt, e.g. find train \"a red cube on a blue sphere\" (or --resume out.pt)")
        cfg = new_config(request)
        out = request.out or Path("out.pt")
    if not cfg.prompt.strip():
        raise FindError("the prompt is empty; give the text to follow, e.g. find train \"a red cube on a blue sphere\"")
    cfg.validate()
    world = shapes.world_of(cfg.model)
    if world is not None:
        world.check_prompt(cfg.prompt)  # a built-in model knows a small vocabulary: say which words, early
    out = atomic.check_writable(out)
    if out.suffix != ".pt" or out.name.endswith(".ckpt.pt"):
        raise FindError(f"--out {str(out)!r} should end in .pt (and not .ckpt.pt, the checkpoint's name), e.g. out.pt")
    return cfg, state, out


def new_config(request: TrainRequest) -> TrainConfig:
    """The config of a new run (not a resumed one): the preset with the request's overrides, the model
    and the rewards; not validated (plan validates)."""
    from findcli import shapes

    world = shapes.world_of(request.model)
    # A built-in world's own defaults (the video world's shorter run), under what the user gave;
    # --preset paper keeps the official code's settings.
    own = dict(world.train_defaults) if world is not None and (request.preset or "default") == "default" else {}
    cfg = PRESETS[request.preset or "default"](**{**own, **request.overrides})
    cfg.prompt, cfg.model = " ".join((request.prompt or "").split()), request.model
    if world is not None and world.default_frames and cfg.frames is None:
        cfg.frames = world.default_frames  # the built-in video model's clips: 8 frames
    cfg.reward = ",".join(request.reward) if request.reward else default_reward(request.model)
    cfg.reward_model = request.reward_model
    cfg.check_reward = request.check_reward
    return cfg


def _check_split(cfg: TrainConfig, world) -> None:
    if cfg.batch < world.size:
        raise FindError(f"--batch {cfg.batch} cannot be split across {world.size} ranks (sample sharding: each rank "
                        f"rolls out its share of the K images of an iteration); give --batch {world.size} or more, "
                        "or start fewer processes")
    if cfg.keep == "best" and cfg.validate_n < world.size:
        raise FindError(f"--validate-n {cfg.validate_n} cannot be split across {world.size} ranks; give "
                        f"--validate-n {world.size} or more")


@contextlib.contextmanager
def _abort_on_signals():
    """Until the loop installs its own handlers: Ctrl-C, SIGTERM and SIGHUP abort with one line."""
    def handler(signum, frame):  # noqa: ARG001
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        raise Aborted(signum, f"aborted by {name} before training started; nothing was written")

    previous = {}
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is None:
            continue
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread
            break
    try:
        yield
    except KeyboardInterrupt:
        raise Aborted(signal.SIGINT, "aborted by Ctrl-C before training started; nothing was written") from None
    finally:
        for sig, h in previous.items():
            signal.signal(sig, h)


def train(request: TrainRequest, on_event: Event | None = None, cache: RuntimeCache | None = None) -> TrainOutcome:
    """Run (or resume) a FIND training run end to end; see the module docstring. `cache`: pipelines
    and rewards loaded by earlier runs of this process, reused (and filled) here."""
    from findcli import distributed

    world = distributed.world_from_env() if request.split_samples is not False else distributed.SINGLE
    emit = on_event or (lambda kind, data: None)
    cfg, state, out = plan(request)
    if world.distributed:
        _check_split(cfg, world)
    device = distributed.rank_device(request.device, world)
    cache = cache if cache is not None else RuntimeCache()
    from findcli.engine import FindTrainer
    from findcli.policy import checkpoint_path, load_policy

    writer = world.rank == 0  # rank 0 alone locks and writes the outputs; the others hold the same state
    with atomic.OutputLock(out) if writer else contextlib.nullcontext(), \
            distributed.sample_group(world, device) as shard:
        cleaned = []
        for target in (out, checkpoint_path(out), *(report.side_file(out, n) for n in report.SIDE_FILES)):
            cleaned += [str(p) for p in atomic.clean_stale(target)] if writer else []
        with _abort_on_signals():
            emit("loading", {"model": cfg.model})
            dev, dt, pipe, used = cache.runtime(cfg.model, device, request.dtype, request.kernels,
                                                request.attention, request.compile, cfg.scheduler)
            from findcli.pipeline import check_prompt

            cfg.prompt = check_prompt(pipe, cfg.prompt)
            reward_fn, cfg.reward_model = cache.reward(cfg.reward, cfg.reward_model, cfg.model, dev)
            check_fn = None
            if cfg.check_reward:
                check_fn, cfg.check_reward_model = cache.reward(cfg.check_reward, cfg.check_reward_model,
                                                                cfg.model, dev)
            trainer = FindTrainer(cfg, pipe, reward_fn, out, check_reward=check_fn, shard=shard)
            resumed_from = None
            from findcli.policy import check_latent_shape

            if state is not None:
                last = state.get("last_mu")
                if last is None or last.numel() != trainer.policy.dim:
                    raise FindError(f"{str(request.resume)!r} holds a policy of {'no' if last is None else last.numel()} "
                                    f"latent elements; this model's latent {list(trainer.shape)} has "
                                    f"{trainer.policy.dim}: resume on the model the run was trained with")
                trainer.load_train_state(state)
                resumed_from = trainer.iteration
            elif request.init is not None:
                from findcli.sampling import check_family

                from findcli import conditional

                cond = conditional.load_if_conditional(request.init)
                if cond is not None:  # a conditional policy: start from its prediction for this prompt
                    check_family(cond[1], pipe, str(request.init))
                    start = conditional.policy_file_for(cond[0], cond[1], pipe, cfg.prompt)
                else:
                    start = load_policy(request.init)
                    check_family(start.meta, pipe, str(request.init))
                check_latent_shape(start.policy, trainer.shape, start.meta.get("model"))
                trainer.init_from(start.policy.mu, start.policy.log_sigma)
            emit("start", {"trainer": trainer, "reward": reward_fn.spec,
                           "check": check_fn.spec if check_fn is not None else None, "used": used, "device": dev,
                           "dtype": dt, "resumed_from": resumed_from, "cleaned": cleaned,
                           "world": world})
            if request.compile:
                used["compile_s"] = trainer.warmup()
                emit("compiled", {"seconds": used["compile_s"]})
        result = trainer.run(lambda m: emit("iteration", m))
    outcome = TrainOutcome(cfg, trainer, result, resumed_from)
    emit("done", {"outcome": outcome})
    return outcome
