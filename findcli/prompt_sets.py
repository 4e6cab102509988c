"""`find train --prompts FILE --out-dir DIR`: one FIND policy per prompt of a set, resumable, and sharded
across ranks when torchrun or `accelerate launch` started several processes.

Layout (what `find eval --prompts FILE --policy-dir DIR` reads): DIR/<slug>.pt per prompt
(findcli.evaluation.slug), with its checkpoint and side files beside it, exactly as
`find train PROMPT --out DIR/<slug>.pt` writes them, and DIR/index.json:

  {"format": "findcli-prompt-set", "version": 1,
   "prompts_file": the FILE of the last run, "config": the set's TrainConfig (prompt left out),
   "init_dir": --init-dir of the set (null: every prompt starts from N(0, I)),
   "init": --init COND.pt of the set, a conditional policy (null: none),
   "run": id of the last run, "world_size": its ranks, "started", "updated": UTC times,
   "complete": true once every prompt of the file is done, "counts": {status: prompts},
   "duplicates": [prompts the file repeats], "wall_s": seconds of the last run (rank 0, start to end),
   "prompts": {PROMPT: {"file": "<slug>.pt", "category", "status", "rank", "pid", "host", "run",
               "attempts", "iterations", "resumed_from", "init", "wall_s", "final_stats": {...},
               "first_reward_mean", "error", "errors": [what ended earlier attempts]}}}

status: pending (not started), running (rank `rank` is on it), done, interrupted (stopped by a
signal; its checkpoint is kept), failed ("error": one line; a prompt the built-in model cannot parse
is listed so and never started). What a rerun does is read from the files, not from the index (which
a killed run may have left behind): a policy whose iteration reached --iterations is skipped, a
checkpoint DIR/<slug>.ckpt.pt is resumed (bit-exactly, as `find train --resume`), anything else
starts afresh. The set's settings are fixed by its first run; a rerun with others (but --iterations,
--checkpoint-every, --max-batch), or with another --init-dir, is refused with one line.

--init-dir INIT: each prompt starts from INIT/<slug>.pt (as `find train PROMPT --init INIT/<slug>.pt`;
another set's --out-dir, or a teacher's predictions, RESULTS.md §10.4) instead of N(0, I); "init" in
its entry names the file. A prompt with no readable start file there is listed as failed and never
started; the others still run. A resumed prompt continues from its checkpoint.
--init COND.pt (a conditional policy, `find train --prompts FILE --conditional`): each prompt starts from
the network's prediction for it (as `find train PROMPT --init COND.pt`), so a set of new prompts starts
where one amortised network puts them and FIND refines each (RESULTS.md §10.8); "init" in each entry
names the file. --init and --init-dir do not go together.

Ranks (findcli.distributed): rank 0 plans (reads the file and DIR, holds the set's lock, writes the
index) and broadcasts the plan; the prompts still to train are dealt round-robin; each rank trains
its own with split_samples=False (each run is the 1-process run: the policies do not depend on the
number of ranks) and records each prompt in the index under a lock as it goes; after a barrier rank 0
merges the final index. A prompt that raises is recorded as failed and its rank goes on with the
next one; a rank whose process dies leaves its prompt "running" until rank 0 (whose barrier then
fails) records it as failed; torchrun stops the other ranks (SIGTERM: each saves its checkpoint and
records "interrupted"), and the same command resumes (`torchrun --max-restarts N` reruns it by itself).

Events sent to `on_event(kind, data)`: "set_start" {plan, world, mine, to_run, out_dir, init_file}, "prompt_start"
{item, position, count}, the training events of findcli.training for that prompt, "set_progress"
{finished, total} (rank 0, every few seconds), "prompt_done" {item, entry, error}, "set_done" {outcome}.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from findcli import atomic
from findcli.config import RESUMABLE
from findcli.errors import Aborted, FindError
from findcli.training import RuntimeCache, TrainRequest, new_config

Event = Callable[[str, dict], None]

INDEX = "index.json"
FORMAT_NAME = "findcli-prompt-set"
FORMAT_VERSION = 1
STATUSES = ("pending", "running", "done", "interrupted", "failed")
FINISHED = ("done", "failed", "interrupted")  # a prompt's attempt in this run is over
# The last batch's metrics kept in the index as a prompt's final stats.
STAT_KEYS = ("reward_mean", "reward_min", "reward_max", "reward_std", "check_mean", "kl_to_prior", "mu_abs_mean",
             "sigma_mean", "validation_score", "best_iteration")
PROGRESS_EVERY_S = 2.0  # rank 0 re-reads the index for the prompts bar at most this often


@dataclass
class PromptSetRequest:
    prompts: Path  # the prompt file: one prompt per line, `category<TAB>prompt` allowed, # comments
    out_dir: Path  # DIR: DIR/<slug>.pt per prompt (and its checkpoint, side files) and DIR/index.json
    train: TrainRequest = field(default_factory=TrainRequest)  # every prompt's settings (prompt/out/resume unset; init: a conditional policy or unset)
    init_dir: Path | None = None  # INIT: each prompt starts from INIT/<slug>.pt; None: from N(0, I)


@dataclass
class Item:
    """One prompt of the set as rank 0 planned it (broadcast to the other ranks)."""
    prompt: str  # the text, whitespace normalised (the index's key, the policy's meta prompt)
    category: str | None  # the file's `category<TAB>`, else the built-in model's template category
    file: str  # the policy's name inside DIR: <slug>.pt
    action: str  # "skip" (finished), "resume" (from its checkpoint), "start" (a new run), "invalid" (not run)
    error: str | None = None  # why it cannot run (action "invalid")
    resume_from: int | None = None  # the checkpoint's iteration (action "resume")
    init: str | None = None  # the policy it starts from: INIT/<slug>.pt (--init-dir) or COND.pt (--init) (action "start")


@dataclass
class Plan:
    """What rank 0 decided before any training; every rank works from it."""
    run: str  # this run's id (index entries it touched carry it)
    items: list[Item]  # every prompt of the file, in file order, duplicates removed
    duplicates: list[str]  # prompts the file repeats (trained once)
    config: dict  # the set's TrainConfig (prompt ""), RESUMABLE values included
    index_path: Path  # DIR/index.json

    @property
    def to_run(self) -> list[Item]:
        return [it for it in self.items if it.action in ("start", "resume")]


@dataclass
class PromptSetOutcome:
    index: dict  # index.json as this rank last saw it (rank 0: the merged final one)
    path: Path  # DIR/index.json
    plan: Plan  # what was planned
    ran: list[str]  # prompts this rank trained (or tried), in order
    failed: dict[str, str]  # prompt -> error: on rank 0 every failed prompt of the file, elsewhere this rank's
    interrupted: bool  # stopped by a signal: rerun the same command to resume
    stop_signal: str | None  # its name
    rank: int  # this process's rank
    world_size: int  # ranks in the run
    wall_s: float  # this rank's seconds from start to end


# ---------------------------------------------------------------------------------------------- index file


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def read_index(path: Path) -> dict | None:
    """The index at `path`, None when there is none; one-line error when it is not one of ours."""
    if not path.exists():
        return None
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FindError(f"{str(path)!r} cannot be read as a prompt-set index ({type(e).__name__}); move it away or "
                        "choose another --out-dir") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT_NAME or not isinstance(index.get("prompts"), dict):
        raise FindError(f"{str(path)!r} is not a findcli prompt-set index; choose another --out-dir")
    if index.get("version") != FORMAT_VERSION:
        raise FindError(f"{str(path)!r} has index version {index.get('version')!r}; this findcli reads version "
                        f"{FORMAT_VERSION}; choose another --out-dir")
    return index


def _write_index(path: Path, index: dict) -> None:
    index["updated"] = _now()
    counts = {s: 0 for s in STATUSES}
    for entry in index["prompts"].values():
        counts[entry.get("status", "pending")] = counts.get(entry.get("status", "pending"), 0) + 1
    index["counts"] = counts
    ordered = {k: v for k, v in index.items() if k != "prompts"} | {"prompts": index["prompts"]}  # the set first
    atomic.write_text(path, json.dumps(ordered, indent=2) + "\n")


def _update_lock(out_dir: Path) -> atomic.OutputLock:
    """Held (blocking) around each read-modify-write of the index: several ranks record prompts."""
    return atomic.OutputLock(out_dir / f"{INDEX}.update", wait=True)


def update_entry(plan: Plan, prompt: str, add_error: str | None = None, attempt: bool = False, **fields) -> dict:
    """Merge `fields` into the prompt's index entry under the update lock (`add_error`: append to its
    errors; `attempt`: count one more attempt); returns the entry."""
    with _update_lock(plan.index_path.parent):
        index = _must_read(plan)
        entry = index["prompts"].setdefault(prompt, {})
        entry.update(fields)
        if attempt:
            entry["attempts"] = int(entry.get("attempts") or 0) + 1
        if add_error:
            entry["errors"] = (entry.get("errors") or []) + [add_error]
        _write_index(plan.index_path, index)
        return dict(entry)


def _must_read(plan: Plan) -> dict:
    index = read_index(plan.index_path)
    if index is None:
        raise FindError(f"{str(plan.index_path)!r} disappeared while the set was training; rerun the same command "
                        "(the policies and checkpoints in the folder are kept)")
    return index


def _final_stats(metrics: list[dict]) -> tuple[dict, float | None]:
    rows = [m for m in metrics if not m.get("skipped") and "reward_mean" in m]
    if not rows:
        return {}, None
    last = {k: rows[-1][k] for k in STAT_KEYS if rows[-1].get(k) is not None}
    return last, rows[0]["reward_mean"]


# ---------------------------------------------------------------------------------------------- plan (rank 0)


def _check_request(request: PromptSetRequest) -> None:
    t = request.train
    for given, flag, why in ((t.prompt, "a PROMPT", "the prompts come from --prompts"),
                             (t.out, "--out", "each prompt's policy is DIR/<slug>.pt of --out-dir"),
                             (t.resume, "--resume", "a prompt set resumes by itself: run the same command again")):
        if given is not None:
            raise FindError(f"{flag} does not go with --prompts FILE ({why})")
    if t.init is not None:
        from findcli.conditional import is_conditional, load_conditional

        if request.init_dir is not None:
            raise FindError("give --init COND.pt (one conditional policy for every prompt) or --init-dir INIT (a policy "
                            "per prompt), not both")
        if Path(t.init).is_file() and not is_conditional(t.init):
            raise FindError(f"--init {str(t.init)!r} is a one-prompt policy; with --prompts FILE, --init takes a "
                            "conditional policy (each prompt starts from its prediction); use --init-dir INIT to start "
                            "each prompt from its own INIT/<slug>.pt")
        load_conditional(t.init)  # missing, corrupt: one line now, before any prompt starts
    if request.out_dir is None:
        raise FindError("--prompts FILE needs --out-dir DIR (one policy DIR/<slug>.pt per prompt, and DIR/index.json)")
    if request.out_dir.exists() and not request.out_dir.is_dir():
        raise FindError(f"--out-dir {str(request.out_dir)!r} is a file; give a folder")
    if request.init_dir is not None and not request.init_dir.is_dir():
        raise FindError(f"--init-dir {str(request.init_dir)!r} is not a folder; give the folder of the policies "
                        "to start from (INIT/<slug>.pt per prompt, e.g. another set's --out-dir)")


def set_config(request: PromptSetRequest, saved: dict | None):
    """The set's TrainConfig (prompt ""): the request's settings; RESUMABLE ones not given are the
    recorded set's. One-line error when another setting differs from the recorded set's."""
    t = request.train
    cfg = new_config(dataclasses.replace(t, prompt=None))
    if saved is not None:
        for k in RESUMABLE:
            if k not in t.overrides and k in saved:
                setattr(cfg, k, saved[k])
    cfg.validate()
    if saved is not None:
        mine = cfg.to_dict()
        changed = [k for k in mine if k not in ("prompt", *RESUMABLE) and k in saved and saved[k] != mine[k]]
        if changed:
            what = ", ".join(f"--{k.replace('_', '-')} {saved[k]!r} there, {mine[k]!r} now" for k in changed[:4])
            raise FindError(f"{str(request.out_dir)!r} holds a prompt set trained with other settings ({what}); rerun "
                            "with its settings to resume it (only --iterations, --checkpoint-every and --max-batch may "
                            "change), or choose another --out-dir")
    return cfg


def _init_dir(request: PromptSetRequest) -> str | None:
    """--init-dir as the index records it (absolute, so that a rerun from another folder compares equal)."""
    return None if request.init_dir is None else str(request.init_dir.resolve())


def _init_file(request: PromptSetRequest) -> str | None:
    """--init COND.pt as the index records it (absolute, as _init_dir)."""
    return None if request.train.init is None else str(Path(request.train.init).resolve())


def _item_for(prompt: str, category: str | None, cfg, out_dir: Path, world, taken: dict[str, str],
              init_dir: Path | None = None, init_file: str | None = None) -> Item:
    from findcli.evaluation import slug
    from findcli.policy import checkpoint_path, load_checkpoint, load_policy

    name = slug(prompt)
    file = f"{name}.pt"
    if not prompt:
        return Item(prompt, category, file, "invalid", "the prompt is empty")
    if not name:
        return Item(prompt, category, file, "invalid", "the prompt has no letter or digit to name its file after")
    if world is not None:
        try:
            world.check_prompt(prompt)
        except FindError as e:
            return Item(prompt, category, file, "invalid", str(e))
        category = category or world.category(prompt)
    if file in taken:
        return Item(prompt, category, file, "invalid", f"its file name {file} is that of {taken[file]!r} "
                    "(prompts differing only in case or punctuation share one); reword one of them")
    taken[file] = prompt
    policy, ckpt = out_dir / file, checkpoint_path(out_dir / file)
    try:
        if policy.exists():
            meta = load_policy(policy).meta
            if meta.get("prompt") != prompt:
                return Item(prompt, category, file, "invalid", f"{str(policy)!r} holds a policy for another prompt "
                            f"({meta.get('prompt')!r}); move it away")
            if int(meta.get("iteration", 0)) >= cfg.iterations and "kept" in meta:
                return Item(prompt, category, file, "skip")
        if ckpt.exists():
            meta, state = load_checkpoint(ckpt)
            if meta.get("prompt") != prompt:
                return Item(prompt, category, file, "invalid", f"{str(ckpt)!r} is the checkpoint of another prompt "
                            f"({meta.get('prompt')!r}); move it away")
            return Item(prompt, category, file, "resume", resume_from=int(state.get("iteration", 0)))
    except FindError as e:
        return Item(prompt, category, file, "invalid", str(e))
    if init_dir is None:
        return Item(prompt, category, file, "start", init=init_file)
    start = init_dir / file
    if not start.exists():
        return Item(prompt, category, file, "invalid", f"--init-dir has no policy to start it from ({str(start)!r}); "
                    "write one there, or train this prompt in a set without --init-dir")
    try:
        load_policy(start)  # its model family and latent shape are checked when the prompt starts
    except FindError as e:
        return Item(prompt, category, file, "invalid", str(e))
    return Item(prompt, category, file, "start", init=str(start))


def plan_set(request: PromptSetRequest, run: str) -> Plan:
    """Read the prompt file and DIR, decide every prompt's action, and write the index (rank 0, under
    the set's lock). Raises FindError (one line) for a file or a DIR that cannot be used."""
    from findcli import shapes
    from findcli.evaluation import read_suite

    _check_request(request)
    out_dir = request.out_dir
    index_path = out_dir / INDEX
    atomic.check_writable(index_path)
    lines = read_suite(request.prompts)  # a missing, unreadable or empty file: one line
    seen: dict[str, str | None] = {}
    duplicates: list[str] = []
    for prompt, category in lines:
        if prompt in seen:
            if prompt not in duplicates:
                duplicates.append(prompt)
            continue
        seen[prompt] = category
    atomic.clean_stale(index_path)
    index = read_index(index_path)
    cfg = set_config(request, index["config"] if index is not None else None)
    init_dir = _init_dir(request)
    if index is not None and index.get("init_dir") != init_dir:  # as set_config does for the settings
        raise FindError(f"{str(out_dir)!r} holds a prompt set started from --init-dir {index.get('init_dir')!r}, not "
                        f"{init_dir!r}; rerun with its --init-dir to resume it, or choose another --out-dir")
    if index is not None and index.get("init") != _init_file(request):
        raise FindError(f"{str(out_dir)!r} holds a prompt set started from --init {index.get('init')!r}, not "
                        f"{_init_file(request)!r}; rerun with its --init to resume it, or choose another --out-dir")
    from findcli.pipeline import resolve_model
    from findcli.rewards import parse_reward_spec

    resolve_model(cfg.model)  # a --model that cannot be loaded, a --reward that cannot be parsed: one line now
    for spec in (cfg.reward, cfg.check_reward):
        if spec:
            parse_reward_spec(spec)
    world = shapes.world_of(request.train.model)  # a built-in world checks each prompt's words
    taken: dict[str, str] = {}
    items = [_item_for(p, c, cfg, out_dir, world, taken, request.init_dir, _init_file(request)) for p, c in seen.items()]
    config = dict(cfg.to_dict(), prompt="")
    plan = Plan(run, items, duplicates, config, index_path)
    _start_index(plan, request, index)
    return plan


def _start_index(plan: Plan, request: PromptSetRequest, index: dict | None) -> None:
    index = index or {"format": FORMAT_NAME, "version": FORMAT_VERSION, "prompts": {}}
    index.update({"prompts_file": str(request.prompts), "config": plan.config, "run": plan.run, "started": _now(),
                  "world_size": None, "complete": False, "duplicates": plan.duplicates,
                  "init_dir": _init_dir(request), "init": _init_file(request)})
    for it in plan.items:
        entry = index["prompts"].setdefault(it.prompt, {})
        entry.update({"file": it.file, "category": it.category})
        entry.setdefault("attempts", 0)
        entry.setdefault("errors", [])
        if entry.get("status") == "running":  # the process of an earlier run ended without recording an outcome
            entry["errors"].append(f"attempt {entry.get('attempts')} (rank {entry.get('rank')}, pid {entry.get('pid')}) "
                                   "ended without recording an outcome (its process was killed?)")
        if it.action == "skip":
            if entry.get("status") != "done":
                _done_from_file(entry, request.out_dir / it.file)
        elif it.action == "invalid":
            entry.update({"status": "failed", "error": it.error, "run": plan.run})
        elif entry.get("status") not in ("interrupted", "failed"):
            entry["status"] = "interrupted" if it.action == "resume" else "pending"
        if it.action == "resume":
            entry["resumed_from"] = it.resume_from
        if it.action == "start":
            entry["init"] = it.init
    _write_index(plan.index_path, index)


def _done_from_file(entry: dict, policy: Path) -> None:
    """A finished policy the index does not know as such (a run killed between its last save and its
    index update): its status and stats from the file."""
    from findcli.policy import load_policy

    meta = load_policy(policy).meta
    stats = meta.get("final_stats") or {}
    entry.update({"status": "done", "iterations": meta.get("iteration"), "error": None,
                  "final_stats": {k: stats[k] for k in STAT_KEYS if stats.get(k) is not None}})


# ---------------------------------------------------------------------------------------------- the run


class _Stop:
    """Between prompts (and while a run writes its pictures) a signal asks the set to stop after the
    current prompt; a second one aborts. While a prompt trains, the trainer's own handlers rule."""

    def __init__(self):
        self.signum: int | None = None
        self.previous: dict = {}

    def __enter__(self) -> "_Stop":
        for name in ("SIGINT", "SIGTERM", "SIGHUP"):
            sig = getattr(signal, name, None)
            if sig is None:
                continue
            try:
                self.previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                break
        return self

    def _handle(self, signum, frame):  # noqa: ARG002
        name = signal.Signals(signum).name
        if self.signum is not None:
            raise Aborted(signum, f"aborted by a second {name}")
        self.signum = signum
        from findcli.pipeline import warn

        warn(f"{name}: stopping after this prompt ({name} again to abort); rerun the same command to resume")

    def __exit__(self, *exc) -> None:
        for sig, h in self.previous.items():
            signal.signal(sig, h)


def _request_for(item: Item, plan: Plan, template: TrainRequest, out_dir: Path, device: str) -> TrainRequest:
    """The TrainRequest of one prompt: its own run, never split across ranks."""
    from findcli.policy import checkpoint_path

    resumable = {k: plan.config[k] for k in RESUMABLE}
    policy = out_dir / item.file
    if item.action == "resume":
        return TrainRequest(prompt=item.prompt, out=policy, overrides=resumable, model=template.model,
                            resume=checkpoint_path(policy), device=device, dtype=template.dtype,
                            kernels=template.kernels, attention=template.attention, compile=template.compile,
                            split_samples=False)
    return dataclasses.replace(template, prompt=item.prompt, out=policy, overrides={**template.overrides, **resumable},
                               device=device, split_samples=False, init=None if item.init is None else Path(item.init))


def _one_line(e: BaseException) -> str:
    if isinstance(e, FindError):
        return str(e)
    first = (str(e).strip().splitlines() or [""])[0][:300]
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def train_prompt_set(request: PromptSetRequest, on_event: Event | None = None) -> PromptSetOutcome:
    """Train every prompt of the file (this rank's share of them); see the module docstring."""
    from findcli import distributed

    emit = on_event or (lambda kind, data: None)
    world = distributed.world_from_env()
    t_start = time.perf_counter()
    created = False
    lock = None
    try:
        if world.distributed:  # the plan and the final barrier travel over gloo, whatever the device
            created = distributed.init_group(world, "gloo", distributed.PROMPT_SET_TIMEOUT)
        payload = None
        if world.rank == 0:
            try:
                _check_request(request)
                lock = atomic.OutputLock(request.out_dir / INDEX).acquire()
                payload = plan_set(request, uuid.uuid4().hex[:12])
            except FindError as e:
                payload = ("error", str(e), e.exit_code)
        if world.distributed:
            payload = distributed.broadcast(payload)
        if isinstance(payload, tuple):  # rank 0 refused the set: the same line on every rank
            raise FindError(payload[1], payload[2])
        plan: Plan = payload
        if world.rank == 0:
            update_world(plan, world.size)
        outcome = _run_share(request, plan, world, emit, t_start)
    finally:
        if lock is not None:
            lock.release()
        distributed.leave_group(created)
    emit("set_done", {"outcome": outcome})
    return outcome


def update_world(plan: Plan, size: int) -> None:
    with _update_lock(plan.index_path.parent):
        index = _must_read(plan)
        index["world_size"] = size
        _write_index(plan.index_path, index)


def _run_share(request: PromptSetRequest, plan: Plan, world, emit: Event, t_start: float) -> PromptSetOutcome:
    from findcli import distributed
    from findcli.training import train

    to_run = plan.to_run
    mine = distributed.round_robin(to_run, world.rank, world.size)
    emit("set_start", {"plan": plan, "world": world, "mine": mine, "to_run": to_run, "out_dir": request.out_dir,
                       "init_file": request.train.init})
    device = distributed.rank_device(request.train.device, world)
    cache = RuntimeCache()
    ran: list[str] = []
    failed: dict[str, str] = {}
    interrupted, stop_name = False, None
    last_poll = [time.perf_counter()]
    titles = {it.prompt for it in to_run}

    def forward(kind: str, data: dict) -> None:
        emit(kind, data)
        if kind == "iteration" and world.rank == 0 and time.perf_counter() - last_poll[0] >= PROGRESS_EVERY_S:
            last_poll[0] = time.perf_counter()
            emit("set_progress", progress(plan, titles))

    with _Stop() as stop:
        if mine:  # the pipeline and rewards every prompt shares, loaded once: a setup that fails is one line
            _preload(cache, plan, request.train, device)
        for position, item in enumerate(mine):
            if stop.signum is not None:
                interrupted, stop_name = True, signal.Signals(stop.signum).name
                break
            entry = update_entry(plan, item.prompt, attempt=True, status="running", rank=world.rank, pid=os.getpid(),
                                 host=socket.gethostname(), run=plan.run, error=None)
            emit("prompt_start", {"item": item, "position": position, "count": len(mine)})
            ran.append(item.prompt)
            t0 = time.perf_counter()
            error: BaseException | None = None
            try:
                out = train(_request_for(item, plan, request.train, request.out_dir, device), forward, cache)
            except (Aborted, KeyboardInterrupt) as e:
                error = e
                signum = getattr(e, "signum", signal.SIGINT)
                entry = update_entry(plan, item.prompt, status="interrupted", wall_s=round(time.perf_counter() - t0, 3),
                                     error=_one_line(e) or "aborted", add_error=_one_line(e) or "aborted")
                interrupted, stop_name = True, signal.Signals(signum).name
            except Exception as e:  # noqa: BLE001 - one prompt's failure (its reward, the GPU) must not cost the set
                error = e
                failed[item.prompt] = _one_line(e)
                entry = update_entry(plan, item.prompt, status="failed", wall_s=round(time.perf_counter() - t0, 3),
                                     error=_one_line(e), add_error=_one_line(e))
            else:
                stats, first = _final_stats(out.result.metrics)
                status = "interrupted" if out.result.interrupted else "done"
                entry = update_entry(plan, item.prompt, status=status, iterations=out.trainer.iteration,
                                     resumed_from=out.resumed_from, wall_s=round(time.perf_counter() - t0, 3),
                                     final_stats=stats, first_reward_mean=first, error=None,
                                     **({"add_error": f"interrupted by {out.result.stop_signal} at iteration "
                                                      f"{out.trainer.iteration}"} if out.result.interrupted else {}))
                if out.result.interrupted:
                    interrupted, stop_name = True, out.result.stop_signal
            emit("prompt_done", {"item": item, "entry": entry, "error": error})
            if world.rank == 0:
                emit("set_progress", progress(plan, titles))
            if interrupted:
                break
        if stop.signum is not None and not interrupted and len(ran) < len(mine):
            interrupted, stop_name = True, signal.Signals(stop.signum).name

        # still under _Stop: the SIGTERM torchrun sends when a rank dies must not cut rank 0's merge short
        peers_gone = False
        if world.distributed:
            try:
                distributed.barrier()
            except RuntimeError:  # a rank's process ended (gloo: connection closed)
                peers_gone = True
        index = _merge(plan, world, peers_gone, t_start) if world.rank == 0 else _must_read(plan)
    if world.rank == 0:  # the set's outcome: every rank's prompts
        entries = [index["prompts"][it.prompt] for it in plan.items]
        failed = {it.prompt: e.get("error") or "failed" for it, e in zip(plan.items, entries) if e.get("status") == "failed"}
        interrupted = interrupted or any(e.get("status") == "interrupted" and e.get("run") == plan.run for e in entries)
    return PromptSetOutcome(index, plan.index_path, plan, ran, failed, interrupted, stop_name, world.rank, world.size,
                            time.perf_counter() - t_start)


def _preload(cache: RuntimeCache, plan: Plan, t: TrainRequest, device: str) -> None:
    c = plan.config
    dev, _, _, _ = cache.runtime(c["model"], device, t.dtype, t.kernels, t.attention, t.compile, c["scheduler"])
    cache.reward(c["reward"], c["reward_model"], c["model"], dev)
    if c["check_reward"]:
        cache.reward(c["check_reward"], c["check_reward_model"], c["model"], dev)


def progress(plan: Plan, titles: set[str]) -> dict:
    """{finished, total}: the prompts of this run whose attempt is over, over all ranks (from the index)."""
    try:
        index = read_index(plan.index_path) or {"prompts": {}}
    except FindError:
        return {"finished": 0, "total": len(titles)}
    done = sum(1 for p in titles if index["prompts"].get(p, {}).get("run") == plan.run
               and index["prompts"][p].get("status") in FINISHED)
    return {"finished": done, "total": len(titles)}


def _merge(plan: Plan, world, peers_gone: bool, t_start: float) -> dict:
    """Rank 0, after the barrier: the final index (a rank that died leaves its prompt failed)."""
    with _update_lock(plan.index_path.parent):
        index = _must_read(plan)
        for it in plan.to_run:
            entry = index["prompts"][it.prompt]
            if entry.get("status") == "running" and entry.get("run") == plan.run and peers_gone:
                why = (f"rank {entry.get('rank')} (pid {entry.get('pid')}) stopped while training it (its process "
                       "ended); rerun to resume")
                entry.update({"status": "failed", "error": why})
                entry["errors"] = (entry.get("errors") or []) + [why]
        index["complete"] = all(index["prompts"][it.prompt].get("status") == "done" for it in plan.items)
        index["wall_s"] = round(time.perf_counter() - t_start, 3)
        index["world_size"] = world.size
        _write_index(plan.index_path, index)
        return index
