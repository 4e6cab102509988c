"""DPOK and DDPO (issue 13): RL fine-tuning of the frozen model's UNet with LoRA, one prompt.

Both methods treat the DDIM sampler with eta = 1 as a policy over trajectories: every step
x_t -> x_{t-1} is a Gaussian N(mean_θ(x_t, t), σ_t² I) whose mean comes from the (guided) ε prediction
of the UNet, so each step has a log-probability and the reward of the final image can be pushed into
the UNet by policy gradient. Only LoRA weights train (peft, rank 4 on to_q/to_k/to_v/to_out.0 of every
attention, as both papers do); the pipeline the caller passed is never touched: the LoRA lives on a
copy of its UNet, inside a shallow copy of the pipeline (`self.pipe`) that shares everything else.

Sources (facts and numbers only; no code copied):
  DDPO  Black et al. 2023, github.com/kvablack/ddpo-pytorch: ddpo_pytorch/diffusers_patch/
        ddim_with_logprob.py (the step's mean, σ_t and log-prob), scripts/train.py (PPO loop),
        config/base.py and config/dgx.py (settings), ddpo_pytorch/stat_tracking.py.
  DPOK  Fan et al. 2023, github.com/google-research/google-research/tree/master/dpok:
        train_online_pg.py (single-prompt loop, settings), README.md (the single-prompt command),
        scheduling_ddim_extended.py (log-prob), pipeline_stable_diffusion_extended.py (KL term),
        reward_model.py (ValueMulti, the value net).

One train_step, top to bottom:

  SAMPLE   K trajectories from this step's seed: z_T = N(0, I) noise of namespace "train" (the draw
           FIND's N(0, I) arm would get at that iteration), per-step noise from namespace "step" (one
           generator per image, as the stock pipeline's eta > 0 path), DDIM eta 1 with the current
           LoRA UNet; x_t, x_{t-1}, t and log p(x_{t-1} | x_t) recorded for every step; the final
           latents decoded as findcli.generators.sd does, and scored.
  ddpo     A = (r - mean) / (std + 1e-6) from the per-prompt stat tracker (last 16 rewards; the batch's
           own stats until 16 are seen), clipped to ±5. For each minibatch of samples, over all
           (shuffled) timesteps: log-prob of the stored x_{t-1} under the current LoRA UNet, ratio
           ρ = exp(logp - logp_old), PPO loss max(-A ρ, -A clip(ρ, 1 ± 1e-4)), gradients accumulated
           over the timesteps, grad-norm clip 1, one AdamW step. No KL term.
  dpok     rewards in first-batch units; the K·T transitions join a FIFO buffer (two rounds). Value net
           V(x_t, c, step) (DPOK's ValueMulti; its output offset set on the first round) takes one AdamW
           step on the MSE to the final reward over 5 minibatches. Then
           5 policy steps, each over random transitions: A = r - V(x_t, c, step) (V after its update),
           loss = -w · A · clip(ρ, 1 ± 1e-4) + β · mean (ε̂_LoRA - ε̂_frozen)² where ε̂ are the guided
           ε predictions of the LoRA UNet and of the same UNet with its LoRA disabled (peft's
           disable_adapter context): DPOK's KL bound to the pretrained model. Grad-norm clip 0.1.
           Note DPOK clamps the ratio itself (no PPO min/max), so a transition whose ratio left
           [1 - ε, 1 + ε] contributes no reward gradient; DDPO keeps PPO's pessimistic branch.

Log-probs are DDPO's: the Gaussian log-density averaged (not summed) over the latent's dimensions.
All of it runs in float32 (float64 when the UNet is), the UNet in the pipeline's dtype with the LoRA
weights in float32 (peft's adapter autocast) and, for an fp16 UNet, a GradScaler on the backward: the
papers' fp16 mixed precision. `max_batch` bounds every UNet call: images when sampling and generating,
transitions (with their backward) in the update; gradients are accumulated over the calls, so it changes
memory, not the update.

Settings: the published values (tables below, with the source of each and why it was kept or scaled),
recorded in `settings` with `published` and `why` beside the values used. Counts are scaled to the
batch (8 images per step, FIND's) keeping the published ratios (DDPO: 4 optimizer steps per epoch;
DPOK: training rows ≈ sampling rows, a buffer of two rounds); dimensionless settings are kept (clip
ranges 1e-4, β = 0.01, reward weight 10, LoRA rank 4, grad-norm clips); the LoRA learning rate is the
published one times √(fan-in) of SD 1.5's LoRA layers over this UNet's (1 on SD 1.5; 3.07 on the
built-in model), see LR_WHY.

Delivery (`generate`): the stock pipeline call (findcli's SD Generator: DDIM eta 0 by default, the
sampler FIND and best-of-N use) with the LoRA UNet, from N(0, I) noise of namespace "eval": at LoRA
zero init it is the base pipeline's image bit for bit, and it pairs with FIND's baseline arm.
`save(dir)` writes the adapter with peft's save_pretrained (adapter_model.safetensors +
adapter_config.json) and findcli-lora.json (prompt, sampler, settings); `Dpok.load(dir, pipe)`
rebuilds it, and `.pipe` is then a stock StableDiffusionPipeline that samples with the LoRA.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from findcli.baselines.base import Cost, CountedReward, counting
from findcli.errors import FindError
from findcli.seeds import noise_seed

VARIANTS = ("dpok", "ddpo")
LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
META_FILE = "findcli-lora.json"

# --------------------------------------------------------------------------------------------------
# Settings: what each paper published, what runs here, and why. Every number below is also recorded
# in `Dpok.settings` (used values at the top level, `published` and `why` beside them).
# --------------------------------------------------------------------------------------------------

# (published value, used default, why). "steps"/"guidance" default to the comparison's sampler.
COMMON = {
    "lora_rank": (4, 4, "as published (DDPO: diffusers LoRAAttnProcessor's default rank; DPOK --lora_rank 4)"),
    "lora_alpha": (4, 4, "the diffusers LoRA attention processors both papers used add up(down(x)) at scale 1; "
                         "peft scales by alpha/rank, so alpha = rank"),
    "lora_init": ("down ~ N(0, 1/r), up = 0", "gaussian",
                  "peft init_lora_weights='gaussian' is the same init (A ~ N(0, 1/r), B = 0): at step 0 the "
                  "model is the base model"),
    "eta": (1.0, 1.0, "as published: DDIM eta 1 makes each step a Gaussian with a log-probability"),
    "steps": (50, 20, "the comparison samples every method with the same frozen sampler (FIND's default 20 "
                      "DDIM steps); pass steps=50 for the published one"),
}
# How the LoRA learning rate is scaled to the model (see lora_lr_scale): published lrs are for SD 1.x.
LR_WHY = ("published {pub:g} for SD 1.x, scaled by {scale:.3g} = mean sqrt(fan-in) of SD 1.5's LoRA layers ({ref:.2f}) / "
          "this UNet's ({here:.2f}): with Adam every LoRA B entry moves by about lr per step and multiplies A x, whose "
          "norm at the Gaussian init grows as sqrt(fan-in), so this keeps the per-step change of each layer's "
          "output what it is on SD 1.5 (scale 1 there: the published value)")
# mean over SD 1.5's 128 LoRA layers (16 transformer blocks at 320/640/1280 channels; per block to_q, to_k,
# to_v, to_out.0 of self-attention at C, to_q and to_out.0 of cross-attention at C, to_k and to_v at 768) of
# sqrt(in_features)
SD15_MEAN_SQRT_FAN_IN = 27.1124
DDPO = {
    "guidance": (5.0, 7.5, "the comparison's sampler (FIND's default CFG 7.5); DDPO trained at 5.0"),
    "batch": (256, 8, "images sampled per train_step (published: per epoch, 8 GPUs x 8 x 4); FIND's batch, so one "
                      "train_step samples what one FIND iteration does"),
    "lr": (3e-4, None, "AdamW on the LoRA weights; None: scaled, see LR_WHY"),
    "weight_decay": (1e-4, 1e-4, "as published"),
    "clip_range": (1e-4, 1e-4, "as published"),
    "adv_clip_max": (5.0, 5.0, "as published"),
    "max_grad_norm": (1.0, 1.0, "as published"),
    "inner_epochs": (1, 1, "as published"),
    "timestep_fraction": (1.0, 1.0, "as published: every timestep of every sample is trained on"),
    "train_batch": (64, 2, "published: 256 samples per epoch (8 GPUs x 8 x 4), 64 per optimizer step (4 x 2 "
                           "accumulation x 8 GPUs) = 4 steps per epoch; here 8 per epoch, 2 per step = the same "
                           "4 steps per epoch, so the clip range binds as often as there"),
    "stat_buffer": (16, 16, "as published (per-prompt stat tracker buffer_size); at batch 8 it spans 2 steps"),
    "stat_min_count": (16, 16, "as published"),
}
DPOK = {
    "guidance": (7.5, 7.5, "as published (and the comparison's sampler)"),
    "batch": (10, 8, "images sampled per round (published --g_batch_size 10); FIND's batch, so one train_step "
                     "samples what one FIND iteration does"),
    "lr": (1e-5, None, "AdamW on the LoRA weights (single-prompt command); None: scaled, see LR_WHY"),
    "weight_decay": (0.0, 0.0, "as published"),
    "reward_weight": (10.0, 10.0, "as published (single-prompt command)"),
    "kl_weight": (0.01, 0.01, "as published (single-prompt command)"),
    "ratio_clip": (1e-4, 1e-4, "as published"),
    "max_grad_norm": (0.1, 0.1, "as published (--clip_norm)"),
    "p_step": (5, 5, "as published: policy steps per sampling round"),
    "p_batch": (48, 16, "published: 4 transitions x 12 accumulation per policy step, i.e. 5 x 48 = 240 of the "
                        "round's 500 new transitions (10 images x 50 steps) and about as many training UNet rows "
                        "(240 x 4) as sampling rows (500 x 2); here 16 per step: 5 x 16 = 80 of 8 x 20 = 160, "
                        "the same half, and 320 training rows for 320 sampling rows"),
    "buffer_rounds": (2, 2, "published buffer 1000 transitions = 2 rounds of 10 x 50; here 2 rounds of K x T"),
    "v_lr": (1e-4, 1e-4, "as published"),
    "v_batch": (256, 256, "as published (capped at the buffer size)"),
    "v_step": (5, 5, "as published: 5 accumulated minibatches, one AdamW step"),
    "v_hidden": (256, 256, "as published (ValueMulti: 3 time-conditioned layers of 256)"),
    "reward_units": ("raw ImageReward", "first-batch",
                     "ImageReward scores are standardised by its authors (mean 0, std 1), which is what the "
                     "published reward_weight 10 / kl_weight 0.01 balance was tuned on; rewards here are put in "
                     "units of the first batch with spread, (r - m0) / s0, so that balance holds for any reward"),
}


NOTES = {
    "precision": "published: fp16 mixed precision; here the pipeline's dtype (fp16 on CUDA by default) for the "
                 "frozen weights, float32 LoRA weights (peft's adapter autocast) and float32 DDIM/log-prob math",
    "kl_warmup": "DPOK: none (--kl_warmup -1), so the KL term is on from the first step",
    "gradient_checkpointing": "DPOK enables it to fit SD on an A100; not used (it changes memory, not the update)",
    "value_start": "DPOK's value net as published, except that its output bias is shifted on the first round so "
                   "V predicts that round's mean reward (a random head would give all early advantages one sign)",
    "generate": "delivery uses the stock pipeline call with DDIM eta 0 (FIND's sampler), from namespace 'eval' "
                "noise; training rollouts use eta 1 and namespaces 'train'/'step'",
}


def lora_lr_scale(lora_unet: nn.Module) -> tuple[float, float]:
    """(scale, mean sqrt fan-in) of the LoRA learning rate for this UNet relative to SD 1.5 (LR_WHY)."""
    fans = [m.in_features for n, m in lora_unet.named_modules() if n.endswith("lora_A.default")]
    here = sum(math.sqrt(f) for f in fans) / max(1, len(fans))
    return SD15_MEAN_SQRT_FAN_IN / here, here


def published_settings(variant: str) -> dict[str, tuple]:
    if variant not in VARIANTS:
        raise FindError(f"unknown variant {variant!r}; use one of {', '.join(VARIANTS)}")
    return {**COMMON, **(DDPO if variant == "ddpo" else DPOK)}


# --------------------------------------------------------------------------------------------------
# The DDIM step as a Gaussian (DDPO's ddim_step_with_logprob math, batched timesteps)
# --------------------------------------------------------------------------------------------------


def ddim_posterior(scheduler, model_output: torch.Tensor, timesteps: torch.Tensor, x_t: torch.Tensor,
                   eta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of p(x_{t-1} | x_t) for one DDIM step (DDIM paper eqs. 12 and 16), per row.

    model_output (B, ...) is the guided UNet output, timesteps (B,) the scheduler's timesteps of each row,
    x_t (B, ...) the current latents. Returns mean (B, ...) and std (B, 1, ..., 1) in x_t's dtype:

        x̂_0  = (x_t - √(1-ᾱ_t) ε̂) / √ᾱ_t                       (ε prediction; v and x_0 converted)
        σ_t² = (1-ᾱ_prev)/(1-ᾱ_t) · (1 - ᾱ_t/ᾱ_prev)            (the scheduler's _get_variance)
        std  = eta · σ_t
        mean = √ᾱ_prev x̂_0 + √(1 - ᾱ_prev - std²) ε̂
    """
    cfg = scheduler.config
    dtype, device = x_t.dtype, x_t.device
    t = timesteps.to(device=device, dtype=torch.long).reshape(-1)
    prev = t - cfg.num_train_timesteps // scheduler.num_inference_steps  # as DDIMScheduler.step
    alphas = scheduler.alphas_cumprod.to(device=device, dtype=dtype)
    final = torch.as_tensor(scheduler.final_alpha_cumprod, device=device, dtype=dtype)
    shape = (-1,) + (1,) * (x_t.ndim - 1)
    a_t = alphas[t].reshape(shape)
    a_prev = torch.where(prev >= 0, alphas[prev.clamp(min=0)], final).reshape(shape)
    b_t = 1 - a_t
    out = model_output.to(dtype)
    if cfg.prediction_type == "epsilon":
        x0, eps = (x_t - b_t.sqrt() * out) / a_t.sqrt(), out
    elif cfg.prediction_type == "sample":
        x0 = out
        eps = (x_t - a_t.sqrt() * x0) / b_t.sqrt()
    elif cfg.prediction_type == "v_prediction":
        x0 = a_t.sqrt() * x_t - b_t.sqrt() * out
        eps = a_t.sqrt() * out + b_t.sqrt() * x_t
    else:
        raise FindError(f"prediction_type {cfg.prediction_type!r} is not one DDIM knows")
    if getattr(cfg, "thresholding", False):
        raise FindError("DPOK/DDPO: dynamic thresholding of x̂_0 is not supported (the scheduler config sets "
                        "thresholding=True)")
    if cfg.clip_sample:
        x0 = x0.clamp(-cfg.clip_sample_range, cfg.clip_sample_range)
    variance = (1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)
    std = eta * variance.sqrt()
    mean = a_prev.sqrt() * x0 + (1 - a_prev - std ** 2).clamp(min=0).sqrt() * eps
    return mean, std


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, std²) averaged over every dimension but the first (DDPO's and DPOK's convention):
    (B, ...) -> (B,)."""
    lp = -((x - mean) ** 2) / (2 * std ** 2) - torch.log(std) - 0.5 * math.log(2 * math.pi)
    return lp.mean(dim=tuple(range(1, lp.ndim)))


@dataclass
class Trajectories:
    """What one sampling call recorded: K trajectories of T DDIM steps."""
    latents: torch.Tensor  # (K, T, *shape) x_t before each step
    next_latents: torch.Tensor  # (K, T, *shape) x_{t-1} after it
    timesteps: torch.Tensor  # (T,) the scheduler's timesteps
    log_probs: torch.Tensor  # (K, T) log p(x_{t-1} | x_t) under the UNet that sampled them (eta > 0)
    images: torch.Tensor  # (K, 3, H, W) in [0, 1], float32


# --------------------------------------------------------------------------------------------------
# Advantage baselines
# --------------------------------------------------------------------------------------------------


def _means(stats: dict[str, list[float]]) -> dict:
    """Per-step diagnostics averaged; grad_norm over the steps taken (an fp16 overflow skips one: counted)."""
    out = {k: sum(v) / len(v) for k, v in stats.items() if k != "grad_norm" and v}
    norms = stats.get("grad_norm", [])
    finite = [n for n in norms if math.isfinite(n)]
    out["grad_norm"] = sum(finite) / len(finite) if finite else float("nan")
    out["skipped_steps"] = len(norms) - len(finite)
    return out


class StatTracker:
    """DDPO's per-prompt stat tracker for one prompt: advantages (r - mean) / (std + 1e-6) with the mean and
    (population) std of the last `buffer` rewards, or of the batch itself while fewer than `min_count`
    have been seen. The batch joins the buffer first, as in DDPO."""

    def __init__(self, buffer: int, min_count: int):
        self.history: deque[float] = deque(maxlen=int(buffer))
        self.min_count = int(min_count)

    def advantages(self, rewards: torch.Tensor) -> torch.Tensor:
        r = rewards.detach().double().cpu()
        self.history.extend(float(x) for x in r.tolist())
        ref = r if len(self.history) < self.min_count else torch.tensor(list(self.history), dtype=torch.float64)
        return ((r - ref.mean()) / (ref.std(unbiased=False) + 1e-6)).float()


class ValueNet(nn.Module):
    """DPOK's value function V(x_t, c, step) (its reward_model.ValueMulti): an MLP on flatten(x_t) ⊕ text
    feature with three hidden layers of `hidden`, each layer's output multiplied elementwise by a learned
    per-step embedding (initialised uniform in [0, 1]), then ReLU; a linear head. For one prompt the text
    feature is a constant input, as in DPOK's single-prompt mode."""

    def __init__(self, latent_dim: int, text_dim: int, steps: int, hidden: int = 256):
        super().__init__()
        sizes = [latent_dim + text_dim, hidden, hidden, hidden]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.gates = nn.ModuleList(nn.Embedding(steps, hidden) for _ in self.layers)
        self.head = nn.Linear(hidden, 1)
        for lin, gate in zip(self.layers, self.gates):
            nn.init.xavier_normal_(lin.weight)
            nn.init.uniform_(gate.weight)
        nn.init.xavier_normal_(self.head.weight)

    def forward(self, x: torch.Tensor, text: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        """x (B, *shape), text (E,), step (B,) long step indices -> (B,)."""
        h = torch.cat([x.reshape(x.shape[0], -1).float(), text.reshape(1, -1).float().expand(x.shape[0], -1)], 1)
        for lin, gate in zip(self.layers, self.gates):
            h = torch.relu(lin(h) * gate(step))
        return self.head(h).squeeze(-1)


# --------------------------------------------------------------------------------------------------
# The method
# --------------------------------------------------------------------------------------------------


def _lora_unet(base: nn.Module, rank: int, alpha: float, init: str, lora: str | Path | None):
    """A copy of `base` with LoRA on every attention's to_q/to_k/to_v/to_out.0 (peft): fresh (B = 0),
    or the adapter saved in `lora`. Returns (PeftModel, the UNet inside it)."""
    try:
        from peft import LoraConfig, PeftModel, get_peft_model
    except ImportError:
        raise FindError("the DPOK/DDPO baselines need peft: pip install 'findcli[compare]'") from None

    unet = copy.deepcopy(base)
    unet.requires_grad_(False)
    if lora is not None:
        model = PeftModel.from_pretrained(unet, str(lora), is_trainable=True)
    else:
        config = LoraConfig(r=int(rank), lora_alpha=alpha, init_lora_weights=init, target_modules=LORA_TARGETS,
                            lora_dropout=0.0)
        model = get_peft_model(unet, config)
    return model, model.get_base_model()


class Dpok:
    """DPOK (variant "dpok") or DDPO (variant "ddpo") on one prompt, behind findcli.baselines.base.Method.

    pipe     a StableDiffusionPipeline (findcli.pipeline.load_pipeline); it is not modified
    prompt   the one prompt (DPOK's single-prompt mode; DDPO run with a single prompt)
    reward   reward(images (K, 3, H, W) in [0, 1], prompts) -> (K,); None for generate-only use
    variant  "dpok" or "ddpo"
    seed     seeds the sampling noise (namespaces "train"/"step"), the shuffles and the inits
    lora     a directory written by save(): start from that adapter instead of zero
    **overrides  any key of published_settings(variant) ("lr", "batch", "steps", ...); recorded as given
    """

    def __init__(self, pipe, prompt: str, reward: Callable | None = None, variant: str = "dpok", *,
                 seed: int = 0, height: int | None = None, width: int | None = None, max_batch: int = 16,
                 lora: str | Path | None = None, **overrides):
        from findcli.generators.base import SamplerSettings
        from findcli.pipeline import Rollout, denoiser

        from findcli.generators import family_class

        table = published_settings(variant)
        unknown = sorted(set(overrides) - set(table))
        if unknown:
            raise FindError(f"unknown {variant} setting(s) {', '.join(unknown)}; known: {', '.join(sorted(table))}")
        family = family_class(pipe).family
        if family != "sd":
            raise FindError(f"the {variant} baseline drives Stable Diffusion 1.x/2.x pipelines (a UNet sampled with "
                            f"DDIM); this is a {family} pipeline")
        self.name, self.variant, self.prompt, self.seed = variant, variant, prompt, int(seed)
        s = {k: overrides.get(k, used) for k, (_, used, _) in table.items()}
        self.s = s
        self.train_cost, self.generate_cost = Cost(), Cost()
        self.reward = None if reward is None else CountedReward(reward, self.train_cost)

        # The LoRA UNet: a copy of the pipeline's (the caller's pipeline stays frozen and shared), inside a
        # shallow copy of the pipeline that shares the VAE, text encoder and tokenizer.
        base = denoiser(pipe)
        base = getattr(base, "_orig_mod", base)  # torch.compile'd: the module underneath
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)  # LoRA A init and the value net init are part of the run's identity
            self.peft, self.unet = _lora_unet(base, s["lora_rank"], s["lora_alpha"], s["lora_init"], lora)
            why = {k: w for k, (_, _, w) in table.items()}
            scale, here = lora_lr_scale(self.unet)
            if s["lr"] is None:  # the published lr, scaled to this UNet's layer widths
                s["lr"] = table["lr"][0] * scale
                why["lr"] = LR_WHY.format(pub=table["lr"][0], scale=scale, ref=SD15_MEAN_SQRT_FAN_IN, here=here)
            else:
                why["lr"] = f"given ({LR_WHY.format(pub=table['lr'][0], scale=scale, ref=SD15_MEAN_SQRT_FAN_IN, here=here)} would give {table['lr'][0] * scale:.3g})"
            self.settings = {
                "variant": variant, "prompt": prompt, "seed": self.seed, **s, "generate_eta": 0.0,
                "lora_targets": list(LORA_TARGETS), "max_batch": int(max_batch), "lr_scale": scale,
                "baseline": "per-prompt stat tracker" if variant == "ddpo" else "value net (DPOK ValueMulti)",
                "kl": None if variant == "ddpo" else "mean (guided eps_LoRA - guided eps_frozen)^2",
                "ratio": "PPO clipped surrogate" if variant == "ddpo" else "clamped ratio (DPOK)",
                "published": {k: p for k, (p, _, _) in table.items()},
                "why": why, "notes": dict(NOTES),
                "given": sorted(overrides),
                "lora_from": None if lora is None else str(lora),
            }
            self.pipe = copy.copy(pipe)
            self.pipe.unet = self.unet
            self.pipe.scheduler = copy.deepcopy(pipe.scheduler)
            # Delivery sampler: the stock pipeline call with DDIM eta 0, FIND's (findcli.generators.sd).
            self.rollout = Rollout(self.pipe, prompt, SamplerSettings(steps=int(s["steps"]), guidance=float(s["guidance"]),
                                   eta=0.0, height=height, width=width), max_batch)
            self.device, self.dtype = self.rollout.device, self.rollout.dtype
            self.math_dtype = torch.float64 if self.dtype == torch.float64 else torch.float32
            self.shape = self.rollout.latent_shape
            self.settings.update(height=self.rollout.height, width=self.rollout.width,
                                 latent_shape=list(self.shape), model=getattr(pipe, "find_source", None))
            # Training sampler: DDIM from the pipeline's scheduler config (DDPO and DPOK both switch to it).
            from diffusers import DDIMScheduler

            self.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
            self.scheduler.set_timesteps(int(s["steps"]), device=self.device)
            self.cfg = float(s["guidance"]) > 1.0 and self.unet.config.time_cond_proj_dim is None
            emb = self.rollout.embeds
            self.prompt_embeds, self.negative_embeds = emb["prompt_embeds"], emb["negative_prompt_embeds"]
            self.lora_params = [p for p in self.unet.parameters() if p.requires_grad]
            self.opt = torch.optim.AdamW(self.lora_params, lr=float(s["lr"]), betas=(0.9, 0.999),
                                         weight_decay=float(s["weight_decay"]), eps=1e-8)
            # fp16 UNet: the backward through it needs loss scaling (the papers' fp16 runs had accelerate's
            # GradScaler); a pass-through for float32/bfloat16.
            self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.dtype == torch.float16)
            self.rng = torch.Generator().manual_seed(self.seed)  # minibatch shuffles and picks
            if variant == "ddpo":
                self.tracker = StatTracker(s["stat_buffer"], s["stat_min_count"])
            else:
                self.text = self.rollout.text_features().to(self.device)
                self.value = ValueNet(math.prod(self.shape), self.text.numel(), int(s["steps"]),
                                      int(s["v_hidden"])).to(self.device)
                self.value_opt = torch.optim.AdamW(self.value.parameters(), lr=float(s["v_lr"]))
                self.buffer: dict[str, torch.Tensor] | None = None
                self.ref: tuple[float, float] | None = None  # reward units (m0, s0): the first batch with spread
                self.value_started = False
        self.iteration = 0
        self.metrics: list[dict] = []

    # ------------------------------------------------------------------------------------------ UNet

    def _embeds(self, n: int) -> torch.Tensor:
        """encoder_hidden_states for n latents: [negative × n, prompt × n] with CFG (the pipeline's order)."""
        pe = self.prompt_embeds.expand(n, *self.prompt_embeds.shape[1:])
        if not self.cfg:
            return pe
        ne = self.negative_embeds.expand(n, *self.negative_embeds.shape[1:])
        return torch.cat([ne, pe])

    def guided_eps(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The UNet's guided output at latents x (B, *shape) and timesteps t (B,), as the pipeline's loop
        computes it (uncond + g · (cond - uncond)), in the math dtype. LoRA applies unless disabled."""
        n = x.shape[0]
        inp = torch.cat([x, x]) if self.cfg else x
        tt = torch.cat([t, t]) if self.cfg else t
        # (The sampling loop passes x through scheduler.scale_model_input as the pipeline does; for DDIM it is
        # the identity, so the stored x_t are the UNet's inputs in the update too.)
        out = self.unet(inp.to(self.dtype), tt, encoder_hidden_states=self._embeds(n), return_dict=False)[0]
        out = out.to(self.math_dtype)
        if not self.cfg:
            return out
        uncond, cond = out.chunk(2)
        return uncond + float(self.s["guidance"]) * (cond - uncond)

    @contextlib.contextmanager
    def frozen(self):
        """The pretrained UNet: the same module with its LoRA layers switched off (peft's disable_adapter)."""
        with self.peft.disable_adapter():
            yield

    def step_log_prob(self, x_t: torch.Tensor, x_prev: torch.Tensor, t: torch.Tensor,
                      eps: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """log p(x_prev | x_t) (B,) under the current UNet (or the given guided output eps), and eps."""
        if eps is None:
            eps = self.guided_eps(x_t, t)
        mean, std = ddim_posterior(self.scheduler, eps, t, x_t, float(self.s["eta"]))
        return gaussian_log_prob(x_prev, mean, std), eps

    # ------------------------------------------------------------------------------------------ SAMPLE

    @torch.no_grad()
    def sample(self, k: int, eps_seed: int, eta: float | None = None) -> Trajectories:
        """K trajectories from N(0, I) noise of seed `eps_seed` (findcli.policy.prior_noise, the draw FIND's
        baseline arm uses), DDIM with `eta` (default: the setting, 1), per-step noise from one generator
        per image seeded noise_seed("step", eps_seed, image index). Chunked by max_batch images."""
        from findcli.policy import prior_noise

        eta = float(self.s["eta"] if eta is None else eta)
        sched, md = self.scheduler, self.math_dtype
        sched.set_timesteps(int(self.s["steps"]), device=self.device)
        timesteps = sched.timesteps
        z = prior_noise(self.shape, eps_seed, k, self.device).to(md)
        xs, xps, lps, imgs = [], [], [], []
        for start in range(0, k, self.rollout.max_batch):
            n = min(self.rollout.max_batch, k - start)
            gens = [torch.Generator(self.device).manual_seed(noise_seed("step", eps_seed, start + j)) for j in range(n)]
            x = z[start:start + n] * sched.init_noise_sigma
            cx, cxp, clp = [], [], []
            for t in timesteps:
                tb = t.expand(n)
                eps = self.guided_eps(sched.scale_model_input(x, t), tb)
                mean, std = ddim_posterior(sched, eps, tb, x, eta)
                if eta > 0:
                    noise = torch.cat([torch.randn((1, *self.shape), generator=g, device=self.device, dtype=md)
                                       for g in gens])
                    x_prev = mean + std * noise
                    clp.append(gaussian_log_prob(x_prev, mean, std))
                else:
                    x_prev = mean
                    clp.append(torch.full((n,), float("nan"), device=self.device, dtype=md))
                cx.append(x)
                cxp.append(x_prev)
                x = x_prev
            xs.append(torch.stack(cx, 1))
            xps.append(torch.stack(cxp, 1))
            lps.append(torch.stack(clp, 1))
            imgs.append(self.rollout.decode(x.to(self.dtype)).float())
        return Trajectories(torch.cat(xs), torch.cat(xps), timesteps.clone(), torch.cat(lps), torch.cat(imgs))

    # ------------------------------------------------------------------------------------------ train

    def train_step(self) -> dict:
        """One round: sample K trajectories, score them, update the LoRA (and DPOK's value net)."""
        if self.reward is None:
            raise FindError(f"this {self.variant} instance was built without a reward; it can only generate")
        t0 = time.perf_counter()
        self.reward.cost = self.train_cost
        with counting(self.pipe, self.train_cost):
            eps_seed = noise_seed("train", self.seed, self.iteration)
            traj = self.sample(int(self.s["batch"]), eps_seed)
            with torch.no_grad():
                raw = self.reward(traj.images, [self.prompt] * traj.images.shape[0]).detach().float().to(self.device)
            if not bool(torch.isfinite(raw).all()):
                raise FindError(f"{self.variant} step {self.iteration}: the reward returned non-finite values")
            upd = self._update_ddpo(traj, raw) if self.variant == "ddpo" else self._update_dpok(traj, raw)
        r = raw.double().cpu()
        m = {"iteration": self.iteration, "reward_mean": float(r.mean()), "reward_std": float(r.std(unbiased=False)),
             "reward_min": float(r.min()), "reward_max": float(r.max()), **upd,
             "lora_norm": float(torch.sqrt(sum((p.detach().float() ** 2).sum() for p in self.lora_params))),
             "unet_rows": self.train_cost.unet_rows, "reward_calls": self.train_cost.reward_calls,
             "time_s": time.perf_counter() - t0}
        self.iteration += 1
        self.metrics.append(m)
        return m

    def _backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()

    def _clip_and_step(self, max_norm: float) -> float:
        """Clip the LoRA gradient's global norm (after unscaling) and take the AdamW step; returns the norm."""
        self.scaler.unscale_(self.opt)
        norm = torch.nn.utils.clip_grad_norm_(self.lora_params, max_norm)
        self.scaler.step(self.opt)  # skipped (and the scale lowered) on an fp16 overflow
        self.scaler.update()
        self.opt.zero_grad(set_to_none=True)
        return float(norm)

    def _update_ddpo(self, traj: Trajectories, raw: torch.Tensor) -> dict:
        """DDPO's PPO update (scripts/train.py), no KL term."""
        s = self.s
        k, steps = traj.log_probs.shape
        clip = float(s["clip_range"])
        # Advantages: per-prompt stat tracker, clipped to ±adv_clip_max.
        adv = self.tracker.advantages(raw).to(self.device, self.math_dtype)
        adv = adv.clamp(-float(s["adv_clip_max"]), float(s["adv_clip_max"]))
        n_t = max(1, int(round(steps * float(s["timestep_fraction"]))))
        mb = max(1, int(s["train_batch"]))
        stats = {"loss": [], "approx_kl": [], "clipfrac": [], "ratio": [], "grad_norm": []}
        for _ in range(int(s["inner_epochs"])):
            order = torch.randperm(k, generator=self.rng).to(self.device)  # shuffle samples
            tperm = torch.stack([torch.randperm(steps, generator=self.rng) for _ in range(k)]).to(self.device)  # and each one's timesteps
            for b in range(0, k, mb):
                idx = order[b:b + mb]
                # The minibatch's (sample, timestep) pairs: each sample at its first n_t shuffled timesteps.
                rows = idx.repeat_interleave(n_t)  # (B·n_t,)
                ti = tperm[idx, :n_t].reshape(-1)  # (B·n_t,) step indices
                n_pairs = rows.numel()
                self.opt.zero_grad(set_to_none=True)
                # UNet calls of at most max_batch transitions; the gradient is accumulated over them. DDPO averages
                # the loss over the minibatch at each timestep and accumulates over the timesteps with a 1/n_t
                # factor: the mean over all B·n_t pairs, which is what the chunks add up to.
                for c in range(0, n_pairs, self.rollout.max_batch):
                    r_i, t_i = rows[c:c + self.rollout.max_batch], ti[c:c + self.rollout.max_batch]
                    x_t, x_prev = traj.latents[r_i, t_i], traj.next_latents[r_i, t_i]
                    lp_old = traj.log_probs[r_i, t_i]
                    lp, _ = self.step_log_prob(x_t, x_prev, traj.timesteps[t_i])
                    ratio = torch.exp(lp - lp_old)
                    a = adv[r_i]
                    # PPO: the pessimistic of the unclipped and the clipped surrogate.
                    per_pair = torch.maximum(-a * ratio, -a * ratio.clamp(1 - clip, 1 + clip))
                    self._backward(per_pair.sum() / n_pairs)
                    stats["loss"].append(float(per_pair.detach().mean()))
                    stats["approx_kl"].append(float(0.5 * ((lp - lp_old) ** 2).mean().detach()))
                    stats["clipfrac"].append(float(((ratio - 1).abs() > clip).float().mean()))
                    stats["ratio"].append(float(ratio.detach().mean()))
                stats["grad_norm"].append(self._clip_and_step(float(s["max_grad_norm"])))
        out = _means(stats)
        out.update(adv_abs=float(adv.abs().mean()), optimizer_steps=len(stats["grad_norm"]))
        return out

    def _update_dpok(self, traj: Trajectories, raw: torch.Tensor) -> dict:
        """DPOK's single-prompt update (train_online_pg.py): value step, then policy steps with the KL term."""
        s = self.s
        k, steps = traj.log_probs.shape
        # Reward units (see DPOK["reward_units"]): first batch with spread sets (m0, s0), fixed afterwards.
        if self.ref is None:
            r64 = raw.double()
            if r64.numel() < 2 or float(r64.std()) == 0.0:
                return {"skipped": "no reward spread yet (the reward units are set by the first batch that has one)"}
            self.ref = (float(r64.mean()), float(r64.std()))
        u = ((raw.double() - self.ref[0]) / self.ref[1]).float()  # (K,) rewards in first-batch units
        # Transitions of this round join the FIFO buffer (oldest dropped beyond buffer_rounds rounds).
        new = {"x": traj.latents.reshape(k * steps, *self.shape), "x_prev": traj.next_latents.reshape(k * steps, *self.shape),
               "step": torch.arange(steps, device=self.device).repeat(k), "t": traj.timesteps.repeat(k),
               "r": u.repeat_interleave(steps), "lp": traj.log_probs.reshape(-1)}
        cap = int(s["buffer_rounds"]) * k * steps
        self.buffer = new if self.buffer is None else {n: torch.cat([self.buffer[n], v])[-cap:] for n, v in new.items()}
        buf, size = self.buffer, self.buffer["r"].shape[0]

        def pick(count: int) -> torch.Tensor:  # random transitions without replacement, as np.random.choice
            return torch.randperm(size, generator=self.rng)[:min(count, size)].to(self.device)

        if not self.value_started:
            # V's output offset is set so that it predicts the first round's mean reward over its transitions:
            # DPOK's randomly initialised head starts at an arbitrary offset, which gives every early advantage
            # the same sign (a push on all log-probs at once) until the value net has caught up.
            with torch.no_grad():
                self.value.head.bias.add_(buf["r"].float().mean() - self.value(buf["x"], self.text, buf["step"]).mean())
            self.value_started = True
        # Value function: v_step minibatches of MSE to the final reward, accumulated, one AdamW step.
        self.value_opt.zero_grad(set_to_none=True)
        value_loss = 0.0
        for _ in range(int(s["v_step"])):
            i = pick(int(s["v_batch"]))
            loss_v = (self.value(buf["x"][i], self.text, buf["step"][i]) - buf["r"][i].float()).pow(2).mean()
            (loss_v / int(s["v_step"])).backward()
            value_loss += float(loss_v.detach()) / int(s["v_step"])
        self.value_opt.step()

        # Policy: p_step AdamW steps, each on p_batch random transitions.
        eps_clip, w, beta = float(s["ratio_clip"]), float(s["reward_weight"]), float(s["kl_weight"])
        stats = {"loss": [], "kl": [], "ratio": [], "approx_kl": [], "clipfrac": [], "adv": [], "grad_norm": []}
        for _ in range(int(s["p_step"])):
            self.opt.zero_grad(set_to_none=True)
            picked = pick(int(s["p_batch"]))
            # DPOK accumulates the step over several forward passes (4 transitions x 12); here UNet calls of at
            # most max_batch transitions, each adding its share of the mean over the step's transitions.
            for c in range(0, picked.numel(), self.rollout.max_batch):
                i = picked[c:c + self.rollout.max_batch]
                x_t, x_prev, t = buf["x"][i], buf["x_prev"][i], buf["t"][i]
                with torch.no_grad():
                    adv = (buf["r"][i] - self.value(x_t, self.text, buf["step"][i])).to(self.math_dtype)  # A = r - V(x_t)
                lp, eps = self.step_log_prob(x_t, x_prev, t)  # LoRA UNet, with grad
                with torch.no_grad(), self.frozen():
                    eps_ref = self.guided_eps(x_t, t)  # the pretrained UNet (LoRA off)
                # DPOK's KL bound: squared difference of the guided ε predictions, mean over dimensions.
                kl = (eps - eps_ref).pow(2).mean(dim=tuple(range(1, eps.ndim)))  # (B,)
                ratio = torch.exp(lp - buf["lp"][i])
                # DPOK clamps the ratio (gradient 0 outside [1 - ε, 1 + ε]); no PPO min/max.
                per_pair = -w * adv * ratio.clamp(1 - eps_clip, 1 + eps_clip) + beta * kl
                self._backward(per_pair.sum() / picked.numel())
                stats["loss"].append(float(per_pair.detach().mean()))
                stats["kl"].append(float(kl.detach().mean()))
                stats["ratio"].append(float(ratio.detach().mean()))
                stats["approx_kl"].append(float(0.5 * ((lp - buf["lp"][i]) ** 2).mean().detach()))
                stats["clipfrac"].append(float(((ratio - 1).abs() > eps_clip).float().mean()))
                stats["adv"].append(float(adv.abs().mean()))
            stats["grad_norm"].append(self._clip_and_step(float(s["max_grad_norm"])))
        out = _means(stats)
        out.update(value_loss=value_loss, buffer=size, optimizer_steps=int(s["p_step"]))
        return out

    # ------------------------------------------------------------------------------------------ deliver

    def generate(self, n: int, seed: int) -> torch.Tensor:
        """n images (n, 3, H, W) in [0, 1] from the current LoRA UNet: the stock pipeline call (DDIM eta 0)
        from N(0, I) noise of namespace "eval" (FIND's baseline arm's ε for this seed), counted."""
        from findcli.policy import prior_noise

        s = noise_seed("eval", seed)
        with counting(self.pipe, self.generate_cost), torch.no_grad():
            z = prior_noise(self.shape, s, int(n), self.device)
            images = self.rollout(z, s)
        self.generate_cost.images += int(n)
        return images

    # ------------------------------------------------------------------------------------------ files

    def save(self, path: str | Path) -> Path:
        """The LoRA (peft save_pretrained: adapter_model.safetensors, adapter_config.json) and findcli-lora.json
        (prompt, sampler, settings): what `generate` needs. Not the training state (optimizer moments, DPOK's
        value net and buffer, DDPO's stat tracker): a loaded run that trains again starts those afresh."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.peft.save_pretrained(str(path))
        meta = {"format": "findcli-lora", "version": 1, "variant": self.variant, "prompt": self.prompt,
                "seed": self.seed, "iteration": self.iteration, "height": self.rollout.height,
                "width": self.rollout.width, "settings": self.settings}
        (path / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
        return path

    @classmethod
    def load(cls, path: str | Path, pipe, reward: Callable | None = None, **overrides) -> "Dpok":
        """Rebuild a saved run on `pipe` (the model it was trained on): its prompt, sampler and settings,
        the LoRA from the adapter files. `.generate` then samples from it; `.pipe` is a stock pipeline."""
        path = Path(path)
        try:
            meta = json.loads((path / META_FILE).read_text())
        except (OSError, ValueError) as e:
            raise FindError(f"{str(path)!r} is not a saved DPOK/DDPO LoRA (no readable {META_FILE}: {e})") from None
        table = published_settings(meta["variant"])
        given = {k: meta["settings"][k] for k in table if k in meta["settings"]}
        given.update(overrides)
        out = cls(pipe, meta["prompt"], reward, meta["variant"], seed=meta["seed"], height=meta["height"],
                  width=meta["width"], max_batch=meta["settings"].get("max_batch", 16), lora=path, **given)
        out.iteration = int(meta["iteration"])
        out.settings["given"] = sorted(set(meta["settings"].get("given", [])) | set(overrides))
        return out
