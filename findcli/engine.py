"""The FIND training loop: learn N(μ, σ²) over z_T for one prompt, the sampler and reward frozen.

One iteration reads top to bottom in two phases:

  SAMPLE   draw K latents z ~ N(μ, σ²) from a per-iteration seed (one fused kernel on CUDA), push them
           through the frozen pipeline in one batched call, score the images with the reward.
  UPDATE   reward calibration: V(μ, σ, c) predicts the mean reward in first-batch units
           u = (r − m0)/s0; A_k = w · (u_k − V) / s_t with s_t the running reward std (adv_norm
           "running": the update is invariant to r -> a·r + b). The value net takes an MSE step
           toward the observed u.
           The batch (z, log π_old(z), A) joins a FIFO of the last M batches; for `inner_epochs`
           passes, one Adam step on the clipped surrogate over all replayed samples plus the KL pull
           toward N(0, I) (fused forward+backward on CUDA). The loss is multiplied by D
           (d_invariant), so each element's gradient, and Adam's step, do not shrink with the latent size.
  GUARDS   an optional check reward is scored on every batch (logged, never in the gradient);
           --keep best scores the policy on a fixed validation draw before the first iteration and
           every `validate_every` iterations, and writes the best one at the end.

Files: the policy OUT.pt (μ, σ, metadata: what users share), the checkpoint OUT.ckpt.pt beside it
(value net, optimiser moments, replay buffer: what --resume reads), and the side files of
findcli.report. SIGINT, SIGTERM and SIGHUP (Ctrl-C, Slurm/Kubernetes, a closed terminal) finish the
iteration, save both, and end the run as interrupted; a second one aborts at once.

Sample sharding (several ranks, findcli.distributed.SampleShard; off for one process, whose steps are
unchanged): every rank draws the same K latents, rolls out and scores its rows, and all-gathers the
rewards, so calibration, the value step and the replay buffer are the whole batch's on every rank;
policy_update weights each rank's rows by their share and all-reduces the gradient. Rank 0 writes.

Nothing is back-propagated through the sampler: only μ and log σ (and the value net) train.
Iteration i draws its noise from findcli.seeds.noise_seed("train", seed, i), so a resumed run repeats an
uninterrupted one and no eval, sample or picture draw (other namespaces) can equal a training draw.
"""

from __future__ import annotations

import signal
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from findcli import report
from findcli.config import TrainConfig
from findcli.errors import Aborted, FindError
from findcli.pipeline import Rollout, SamplerSettings, warn
from findcli.policy import GaussianPolicy, checkpoint_path, prior_noise, save_checkpoint, save_policy
from findcli.seeds import noise_seed
from findcli.rewards import reward_range
from findcli.value import RewardNormalizer, ValueNet, advantages

# The signals that end a run gracefully (finish the iteration, save, exit as interrupted).
STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


def iteration_seed(seed: int, iteration: int) -> int:
    """ε seed of training iteration `iteration` (namespace "train" of findcli.seeds)."""
    return noise_seed("train", seed, iteration)


@dataclass
class TrainResult:
    policy: GaussianPolicy
    metrics: list[dict]
    interrupted: bool = False
    files: dict[str, str] = field(default_factory=dict)
    stop_signal: str | None = None  # "SIGTERM", ... when interrupted by a signal


@dataclass
class Batch:
    """What the SAMPLE phase of one iteration produced."""
    z: torch.Tensor  # (K, *latent_shape) latents drawn from the policy
    seed: int  # the ε seed they were drawn with (z = μ + σ ⊙ ε(seed) is regenerable from it)
    mu: torch.Tensor  # (D,) μ that drew them
    log_sigma: torch.Tensor  # (D,) log σ that drew them
    logp_old: torch.Tensor  # (K,) their log-probs under the policy that drew them
    raw: torch.Tensor  # (K,) rewards as the reward returned them (its dtype), on the device
    rewards: torch.Tensor  # (K,) float32 copy of raw
    check: torch.Tensor | None  # (K,) float64 check reward, or None
    timing: dict[str, float]  # denoise_s, decode_s, reward_s


class FindTrainer:
    """Holds the state of one FIND run; `run()` iterates, checkpoints, and writes the outputs."""

    def __init__(self, cfg: TrainConfig, pipe, reward, out: str | Path, check_reward=None, shard=None):
        from findcli.kernels import get_backend

        self.cfg, self.pipe, self.reward = cfg, pipe, reward
        # Sample sharding (findcli.distributed.SampleShard): this rank rolls out its rows of each draw
        # and the update is the full batch's; None (one process) leaves every step as it always was.
        self.shard = shard
        self.writes = shard is None or shard.rank == 0  # only rank 0 writes the policy, checkpoint and side files
        self.out = Path(out)
        from findcli.pipeline import denoiser

        self.device = denoiser(pipe).device
        self.kernel_backend = get_backend(self.device)  # resolved once; raises if triton is forced but cannot run
        self.settings = SamplerSettings(cfg.steps, cfg.guidance, cfg.eta, cfg.height, cfg.width, cfg.frames,
                                        cfg.scheduler)
        self.rollout = Rollout(pipe, cfg.prompt, self.settings, cfg.max_batch)  # the family's Generator
        self.shape = self.rollout.latent_shape

        torch.manual_seed(cfg.seed)  # value-net init is part of the run's identity
        self.policy = GaussianPolicy(self.shape).to(self.device)
        self.kl_ref: tuple | None = None  # the KL pull's target when not N(0, I): (μ, log σ) of --init's policy (kl_to "start")
        self.text = self.rollout.text_features().to(self.device)  # (E,)
        self.value = ValueNet(self.policy.dim, self.text.numel(), cfg.value_hidden).to(self.device)
        self.opt = torch.optim.Adam(self.policy.parameters(), lr=cfg.lr)
        self.value_opt = torch.optim.AdamW(self.value.parameters(), lr=cfg.value_lr)
        self.replay: deque[dict] = deque(maxlen=cfg.replay)
        self.metrics: list[dict] = []
        self.iteration = 0  # completed iterations
        self.bad_in_a_row = 0
        self.value_started = False  # V's output offset is set from the first batch (ValueNet.start_at)
        self.last_checkpoint: Path | None = None
        self.checkpoint = checkpoint_path(self.out)
        self._stop: int | None = None  # the signal number that asked the run to stop
        self._agreed_stop: int | None = None  # sample sharding: a stop signal any rank received (SampleShard.agree)
        # The running std's floor in reward units: a fraction of the reward's declared range, if any,
        # in force while the window's mean is at or above lo + adv_std_floor_above × span.
        rng = reward_range(reward)
        self.normalizer = RewardNormalizer(cfg.norm_window, 0.0) if rng is None else RewardNormalizer(
            cfg.norm_window, cfg.adv_std_floor * (rng[1] - rng[0]),
            rng[0] + cfg.adv_std_floor_above * (rng[1] - rng[0]) if cfg.adv_std_floor_above > 0 else float("-inf"))
        # Guards against reward hacking: a check reward (never in the gradient) and --keep best.
        self.check_reward = check_reward  # None, or a reward; set to None for good if it fails
        self.check_failed = False
        self.best: dict | None = None  # --keep best: {"iteration", "score", "scored_by", "mu", "log_sigma"}

    # ------------------------------------------------------------------------------------------ state

    def init_from(self, mu: torch.Tensor, log_sigma: torch.Tensor) -> None:
        """--init other.pt: start from another policy instead of N(0, I) (with kl_to "start", the KL
        pull's target from then on)."""
        with torch.no_grad():
            self.policy.mu.copy_(mu.reshape(-1))
            self.policy.log_sigma.copy_(log_sigma.reshape(-1))
        if self.cfg.kl_to == "start":
            self.kl_ref = (self.policy.mu.detach().clone(), self.policy.log_sigma.detach().clone())

    def train_state(self) -> dict:
        return {
            "iteration": self.iteration,
            "bad_in_a_row": self.bad_in_a_row,
            "value_started": self.value_started,
            "value": {k: v.detach().cpu() for k, v in self.value.state_dict().items()},
            "opt": self.opt.state_dict(),
            "value_opt": self.value_opt.state_dict(),
            "replay": [{k: v.cpu() for k, v in entry.items()} for entry in self.replay],
            "metrics": self.metrics,
            "normalizer": self.normalizer.state_dict(),
            "check_failed": self.check_failed,
            "best": None if self.best is None else {
                k: (v.detach().cpu().clone() if torch.is_tensor(v) else v) for k, v in self.best.items()},
            # the policy the run continues from (--out may hold the best one instead, see save())
            "last_mu": self.policy.mu.detach().cpu().clone(),
            "last_log_sigma": self.policy.log_sigma.detach().cpu().clone(),
            # the KL pull's target when it is not N(0, I) (kl_to "start" from --init)
            "kl_ref": None if self.kl_ref is None else [t.detach().cpu().clone() for t in self.kl_ref],
        }

    def load_train_state(self, state: dict) -> None:
        """Continue the run saved in `state` (a checkpoint's train_state) exactly."""
        with torch.no_grad():
            self.policy.mu.copy_(state["last_mu"].reshape(-1))
            self.policy.log_sigma.copy_(state["last_log_sigma"].reshape(-1))
        ref = state.get("kl_ref")
        self.kl_ref = None if ref is None else tuple(t.reshape(-1).to(self.device) for t in ref)
        self.value.load_state_dict(state["value"])
        self.opt.load_state_dict(state["opt"])
        self.value_opt.load_state_dict(state["value_opt"])
        self.replay.clear()
        for entry in state["replay"]:
            self.replay.append({k: v.to(self.device) for k, v in entry.items()})
        self.metrics = list(state["metrics"])
        self.iteration = int(state["iteration"])
        self.bad_in_a_row = int(state["bad_in_a_row"])
        self.value_started = bool(state["value_started"])
        if "normalizer" in state:
            self.normalizer.load_state_dict(state["normalizer"])
        if state.get("check_failed"):
            self.check_failed, self.check_reward = True, None
        best = state.get("best")
        self.best = None if best is None else {
            k: (v.to(self.device) if torch.is_tensor(v) else v) for k, v in best.items()}

    def meta(self) -> dict:
        c = self.cfg
        model = getattr(self.pipe, "find_source", c.model)
        extra = {}
        from findcli import shapes

        world = shapes.world_of(model)
        if world is not None:
            extra["model_version"] = world.model_version()
        return {
            "model": model, **extra,
            "prompt": c.prompt,
            "scheduler": type(self.pipe.scheduler).__name__,
            "family": self.rollout.family, "latent_layout": self.rollout.latent_layout,
            "steps": c.steps, "guidance": c.guidance, "eta": c.eta,
            # the size actually sampled (the family's default when not given), so a policy is used at its size
            "height": self.rollout.height, "width": self.rollout.width, "frames": self.rollout.frames,
            "reward": getattr(self.reward, "spec", c.reward), "reward_model": c.reward_model,
            "seed": c.seed, "iteration": self.iteration,
            "final_stats": self.metrics[-1] if self.metrics else {},
            "config": c.to_dict(),
        }

    def save(self, final: bool = False) -> None:
        """Write the checkpoint OUT.ckpt.pt (resumable state), then the policy OUT.pt. Checkpoints hold
        the current policy; the final save of a --keep best run holds the best one in OUT.pt (the
        checkpoint still holds the last policy, so --resume continues the run itself)."""
        self._check_finite()
        if not self.writes:  # sample sharding: rank 0 writes; the others hold the same state
            return
        meta = self.meta()
        policy = self.kept_policy() if final else self.policy
        if final and self.cfg.keep == "best" and self.best is not None:
            meta["kept"] = {"mode": "best", "iteration": self.best["iteration"], "score": self.best["score"],
                            "scored_by": self.best["scored_by"], "last_iteration": self.iteration}
        elif final:
            meta["kept"] = {"mode": "last", "iteration": self.iteration}
        save_checkpoint(self.checkpoint, dict(meta, latent_shape=list(self.shape)), self.train_state())
        save_policy(self.out, policy, meta)
        self.last_checkpoint = self.out

    def _check_finite(self) -> None:
        """A bad step never overwrites the last good checkpoint: stop with one line instead."""
        if not (torch.isfinite(self.policy.mu).all() and torch.isfinite(self.policy.log_sigma).all()):
            where = f"the last good checkpoint {self.last_checkpoint} is kept" if self.last_checkpoint else \
                "nothing was written"
            raise FindError(f"iteration {self.iteration}: the update made μ or σ non-finite; {where}; lower --lr "
                            "or check the reward's values")

    def kept_policy(self) -> GaussianPolicy:
        """The policy the run ends with: the best validated one under --keep best, else the current one."""
        if self.cfg.keep == "best" and self.best is not None:
            return GaussianPolicy(self.shape, self.best["mu"], self.best["log_sigma"]).to(self.device)
        return self.policy

    # ------------------------------------------------------------------------------------------ guards

    def _score_check(self, images: torch.Tensor, n: int) -> torch.Tensor | None:
        """The check reward on `images`, or None once it has failed (warned once, then never used again)."""
        if self.check_reward is None:
            return None
        try:
            with torch.no_grad():
                c = self.check_reward(images, [self.cfg.prompt] * n)
            c = torch.as_tensor(c).detach().double().cpu().reshape(-1)
            if c.numel() != n or not torch.isfinite(c).all():
                raise ValueError(f"it returned {c.numel()} values for {n} images" if c.numel() != n else
                                 "it returned non-finite values")
        except Exception as e:  # noqa: BLE001 - a broken check reward must not cost the run
            self._drop_check(f"failed at iteration {self.iteration} ({type(e).__name__}: {e})")
            return None
        return c

    def _drop_check(self, why: str) -> None:
        warn(f"check reward {getattr(self.check_reward, 'spec', self.cfg.check_reward)!r} {why}; training "
             "continues without it")
        self.check_reward, self.check_failed = None, True
        if self.cfg.keep == "best" and self.best is not None and self.best["scored_by"] == "check":
            warn("--keep best now scores the validation draw with the main reward; earlier scores are dropped")
            self.best = None

    def _rows(self, n: int) -> tuple[int, int]:
        """The rows [lo, hi) of a draw of n that this process rolls out (all of them without sharding)."""
        return (0, n) if self.shard is None else self.shard.rows(n)

    def _check_rows(self, images: torch.Tensor, n: int) -> torch.Tensor | None:
        """Sample sharding: the check reward of this rank's `images`, gathered over the draw of n; None
        on every rank once it has failed on any (it is then dropped everywhere at the same iteration)."""
        if self.check_reward is None:
            return None
        local = self._score_check(images, images.shape[0])
        if not self.shard.all_true(local is not None):
            if local is not None:  # it failed on another rank (which warned): drop it here too
                self._drop_check(f"failed on another rank at iteration {self.iteration}")
            return None
        return self.shard.gather(local, n)

    @torch.no_grad()
    def validate(self) -> dict:
        """--keep best: score the current policy on the fixed validation draw (namespace "validation",
        the same ε at every call, never a training ε) and remember it if it is the best so far (ties
        keep the earlier policy, the start's included)."""
        cfg = self.cfg
        seed = noise_seed("validation", cfg.seed)
        z, _ = self.policy.sample(seed, cfg.validate_n)
        if self.shard is None:
            images = self.rollout(z, seed)
            score = self._score_check(images, cfg.validate_n)
        else:  # this rank's rows of the validation draw, scores gathered
            lo, hi = self._rows(cfg.validate_n)
            images = self.rollout(z[lo:hi], seed, start=lo)
            score = self._check_rows(images, cfg.validate_n)
        scored_by = "check"
        if score is None:
            score = self.reward(images, [cfg.prompt] * images.shape[0]).detach().double().cpu()
            if self.shard is not None:
                score = self.shard.gather(score, cfg.validate_n)
            scored_by = "main"
        value = float(score.mean()) if torch.isfinite(score).all() else float("-inf")
        if self.best is None or value > self.best["score"]:
            self.best = {"iteration": self.iteration, "score": value, "scored_by": scored_by,
                         "mu": self.policy.mu.detach().clone(), "log_sigma": self.policy.log_sigma.detach().clone()}
        return {"validation_score": value, "validation_scored_by": scored_by,
                "best_iteration": self.best["iteration"]}

    def warmup(self) -> float:
        """One throw-away rollout of a full chunk, so that torch.compile's compilation (or cuDNN's
        autotuning) is timed here, apart, and not inside iteration 0. Returns its seconds."""
        n = min(self.cfg.batch, self.cfg.max_batch)
        z = torch.zeros(n, *self.shape, device=self.device)
        t0 = time.perf_counter()
        self.rollout(z, seed=0)
        return time.perf_counter() - t0

    # ------------------------------------------------------------------------------------------ one iteration

    def step(self) -> dict:
        """One iteration: SAMPLE, then (unless the batch is unusable) UPDATE; returns its metrics."""
        t_start = time.perf_counter()
        batch = self.sample()
        if not torch.isfinite(batch.rewards).all():
            return self._skip_bad_batch()
        self.bad_in_a_row = 0
        t0 = time.perf_counter()
        upd = self.update(batch)
        if upd is None:  # adv_norm running and no spread of rewards seen yet: nothing to learn from
            self.iteration += 1
            r = batch.rewards
            m = {"iteration": self.iteration - 1, "skipped": False, "waiting_for_spread": True,
                 "reward_mean": r.mean().item(), "reward_max": r.max().item(), "reward_min": r.min().item(),
                 "reward_std": 0.0, **self.policy.stats()}
            self.metrics.append(m)
            return m
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        batch.timing["update_s"] = time.perf_counter() - t0
        self.iteration += 1
        m = self._metrics(batch, upd, time.perf_counter() - t_start)
        self.metrics.append(m)
        return m

    # ---------------------------------------------------------------- SAMPLE phase

    def sample(self) -> Batch:
        """Draw K latents from this iteration's seed, denoise and decode them, score the images."""
        cfg = self.cfg
        seed = iteration_seed(cfg.seed, self.iteration)
        mu, log_sigma = self.policy.mu.detach().clone(), self.policy.log_sigma.detach().clone()
        z, logp_old = self.policy.sample(seed, cfg.batch)  # (K, *latent_shape), (K,)
        if self.shard is not None:  # every rank drew all K (the same z); it rolls out and scores its rows
            return self._sample_rows(z, seed, mu, log_sigma, logp_old)
        images = self.rollout(z, seed)  # (K, 3, H, W) in [0, 1]
        timing = dict(self.rollout.last_timing)
        t0 = time.perf_counter()
        with torch.no_grad():
            raw = self.reward(images, [cfg.prompt] * cfg.batch).detach().to(self.device)  # (K,), the reward's dtype
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        timing["reward_s"] = time.perf_counter() - t0
        check = self._score_check(images, cfg.batch)  # (K,) float64 or None; never enters the gradient
        return Batch(z, seed, mu, log_sigma, logp_old, raw, raw.float(), check, timing)

    def _sample_rows(self, z, seed, mu, log_sigma, logp_old) -> Batch:
        """Sample sharding: roll out and score rows [lo, hi) of the draw (their step noise seeded by
        their index in the whole draw), then all-gather the rewards: the Batch of the whole draw."""
        cfg = self.cfg
        lo, hi = self._rows(cfg.batch)
        images = self.rollout(z[lo:hi], seed, start=lo)
        timing = dict(self.rollout.last_timing)
        t0 = time.perf_counter()
        with torch.no_grad():
            raw = self.reward(images, [cfg.prompt] * (hi - lo)).detach().to(self.device)
        raw = self.shard.gather(raw.reshape(-1), cfg.batch)  # (K,) in row order, the reward's dtype
        timing["reward_s"] = time.perf_counter() - t0
        check = self._check_rows(images, cfg.batch)
        return Batch(z, seed, mu, log_sigma, logp_old, raw, raw.float(), check, timing)

    def _skip_bad_batch(self) -> dict:
        cfg, it = self.cfg, self.iteration
        self.bad_in_a_row += 1
        self.iteration += 1
        warn(f"iteration {it}: the reward returned non-finite values; batch skipped "
             f"({self.bad_in_a_row}/{cfg.max_bad_batches} in a row)")
        if self.bad_in_a_row >= cfg.max_bad_batches:
            where = f"the last good checkpoint is {self.last_checkpoint}" if self.last_checkpoint else \
                "no checkpoint had been written yet"
            raise FindError(f"the reward was non-finite for {self.bad_in_a_row} batches in a row; {where}; "
                            "check the reward function and its inputs")
        m = {"iteration": it, "skipped": True}
        self.metrics.append(m)
        return m

    # ---------------------------------------------------------------- UPDATE phase

    def update(self, batch: Batch) -> dict | None:
        """Reward calibration, the value step, and the clipped-surrogate + KL steps on the replay
        buffer. Returns the update's diagnostics, or None when the reward units are not set yet."""
        cfg, policy = self.cfg, self.policy
        # Reward units. adv_norm "running": the value net lives in first-batch units u = (r - m0)/s0 and
        # A is divided by the running std s_t (RewardNormalizer), so r -> a·r + b leaves A unchanged and
        # the KL weight and the clip act against unit-spread advantages on every reward. "none": raw r.
        scale, floored = 1.0, False
        if cfg.adv_norm == "running":
            self.normalizer.observe(batch.raw)
            if not self.normalizer.ready:
                return None
            target = self.normalizer.units(batch.raw)  # (K,) float32
            scale = self.normalizer.scale()
            floored = self.normalizer.floored()
        else:
            target = batch.rewards

        # Reward calibration: V predicts the reward of the current distribution (before it moves).
        sigma = policy.log_sigma.detach().exp()
        if cfg.baseline == "value" and not self.value_started:
            self.value.start_at(target.mean(), policy.mu.detach(), sigma, self.text)
            self.value_started = True
        v = self.value(policy.mu.detach(), sigma, self.text)
        adv = cfg.reward_weight * advantages(target, cfg.baseline, v) / scale  # (K,)
        value_loss = torch.zeros(())
        if cfg.baseline == "value":
            for _ in range(cfg.value_steps):
                value_loss = (self.value(policy.mu.detach(), sigma, self.text) - target).pow(2).mean()
                self.value_opt.zero_grad(set_to_none=True)
                value_loss.backward()
                self.value_opt.step()

        # Ratio clipping with historical data: the last M batches, each with the log-prob under the
        # policy that drew it; one Adam step per inner epoch over all of them at once.
        self.replay.append(replay_entry(batch, adv.detach()))
        zs = torch.cat([replay_latents(e) for e in self.replay])  # (M·K, D)
        lps = torch.cat([e["logp_old"] for e in self.replay])  # (M·K,)
        advs = torch.cat([e["adv"] for e in self.replay])  # (M·K,)
        agg = policy_update(policy, self.opt, zs, lps, advs, cfg, self.shard, self.kl_ref)
        self._check_finite()
        return {"v": float(v.detach()), "value_loss": float(value_loss.detach()), "adv": adv.detach(),
                "scale": scale, "floored": floored, "agg": agg, "replay_samples": int(zs.shape[0])}

    # ---------------------------------------------------------------- metrics

    def _metrics(self, batch: Batch, upd: dict, t_iter: float) -> dict:
        cfg, r, adv, agg, v = self.cfg, batch.rewards.detach().cpu(), upd["adv"], upd["agg"], upd["v"]
        m = {
            "iteration": self.iteration - 1, "skipped": False,
            "reward_mean": r.mean().item(), "reward_max": r.max().item(), "reward_min": r.min().item(),
            "reward_std": r.std().item() if r.numel() > 1 else 0.0,
            "value": v, "value_loss": upd["value_loss"],
            # V in the reward's own units (the net predicts first-batch units under adv_norm running)
            "value_reward": v * self.normalizer.s0 + self.normalizer.m0 if cfg.adv_norm == "running" else v,
            "adv_mean": adv.mean().item(), "adv_std": adv.std().item() if adv.numel() > 1 else 0.0,
            "reward_scale": upd["scale"], "std_floored": upd["floored"],  # the --adv-std-floor set the scale
            "approx_kl": agg.get("approx_kl", 0.0), "clipfrac": agg.get("clipfrac", 0.0),
            "ratio_mean": agg.get("ratio_mean", 1.0), "surrogate": agg.get("surrogate", 0.0),
            "loss": agg.get("loss", 0.0), "replay_samples": upd["replay_samples"],
            "kl_pull": agg.get("kl", 0.0),  # the KL in the loss, to kl_to's target (kl_to_prior: always to N(0, I))
            **self.policy.stats(),
            "images_per_s": cfg.batch / t_iter,
            **{k: round(v_, 6) for k, v_ in batch.timing.items()}, "iter_s": round(t_iter, 6),
        }
        if batch.check is not None:
            c = batch.check
            m.update(check_mean=float(c.mean()), check_min=float(c.min()), check_max=float(c.max()))
        return m

    # ------------------------------------------------------------------------------------------ loop

    def _request_stop(self, signum, frame):  # noqa: ARG002
        name = signal.Signals(signum).name
        if self._stop is not None:  # a second signal: stop now, without waiting for the iteration to end
            where = f"the last checkpoint is {self.checkpoint}" if self.last_checkpoint else "nothing was saved"
            raise Aborted(signum, f"aborted by a second {name}; {where}")
        self._stop = signum
        warn(f"{name}: finishing this iteration, then saving a checkpoint "
             f"({'Ctrl-C' if name == 'SIGINT' else name} again to abort)")

    def _stopping(self) -> int | None:
        """The signal that ends the loop: this process's, or under sample sharding the one all ranks agreed on."""
        return self._stop if self.shard is None else self._agreed_stop

    def run(self, on_iteration: Callable[[dict], None] | None = None, write_outputs: bool = True) -> TrainResult:
        cfg = self.cfg
        previous = {}
        for sig in STOP_SIGNALS:
            try:
                previous[sig] = signal.signal(sig, self._request_stop)
            except ValueError:  # not the main thread: signal handling is the caller's business
                break
        try:
            start = None
            if cfg.keep == "best" and self.iteration == 0 and self.best is None:
                # The policy the run starts from (N(0, I), or --init's) is a candidate too: a --keep best
                # run never ends with a policy its own validation draw scores below where it began.
                start = self.validate()
            while self.iteration < cfg.iterations and self._stopping() is None:
                m = self.step()
                if start is not None:  # the start's score rides on the first iteration's row
                    m.update({"start_validation_score": start["validation_score"]})
                    start = None
                if self.shard is not None:  # every rank stops after the same iteration
                    self._agreed_stop = self.shard.agree(self._stop)
                if cfg.keep == "best" and (self.iteration % cfg.validate_every == 0
                                           or self.iteration == cfg.iterations):
                    m.update(self.validate())
                if on_iteration is not None:
                    on_iteration(m)
                if self.iteration % cfg.checkpoint_every == 0 and self.iteration < cfg.iterations:
                    self.save()
                    if write_outputs and self.writes:
                        self.write_metrics()
            interrupted = self._stopping() is not None and self.iteration < cfg.iterations
            if interrupted and cfg.keep == "best" and self.iteration % cfg.validate_every != 0:
                self.metrics[-1].update(self.validate())  # the policy at the interruption is a candidate too
            self.save(final=True)
            files = {"policy": str(self.out), "checkpoint": str(self.checkpoint)} if self.writes else {}
            if write_outputs and self.writes:
                files.update(self.write_outputs(final=not interrupted))
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        stop = signal.Signals(self._stopping()).name if interrupted else None
        return TrainResult(self.policy, self.metrics, interrupted, files, stop)

    # ------------------------------------------------------------------------------------------ outputs

    def write_metrics(self) -> str:
        return report.write_metrics(self.metrics, report.side_file(self.out, "metrics"))

    def write_outputs(self, final: bool = True) -> dict[str, str]:
        files = {"metrics": self.write_metrics()}
        files["reward_curve"] = report.write_reward_curve(self.metrics, report.side_file(self.out, "reward_curve"),
                                                          self.cfg.prompt)
        if final:
            files["before_after"] = self.write_before_after()
        return files

    @torch.no_grad()
    def write_before_after(self, n: int = 4) -> str:
        """Same ε through N(0, I) and through the learned policy, with the reward of each image."""
        seed = noise_seed("before_after", self.cfg.seed)
        z, _ = self.kept_policy().sample(seed, n)
        before = self.rollout(prior_noise(self.shape, seed, n, self.device), seed)
        after = self.rollout(z, seed)
        prompts = [self.cfg.prompt] * n
        r_before = self.reward(before, prompts).float().cpu()
        r_after = self.reward(after, prompts).float().cpu()
        return report.write_before_after(before, after, r_before, r_after,
                                         report.side_file(self.out, "before_after"), self.cfg.prompt)


def replay_entry(batch: Batch, adv: torch.Tensor) -> dict:
    """What the replay buffer keeps of a batch. With K > 2 samples, the seed and the (μ, log σ) that
    drew them (2·D + 2·K numbers; z is regenerated bit for bit by the same kernel) instead of the
    K·D latents: at video size (D = 262 144, K = 8, M = 4) 8 MB instead of 34 MB in memory and in
    the checkpoint. With K ≤ 2 the latents themselves are smaller."""
    k = batch.z.shape[0]
    if k > 2:
        return {"seed": torch.tensor(batch.seed, dtype=torch.int64), "mu": batch.mu, "log_sigma": batch.log_sigma,
                "logp_old": batch.logp_old, "adv": adv}
    return {"z": batch.z.reshape(k, -1), "logp_old": batch.logp_old, "adv": adv}


def replay_latents(entry: dict) -> torch.Tensor:
    """The (K, D) latents of a replay entry (stored, or regenerated from its seed)."""
    if "z" in entry:
        return entry["z"]
    from findcli.kernels import sample_policy

    z, _ = sample_policy(entry["mu"], entry["log_sigma"], int(entry["seed"]), entry["logp_old"].shape[0])
    return z.reshape(entry["logp_old"].shape[0], -1)


def policy_update(policy: GaussianPolicy, opt: torch.optim.Optimizer, zs: torch.Tensor, lps: torch.Tensor,
                  advs: torch.Tensor, cfg: TrainConfig, shard=None, kl_ref: tuple | None = None) -> dict[str, float]:
    """`cfg.inner_epochs` Adam steps on the clipped surrogate + β·KL over the replayed samples
    zs (N, D), their behaviour log-probs lps (N,) and advantages advs (N,). Returns the loss
    diagnostics averaged over the passes. The KL is to N(0, I) (in the fused loss), or with
    kl_ref = (μ_ref, log σ_ref) to N(μ_ref, σ_ref²) (kl_to "start" from --init; added in PyTorch,
    findcli.kernels.gaussian.kl_to_gaussian, same per-dimension convention and cfg.kl kind).

    d_invariant: the log-probs are per-dimension means (so ratios stay O(1)), which makes each
    element's gradient ≈ |A| / (√N · D): at D = 262 144 and a reward with a small spread that is
    Adam's eps (1e-8), and the step shrinks with D. Multiplying the loss by D makes it ≈ |A| / √N
    at any D; the gradient clip then bounds the per-element RMS (the norm over 2D elements / √(2D)).

    shard (findcli.distributed.SampleShard): every rank holds the same N samples and takes its rows
    [lo, hi); its loss (a mean over those rows, + β·KL) is weighted by (hi - lo)/N, so the weights sum
    to 1 and the summed gradient is the gradient of the full loss; it is all-reduced before the clip
    and the Adam step, which are then the same on every rank. The diagnostics are reduced the same way.
    """
    from findcli.kernels import policy_loss
    from findcli.kernels.gaussian import kl_to_gaussian

    loss_scale = float(policy.dim) if cfg.d_invariant else 1.0
    max_norm = cfg.max_grad_norm * (2.0 * policy.dim) ** 0.5 if cfg.d_invariant else cfg.max_grad_norm
    weight = 1.0
    if shard is not None:
        n = zs.shape[0]
        lo, hi = shard.rows(n)
        zs, lps, advs, weight = zs[lo:hi], lps[lo:hi], advs[lo:hi], (hi - lo) / n
    agg: dict[str, float] = {}
    for _ in range(cfg.inner_epochs):
        # the fused loss holds the KL to N(0, I); a KL to another target is added beside it
        loss, stats = policy_loss(zs, policy.mu, policy.log_sigma, lps, advs, cfg.clip,
                                  cfg.kl_weight if kl_ref is None else 0.0, ratio_ref=cfg.clip_ref, kl=cfg.kl)
        if kl_ref is not None:
            kl_term = kl_to_gaussian(policy.mu, policy.log_sigma, kl_ref[0], kl_ref[1], cfg.kl)
            loss = loss + cfg.kl_weight * kl_term
            stats = {**stats, "kl": kl_term.detach()}
        opt.zero_grad(set_to_none=True)
        if shard is None:
            (loss * loss_scale).backward()
        else:
            (loss * (loss_scale * weight)).backward()
            shard.all_reduce_grads(policy.parameters())
        if cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(policy.parameters(), max_norm)
        opt.step()
        policy.clamp_()
        for k, val in stats.items():
            agg[k] = agg.get(k, 0.0) + float(val) / cfg.inner_epochs
        agg["loss"] = agg.get("loss", 0.0) + float(loss.detach()) / cfg.inner_epochs
    if shard is not None:  # each rank's means over its rows, weighted as its loss was: the full batch's means
        keys = sorted(agg)
        agg = dict(zip(keys, shard.sum([agg[k] * weight for k in keys])))
    return agg


def summarize_config(cfg: TrainConfig) -> str:
    """Derived quantities printed at start."""
    cfg_rows = 2 if cfg.guidance > 1 else 1
    return (f"images/iteration={cfg.batch}  denoiser rows/step={cfg_rows * min(cfg.batch, cfg.max_batch)}  "
            f"total images={cfg.batch * cfg.iterations}  replayed samples/update≤{cfg.batch * cfg.replay}  "
            f"policy steps/iteration={cfg.inner_epochs}")

