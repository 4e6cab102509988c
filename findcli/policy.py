"""The FIND policy: a per-element Gaussian N(μ, σ²) over the pipeline's initial latent, and its file format.

Notation: `mu -> μ`, `log_sigma -> log σ`, `D` = number of latent elements (C·h·w, e.g. 4·64·64 = 16384
for SD1.5 at 512 px), `K` = samples per draw.

Log-probabilities are the **per-dimension mean** of the Gaussian log-density,

    log π(z) = (1/D) Σ_d [ -½ ((z_d - μ_d)/σ_d)² - log σ_d - ½ log 2π ],

not the sum. This is what the official FIND code does, and it matters: a sum over 16k dimensions
turns a tiny change of μ into a log-ratio of order √D, so every PPO ratio would be clipped (or
overflow) at once. The mean keeps ratios O(1); the price is that the clip range means "per
dimension", which the docs of `--clip` say.

Sampling goes through `findcli.kernels.sample_policy` (fused Triton on CUDA, PyTorch elsewhere):
z = μ + σ ⊙ ε with ε drawn from a seed, so that the same seed with μ = 0, σ = 1 gives exactly the ε
used for a policy draw. That is how baseline and policy are compared on paired noise.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from findcli import atomic
from findcli.errors import FindError

FORMAT_NAME = "findcli-policy"
FORMAT_VERSION = 1
# σ is floored (the official code clamps σ ≥ 1e-4 after every step): log σ ≥ log 1e-4.
MIN_LOG_SIGMA = math.log(1e-4)


class GaussianPolicy(nn.Module):
    """N(μ, σ²) over a latent of shape `latent_shape`; parameters stored flat, (D,), in float32."""

    def __init__(self, latent_shape: tuple[int, ...], mu: torch.Tensor | None = None,
                 log_sigma: torch.Tensor | None = None):
        super().__init__()
        self.latent_shape = tuple(int(s) for s in latent_shape)
        d = math.prod(self.latent_shape)
        mu = torch.zeros(d) if mu is None else mu.detach().reshape(-1).float().clone()
        log_sigma = torch.zeros(d) if log_sigma is None else log_sigma.detach().reshape(-1).float().clone()
        if mu.numel() != d or log_sigma.numel() != d:
            raise FindError(f"policy has {mu.numel()} elements but the model's latent {self.latent_shape} has {d}; "
                            "train a policy for this model or pass the matching --model")
        self.mu = nn.Parameter(mu)  # (D,)
        self.log_sigma = nn.Parameter(log_sigma)  # (D,)

    @property
    def dim(self) -> int:
        return self.mu.numel()

    @torch.no_grad()
    def sample(self, seed: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw K latents from a seed. Returns z (K, *latent_shape) float32 and log π(z) (K,)."""
        from findcli.kernels import sample_policy

        z, logp = sample_policy(self.mu.detach(), self.log_sigma.detach(), int(seed), int(k))
        return z.view(k, *self.latent_shape), logp

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """Per-dimension mean Gaussian log-density of z (K, ...) -> (K,). Differentiable in μ, log σ.
        The formula is the kernels' reference (`findcli.kernels.gaussian`), shared with sampling and the loss."""
        from findcli.kernels.gaussian import mean_log_density

        return mean_log_density(z.reshape(z.shape[0], -1).float(), self.mu, self.log_sigma)

    def kl_to_standard(self) -> torch.Tensor:
        """KL(N(μ, σ²) ‖ N(0, I)), closed form, averaged over dimensions (same reduction as log_prob);
        the policy loss's exact KL (`findcli.kernels.gaussian.kl_to_standard_normal`)."""
        from findcli.kernels.gaussian import kl_to_standard_normal

        return kl_to_standard_normal(self.mu, self.log_sigma, "exact")

    @torch.no_grad()
    def clamp_(self) -> None:
        """Keep σ ≥ 1e-4 (as the official code does after each step)."""
        self.log_sigma.clamp_(min=MIN_LOG_SIGMA)

    @torch.no_grad()
    def stats(self) -> dict[str, float]:
        return {
            "mu_abs_mean": self.mu.abs().mean().item(),
            "sigma_mean": self.log_sigma.exp().mean().item(),
            "kl_to_prior": self.kl_to_standard().item(),
        }


@torch.no_grad()
def prior_noise(latent_shape: tuple[int, ...], seed: int, k: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The ε (K, *latent_shape) behind `policy.sample(seed, k)`: a draw of N(0, I) with the same seed, so
    the baseline image and the policy's image of column k share their noise (z = μ + σ ⊙ ε)."""
    from findcli.kernels import sample_policy

    d = math.prod(latent_shape)
    zeros = torch.zeros(d, device=device)
    eps, _ = sample_policy(zeros, zeros, int(seed), int(k))
    return eps.view(k, *latent_shape)


def check_latent_shape(policy: GaussianPolicy, shape: tuple[int, ...], model: object = None) -> None:
    """One-line error when a policy was trained for another latent shape than the model's."""
    if tuple(policy.latent_shape) != tuple(shape):
        raise FindError(f"policy latent shape {list(policy.latent_shape)} does not match the model's latent shape "
                        f"{list(shape)}; use the model the policy was trained for ({model!r})")


# ----------------------------------------------------------------------------------------------------
# Policy file (what users share): a torch.save'd dict of tensors and JSON-serialisable metadata,
# loadable with torch.load(weights_only=True). Keys:
#   format       "findcli-policy"
#   version      FORMAT_VERSION
#   mu, log_sigma   float32 tensors of the latent shape
#   meta         dict: latent_shape, model ("builtin", a hub id or a folder), model_version (built-in
#                model only), prompt, scheduler, steps, guidance, eta, height, width, reward,
#                reward_model, seed, iteration, final_stats, config, kept (all JSON types)
# Files written before the checkpoint split may also hold `train_state`; --resume still reads it.
#
# Training checkpoint (beside the policy, OUT.ckpt.pt; what --resume reads): format
# "findcli-checkpoint", version, meta (as above), train_state (value net, optimiser moments, replay
# buffer, metrics, the last μ/log σ). It is as large as the replay buffer; the policy stays 2·D floats.
# ----------------------------------------------------------------------------------------------------

CHECKPOINT_FORMAT = "findcli-checkpoint"
CHECKPOINT_VERSION = 1

# Meta keys a policy must carry (the prompt; sampling defaults the rest), and keys that may be absent (hand-written
# metadata) but must have these JSON types when present (None allowed where listed).
_META_REQUIRED: dict[str, tuple[type, ...]] = {"prompt": (str,)}
_META_OPTIONAL: dict[str, tuple[type, ...]] = {
    "steps": (int,), "guidance": (int, float), "eta": (int, float), "model": (str, type(None)), "height": (int, type(None)), "width": (int, type(None)),
    "reward": (str, type(None)), "reward_model": (str, type(None)), "seed": (int,),
    "model_version": (str,), "config": (dict,), "iteration": (int,),
}


@dataclass
class PolicyFile:
    policy: GaussianPolicy
    meta: dict[str, Any]
    train_state: dict[str, Any] | None = field(default=None)


def checkpoint_path(policy_path: str | Path) -> Path:
    """OUT.ckpt.pt beside OUT.pt: the resumable state of the run that writes OUT.pt."""
    p = Path(policy_path)
    return p.with_name(p.stem + ".ckpt.pt")


def _torch_bytes(blob: dict) -> bytes:
    buf = io.BytesIO()
    torch.save(blob, buf)
    return buf.getvalue()


def save_policy(path: str | Path, policy: GaussianPolicy, meta: dict[str, Any],
                train_state: dict[str, Any] | None = None) -> None:
    """Write the policy file atomically (temp file in the same directory, then rename).
    `train_state` embeds resumable state in the file itself (the old layout; the trainer writes
    it to a separate checkpoint with save_checkpoint instead)."""
    meta = dict(meta, latent_shape=list(policy.latent_shape))
    json.dumps(meta)  # metadata must stay JSON-serialisable (other tools read it); fail loudly here if not
    blob = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "mu": policy.mu.detach().cpu().reshape(policy.latent_shape).clone(),
        "log_sigma": policy.log_sigma.detach().cpu().reshape(policy.latent_shape).clone(),
        "meta": meta,
    }
    if train_state is not None:
        blob["train_state"] = train_state
    atomic.write_bytes(path, _torch_bytes(blob))


def save_checkpoint(path: str | Path, meta: dict[str, Any], train_state: dict[str, Any]) -> None:
    json.dumps(meta)
    atomic.write_bytes(path, _torch_bytes({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
                                           "meta": meta, "train_state": train_state}))


def _load_blob(path: Path, what: str, fix: str) -> dict:
    if not path.is_file():
        raise FindError(f"{what} {str(path)!r} does not exist; {fix}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means the same thing to the user
        raise FindError(f"{what} {str(path)!r} is corrupt or not written by findcli ({type(e).__name__}); "
                        f"{fix}") from None
    if not isinstance(blob, dict):
        raise FindError(f"{str(path)!r} is not a findcli {what}; {fix}")
    return blob


def check_meta(meta: Any, path: str | Path) -> dict[str, Any]:
    """The policy's metadata as a dict, or one line naming the file, the key and the fix."""
    fix = "re-train it with `find train`, or repair the key with torch.load/torch.save"
    if not isinstance(meta, dict):
        raise FindError(f"policy file {str(path)!r}: meta is a {type(meta).__name__}, not a dict; {fix}")
    for key, types in {**_META_REQUIRED, **_META_OPTIONAL}.items():
        if key not in meta:
            if key in _META_REQUIRED:
                raise FindError(f"policy file {str(path)!r}: meta has no {key!r}; {fix}")
            continue
        value = meta[key]
        if not isinstance(value, types) or isinstance(value, bool):
            shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
            raise FindError(f"policy file {str(path)!r}: meta[{key!r}] is {shown} "
                            f"({type(value).__name__}); {fix}")
    if not meta["prompt"].strip():
        raise FindError(f"policy file {str(path)!r}: meta['prompt'] is empty; {fix}")
    from findcli import limits

    try:
        limits.check_all({k: meta.get(k) for k in ("steps", "guidance", "eta", "height", "width", "seed")})
    except FindError as e:
        raise FindError(f"policy file {str(path)!r}: meta holds {e}; {fix}") from None
    return dict(meta)


def load_policy(path: str | Path, expected_shape: tuple[int, ...] | None = None) -> PolicyFile:
    """Read a policy file; every way it can be wrong gives a one-line FindError."""
    path = Path(path)
    blob = _load_blob(path, "policy file", f"train one with `find train PROMPT --out {path}`")
    if blob.get("format") != FORMAT_NAME:
        hint = f"; for a policy pass {str(path).replace('.ckpt.pt', '.pt')}" \
            if blob.get("format") == CHECKPOINT_FORMAT else ""
        raise FindError(f"{str(path)!r} is not a findcli policy file; pass a file written by `find train --out`{hint}")
    if blob.get("version") != FORMAT_VERSION:
        raise FindError(f"policy file {str(path)!r} has format version {blob.get('version')!r} but this findcli reads "
                        f"version {FORMAT_VERSION}; re-train it or use the findcli release that wrote it")
    if not all(k in blob for k in ("mu", "log_sigma", "meta")):
        raise FindError(f"policy file {str(path)!r} is missing mu/log_sigma/meta; re-run `find train`")
    mu, log_sigma = blob["mu"], blob["log_sigma"]
    meta = check_meta(blob["meta"], path)
    if not (torch.is_tensor(mu) and torch.is_tensor(log_sigma)) or mu.shape != log_sigma.shape:
        raise FindError(f"policy file {str(path)!r} has malformed mu/log_sigma tensors; re-run `find train`")
    if not (torch.isfinite(mu).all() and torch.isfinite(log_sigma).all()):
        raise FindError(f"policy file {str(path)!r} holds non-finite parameters; re-train it")
    state = blob.get("train_state")
    pf = PolicyFile(GaussianPolicy(tuple(mu.shape), mu, log_sigma), meta, state if isinstance(state, dict) else None)
    if expected_shape is not None:
        check_latent_shape(pf.policy, expected_shape, meta.get("model"))
    return pf


def load_checkpoint(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(meta, train_state) for --resume PATH: PATH may be the checkpoint OUT.ckpt.pt, or the policy
    OUT.pt (its checkpoint beside it, or an older file that embeds its train state)."""
    path = Path(path)
    fix = "start a new run, optionally with --init it"
    if path.name.endswith(".ckpt.pt"):
        ckpt = path
    else:
        ckpt = checkpoint_path(path)
        if not ckpt.is_file():
            pf = load_policy(path)
            if pf.train_state is None:
                raise FindError(f"{str(path)!r} has no training checkpoint beside it ({ckpt.name} is missing) "
                                f"and holds no training state itself; {fix}")
            return pf.meta, pf.train_state
    blob = _load_blob(ckpt, "training checkpoint", fix)
    if blob.get("format") != CHECKPOINT_FORMAT or blob.get("version") != CHECKPOINT_VERSION:
        raise FindError(f"{str(ckpt)!r} is not a findcli training checkpoint (version {CHECKPOINT_VERSION}); {fix}")
    meta, state = blob.get("meta"), blob.get("train_state")
    meta = check_meta(meta, ckpt)
    if not isinstance(state, dict):
        raise FindError(f"training checkpoint {str(ckpt)!r} holds no train_state; {fix}")
    return meta, state
