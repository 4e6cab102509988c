"""What every method in the side-by-side comparison (issue 13) implements, and how its cost is counted.

A Method aligns one frozen pipeline to one prompt under one reward. It may train (FIND, DPOK, DDPO:
`train_step()` returns the step's diagnostics) or not (best-of-N, ReNO: `train_step` is None), and
`generate(n, seed)` delivers n images (n, 3, H, W) in [0, 1] from its current state — for best-of-N
that costs N generations per image, for ReNO an optimisation per image. The comparison harness
calls both under a budget and reads the counters:

  Cost.unet_rows     denoiser rows evaluated (one CFG step of K images = 2K rows), counted by a
                     forward hook on the pipeline's denoiser, so nothing can forget to count
  Cost.reward_calls  images scored by the reward
  Cost.wall_s        seconds spent inside the counted block

Training cost and per-image (delivery) cost are counted apart (`train_cost`, `generate_cost`), so
"the cost of each additional image after training" is generate_cost / images delivered.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Protocol

import torch


@dataclass
class Cost:
    unet_rows: int = 0  # denoiser rows evaluated
    reward_calls: int = 0  # images scored
    wall_s: float = 0.0  # seconds inside counted blocks
    images: int = 0  # images delivered (generate only)

    def as_dict(self) -> dict:
        return {"unet_rows": self.unet_rows, "reward_calls": self.reward_calls, "wall_s": round(self.wall_s, 4),
                "images": self.images}


@contextlib.contextmanager
def counting(pipe, cost: Cost) -> Iterator[Cost]:
    """Count the pipeline's denoiser rows and the wall time of the block into `cost`."""
    from findcli.pipeline import denoiser

    net = denoiser(pipe)

    def hook(module, args, kwargs):  # noqa: ARG001
        x = args[0] if args else next(iter(kwargs.values()))
        cost.unet_rows += int(x.shape[0])

    handle = net.register_forward_pre_hook(hook, with_kwargs=True)
    t0 = time.perf_counter()
    try:
        yield cost
    finally:
        if torch.cuda.is_available() and getattr(net, "device", torch.device("cpu")).type == "cuda":
            torch.cuda.synchronize()
        cost.wall_s += time.perf_counter() - t0
        handle.remove()


class CountedReward:
    """A reward that counts the images it scores into a Cost (set `.cost` to switch ledgers)."""

    def __init__(self, reward: Callable, cost: Cost):
        self.reward, self.cost = reward, cost
        self.spec = getattr(reward, "spec", "reward")

    def __call__(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        self.cost.reward_calls += int(images.shape[0])
        return self.reward(images, prompts)


class Method(Protocol):
    name: str  # "find", "find-paper", "dpok", "ddpo", "best-of-n", "reno"
    settings: dict  # every setting it ran with (published values and what was scaled, in comments)
    train_cost: Cost
    generate_cost: Cost

    def train_step(self) -> dict | None: ...  # one training step's diagnostics; None: the method does not train

    def generate(self, n: int, seed: int) -> torch.Tensor: ...  # (n, 3, H, W) in [0, 1] from the current state


@dataclass
class CurvePoint:
    """One evaluation of a method during the comparison."""
    step: int
    train: dict = field(default_factory=dict)  # train_cost.as_dict() at this point
    success_rate: float | None = None  # judge, on eval images
    mean_reward: float | None = None
