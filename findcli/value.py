"""Dynamic reward calibration: a value net V(μ, σ, c) that predicts the expected reward of the current
distribution, as in the official code (MLP on flatten(μ, σ) ⊕ text features -> 256 -> 256 -> 256 -> 1).

It is trained by MSE on the rewards actually observed for samples of the current distribution, and
the policy is pushed by the calibrated reward A_k = r_k - V (an advantage with a learned baseline).
Every sample is paired with its own reward (the official code reads a stale FIFO entry instead).
"""

from __future__ import annotations

import torch
from torch import nn


class ValueNet(nn.Module):
    def __init__(self, latent_dim: int, text_dim: int, hidden: int = 256):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(2 * latent_dim + text_dim, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, 1),
        )

    def forward(self, mu: torch.Tensor, sigma: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """mu, sigma (D,), text (E,) -> predicted mean reward, a 0-dim tensor."""
        x = torch.cat([mu.reshape(-1), sigma.reshape(-1), text.reshape(-1)])
        return self.net(x).squeeze()


def advantages(rewards: torch.Tensor, baseline: str, value: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample advantage A (K,) from rewards r (K,).

    value : A = r - V          (reward calibration; V predicted before the value net's update)
    group : A = (r - mean r) / (std r + 1e-6)   (GRPO-style batch normalisation; 0 for a batch of 1)
    none  : A = r
    """
    if baseline == "value":
        assert value is not None
        return rewards - value.detach()
    if baseline == "group":
        if rewards.numel() < 2:
            return torch.zeros_like(rewards)
        return (rewards - rewards.mean()) / (rewards.std() + 1e-6)
    if baseline == "none":
        return rewards.clone()
    raise ValueError(baseline)
