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

from findcli import limits
from findcli.errors import FindError

# The choices of each string setting, defined once; the CLI builds its option types from these.
CHOICES: dict[str, tuple[str, ...]] = {
    "baseline": ("value", "group", "none"),  # findcli.value.advantages
    "adv_norm": ("running", "none"),  # findcli.value.RewardNormalizer or raw rewards
    "clip_ref": ("behaviour", "initial"),  # findcli.kernels.policy_loss(ratio_ref=...)
    "kl": ("exact", "l2"),  # findcli.kernels.policy_loss(kl=...)
    "kl_to": ("start", "standard"),  # the KL pull's target (engine.policy_update)
    "keep": ("last", "best"),
    "preset": ("default", "paper"),
    "scheduler": ("auto", "ddim", "native"),  # findcli.generators.configure_scheduler
}
# What `--resume` may change; every other setting is the run's own (its file records them).
RESUMABLE = ("iterations", "checkpoint_every", "max_batch")


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
    frames: int | None = None  # video families: frames per sample, the pipeline's num_frames (None = model default)
    scheduler: str = "auto"  # auto: DDIM for SD-family ε/v models, the model's own for flow-matching / few-step; ddim; native
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
    adv_std_floor: float = 0.1  # adv_norm=running: the running std never falls below this fraction of the reward's declared range (value_range; the built-in detector's is 2), so a saturated prompt's noise is not blown up into full-size steps; 0, or a reward with no declared range: no floor (RESULTS.md §6.7)
    adv_std_floor_above: float = 0.0  # the floor binds only while the running window's mean reward is at or above lo + this × (hi - lo) of the declared range: near the top a batch's spread is the reward's noise, near the bottom it is the first partial successes' signal; 0: at every level (RESULTS.md §6.9)
    value_lr: float = 1e-3  # AdamW learning rate of the value net
    value_hidden: int = 256  # value net width (official: 256, 3 hidden layers)
    value_steps: int = 4  # AdamW steps of the value net per iteration (official: 1)
    replay: int = 4  # M: how many recent batches are reused in the clipped surrogate
    inner_epochs: int = 4  # passes over the replay buffer per iteration (4 measured best on the example: worst of 9 runs +41 points vs +14 with 2, mean +64 vs +52; 8 overshoots; RESULTS.md §2)
    clip: float = 0.2  # ε of the ratio clip [1-ε, 1+ε]; ratios are per-dimension-mean log-prob ratios
    clip_ref: str = "behaviour"  # ratio against the policy that drew each sample (PPO) or `initial` (official N(0,I))
    kl_weight: float = 0.01  # weight of the KL pull toward kl_to's target
    kl_to: str = "start"  # the KL pull's target: "start", the distribution the run starts from (N(0, I), FIND's, unless --init gives another policy: then that one, a trust region around it), or "standard", always N(0, I) (the words of the conditional policy's kl_to). From a tight start (a conditional policy's prediction, sigma 0.3) the pull to N(0, I) undid solved counting layouts in 10 iterations; chosen on the conditional split's tuning fold (97.7% vs 89.5%), validated on its held-out prompts (93.0% vs 79.9%; RESULTS.md §10.8)
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
        """One-sentence errors for out-of-range values (the CLI shows them as they are): every number
        through findcli.limits (finite, in range), every string setting against CHOICES."""
        limits.check_all(self.to_dict())
        for name, allowed in CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise FindError(f"--{name.replace('_', '-')} must be {', '.join(allowed[:-1])} or {allowed[-1]} "
                                f"(got {value!r})")
        if self.keep == "best" and self.iterations <= self.validate_every:
            raise FindError(
                f"--keep best compares the policy at every --validate-every ({self.validate_every}) iterations and "
                f"at the end, so it needs more than {self.validate_every} iterations (got --iterations "
                f"{self.iterations}); raise --iterations, lower --validate-every, or use --keep last")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        d = dict(d)
        if "adv_std_floor" not in d:  # files written before the floor existed trained without one
            d["adv_std_floor"] = 0.0
        if "adv_std_floor_above" not in d:  # files written before the level: the floor bound at every level
            d["adv_std_floor_above"] = 0.0
        if "kl_to" not in d:  # files written before it existed pulled toward N(0, I), --init or not
            d["kl_to"] = "standard"
        if "value_steps" not in d:  # files written before it was a field: it followed the preset
            d["value_steps"] = 1 if d.get("preset") == "paper" else 4
        return cls(**{k: v for k, v in d.items() if k in names})


def resume_config(saved: dict, overrides: dict, refused: dict[str, object], source: str) -> TrainConfig:
    """The config of a resumed run: the saved one, with only RESUMABLE settings taken from
    `overrides`. Any other override, and any entry of `refused` that is not None (the options
    that would silently change the run: a prompt, --preset, --reward, --init, ...), is an error."""
    cfg = TrainConfig.from_dict(saved)
    changed = sorted(set(overrides) - set(RESUMABLE)) + sorted(k for k, v in refused.items() if v is not None)
    if changed:
        names = ", ".join("--" + k.replace("_", "-") if k != "prompt" else "a prompt" for k in changed)
        raise FindError(f"--resume {source} continues the run with its own settings; only --iterations, "
                        f"--checkpoint-every and --max-batch may change (got {names}); start a new run to "
                        f"change them, optionally with --init {source}")
    for k in RESUMABLE:
        if k in overrides:
            setattr(cfg, k, overrides[k])
    return cfg


def default(**overrides) -> TrainConfig:
    """The measured best setting (benchmarks/RESULTS.md): batched draws, value baseline, PPO replay."""
    return dataclasses.replace(TrainConfig(), **overrides)


def paper(**overrides) -> TrainConfig:
    """The official FIND code's settings (../shared/PAPER.md): one image per iteration, lr 1e-3, reward
    weight 10, L2 KL proxy 0.01, ratio hard-clamped to [0.8, 1.2] against N(0, I), DDIM 50, eta 1, CFG 7.5."""
    base = TrainConfig(
        steps=50, guidance=7.5, eta=1.0, iterations=150, batch=1, lr=1e-3, reward_weight=10.0,
        baseline="value", value_lr=1e-4, replay=1, inner_epochs=1, clip=0.2, clip_ref="initial",
        kl_weight=0.01, kl="l2", kl_to="standard", max_grad_norm=0.0, adv_norm="none", d_invariant=False, value_steps=1,
        preset="paper",
    )
    return dataclasses.replace(base, **overrides)


PRESETS = {"default": default, "paper": paper}
