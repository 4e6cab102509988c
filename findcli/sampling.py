"""Drawing images from a learned policy, paired with N(0, I) on the same ε, and comparing the two."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from findcli.pipeline import Rollout, SamplerSettings
from findcli.policy import GaussianPolicy


@dataclass
class Draw:
    policy_images: torch.Tensor | None  # (N, 3, H, W) in [0, 1] from z = μ + σ ⊙ ε
    baseline_images: torch.Tensor | None  # (N, 3, H, W) in [0, 1] from z = ε (same ε)


def draw(pipe, prompt: str, settings: SamplerSettings, seed: int, n: int, policy: GaussianPolicy | None,
         baseline: bool, max_batch: int = 16, purpose: str = "eval") -> Draw:
    """One rollout per requested arm. ε is the noise `policy.sample(s, n)` uses with s the seed of
    `purpose`'s namespace (findcli.seeds: eval, sample, ...; never the training noise), so arms are paired."""
    from findcli.pipeline import latent_shape
    from findcli.policy import prior_noise
    from findcli.seeds import noise_seed

    s = noise_seed(purpose, seed)
    rollout = Rollout(pipe, prompt, settings, max_batch)
    device = pipe.unet.device
    pi = bi = None
    if policy is not None:
        pz, _ = policy.to(device).sample(s, n)
        pi = rollout(pz, s)
    if baseline or policy is None:
        bz = prior_noise(latent_shape(pipe, settings.height, settings.width), s, n, device)
        bi = rollout(bz, s)
    return Draw(pi, bi)


def paired_win_rate(policy_rewards: torch.Tensor, baseline_rewards: torch.Tensor) -> float:
    """Fraction of pairs (same ε) where the policy's image scores higher; ties count one half."""
    p, b = policy_rewards.float(), baseline_rewards.float()
    return float(((p > b).float() + 0.5 * (p == b).float()).mean())
