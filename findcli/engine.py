"""The FIND training loop: learn N(μ, σ²) over z_T for one prompt, the sampler and reward frozen.

One iteration reads top to bottom in two phases:

  SAMPLE   draw K latents z ~ N(μ, σ²) from a per-iteration seed (one fused kernel on CUDA), push them
           through the frozen pipeline in one batched call, score the images with the reward.
  UPDATE   reward calibration: V(μ, σ, c) predicts the mean reward; A_k = w · (r_k − V).
           The value net takes an MSE step toward the observed rewards.
           The batch (z, log π_old(z), A) joins a FIFO of the last M batches; for `inner_epochs`
           passes, one Adam step on the clipped surrogate over all replayed samples plus the KL pull
           toward N(0, I) (fused forward+backward on CUDA).

Nothing is back-propagated through the sampler: only μ and log σ (and the value net) train.
Iteration i draws its noise from seed·1_000_003 + i, so a resumed run repeats an uninterrupted one.
"""

from __future__ import annotations

import json
import signal
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from findcli import atomic
from findcli.config import TrainConfig
from findcli.errors import FindError
from findcli.pipeline import Rollout, SamplerSettings, latent_shape, text_features, warn
from findcli.policy import GaussianPolicy, prior_noise, save_policy
from findcli.value import ValueNet, advantages

SEED_STRIDE = 1_000_003
BEFORE_AFTER_OFFSET = 999_983  # ε seed offset for the before/after picture (never used in training)


def iteration_seed(seed: int, iteration: int) -> int:
    return int(seed) * SEED_STRIDE + int(iteration)


@dataclass
class TrainResult:
    policy: GaussianPolicy
    metrics: list[dict]
    interrupted: bool = False
    files: dict[str, str] = field(default_factory=dict)


class FindTrainer:
    """Holds the state of one FIND run; `run()` iterates, checkpoints, and writes the outputs."""

    def __init__(self, cfg: TrainConfig, pipe, reward, out: str | Path, value_steps: int | None = None):
        from findcli.kernels import get_backend

        self.cfg, self.pipe, self.reward = cfg, pipe, reward
        self.out = Path(out)
        self.device = pipe.unet.device
        self.kernel_backend = get_backend(self.device)  # resolved once; raises if triton is forced but cannot run
        self.settings = SamplerSettings(cfg.steps, cfg.guidance, cfg.eta, cfg.height, cfg.width)
        self.rollout = Rollout(pipe, cfg.prompt, self.settings, cfg.max_batch)
        self.shape = latent_shape(pipe, cfg.height, cfg.width)

        torch.manual_seed(cfg.seed)  # value-net init is part of the run's identity
        self.policy = GaussianPolicy(self.shape).to(self.device)
        self.text = text_features(pipe, cfg.prompt).to(self.device)  # (E,)
        self.value = ValueNet(self.policy.dim, self.text.numel(), cfg.value_hidden).to(self.device)
        self.opt = torch.optim.Adam(self.policy.parameters(), lr=cfg.lr)
        self.value_opt = torch.optim.AdamW(self.value.parameters(), lr=cfg.value_lr)
        self.value_steps = value_steps if value_steps is not None else (1 if cfg.preset == "paper" else 4)
        self.replay: deque[dict] = deque(maxlen=cfg.replay)
        self.metrics: list[dict] = []
        self.iteration = 0  # completed iterations
        self.bad_in_a_row = 0
        self.value_started = False  # V's output offset is set from the first batch (see step)
        self.last_checkpoint: Path | None = None
        self._stop = False

    # ------------------------------------------------------------------------------------------ state

    def init_from(self, mu: torch.Tensor, log_sigma: torch.Tensor) -> None:
        """--init other.pt: start from another policy instead of N(0, I)."""
        with torch.no_grad():
            self.policy.mu.copy_(mu.reshape(-1))
            self.policy.log_sigma.copy_(log_sigma.reshape(-1))

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
        }

    def load_train_state(self, policy: GaussianPolicy, state: dict) -> None:
        with torch.no_grad():
            self.policy.mu.copy_(policy.mu)
            self.policy.log_sigma.copy_(policy.log_sigma)
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

    def meta(self) -> dict:
        c = self.cfg
        return {
            "model": getattr(self.pipe, "find_source", c.model),
            "prompt": c.prompt,
            "scheduler": type(self.pipe.scheduler).__name__,
            "steps": c.steps, "guidance": c.guidance, "eta": c.eta, "height": c.height, "width": c.width,
            "reward": getattr(self.reward, "spec", c.reward), "reward_model": c.reward_model,
            "seed": c.seed, "iteration": self.iteration,
            "final_stats": self.metrics[-1] if self.metrics else {},
            "config": c.to_dict(),
        }

    def save(self, with_state: bool = True) -> None:
        save_policy(self.out, self.policy, self.meta(), self.train_state() if with_state else None)
        self.last_checkpoint = self.out

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
        cfg, policy = self.cfg, self.policy
        it = self.iteration
        seed = iteration_seed(cfg.seed, it)
        t_start = time.perf_counter()

        # ---------------------------------------------------------------- SAMPLE phase
        z, logp_old = policy.sample(seed, cfg.batch)  # (K, C, h, w), (K,)
        images = self.rollout(z, seed)  # (K, 3, H, W) in [0, 1]
        timing = dict(self.rollout.last_timing)
        t0 = time.perf_counter()
        with torch.no_grad():
            rewards = self.reward(images, [cfg.prompt] * cfg.batch).float().to(self.device)  # (K,)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        timing["reward_s"] = time.perf_counter() - t0

        if not torch.isfinite(rewards).all():
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
        self.bad_in_a_row = 0

        # ---------------------------------------------------------------- UPDATE phase
        t0 = time.perf_counter()
        from findcli.kernels import policy_loss

        # Reward calibration: V predicts the reward of the current distribution (before it moves).
        sigma = policy.log_sigma.detach().exp()
        if cfg.baseline == "value" and not self.value_started:
            # Start V at the first batch's mean reward: an untrained V ≈ 0 would make every advantage
            # share the sign of the reward scale and push μ, σ in a random direction for the first
            # iterations, before the value net has caught up.
            with torch.no_grad():
                self.value.net[-1].bias.add_(rewards.mean() - self.value(policy.mu.detach(), sigma, self.text))
            self.value_started = True
        v = self.value(policy.mu.detach(), sigma, self.text)
        adv = cfg.reward_weight * advantages(rewards, cfg.baseline, v)  # (K,)
        value_loss = torch.zeros(())
        if cfg.baseline == "value":
            for _ in range(self.value_steps):
                value_loss = (self.value(policy.mu.detach(), sigma, self.text) - rewards).pow(2).mean()
                self.value_opt.zero_grad(set_to_none=True)
                value_loss.backward()
                self.value_opt.step()

        # Ratio clipping with historical data: the last M batches, each with the log-prob under the
        # policy that drew it; one Adam step per inner epoch over all of them at once.
        self.replay.append({"z": z.reshape(cfg.batch, -1), "logp_old": logp_old, "adv": adv.detach()})
        zs = torch.cat([e["z"] for e in self.replay])  # (M·K, D)
        lps = torch.cat([e["logp_old"] for e in self.replay])  # (M·K,)
        advs = torch.cat([e["adv"] for e in self.replay])  # (M·K,)
        agg: dict[str, float] = {}
        for _ in range(cfg.inner_epochs):
            loss, stats = policy_loss(zs, policy.mu, policy.log_sigma, lps, advs, cfg.clip, cfg.kl_weight,
                                      ratio_ref=cfg.clip_ref, kl=cfg.kl)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
            self.opt.step()
            policy.clamp_()
            for k, val in stats.items():
                agg[k] = agg.get(k, 0.0) + float(val) / cfg.inner_epochs
            agg["loss"] = agg.get("loss", 0.0) + float(loss.detach()) / cfg.inner_epochs
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        timing["update_s"] = time.perf_counter() - t0
        t_iter = time.perf_counter() - t_start

        self.iteration += 1
        r = rewards.detach().cpu()
        m = {
            "iteration": it, "skipped": False,
            "reward_mean": r.mean().item(), "reward_max": r.max().item(), "reward_min": r.min().item(),
            "reward_std": r.std().item() if r.numel() > 1 else 0.0,
            "value": float(v.detach()), "value_loss": float(value_loss.detach()),
            "adv_mean": adv.mean().item(), "adv_std": adv.std().item() if adv.numel() > 1 else 0.0,
            "approx_kl": agg.get("approx_kl", 0.0), "clipfrac": agg.get("clipfrac", 0.0),
            "ratio_mean": agg.get("ratio_mean", 1.0), "surrogate": agg.get("surrogate", 0.0),
            "loss": agg.get("loss", 0.0), "replay_samples": int(zs.shape[0]),
            **policy.stats(),
            "images_per_s": cfg.batch / t_iter,
            **{k: round(v_, 6) for k, v_ in timing.items()}, "iter_s": round(t_iter, 6),
        }
        self.metrics.append(m)
        return m

    # ------------------------------------------------------------------------------------------ loop

    def _request_stop(self, signum, frame):  # noqa: ARG002
        if self._stop:  # a second Ctrl-C: stop now, without waiting for the iteration to end
            raise KeyboardInterrupt
        self._stop = True
        warn("interrupted: finishing this iteration, then saving a checkpoint (Ctrl-C again to abort)")

    def run(self, on_iteration: Callable[[dict], None] | None = None, write_outputs: bool = True) -> TrainResult:
        cfg = self.cfg
        previous = None
        try:
            previous = signal.signal(signal.SIGINT, self._request_stop)
        except ValueError:  # not the main thread: Ctrl-C handling is the caller's business
            previous = None
        try:
            while self.iteration < cfg.iterations and not self._stop:
                m = self.step()
                if on_iteration is not None:
                    on_iteration(m)
                if self.iteration % cfg.checkpoint_every == 0 and self.iteration < cfg.iterations:
                    self.save()
                    if write_outputs:
                        self.write_metrics()
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
        interrupted = self._stop and self.iteration < cfg.iterations
        self.save()
        files = {"policy": str(self.out)}
        if write_outputs:
            files.update(self.write_outputs(final=not interrupted))
        return TrainResult(self.policy, self.metrics, interrupted, files)

    # ------------------------------------------------------------------------------------------ outputs

    def write_metrics(self) -> str:
        path = self.out.parent / "metrics.jsonl"
        atomic.write_text(path, "".join(json.dumps(m) + "\n" for m in self.metrics))
        return str(path)

    def write_outputs(self, final: bool = True) -> dict[str, str]:
        files = {"metrics": self.write_metrics()}
        files["reward_curve"] = write_reward_curve(self.metrics, self.out.parent / "reward_curve.png", self.cfg.prompt)
        if final:
            files["before_after"] = self.write_before_after()
        return files

    @torch.no_grad()
    def write_before_after(self, n: int = 4) -> str:
        """Same ε through N(0, I) and through the learned policy, with the reward of each image."""
        seed = iteration_seed(self.cfg.seed, BEFORE_AFTER_OFFSET)
        z, _ = self.policy.sample(seed, n)
        before = self.rollout(prior_noise(self.shape, seed, n, self.device), seed)
        after = self.rollout(z, seed)
        prompts = [self.cfg.prompt] * n
        r_before = self.reward(before, prompts).float().cpu()
        r_after = self.reward(after, prompts).float().cpu()
        path = self.out.parent / "before_after.png"
        write_before_after(before, after, r_before, r_after, path, self.cfg.prompt)
        return str(path)


# ---------------------------------------------------------------------------------------------- pictures


def write_reward_curve(metrics: list[dict], path: Path, title: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [m for m in metrics if not m.get("skipped")]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if rows:
        it = [m["iteration"] for m in rows]
        ax.fill_between(it, [m["reward_min"] for m in rows], [m["reward_max"] for m in rows], alpha=0.25,
                        label="batch min–max")
        ax.plot(it, [m["reward_mean"] for m in rows], label="batch mean")
        if any(m.get("value") is not None for m in rows):
            ax.plot(it, [m["value"] for m in rows], "--", label="value net V")
    ax.set_xlabel("iteration")
    ax.set_ylabel("reward")
    ax.set_title(title[:80], fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic.write_with(path, lambda p: fig.savefig(p, dpi=120))
    plt.close(fig)
    return str(path)


def write_before_after(before, after, r_before, r_after, path: Path, title: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = before.shape[0]
    fig, axes = plt.subplots(2, n, figsize=(2.0 * n, 4.4), squeeze=False)
    for row, (imgs, rs, name) in enumerate([(before, r_before, "N(0, I)"), (after, r_after, "FIND")]):
        for j in range(n):
            ax = axes[row][j]
            ax.imshow(imgs[j].detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy())
            ax.set_title(f"{name}  r={float(rs[j]):.3f}", fontsize=7)
            ax.axis("off")
    fig.suptitle(f"{title[:80]}\n(same ε per column)", fontsize=8)
    fig.tight_layout()
    atomic.write_with(path, lambda p: fig.savefig(p, dpi=120))
    plt.close(fig)
    return str(path)


def summarize_config(cfg: TrainConfig) -> str:
    """Derived quantities printed at start."""
    cfg_rows = 2 if cfg.guidance > 1 else 1
    return (f"images/iteration={cfg.batch}  UNet rows/step={cfg_rows * min(cfg.batch, cfg.max_batch)}  "
            f"total images={cfg.batch * cfg.iterations}  replayed samples/update≤{cfg.batch * cfg.replay}  "
            f"policy steps/iteration={cfg.inner_epochs}")

