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

    @torch.no_grad()
    def start_at(self, target: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, text: torch.Tensor) -> None:
        """Shift the output bias so V(mu, sigma, text) = target (the first batch's mean reward): an
        untrained V ≈ 0 would make every advantage share the sign of the reward's offset and push μ, σ
        in a random direction for the first iterations, before the value net has caught up."""
        self.net[-1].bias.add_(target - self(mu, sigma, text))


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


class RewardNormalizer:
    """Puts rewards in scale-free units so the update is invariant to r -> a·r + b (a > 0).

    Reference units: u = (r - m0) / s0, with (m0, s0) the mean and std of the first window of rewards
    that has a non-zero spread, fixed for the rest of the run. The value net is trained on, and
    predicts, u; its error is then a number of first-batch standard deviations whatever the reward's
    units. Scale: s_t = max(std of the last `window` rewards, floor) (a running per-prompt std, as
    DDPO's per-prompt stat tracker keeps, never below `floor`), expressed in reference units. The
    advantage is

        A_k = (u_k - V) / (s_t / s0)      (value baseline)     A_k = u_k / (s_t / s0)   (none)

    so that A has unit spread as the policy moves, and the KL weight and the clip act against
    advantages of the same size on every reward. Statistics are kept in float64, so an affine change
    of the reward changes A only by rounding. Until the window shows any spread (e.g. batch 1 and a
    first reward), `ready` is False and the caller skips the policy step.
    """

    def __init__(self, window: int, floor: float = 0.0, floor_above: float = float("-inf")):
        self.window = int(window)
        # The smallest spread the scale s_t may take, in raw reward units (0: none). A reward that
        # declares its range (`value_range`) sets it to TrainConfig.adv_std_floor × that range: once a
        # prompt is saturated (every image nearly as good as the reward can say), the rewards' spread
        # is the reward's own noise, and dividing by it would blow that noise up into full-size
        # advantages and walk the policy off the generator's manifold (the drift of RESULTS.md §6.7).
        # With the floor, such differences stay small and the KL pull toward N(0, I) holds the policy.
        # The floor scales with the declared range, so r -> a·r + b (range a·R) is still invariant.
        self.floor = float(floor)
        # The floor binds only while the window's mean reward is at or above this level (raw units;
        # -inf: at every level). Near the top of the range the spread is the reward's noise; near the
        # bottom it is the signal of the first partial successes, which the floor would damp (§6.7's
        # "a purple pyramid on a green pyramid"). A level in the declared range maps with r -> a·r + b.
        self.floor_above = float(floor_above)
        self.history: list[float] = []  # the last `window` raw rewards, oldest first
        self.m0: float | None = None
        self.s0: float | None = None

    @property
    def ready(self) -> bool:
        return self.s0 is not None

    def observe(self, rewards: torch.Tensor) -> None:
        self.history = (self.history + [float(x) for x in rewards.double().flatten().tolist()])[-self.window:]
        if self.s0 is None:
            h = torch.tensor(self.history, dtype=torch.float64)
            if h.numel() > 1 and float(h.std()) > 0:
                self.m0, self.s0 = float(h.mean()), float(h.std())

    def units(self, rewards: torch.Tensor) -> torch.Tensor:
        """Rewards in reference units u (float32, same device)."""
        assert self.ready
        return ((rewards.double() - self.m0) / self.s0).float()

    def _spread(self) -> tuple[float, float]:
        """(std of the window, the floor in force): `floor` while the window's mean is at or above
        `floor_above`, else 0."""
        h = torch.tensor(self.history, dtype=torch.float64)
        in_force = self.floor > 0 and float(h.mean()) >= self.floor_above
        return float(h.std()), (self.floor if in_force else 0.0)

    def scale(self) -> float:
        """s_t / s0: the running std in reference units (1 right after the reference is set)."""
        assert self.ready
        s = max(*self._spread())
        return s / self.s0 if s > 0 else 1.0

    def floored(self) -> bool:
        """Whether the floor sets the scale now (in force, and the window's spread is below it)."""
        std, floor = self._spread()
        return std < floor

    def state_dict(self) -> dict:
        return {"window": self.window, "floor": self.floor, "floor_above": self.floor_above, "history": list(self.history), "m0": self.m0, "s0": self.s0}

    def load_state_dict(self, state: dict) -> None:
        self.window = int(state["window"])
        self.floor = float(state.get("floor", self.floor))  # checkpoints before the floor: the run's own
        self.floor_above = float(state.get("floor_above", self.floor_above))
        self.history = [float(x) for x in state["history"]]
        self.m0 = None if state["m0"] is None else float(state["m0"])
        self.s0 = None if state["s0"] is None else float(state["s0"])
