"""A prompt-conditioned FIND policy: one small network from a prompt's text feature to (μ, log σ),
trained with the FIND objective over a prompt set, so that a prompt it never saw gets a learned
initial-noise distribution with no training of its own.

Parametrisation (low rank, so it scales to SDXL / video latents):

    h        = (t − t_mean) / t_std                     t: the generator's pooled text feature (E,),
                                                        standardised with the training set's statistics
    (a, b)   = MLP(h) ∈ R^r × R^r                       last layer zero-initialised
    μ        = μ0 + U a                                 μ0 (D,), U (D × r)
    log σ    = s0 + W b                                 s0 (D,), W (D × r)

μ0 = s0 = 0 at the start and the MLP's last layer is zero, so the untrained policy is N(0, I) for
every prompt (tested). Parameters: 2D(r + 1) + the MLP; at SDXL size (D = 65 536, r = 32) 4.3 M.

One iteration (the per-prompt trainer's SAMPLE / UPDATE, vectorised over prompts):
  SAMPLE  P prompts drawn without replacement from the set (a permutation per epoch over it, seeded);
          for each, K latents from its N(μ_p, σ_p²) (ε from the "conditional" seed namespace, index
          (iteration, prompt slot)), denoised, scored.
  UPDATE  advantages normalised per prompt within its K samples, A = (r − mean_p) / (std_p + 1e-6)
          (GRPO-style: invariant to the reward's affine scale, and a prompt whose K images all score
          the same teaches nothing); then `inner_epochs` Adam steps on the mean over prompts of the
          per-prompt clipped surrogate + β·KL(N(μ_p, σ_p²) ‖ N(0, I)) (the kernels' `policy_loss`, each
          prompt with its own μ_p, σ_p), times D as the per-prompt trainer's d_invariant loss. As in
          FIND, the surrogate reuses recent samples: each prompt's last `replay` batches, each with the
          log-probs of the network that drew it (the clipped ratio keeps the reuse honest).

No value net: the per-prompt group statistics are the baseline.

With a teacher (cfg.teacher "layouts", built-in image model; `teacher_policy`), the network is first
distilled to the teacher's per-prompt policies for every prompt of the set (no images scored), and the
FIND iterations (none unless asked) start from there. A run can also start from a conditional policy
file (ConditionalRequest.init, `find train --prompts FILE --conditional --init COND.pt`): the FIND
objective on any prompt set, from a network trained before (e.g. distilled by a teacher on another set),
with that network's architecture and sampler. The network reads the generator's text embeddings
(cfg.features "encoder") or context-free word features ("words", `word_features`); the file records which.
File format "findcli-conditional-policy" (see `save_conditional` / `load_conditional`).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from findcli import atomic
from findcli.errors import FindError
from findcli.policy import MIN_LOG_SIGMA, GaussianPolicy

FORMAT_NAME = "findcli-conditional-policy"
FORMAT_VERSION = 1


@dataclass
class ConditionalConfig:
    arch: str = "mlp"  # "mlp": pooled text feature -> low-rank basis; "tokens": per-token attention; "slots": per-token code x role mask (below)
    rank: int = 32  # mlp: r, columns of the bases U, W of μ and log σ
    pool: int = 2  # tokens: the attention grid is the latent's H×W pooled by this factor (coarse layout)
    key_dim: int = 16  # tokens: query/key width d
    modes: int = 8  # tokens: m, layout modes the pooled feature mixes into the grid's queries
    role_rank: int = 8  # slots: R, spatial masks a token's role (its state x the whole prompt) mixes
    bias_rank: int = 4  # slots: rank of the whole-prompt layout term (pooled feature -> coarse grid)
    features: str = "encoder"  # what the network reads of a prompt: "encoder" (the generator's pooled and per-token text embeddings) or "words" (context-free: each token's input word embedding and its position; no encoder layer runs, so a word's code cannot depend on its neighbours; RESULTS.md §10.5)
    teacher: str = "none"  # "layouts": first distil the network to the layout teacher (findcli.shapes.layouts: DDIM inversions of scenes the built-in renderer draws for the set's prompts), then `iterations` FIND iterations from there (0 by default with a teacher); built-in image model only
    teacher_sigma: float = 0.3  # layouts: σ of the teacher's policies (chosen on the fold, RESULTS.md §10.6)
    render_seed: int = 0  # layouts: the renderer's seed, the same for every prompt (a template's scenes share a layout)
    render_seeds: int = 1  # layouts: scenes per prompt (seeds render_seed, render_seed + 1, ...); the teacher's μ is the mean of their inversions
    distill_steps: int = 2000  # layouts: full-batch AdamW steps of the distillation (lr 3e-3, weight decay 1e-4)
    hidden: int = 256  # width of the MLP from the text feature to the 2r coefficients
    iterations: int = 120  # policy updates; each sees prompts_per_iteration × batch images (0, the default with a teacher: the distilled network as is)
    prompts_per_iteration: int = 8  # P prompts per iteration (all of them when the set is smaller)
    batch: int = 8  # K images per prompt per iteration
    lr: float = 0.05  # Adam lr of μ0 and s0 (the per-element parts, as the per-prompt trainer's lr)
    net_lr: float = 3e-3  # Adam lr of the MLP and the bases U, W
    inner_epochs: int = 4  # Adam steps per iteration
    replay: int = 4  # M: each prompt's last M batches (with the log-probs they were drawn with) in its surrogate
    learn_sigma: bool = True  # False: σ stays 1 (only μ is learned; s0 and W are frozen at zero)
    clip: float = 0.2  # PPO ratio clip ε
    kl_weight: float = 0.01  # β of the KL pull toward kl_to's target, per prompt
    tune: str = "all"  # what the FIND iterations update: "all" parameters, or (slots) "layout": only the terms that read the whole prompt (the layout bias G, Ub and the log σ head), codes and masks kept as they start
    kl_to: str = "standard"  # the KL pull's target: "standard" N(0, I) (FIND's), or "start": each prompt's distribution under the network the iterations started from (a trust region around a teacher's distillation, as DPOK's KL to the pretrained model)
    max_grad_norm: float = 1.0  # bound on the per-element RMS of the gradient (0 disables)
    seed: int = 0  # network init, prompt order and ε
    steps: int = 20  # sampler: DDIM steps
    guidance: float = 7.5  # sampler: CFG scale
    eta: float = 0.0  # sampler: DDIM eta
    max_batch: int = 16  # images per pipeline call

    def validate(self) -> None:
        if self.arch not in ARCHS:
            raise FindError(f"conditional policy: arch must be one of {', '.join(ARCHS)}, got {self.arch!r}")
        if self.features not in FEATURES:
            raise FindError(f"conditional policy: features must be one of {', '.join(FEATURES)}, got {self.features!r}")
        if self.tune not in ("all", "layout"):
            raise FindError(f"conditional policy: tune must be all or layout, got {self.tune!r}")
        if self.tune == "layout" and self.arch != "slots":
            raise FindError(f"conditional policy: tune=layout updates the slots network's layout term; arch is {self.arch!r}")
        if self.kl_to not in KL_TARGETS:
            raise FindError(f"conditional policy: kl_to must be one of {', '.join(KL_TARGETS)}, got {self.kl_to!r}")
        if self.teacher not in TEACHERS:
            raise FindError(f"conditional policy: teacher must be one of {', '.join(TEACHERS)}, got {self.teacher!r}")
        ints = {"rank": 1, "pool": 1, "key_dim": 1, "modes": 1, "role_rank": 1, "bias_rank": 1, "hidden": 1,
                "iterations": 0 if self.teacher != "none" else 1, "prompts_per_iteration": 1, "batch": 2,
                "inner_epochs": 1, "replay": 1, "steps": 1, "max_batch": 1, "render_seed": 0, "render_seeds": 1,
                "distill_steps": 1}
        for k, lo in ints.items():
            v = getattr(self, k)
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise FindError(f"conditional policy: {k} must be an integer >= {lo}, got {v!r}")
        for k in ("lr", "net_lr", "clip", "kl_weight", "max_grad_norm", "guidance", "eta", "teacher_sigma"):
            v = getattr(self, k)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
                raise FindError(f"conditional policy: {k} must be a finite number >= 0, got {v!r}")
        if self.teacher_sigma <= 0:
            raise FindError(f"conditional policy: teacher_sigma must be > 0, got {self.teacher_sigma!r}")

    @classmethod
    def with_teacher_defaults(cls, overrides: dict) -> "ConditionalConfig":
        """The config for explicit `overrides`, on top of the teacher's defaults (TEACHER_DEFAULTS) when
        overrides name a teacher."""
        return cls(**{**TEACHER_DEFAULTS.get(overrides.get("teacher", "none"), {}), **overrides})


ARCHS = ("mlp", "tokens", "slots")
FEATURES = ("encoder", "words")
TEACHERS = ("none", "layouts")
KL_TARGETS = ("standard", "start")
# What `--teacher layouts` changes unless given explicitly: the network its targets were measured with (the
# context-free `slots` network of RESULTS.md §10.6: role rank 24, bias rank 12), and no FIND iterations after
# the distillation: on the fold of the training split every variant of them tried lowered held-out success or
# left it where it was (82.4% -> 10.8-81.8%, RESULTS.md §10.7), so they run only when --iterations asks.
TEACHER_DEFAULTS = {"layouts": {"arch": "slots", "features": "words", "role_rank": 24, "bias_rank": 12, "iterations": 0}}
WORD_POSITIONS = 16  # features "words": one-hot positions from the start and from the end (later ones share the last)
TOKEN_ARCHS = ("tokens", "slots")  # the architectures that read the prompt's per-token features


class ConditionalPolicy(nn.Module):
    """text feature (E,) or (P, E) -> (μ, log σ), each (D,) or (P, D). (`tokens` is accepted and
    ignored, so that both architectures are called alike.)"""

    kind = "mlp"
    features = "encoder"  # which prompt features it reads (ConditionalConfig.features); set by build_policy / the file

    def __init__(self, latent_shape: tuple[int, ...], text_dim: int, rank: int = 32, hidden: int = 256,
                 text_mean: torch.Tensor | None = None, text_std: torch.Tensor | None = None):
        super().__init__()
        self.latent_shape = tuple(int(s) for s in latent_shape)
        self.dim = math.prod(self.latent_shape)
        self.text_dim, self.rank, self.hidden = int(text_dim), int(rank), int(hidden)
        self.register_buffer("text_mean", torch.zeros(text_dim) if text_mean is None else text_mean.float().clone())
        self.register_buffer("text_std", torch.ones(text_dim) if text_std is None else text_std.float().clone())
        self.mlp = nn.Sequential(nn.Linear(text_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, 2 * rank))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)
        # Bases with unit-variance rows over r: a coefficient vector of norm ~1 moves each element O(1).
        self.U = nn.Parameter(torch.randn(self.dim, rank) / math.sqrt(rank))
        self.W = nn.Parameter(torch.randn(self.dim, rank) / math.sqrt(rank))
        self.mu0 = nn.Parameter(torch.zeros(self.dim))
        self.s0 = nn.Parameter(torch.zeros(self.dim))

    def arch(self) -> dict:
        return {"kind": self.kind, "latent_shape": list(self.latent_shape), "text_dim": self.text_dim,
                "rank": self.rank, "hidden": self.hidden}

    def forward(self, text: torch.Tensor, tokens: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: ARG002
        single = text.dim() == 1
        h = (text.reshape(-1, self.text_dim).float() - self.text_mean) / self.text_std
        a, b = self.mlp(h).chunk(2, dim=-1)  # (P, r) each
        mu = self.mu0 + a @ self.U.T  # (P, D)
        log_sigma = (self.s0 + b @ self.W.T).clamp(min=MIN_LOG_SIGMA)
        return (mu[0], log_sigma[0]) if single else (mu, log_sigma)

    @torch.no_grad()
    def policy_for(self, text: torch.Tensor, tokens: torch.Tensor | None = None) -> GaussianPolicy:
        """The per-prompt GaussianPolicy for one text feature (E,) (and token features (L, E_tok)):
        what sample/eval draw from."""
        dev = self.mu0.device
        mu, log_sigma = self(text.to(dev), None if tokens is None else tokens.to(dev))
        return GaussianPolicy(self.latent_shape, mu.detach().clone(), log_sigma.detach().clone()).to(mu.device)

    def set_learn_sigma(self, learn: bool) -> None:
        """False: σ = 1 for every prompt from now on (W and s0 zeroed and frozen; the MLP's b half then
        gets no gradient through them). True: W and s0 train again."""
        if not learn:
            with torch.no_grad():
                self.W.zero_()
                self.s0.zero_()
        self.W.requires_grad_(learn)
        self.s0.requires_grad_(learn)

    def groups(self, cfg: ConditionalConfig) -> list[dict]:
        """Adam's parameter groups for cfg (after set_learn_sigma(cfg.learn_sigma))."""
        self.set_learn_sigma(cfg.learn_sigma)
        if not cfg.learn_sigma:
            return [{"params": [self.mu0], "lr": cfg.lr}, {"params": [self.U, *self.mlp.parameters()], "lr": cfg.net_lr}]
        return [{"params": [self.mu0, self.s0], "lr": cfg.lr},
                {"params": [self.U, self.W, *self.mlp.parameters()], "lr": cfg.net_lr}]


class _TokenGrid(nn.Module):
    """What the token architectures share: a coarse grid over the latent's H×W (pooled by `pool`,
    frames kept), the training set's feature statistics, the σ gate, and the way grid cells become a
    latent (nearest upsampling, cropped at odd sizes, channels moved where the layout has them)."""

    features = "encoder"  # which prompt features it reads (ConditionalConfig.features)

    def _setup_grid(self, what: str, latent_shape, text_dim: int, token_dim: int, pool: int, channel_axis: int,
                    text_mean, text_std, token_mean, token_std) -> int:
        """Set the shapes and buffers; return the number of grid cells S."""
        self.latent_shape = tuple(int(s) for s in latent_shape)
        self.dim = math.prod(self.latent_shape)
        self.text_dim, self.token_dim = int(text_dim), int(token_dim)
        self.pool, self.channel_axis = int(pool), int(channel_axis)
        rest = [s for i, s in enumerate(self.latent_shape) if i != self.channel_axis]
        if len(rest) < 2:
            raise FindError(f"the {what} architecture needs a latent with height and width; got {list(latent_shape)}")
        self.channels = self.latent_shape[self.channel_axis]
        *self.lead, self.h, self.w = rest
        self.grid = (*self.lead, -(-self.h // self.pool), -(-self.w // self.pool))
        for name, v, n in (("text", text_mean, text_std), ("token", token_mean, token_std)):
            e = self.text_dim if name == "text" else self.token_dim
            self.register_buffer(f"{name}_mean", torch.zeros(e) if v is None else v.float().clone())
            self.register_buffer(f"{name}_std", torch.ones(e) if n is None else n.float().clone())
        self.register_buffer("sigma_gate", torch.ones(()))  # 0 when σ is not learned
        return math.prod(self.grid)

    def _standardise(self, text: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return ((text.float() - self.text_mean) / self.text_std, (tokens.float() - self.token_mean) / self.token_std)

    def _inputs(self, text: torch.Tensor, tokens: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(P, E) and (P, L, E_tok), standardised, for one prompt or a batch."""
        if tokens is None:
            raise FindError(f"the {self.kind} architecture needs the prompt's token features; pass them")
        g = text.reshape(-1, self.text_dim)
        return self._standardise(g, tokens.reshape(g.shape[0], -1, self.token_dim))

    def _to_latent(self, cells: torch.Tensor) -> torch.Tensor:
        """(P, K·C, S) per-cell values (K blocks of C channels) -> (P, K, D): each cell repeated over
        its pool×pool latent pixels, in the family's latent layout."""
        p, c = cells.shape[0], self.channels
        k = cells.shape[1] // c
        out = cells.reshape(p, cells.shape[1] * math.prod(self.lead), *self.grid[-2:])
        out = nn.functional.interpolate(out, scale_factor=self.pool, mode="nearest")[..., :self.h, :self.w]
        out = out.reshape(p * k, c, *self.lead, self.h, self.w)
        if self.channel_axis:
            out = out.movedim(1, 1 + self.channel_axis)
        return out.reshape(p, k, -1)

    policy_for = ConditionalPolicy.policy_for

    def set_learn_sigma(self, learn: bool) -> None:
        """False: σ = 1 for every prompt from now on (the Δ log σ part gated off, s0 zeroed and frozen).
        True: both train again. The Δ log σ head gets no gradient while the gate is closed, so a network
        that had it closed from the start (e.g. fitted with σ = 1) reopens at σ = 1."""
        with torch.no_grad():
            self.sigma_gate.fill_(1.0 if learn else 0.0)
            if not learn:
                self.s0.zero_()
        self.s0.requires_grad_(learn)

    def groups(self, cfg: ConditionalConfig) -> list[dict]:
        """Adam's parameter groups for cfg (after set_learn_sigma(cfg.learn_sigma))."""
        self.set_learn_sigma(cfg.learn_sigma)
        net = [q for n, q in self.named_parameters() if n not in ("mu0", "s0")]
        if not cfg.learn_sigma:
            return [{"params": [self.mu0], "lr": cfg.lr}, {"params": net, "lr": cfg.net_lr}]
        return [{"params": [self.mu0, self.s0], "lr": cfg.lr}, {"params": net, "lr": cfg.net_lr}]


class TokenConditionalPolicy(_TokenGrid):
    """The `tokens` architecture: a coarse grid over the latent attends to the prompt's per-token
    embeddings (those the denoiser cross-attends), so that what a word asks for can land in a region
    of z_T whatever the other words are (a compositional prior; the pooled-feature MLP has none).

        g̃, T̃      the pooled feature (E,) and the token features (L, E_tok), standardised with the
                  training set's statistics
        Q        = Q0 + Σ_m c_m(g̃) Q_m                 (S, d): S grid cells (H×W pooled by `pool`, frames
                                                       kept), queries moved by m layout modes of the
                                                       whole prompt (word order, relation, count)
        A        = softmax over [tokens; null] of Q K(T̃)ᵀ / √d      (the null token has value 0)
        (Δμ, Δs) = A V(T̃)                              (S, 2C), upsampled (nearest) to the latent
        μ = μ0 + Δμ,  log σ = s0 + Δs                 μ0, s0 (D,) per element, shared by all prompts

    V is zero-initialised and μ0 = s0 = 0, so the untrained policy is N(0, I) for every prompt.
    Parameters: S·d·(m + 1) + small heads + 2D; at SDXL size (128×128 latent, pool 2, d 16, m 8)
    0.6 M plus 2D."""

    kind = "tokens"

    def __init__(self, latent_shape: tuple[int, ...], text_dim: int, token_dim: int, pool: int = 2, key_dim: int = 16,
                 modes: int = 8, channel_axis: int = 0, text_mean: torch.Tensor | None = None,
                 text_std: torch.Tensor | None = None, token_mean: torch.Tensor | None = None,
                 token_std: torch.Tensor | None = None):
        super().__init__()
        cells = self._setup_grid("tokens", latent_shape, text_dim, token_dim, pool, channel_axis, text_mean, text_std,
                                 token_mean, token_std)
        self.key_dim, self.modes = int(key_dim), int(modes)
        self.q0 = nn.Parameter(torch.randn(cells, self.key_dim))
        self.qm = nn.Parameter(torch.zeros(self.modes, cells, self.key_dim))
        self.mode = nn.Linear(self.text_dim, self.modes)
        self.key = nn.Linear(self.token_dim, self.key_dim)
        self.null_key = nn.Parameter(torch.zeros(self.key_dim))
        self.value = nn.Linear(self.token_dim, 2 * self.channels)
        nn.init.zeros_(self.value.weight)
        nn.init.zeros_(self.value.bias)
        self.mu0 = nn.Parameter(torch.zeros(self.dim))
        self.s0 = nn.Parameter(torch.zeros(self.dim))

    def arch(self) -> dict:
        return {"kind": self.kind, "latent_shape": list(self.latent_shape), "text_dim": self.text_dim,
                "token_dim": self.token_dim, "pool": self.pool, "key_dim": self.key_dim, "modes": self.modes,
                "channel_axis": self.channel_axis}

    def _attend(self, g: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        q = self.q0 + torch.einsum("pm,msd->psd", self.mode(g), self.qm)
        k = torch.cat([self.key(t), self.null_key.expand(t.shape[0], 1, -1)], dim=1)
        return torch.softmax(q @ k.transpose(1, 2) / math.sqrt(self.key_dim), dim=-1)

    def attention(self, text: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """(P, E), (P, L, E_tok) -> (P, S, L + 1) attention of each grid cell over the tokens and the null."""
        return self._attend(*self._standardise(text, tokens))

    def forward(self, text: torch.Tensor, tokens: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        single = text.dim() == 1
        g, t = self._inputs(text, tokens)
        p, c = g.shape[0], self.channels
        a = self._attend(g, t)
        v = self.value(t)
        v = torch.cat([v, v.new_zeros(p, 1, 2 * c)], dim=1)  # the null token moves nothing
        d_mu, d_s = self._to_latent((a @ v).transpose(1, 2)).unbind(1)  # (P, D) each
        mu = self.mu0 + d_mu
        log_sigma = (self.s0 + d_s * self.sigma_gate).clamp(min=MIN_LOG_SIGMA)
        return (mu[0], log_sigma[0]) if single else (mu, log_sigma)


class SlotConditionalPolicy(_TokenGrid):
    """The `slots` architecture: what a word asks for (its code, a latent-channel vector) placed where
    its role in the prompt puts it (a spatial mask over a coarse grid), summed over the tokens, plus a
    low-rank layout of the whole prompt. Codes come from a token's own state and masks from that state
    times the whole prompt, so a colour word seen in one pair lands with the same code in a pair it
    never appeared in (the coarse layout a per-prompt policy learns is mostly such placed colour codes:
    RESULTS.md §10.2).

        g̃, T̃           pooled feature (E,) and token features (L, E_tok), standardised (training set)
        code_j          = V T̃_j                                  (C,)  zero-initialised
        role_j          = (A T̃_j) ⊙ (B g̃)                        (R,)  bilinear: slot x relation
        mask_j          = role_j U                                (S,)  U: (R, S) spatial modes
        Δμ[c, s]        = Σ_j mask_j[s] code_j[c] + (G g̃ Ub)[c, s]    Ub (bias_rank, C·S) zero-initialised
        Δ log σ         = w · g̃ (one scalar per prompt, zero-initialised)
        μ = μ0 + up(Δμ),  log σ = s0 + Δ log σ                   μ0, s0 (D,) shared

    N(0, I) for every prompt before training. Parameters: E_tok(C + R) + E(R + bias_rank + 1) +
    S(R + C·bias_rank) + 2D; at SDXL size (128×128 latent, pool 2, R 8) ≈ 0.2 M plus 2D."""

    kind = "slots"

    def __init__(self, latent_shape: tuple[int, ...], text_dim: int, token_dim: int, pool: int = 2, role_rank: int = 8,
                 bias_rank: int = 4, channel_axis: int = 0, text_mean: torch.Tensor | None = None,
                 text_std: torch.Tensor | None = None, token_mean: torch.Tensor | None = None,
                 token_std: torch.Tensor | None = None):
        super().__init__()
        cells = self._setup_grid("slots", latent_shape, text_dim, token_dim, pool, channel_axis, text_mean, text_std,
                                 token_mean, token_std)
        self.role_rank, self.bias_rank = int(role_rank), int(bias_rank)
        self.code = nn.Linear(self.token_dim, self.channels)
        nn.init.zeros_(self.code.weight)
        nn.init.zeros_(self.code.bias)
        self.role_token = nn.Linear(self.token_dim, self.role_rank)
        self.role_prompt = nn.Linear(self.text_dim, self.role_rank)
        self.U = nn.Parameter(torch.randn(self.role_rank, cells) / math.sqrt(self.role_rank))
        self.layout = nn.Linear(self.text_dim, self.bias_rank)
        self.Ub = nn.Parameter(torch.zeros(self.bias_rank, self.channels * cells))
        self.log_scale = nn.Linear(self.text_dim, 1)
        nn.init.zeros_(self.log_scale.weight)
        nn.init.zeros_(self.log_scale.bias)
        self.mu0 = nn.Parameter(torch.zeros(self.dim))
        self.s0 = nn.Parameter(torch.zeros(self.dim))

    def arch(self) -> dict:
        return {"kind": self.kind, "latent_shape": list(self.latent_shape), "text_dim": self.text_dim,
                "token_dim": self.token_dim, "pool": self.pool, "role_rank": self.role_rank,
                "bias_rank": self.bias_rank, "channel_axis": self.channel_axis}

    WHOLE_PROMPT = ("layout", "Ub", "log_scale")  # the terms that read only the whole prompt (cfg.tune "layout")

    def groups(self, cfg: ConditionalConfig) -> list[dict]:
        """_TokenGrid's groups; with cfg.tune "layout" one group of the WHOLE_PROMPT terms at cfg.net_lr, every
        other parameter (codes, masks, μ0, s0) frozen where it starts."""
        groups = super().groups(cfg)
        if cfg.tune != "layout":
            return groups
        for n, q in self.named_parameters():
            q.requires_grad_(q.requires_grad and n.split(".")[0] in self.WHOLE_PROMPT)
        return [{"params": [q for q in self.parameters() if q.requires_grad], "lr": cfg.net_lr}]

    def forward(self, text: torch.Tensor, tokens: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        single = text.dim() == 1
        g, t = self._inputs(text, tokens)
        p, c = g.shape[0], self.channels
        mask = (self.role_token(t) * self.role_prompt(g)[:, None, :]) @ self.U  # (P, L, S)
        cells = torch.einsum("pls,plc->pcs", mask, self.code(t))  # (P, C, S)
        cells = cells + (self.layout(g) @ self.Ub).reshape(p, c, -1)
        mu = self.mu0 + self._to_latent(cells)[:, 0]
        log_sigma = (self.s0 + self.log_scale(g) * self.sigma_gate).clamp(min=MIN_LOG_SIGMA)
        return (mu[0], log_sigma[0]) if single else (mu, log_sigma)


def channel_axis(latent_layout: str) -> int:
    """Where the channels sit in a family's per-sample latent: "CHW"/"CFHW" -> 0, "FCHW" -> 1."""
    return latent_layout.index("C")


def build_policy(cfg: ConditionalConfig, latent_shape: tuple[int, ...], latent_layout: str, text: torch.Tensor,
                 tokens: torch.Tensor | None):
    """The untrained network of cfg.arch, standardised with the training prompts' features
    (text (N, E); tokens (N, L, E_tok) for the token architectures)."""
    def stats(x):
        x = x.reshape(-1, x.shape[-1])
        return x.mean(0), (x.std(0) if x.shape[0] > 1 else torch.ones_like(x[0])).clamp_min(1e-4)

    if cfg.arch in TOKEN_ARCHS and tokens is None:
        raise FindError(f"conditional policy: arch {cfg.arch!r} needs the model's per-token prompt embeddings")
    if cfg.arch == "slots":
        net = SlotConditionalPolicy(latent_shape, text.shape[1], tokens.shape[-1], cfg.pool, cfg.role_rank,
                                    cfg.bias_rank, channel_axis(latent_layout), *stats(text), *stats(tokens))
    elif cfg.arch == "tokens":
        net = TokenConditionalPolicy(latent_shape, text.shape[1], tokens.shape[-1], cfg.pool, cfg.key_dim, cfg.modes,
                                     channel_axis(latent_layout), *stats(text), *stats(tokens))
    else:
        net = ConditionalPolicy(latent_shape, text.shape[1], cfg.rank, cfg.hidden, *stats(text))
    net.features = cfg.features
    return net


# ---------------------------------------------------------------- training


@dataclass
class ConditionalResult:
    policy: ConditionalPolicy
    metrics: list[dict] = field(default_factory=list)
    wall_s: float = 0.0
    images: int = 0  # images generated (and scored) in training
    teacher: dict = field(default_factory=dict)  # the distillation before the FIND iterations (teacher_policy), if any
    init: dict = field(default_factory=dict)  # the conditional policy file the iterations started from (--init), if any


def iteration_prompts(n_prompts: int, per_iteration: int, seed: int, iteration: int) -> list[int]:
    """The prompt indices of an iteration: consecutive slices of one seeded permutation per epoch,
    so that every prompt is seen equally often (the last slice of an epoch wraps into the next)."""
    per = min(per_iteration, n_prompts)
    out, start = [], iteration * per
    for j in range(start, start + per):
        epoch, pos = divmod(j, n_prompts)
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        out.append(int(torch.randperm(n_prompts, generator=g)[pos]))
    return out


def _group_advantages(r: torch.Tensor) -> torch.Tensor:
    """(P, K) rewards -> (P, K) float32 advantages normalised within each prompt's K samples, in
    float64; a prompt whose rewards do not spread (std ≤ 1e-9 of their magnitude) gets zeros."""
    r = r.double()
    c = r - r.mean(1, keepdim=True)
    s = r.std(1, keepdim=True)
    flat = s <= 1e-9 * (r.abs().mean(1, keepdim=True) + 1e-30)
    return torch.where(flat, torch.zeros_like(c), c / torch.where(flat, torch.ones_like(s), s)).float()


def conditional_update(policy: ConditionalPolicy, opt: torch.optim.Optimizer, text: torch.Tensor, z: list,
                       logp_old: list, adv: list, cfg: ConditionalConfig,
                       tokens: torch.Tensor | None = None, anchor: tuple | None = None) -> dict[str, float]:
    """`inner_epochs` Adam steps on mean_p [clipped surrogate_p + β KL_p] · D.
    text (P, E) (tokens (P, L, E_tok) for the tokens architecture); per prompt p: z[p] (N_p, D), logp_old[p] (N_p,), adv[p] (N_p,) (its replayed samples,
    N_p = K × the batches kept). KL_p is to N(0, I), or with `anchor` = (μ_ref, log σ_ref), (P, D) each, to
    N(μ_ref_p, σ_ref_p²) (cfg.kl_to "start"). Returns the diagnostics averaged over passes."""
    from findcli.kernels import policy_loss
    from findcli.kernels.gaussian import kl_to_gaussian

    n_params = sum(p.numel() for p in policy.parameters() if p.requires_grad)
    max_norm = cfg.max_grad_norm * math.sqrt(n_params)
    agg: dict[str, float] = {}
    p_count = len(z)
    for _ in range(cfg.inner_epochs):
        mu, log_sigma = policy(text, tokens)  # (P, D)
        loss = torch.zeros((), device=text.device)
        for p in range(p_count):
            lp, stats = policy_loss(z[p], mu[p], log_sigma[p], logp_old[p], adv[p], cfg.clip,
                                    0.0 if anchor is not None else cfg.kl_weight)
            if anchor is not None:
                kl = kl_to_gaussian(mu[p], log_sigma[p], anchor[0][p], anchor[1][p])
                lp, stats = lp + cfg.kl_weight * kl, {**stats, "kl": kl.detach()}
            loss = loss + lp / p_count
            for k, v in stats.items():
                agg[k] = agg.get(k, 0.0) + float(v) / (p_count * cfg.inner_epochs)
        opt.zero_grad(set_to_none=True)
        (loss * policy.dim).backward()
        if cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_([p for p in policy.parameters() if p.requires_grad], max_norm)
        opt.step()
        agg["loss"] = agg.get("loss", 0.0) + float(loss.detach()) / cfg.inner_epochs
    return agg


def prompt_tokens(rollouts: list, device) -> torch.Tensor:
    """(N, L, E_tok) per-token prompt embeddings of N rollouts (their generators' token_text())."""
    return torch.stack([r.token_text().float().to(device) for r in rollouts])


@torch.no_grad()
def word_features(pipe, prompt: str, positions: int = WORD_POSITIONS) -> tuple[torch.Tensor, torch.Tensor]:
    """Context-free features of one prompt (features "words"; RESULTS.md §10.5), float32 on the CPU:

        ids      = the tokenizer's ids of <bos> words <eos> (no padding; truncated at its max length)
        e_j      = the text encoder's input (word) embedding of ids[j]     (no encoder layer runs)
        token j  = [e_j, onehot(min(j, P−1)), onehot(min(n−1−j, P−1))]   position from the start and the end
        tokens   = the first 2P rows, zero rows after <eos>              (2P, E + 2P)
        pooled   = mean_j e_j                                            (E,)

    A word's features are the same whatever words surround it, so a code the network gives it carries
    over to pairs it never saw together. Needs the pipeline's `tokenizer` and `text_encoder`."""
    tok, enc = getattr(pipe, "tokenizer", None), getattr(pipe, "text_encoder", None)
    if tok is None or enc is None or not hasattr(enc, "get_input_embeddings"):
        raise FindError(f"features 'words' read the pipeline's tokenizer and text encoder's word embeddings; "
                        f"{type(pipe).__name__} has none: use features 'encoder'")
    emb = enc.get_input_embeddings()
    ids = tok(prompt, truncation=True, max_length=tok.model_max_length, return_tensors="pt").input_ids[0]
    n, j = ids.numel(), torch.arange(ids.numel())
    e = emb(ids.to(emb.weight.device)).float().cpu()
    onehot = torch.nn.functional.one_hot
    feats = torch.cat([e, onehot(j.clamp(max=positions - 1), positions).float(),
                       onehot((n - 1 - j).clamp(max=positions - 1), positions).float()], -1)
    feats = torch.nn.functional.pad(feats, (0, 0, 0, max(0, 2 * positions - n)))[:2 * positions]
    return e.mean(0), feats


def prompt_features(pipe, prompts: list[str], features: str, arch: str, rollouts: list | None = None,
                    device=None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The network's inputs for `prompts`: pooled (N, E) and, for the token architectures, per-token
    (N, L, E_tok) float32 features, from the generator's text encoder ("encoder") or context-free
    ("words", `word_features`). `rollouts` (one per prompt) saves building them for "encoder"."""
    from findcli.pipeline import Rollout, SamplerSettings

    if features not in FEATURES:
        raise FindError(f"conditional policy: features must be one of {', '.join(FEATURES)}, got {features!r}")
    with torch.no_grad():
        if features == "words":
            pairs = [word_features(pipe, p) for p in prompts]
            text, tokens = torch.stack([t for t, _ in pairs]), torch.stack([k for _, k in pairs])
        else:
            ros = rollouts if rollouts is not None else [Rollout(pipe, p, SamplerSettings()) for p in prompts]
            text = torch.stack([r.text_features().float() for r in ros])
            tokens = prompt_tokens(ros, "cpu") if arch in TOKEN_ARCHS else None
    if arch not in TOKEN_ARCHS:
        tokens = None
    if device is not None:
        text = text.to(device)
        tokens = None if tokens is None else tokens.to(device)
    return text, tokens


def train_conditional(pipe, prompts: list[str], reward, cfg: ConditionalConfig,
                      on_iteration: Callable[[dict], None] | None = None, init=None) -> ConditionalResult:
    """Train one conditional policy (cfg.arch) over `prompts` on the frozen `pipe` with `reward`
    ((images, prompts) -> (N,)). Deterministic given cfg.seed (and the thread count on CPU).
    `init`: a conditional policy to start from (e.g. `teacher_policy`'s) instead of N(0, I); with
    cfg.iterations 0 it is returned as is."""
    from findcli.kernels import sample_policy
    from findcli.pipeline import Rollout, SamplerSettings, denoiser
    from findcli.seeds import noise_seed

    cfg.validate()
    prompts = list(dict.fromkeys(prompts))
    if not prompts:
        raise FindError("conditional policy: the prompt set is empty; give at least one prompt")
    device = denoiser(pipe).device
    settings = SamplerSettings(cfg.steps, cfg.guidance, cfg.eta)
    rollouts = [Rollout(pipe, p, settings, cfg.max_batch) for p in prompts]
    shape = rollouts[0].latent_shape
    # (N, E) and (N, L, E_tok) (None for mlp)
    feats, toks = prompt_features(pipe, prompts, cfg.features, cfg.arch, rollouts, device)
    torch.manual_seed(cfg.seed)
    if init is None:
        policy = build_policy(cfg, shape, rollouts[0].latent_layout, feats, toks).to(device)
    else:
        got = getattr(init, "features", "encoder")
        if init.kind != cfg.arch or tuple(init.latent_shape) != tuple(shape) or got != cfg.features:
            raise FindError(f"conditional policy: the initial policy is a {init.kind} network on {got} features for "
                            f"latents {list(init.latent_shape)}; this run trains {cfg.arch} on {cfg.features} "
                            f"features for {list(shape)}")
        policy = init.to(device).train().requires_grad_(True)
    opt = torch.optim.Adam(policy.groups(cfg))
    start = None
    if cfg.kl_to == "start":  # a frozen copy of where the iterations begin: the KL's target per prompt
        import copy

        start = copy.deepcopy(policy).eval().requires_grad_(False)
    metrics, images, t0 = [], 0, time.perf_counter()
    replay: dict[int, list] = {}  # prompt index -> its last `cfg.replay` (z, logp_old, adv) batches
    for it in range(cfg.iterations):
        idx = iteration_prompts(len(prompts), cfg.prompts_per_iteration, cfg.seed, it)
        text = feats[idx]
        tokens = None if toks is None else toks[idx]
        with torch.no_grad():
            mu, log_sigma = policy(text, tokens)
        zs, lps, rs = [], [], []
        for slot, i in enumerate(idx):
            seed = noise_seed("conditional", cfg.seed, it * 4096 + slot)
            z, lp = sample_policy(mu[slot].contiguous(), log_sigma[slot].contiguous(), seed, cfg.batch)
            x = rollouts[i](z.view(cfg.batch, *shape), seed)
            with torch.no_grad():
                r = torch.as_tensor(reward(x, [prompts[i]] * cfg.batch)).float().to(device).reshape(-1)
            if not torch.isfinite(r).all():
                raise FindError(f"conditional policy: the reward returned non-finite values for {prompts[i]!r} at "
                                f"iteration {it}; check the reward")
            zs.append(z.reshape(cfg.batch, -1))
            lps.append(lp)
            rs.append(r)
        z, lp, r = torch.stack(zs), torch.stack(lps), torch.stack(rs)  # (P, K, D), (P, K), (P, K)
        images += r.numel()
        adv = _group_advantages(r)
        for slot, i in enumerate(idx):
            replay[i] = (replay.get(i, []) + [(z[slot], lp[slot], adv[slot])])[-cfg.replay:]
        zs_, lps_, advs_ = ([torch.cat([e[j] for e in replay[i]]) for i in idx] for j in range(3))
        anchor = None
        if start is not None:
            with torch.no_grad():
                anchor = start(text, tokens)
        agg = conditional_update(policy, opt, text, zs_, lps_, advs_, cfg, tokens, anchor)
        with torch.no_grad():
            mu, log_sigma = policy(text, tokens)
        if not (torch.isfinite(mu).all() and torch.isfinite(log_sigma).all()):
            raise FindError(f"conditional policy: the update at iteration {it} made μ or σ non-finite; lower --lr")
        m = {"iteration": it, "prompts": [prompts[i] for i in idx], "reward_mean": r.mean().item(),
             "reward_std_within": r.std(1).mean().item(), "mu_norm_mean": mu.norm(dim=1).mean().item() / math.sqrt(policy.dim),
             "sigma_mean": log_sigma.exp().mean().item(), "s": round(time.perf_counter() - t0, 2), **agg}
        metrics.append(m)
        if on_iteration is not None:
            on_iteration(m)
    return ConditionalResult(policy, metrics, time.perf_counter() - t0, images)


# ---------------------------------------------------------------- file format


def save_conditional(path: str | Path, policy: ConditionalPolicy, meta: dict) -> None:
    """Write the conditional policy atomically: weights, architecture, and JSON-able metadata
    (model, sampler settings, training prompts, config)."""
    import io

    json.dumps(meta)
    blob = {"format": FORMAT_NAME, "version": FORMAT_VERSION,
            "arch": {**policy.arch(), "features": getattr(policy, "features", "encoder")},
            "state_dict": {k: v.detach().cpu() for k, v in policy.state_dict().items()}, "meta": meta}
    buf = io.BytesIO()
    torch.save(blob, buf)
    atomic.write_bytes(path, buf.getvalue())


def is_conditional(path: str | Path) -> bool:
    """Whether `path` holds a conditional policy. Cheap: the file is memory-mapped, so its tensors are
    not read (sample and eval ask this of every --policy before loading it properly)."""
    try:
        blob = torch.load(Path(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - not ours to diagnose here; load_policy / load_conditional say why
        return False
    return isinstance(blob, dict) and blob.get("format") == FORMAT_NAME


def load_if_conditional(path: str | Path) -> tuple[ConditionalPolicy, dict] | None:
    """load_conditional(path) when `path` is a conditional policy, else None (a per-prompt policy or
    anything else, which load_policy then reads and diagnoses)."""
    return load_conditional(path) if is_conditional(path) else None


def load_conditional(path: str | Path) -> tuple[ConditionalPolicy, dict]:
    """(policy, meta) from a file written by save_conditional; every way it can be wrong is one line."""
    path = Path(path)
    fix = f"train one with `find train --prompts FILE --conditional --out {path}`"
    if not path.is_file():
        raise FindError(f"conditional policy {str(path)!r} does not exist; {fix}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise FindError(f"conditional policy {str(path)!r} is corrupt or not written by findcli ({type(e).__name__}); {fix}") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT_NAME:
        raise FindError(f"{str(path)!r} is not a findcli conditional policy; {fix}")
    if blob.get("version") != FORMAT_VERSION:
        raise FindError(f"conditional policy {str(path)!r} has format version {blob.get('version')!r}; this findcli "
                        f"reads {FORMAT_VERSION}")
    try:
        arch, meta = blob["arch"], blob["meta"]
        kind = arch.get("kind", "mlp")  # files from before the tokens architecture are mlp
        if kind == "tokens":
            policy = TokenConditionalPolicy(tuple(arch["latent_shape"]), arch["text_dim"], arch["token_dim"], arch["pool"],
                                            arch["key_dim"], arch["modes"], arch["channel_axis"])
        elif kind == "slots":
            policy = SlotConditionalPolicy(tuple(arch["latent_shape"]), arch["text_dim"], arch["token_dim"], arch["pool"],
                                           arch["role_rank"], arch["bias_rank"], arch["channel_axis"])
        elif kind == "mlp":
            policy = ConditionalPolicy(tuple(arch["latent_shape"]), arch["text_dim"], arch["rank"], arch["hidden"])
        else:
            raise KeyError(f"architecture {kind!r}")
        policy.load_state_dict(blob["state_dict"])
        policy.features = arch.get("features", "encoder")  # files from before features "words" read the encoder's
        if policy.features not in FEATURES:
            raise KeyError(f"features {policy.features!r}")
    except (KeyError, TypeError, RuntimeError) as e:
        raise FindError(f"conditional policy {str(path)!r} is malformed ({type(e).__name__}: {str(e).splitlines()[0][:80]}); "
                        f"{fix}") from None
    if not all(torch.isfinite(v).all() for v in policy.state_dict().values()):
        raise FindError(f"conditional policy {str(path)!r} holds non-finite weights; re-train it")
    if not isinstance(meta, dict):
        raise FindError(f"conditional policy {str(path)!r}: meta is not a dict; re-train it")
    return policy.eval().requires_grad_(False), meta


def config_dict(cfg: ConditionalConfig) -> dict:
    return asdict(cfg)


def conditional_meta(pipe, cfg: ConditionalConfig, prompts: list[str], reward_spec: str, res: ConditionalResult) -> dict:
    """What a conditional policy file records: the model (and the built-in model's fingerprint), the
    sampler it was trained with, its family and size, the training prompts and the config."""
    from findcli.pipeline import Rollout, SamplerSettings

    model = getattr(pipe, "find_source", None)
    ro = Rollout(pipe, prompts[0], SamplerSettings(cfg.steps, cfg.guidance, cfg.eta), cfg.max_batch)
    extra = {}
    from findcli import shapes

    world = shapes.world_of(model)
    if world is not None:
        extra["model_version"] = world.model_version()
    last = res.metrics[-1] if res.metrics else {}
    return {"model": model, **extra, "conditional": True, "scheduler": type(pipe.scheduler).__name__,
            "family": ro.family, "latent_layout": ro.latent_layout, "steps": cfg.steps, "guidance": cfg.guidance,
            "eta": cfg.eta, "height": ro.height, "width": ro.width, "frames": ro.frames, "reward": reward_spec,
            "seed": cfg.seed, "prompts": list(prompts), "config": asdict(cfg), "train_s": round(res.wall_s, 1),
            "train_images": res.images, "teacher": dict(res.teacher), "init": dict(res.init),
            "final_stats": {k: v for k, v in last.items() if k != "prompts"}}


def policy_file_for(cond: ConditionalPolicy, meta: dict, pipe, prompt: str):
    """The per-prompt PolicyFile a conditional policy gives `prompt` on `pipe` (its text feature
    through the network): what `find sample` and `find eval` then draw from, as from any policy."""
    from findcli.policy import PolicyFile

    text, tokens = prompt_features(pipe, [prompt], getattr(cond, "features", "encoder"), cond.kind)
    feat = text[0]
    fix = f"use the model it was trained with ({meta.get('model')})"
    if feat.numel() != cond.text_dim:
        raise FindError(f"this conditional policy reads {cond.text_dim}-dim text features but the model's are "
                        f"{feat.numel()}-dim; {fix}")
    if tokens is not None:
        tokens = tokens[0]
        if tokens.shape[-1] != cond.token_dim:
            raise FindError(f"this conditional policy reads {cond.token_dim}-dim token features but the model's are "
                            f"{tokens.shape[-1]}-dim; {fix}")
    return PolicyFile(cond.policy_for(feat, tokens), {**meta, "prompt": prompt})


# ---------------------------------------------------------------- `find train --prompts FILE --conditional`

# find train options that map onto ConditionalConfig fields; every other training option belongs to the
# per-prompt trainer (value net, replay, ...) and is refused with --conditional.
SHARED_OPTIONS = {"iterations", "batch", "lr", "steps", "guidance", "eta", "inner_epochs", "clip", "kl_weight", "kl_to",
                  "seed", "max_batch"}


def parse_sets(sets: list[str]) -> dict:
    """`--set FIELD=VALUE` items -> {field: value}, each converted to its ConditionalConfig field's type
    (int, float, str; bool as true/false); one-line error for an unknown field or a bad value."""
    import dataclasses

    types = {f.name: f.type for f in dataclasses.fields(ConditionalConfig)}  # strings (postponed annotations)
    out = {}
    for item in sets:
        key, eq, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not eq or key not in types:
            raise FindError(f"--set {item}: give FIELD=VALUE with FIELD one of {', '.join(types)}")
        try:
            if types[key] == "bool":
                if value.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(value)
                out[key] = value.lower() in ("true", "1")
            else:
                out[key] = {"int": int, "float": float, "str": str}[types[key]](value)
        except ValueError:
            raise FindError(f"--set {item}: {key} takes a {types[key]} value") from None
    return out


@dataclass
class ConditionalRequest:
    prompts: Path  # the prompt file (one per line, category<TAB>prompt allowed, # comments)
    out: Path  # the conditional policy file to write
    overrides: dict = field(default_factory=dict)  # ConditionalConfig fields given explicitly
    model: str | None = None  # None: the built-in model
    reward: list[str] | None = None  # None: the model's default reward
    reward_model: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    kernels: str | None = None
    init: Path | None = None  # start from this conditional policy file (its network and sampler) instead of N(0, I)


# The fields that fix a network's shape (build_policy) and the sampler it was trained for: a run that starts
# from a file (--init) takes them from the file; a network field given with a different value is refused, a
# sampler field given explicitly wins (FIND then adapts the network to that sampler).
NETWORK_FIELDS = ("arch", "features", "rank", "hidden", "pool", "key_dim", "modes", "role_rank", "bias_rank")
SAMPLER_FIELDS = ("steps", "guidance", "eta")


def config_from_init(path: Path, overrides: dict) -> tuple["ConditionalPolicy", dict, "ConditionalConfig"]:
    """(network, its file's meta, the run's config) for a run that starts from the conditional policy in
    `path`: the file's network and sampler fields under the explicit `overrides` (ConditionalConfig's own
    defaults for the rest, so no teacher and its default iterations); one-line errors for a teacher, or a
    network field that contradicts the file."""
    if overrides.get("teacher", "none") != "none":
        raise FindError(f"--init {path} starts from a trained network; a teacher would replace it: drop --teacher")
    net, meta = load_conditional(path)
    saved = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    inherited = {k: saved[k] for k in NETWORK_FIELDS + SAMPLER_FIELDS if k in saved}
    inherited.update(arch=net.kind, features=getattr(net, "features", "encoder"))  # what the weights are
    for k in NETWORK_FIELDS:
        if k in overrides and k in inherited and overrides[k] != inherited[k]:
            raise FindError(f"--init {path} is a {inherited['arch']} network with {k}={inherited[k]}; "
                            f"drop --{k.replace('_', '-')} (or --set {k}=...) to train that network")
    return net, meta, ConditionalConfig(**{**inherited, **overrides})


def teacher_policy(pipe, prompts: list[str], cfg: ConditionalConfig,
                   on_event: Callable[[str, dict], None] | None = None):
    """The network of cfg, distilled to cfg.teacher's per-prompt policies for `prompts` (the start of the
    FIND iterations). "layouts" (built-in image model): findcli.shapes.layouts.layout_targets (σ
    cfg.teacher_sigma, lowpass cfg.pool, render seed cfg.render_seed, the sampler's cfg.steps), then
    `distill` for cfg.distill_steps, seeded by cfg.seed. Events: "teacher" {done, total} per rendered
    and inverted batch, "distill" {step, steps, loss} every 20 steps. Returns (network, info)."""
    from findcli.pipeline import Rollout, SamplerSettings, denoiser
    from findcli import shapes

    emit = on_event or (lambda kind, data: None)
    if cfg.teacher != "layouts":
        raise FindError(f"conditional policy: no teacher {cfg.teacher!r}; teacher must be one of {', '.join(TEACHERS[1:])}")
    device = denoiser(pipe).device
    ro = Rollout(pipe, prompts[0], SamplerSettings(cfg.steps, cfg.guidance, cfg.eta))
    t0 = time.perf_counter()
    mu, log_sigma = shapes.layout_targets(pipe, prompts, sigma=cfg.teacher_sigma, pool=cfg.pool,
                                          render_seed=cfg.render_seed, steps=cfg.steps, render_seeds=cfg.render_seeds,
                                          on_batch=lambda done, total: emit("teacher", {"done": done, "total": total}))
    t_teacher = time.perf_counter() - t0
    text, tokens = prompt_features(pipe, prompts, cfg.features, cfg.arch)
    torch.manual_seed(cfg.seed)
    net = build_policy(cfg, ro.latent_shape, ro.latent_layout, text, tokens).to(device)
    t0 = time.perf_counter()
    curve = distill(net, text.to(device), mu.to(device), log_sigma.to(device), steps=cfg.distill_steps, seed=cfg.seed,
                    tokens=None if tokens is None else tokens.to(device),
                    on_step=lambda i, loss: emit("distill", {"step": i + 1, "steps": cfg.distill_steps, "loss": loss})
                    if (i + 1) % 20 == 0 or i + 1 == cfg.distill_steps else None)
    info = {"kind": cfg.teacher, "prompts": len(prompts), "teacher_s": round(t_teacher, 1),
            "distill_s": round(time.perf_counter() - t0, 1), "distill_loss_first": curve[0], "distill_loss_last": curve[-1]}
    return net, info


def train_conditional_file(request: ConditionalRequest,
                           on_event: Callable[[str, dict], None] | None = None) -> ConditionalResult:
    """Every check before the model loads (the file, the prompts, the options, the output), then
    (with a teacher) teacher_policy, train_conditional from it, and an atomic write of request.out.
    Events: "start" {prompts, cfg, reward, duplicates}, teacher_policy's "teacher" and "distill",
    "iteration" {metrics}, "done" {result, out}."""
    from findcli import limits, shapes
    from findcli.evaluation import read_suite
    from findcli.pipeline import load_runtime, warn
    from findcli.training import build_reward, default_reward

    emit = on_event or (lambda kind, data: None)
    r = request
    unknown = set(r.overrides) - set(ConditionalConfig.__dataclass_fields__)
    if unknown:
        raise FindError(f"--conditional trains one network for every prompt; {', '.join('--' + k.replace('_', '-') for k in sorted(unknown))} "
                        "belong(s) to the per-prompt trainer: drop it")
    init = init_meta = None
    if r.init is not None:
        init, init_meta, cfg = config_from_init(Path(r.init), r.overrides)
    else:
        cfg = ConditionalConfig.with_teacher_defaults(r.overrides)
    cfg.validate()
    limits.check_all({k: v for k, v in r.overrides.items() if k in ("steps", "guidance", "eta", "seed", "max_batch")})
    items = read_suite(r.prompts)
    prompts = list(dict.fromkeys(p for p, _ in items))
    dup = len(items) - len(prompts)
    if dup:
        warn(f"{dup} duplicate prompt(s) in {r.prompts} ignored: each prompt is trained once")
    world = shapes.world_of(r.model)
    if cfg.teacher == "layouts" and world is not shapes.IMAGE_WORLD:
        raise FindError("--teacher layouts renders scenes of the built-in image world; use it with the built-in model "
                        "(no --model), or drop --teacher")
    if world is not None:
        bad = []
        for p in prompts:
            try:
                world.check_prompt(p)
            except FindError as e:
                bad.append(f"{p!r} ({str(e).splitlines()[0][:60]})")
        if bad:
            raise FindError(f"{len(bad)} prompt(s) of {r.prompts} are outside the built-in grammar: {'; '.join(bad[:3])}"
                            f"{' ...' if len(bad) > 3 else ''}; fix or remove them")
    if r.out.suffix != ".pt":
        raise FindError(f"--out {r.out}: a conditional policy is a .pt file")
    atomic.check_writable(r.out)
    if init_meta is not None:
        from findcli.pipeline import model_id

        if init_meta.get("model") != model_id(r.model):
            raise FindError(f"--init {r.init} was trained for model {init_meta.get('model')!r}, not {model_id(r.model)!r}; "
                            "pass the same --model")
    dev, _, pipe, _ = load_runtime(r.model, r.device, r.dtype, r.kernels)
    spec = r.reward or default_reward(r.model)
    reward, _ = build_reward(spec, r.reward_model, r.model, dev)
    emit("start", {"prompts": prompts, "cfg": cfg, "reward": getattr(reward, "spec", str(spec)), "duplicates": dup,
                   "init": r.init})
    info = {}
    if cfg.teacher != "none":
        init, info = teacher_policy(pipe, prompts, cfg, emit)
    res = train_conditional(pipe, prompts, reward, cfg, lambda m: emit("iteration", {"metrics": m}), init)
    res.teacher = info
    if init_meta is not None:  # where the network came from: that file's own training, in short
        res.init = {"path": str(r.init), "prompts": len(init_meta.get("prompts", [])),
                    "train_images": init_meta.get("train_images"), "teacher": init_meta.get("teacher", {}),
                    "config": init_meta.get("config", {})}
    save_conditional(r.out, res.policy, conditional_meta(pipe, cfg, prompts, getattr(reward, "spec", str(spec)), res))
    emit("done", {"result": res, "out": r.out})
    return res


def distill(policy: ConditionalPolicy, text: torch.Tensor, mu: torch.Tensor, log_sigma: torch.Tensor,
            steps: int = 2000, lr: float = 3e-3, weight_decay: float = 1e-4, seed: int = 0,
            tokens: torch.Tensor | None = None, on_step: Callable[[int, float], None] | None = None) -> list[float]:
    """Fit the network to per-prompt policies (regression of (μ_p, log σ_p), (P, D) each, on their text
    features (P, E)): amortisation of policies already trained one prompt at a time, the way NPNet learns
    from noise pairs, or of a teacher's (teacher_policy). Full-batch AdamW on the mean squared error;
    `on_step(i, loss)` after each step; returns the loss curve."""
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(policy.parameters(), lr=lr, weight_decay=weight_decay)
    curve = []
    for _ in range(steps):
        m, s = policy(text, tokens)
        loss = (m - mu).pow(2).mean() + (s - log_sigma).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        curve.append(float(loss.detach()))
        if on_step is not None:
            on_step(len(curve) - 1, curve[-1])
    return curve
