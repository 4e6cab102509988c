"""Training configuration: one typed dataclass, a comment per field, and presets as small functions.

Derived quantities (printed by the trainer at start):
  images per iteration        = batch
  UNet rows per denoising step = 2 × min(batch, max_batch) with CFG (guidance > 1), else 1 ×
  total images                = batch × iterations
  policy updates per iteration = inner_epochs × (number of batches in the replay buffer, ≤ replay)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from findcli.errors import FindError


@dataclass
class TrainConfig:
    # --- what to learn
    prompt: str = ""  # the text the frozen model should follow
    model: str | None = None  # diffusers pipeline folder or hub id; None = the built-in shapes model
    seed: int = 0  # seeds ε for every iteration (findcli.seeds namespace "train", index = iteration) and the value-net init
    # --- sampler (frozen)
    steps: int = 20  # DDIM denoising steps per image
    guidance: float = 7.5  # classifier-free guidance scale
    eta: float = 0.0  # DDIM eta; 0 makes the reward a function of z_T alone (deterministic sampler)
    height: int | None = None  # image height in pixels (None = model default)
    width: int | None = None  # image width in pixels (None = model default)
    # --- reward
    reward: str = "clip"  # reward spec: "clip", "pickscore", "module:function", or "a=1,b=0.5" combinations (find train on the built-in model defaults to find-shapes-detector)
    reward_model: str | None = None  # open_clip ARCH:TAG or ARCH:/ckpt for `clip`; None = built-in CLIP or ViT-L-14:openai
    reward_weight: float = 1.0  # multiplies the advantage (the official code uses 10, on raw rewards)
    check_reward: str | None = None  # a second reward scored on every batch and logged, never in the gradient
    check_reward_model: str | None = None  # --reward-model of the check reward (None: as for the main reward)
    # --- FIND update
    iterations: int = 100  # sample+update rounds (800 images at batch 8; 40 was too few for a reward as weak as the built-in CLIP on relations, see benchmarks/RESULTS.md §2)
    batch: int = 8  # K: latents drawn per iteration (one batched pipeline call)
    lr: float = 0.05  # Adam learning rate on μ and log σ (per-element steps are ≈ lr, Adam being scale-free)
    baseline: str = "value"  # advantage baseline: value (learned reward calibration), group (batch mean/std), none
    adv_norm: str = "running"  # running: value net in first-batch units, A divided by the running reward std (invariant to r -> a·r + b); none: raw r - V (official)
    norm_window: int = 64  # rewards in the running std of adv_norm=running (8 batches of 8)
    value_lr: float = 1e-3  # AdamW learning rate of the value net
    value_hidden: int = 256  # value net width (official: 256, 3 hidden layers)
    replay: int = 4  # M: how many recent batches are reused in the clipped surrogate
    inner_epochs: int = 4  # passes over the replay buffer per iteration (4 measured best on the example: worst of 9 runs +41 points vs +14 with 2, mean +64 vs +52; 8 overshoots; RESULTS.md §2)
    clip: float = 0.2  # ε of the ratio clip [1-ε, 1+ε]; ratios are per-dimension-mean log-prob ratios
    clip_ref: str = "behaviour"  # ratio against the policy that drew each sample (PPO) or `initial` (official N(0,I))
    kl_weight: float = 0.01  # weight of the KL pull toward N(0, I)
    kl: str = "exact"  # exact: closed-form KL per dimension; l2: official proxy mean(μ² + (σ-1)²)
    max_grad_norm: float = 1.0  # d_invariant: bound on the per-element RMS of the gradient of (μ, log σ); else on its norm; 0 disables
    d_invariant: bool = True  # multiply the loss by D so each element's gradient is ≈ |A|/√K at any latent size (Adam's eps stays negligible); False: official per-dimension mean
    # --- guards against reward hacking
    keep: str = "last"  # which policy --out holds at the end: last, or best on a fixed validation draw (check reward, else main reward)
    validate_every: int = 10  # --keep best: score the policy on the validation draw every N iterations (and at the end)
    validate_n: int = 16  # --keep best: images in the validation draw (its own noise namespace)
    # --- engineering
    max_batch: int = 16  # images per pipeline call (memory bound); CFG doubles the UNet rows
    checkpoint_every: int = 10  # save the policy (with train state) every N iterations
    max_bad_batches: int = 3  # abort after this many consecutive batches with non-finite rewards
    preset: str = "default"  # which preset the values came from (recorded in the policy file)

    def validate(self) -> "TrainConfig":
        """One-sentence errors for out-of-range values (the CLI shows them as they are)."""
        checks = [
            (self.steps >= 1 and self.steps <= 1000, f"--steps must be between 1 and 1000 (got {self.steps})"),
            (self.batch >= 1 and self.batch <= 4096, f"--batch must be between 1 and 4096 (got {self.batch})"),
            (self.iterations >= 1, f"--iterations must be at least 1 (got {self.iterations})"),
            (0 < self.lr <= 10, f"--lr must be in (0, 10] (got {self.lr})"),
            (0 < self.value_lr <= 10, f"--value-lr must be in (0, 10] (got {self.value_lr})"),
            (0 < self.clip < 1, f"--clip must be in (0, 1) (got {self.clip}); 0.2 is the usual value"),
            (self.kl_weight >= 0, f"--kl-weight must be ≥ 0 (got {self.kl_weight})"),
            (self.guidance >= 0, f"--guidance must be ≥ 0 (got {self.guidance})"),
            (0 <= self.eta <= 1, f"--eta must be in [0, 1] (got {self.eta})"),
            (self.replay >= 1, f"--replay must be at least 1 (got {self.replay})"),
            (self.inner_epochs >= 1, f"--inner-epochs must be at least 1 (got {self.inner_epochs})"),
            (self.max_batch >= 1, f"--max-batch must be at least 1 (got {self.max_batch})"),
            (self.checkpoint_every >= 1, f"--checkpoint-every must be at least 1 (got {self.checkpoint_every})"),
            (self.baseline in ("value", "group", "none"), f"--baseline must be value, group or none (got {self.baseline})"),
            (self.clip_ref in ("behaviour", "initial"), f"--clip-ref must be behaviour or initial (got {self.clip_ref})"),
            (self.kl in ("exact", "l2"), f"--kl must be exact or l2 (got {self.kl})"),
            (self.adv_norm in ("running", "none"), f"--adv-norm must be running or none (got {self.adv_norm})"),
            (self.norm_window >= 2, f"--norm-window must be at least 2 (got {self.norm_window})"),
            (self.keep in ("last", "best"), f"--keep must be last or best (got {self.keep})"),
            (self.validate_every >= 1, f"--validate-every must be at least 1 (got {self.validate_every})"),
            (1 <= self.validate_n <= 4096, f"--validate-n must be between 1 and 4096 (got {self.validate_n})"),
            (self.keep != "best" or self.iterations > self.validate_every,
             f"--keep best compares the policy at every --validate-every ({self.validate_every}) iterations and "
             f"at the end, so it needs more than {self.validate_every} iterations (got --iterations "
             f"{self.iterations}); raise --iterations, lower --validate-every, or use --keep last"),
        ]
        for ok, message in checks:
            if not ok:
                raise FindError(message)
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def default(**overrides) -> TrainConfig:
    """The measured best setting (benchmarks/RESULTS.md): batched draws, value baseline, PPO replay."""
    return dataclasses.replace(TrainConfig(), **overrides)


def paper(**overrides) -> TrainConfig:
    """The official FIND code's settings (../shared/PAPER.md): one image per iteration, lr 1e-3, reward
    weight 10, L2 KL proxy 0.01, ratio hard-clamped to [0.8, 1.2] against N(0, I), DDIM 50, eta 1, CFG 7.5."""
    base = TrainConfig(
        steps=50, guidance=7.5, eta=1.0, iterations=150, batch=1, lr=1e-3, reward_weight=10.0,
        baseline="value", value_lr=1e-4, replay=1, inner_epochs=1, clip=0.2, clip_ref="initial",
        kl_weight=0.01, kl="l2", max_grad_norm=0.0, adv_norm="none", d_invariant=False, preset="paper",
    )
    return dataclasses.replace(base, **overrides)


PRESETS = {"default": default, "paper": paper}
