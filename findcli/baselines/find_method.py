"""FIND itself as a Method of the comparison (issue 13): the project's own trainer, unchanged.

train_step() is one FindTrainer iteration (K rollouts, K reward calls, the update); generate(n, seed)
draws n images from the current policy N(μ, σ²) through the same frozen sampler. So the cost of an
additional image after training is exactly the base model's (one rollout, no reward call): that is
what the comparison measures as FIND's delivery cost.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from findcli.baselines.base import Cost, CountedReward, counting


class FindMethod:
    def __init__(self, pipe, prompt: str, reward, preset: str = "default", seed: int = 0, **overrides):
        from findcli.config import PRESETS
        from findcli.engine import FindTrainer

        self.name = "find" if preset == "default" else f"find-{preset}"
        self.pipe, self.prompt = pipe, prompt
        self.train_cost, self.generate_cost = Cost(), Cost()
        self.reward = CountedReward(reward, self.train_cost)
        self.cfg = PRESETS[preset](prompt=prompt, seed=seed, **overrides)
        self.cfg.reward = getattr(reward, "spec", "reward")
        self.cfg.validate()
        self._dir = tempfile.TemporaryDirectory(prefix="find-compare-")
        self.trainer = FindTrainer(self.cfg, pipe, self.reward, Path(self._dir.name) / "policy.pt")
        self.settings = {"method": self.name, "preset": preset, **{k: v for k, v in self.cfg.to_dict().items()
                                                                    if k not in ("prompt", "model")}}

    def train_step(self) -> dict:
        with counting(self.pipe, self.train_cost):
            return self.trainer.step()

    @torch.no_grad()
    def generate(self, n: int, seed: int) -> torch.Tensor:
        from findcli.seeds import noise_seed

        s = noise_seed("eval", seed)  # the eval namespace: never a training draw
        with counting(self.pipe, self.generate_cost):
            z, _ = self.trainer.policy.sample(s, n)
            images = self.trainer.rollout(z, s)
        self.generate_cost.images += n
        return images
