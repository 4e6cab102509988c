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
# Policy file: a torch.save'd dict of tensors and JSON-serialisable metadata, loadable with
# torch.load(weights_only=True). Keys:
#   format       "findcli-policy"
#   version      FORMAT_VERSION
#   mu, log_sigma   float32 tensors of the latent shape
#   meta         dict: latent_shape, model, prompt, scheduler, steps, guidance, eta, reward, seed,
#                iteration, final_stats, config (all JSON types)
#   train_state  optional dict (value net, optimisers, replay buffer) used by --resume only
# ----------------------------------------------------------------------------------------------------


@dataclass
class PolicyFile:
    policy: GaussianPolicy
    meta: dict[str, Any]
    train_state: dict[str, Any] | None = field(default=None)


def save_policy(path: str | Path, policy: GaussianPolicy, meta: dict[str, Any],
                train_state: dict[str, Any] | None = None) -> None:
    """Write the policy file atomically (temp file in the same directory, then rename)."""
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
    buf = io.BytesIO()
    torch.save(blob, buf)
    atomic.write_bytes(path, buf.getvalue())


def load_policy(path: str | Path, expected_shape: tuple[int, ...] | None = None) -> PolicyFile:
    """Read a policy file; every way it can be wrong gives a one-line FindError."""
    path = Path(path)
    if not path.is_file():
        raise FindError(f"policy file {str(path)!r} does not exist; train one with `find train PROMPT --out {path}`")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means the same thing to the user
        raise FindError(f"policy file {str(path)!r} is corrupt or not a findcli policy ({type(e).__name__}); "
                        "re-run `find train` to recreate it") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT_NAME:
        raise FindError(f"{str(path)!r} is not a findcli policy file; pass a file written by `find train --out`")
    if blob.get("version") != FORMAT_VERSION:
        raise FindError(f"policy file {str(path)!r} has format version {blob.get('version')!r} but this findcli reads "
                        f"version {FORMAT_VERSION}; re-train it or use the findcli release that wrote it")
    try:
        mu, log_sigma, meta = blob["mu"], blob["log_sigma"], dict(blob["meta"])
    except (KeyError, TypeError):
        raise FindError(f"policy file {str(path)!r} is missing mu/log_sigma/meta; re-run `find train`") from None
    if not (torch.is_tensor(mu) and torch.is_tensor(log_sigma)) or mu.shape != log_sigma.shape:
        raise FindError(f"policy file {str(path)!r} has malformed mu/log_sigma tensors; re-run `find train`")
    if not (torch.isfinite(mu).all() and torch.isfinite(log_sigma).all()):
        raise FindError(f"policy file {str(path)!r} holds non-finite parameters; re-train it")
    pf = PolicyFile(GaussianPolicy(tuple(mu.shape), mu, log_sigma), meta, blob.get("train_state"))
    if expected_shape is not None:
        check_latent_shape(pf.policy, expected_shape, meta.get("model"))
    return pf
