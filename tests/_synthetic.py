"""The synthetic-reward oracle several test files share: a reward with a known optimum (-100 · MSE to
the media decoded from a fixed z*), and the check that `find train` raised it far beyond noise."""

import json
import math
from pathlib import Path

import torch


def write_mse_reward(directory: Path, target: torch.Tensor, name: str = "synth") -> str:
    """A user reward file `(media, prompts) -> -100 · MSE(media, target)`; returns its `path:reward` spec."""
    torch.save(target, directory / f"{name}_target.pt")
    path = directory / f"{name}.py"
    path.write_text("import torch\n"
                    f"T = torch.load({str(directory / f'{name}_target.pt')!r})\n"
                    "def reward(media, prompts):\n"
                    "    return -100.0 * ((media - T) ** 2).flatten(1).mean(1)\n")
    return f"{path}:reward"


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out.parent / f"{out.stem}.metrics.jsonl").read_text().splitlines()]


def assert_reward_rose(out: Path, iterations: int, batch: int = 16, sigmas: float = 10.0) -> list[dict]:
    """The mean reward of the last 4 batches beats the first 3 by `sigmas` standard errors of a
    3-batch mean under N(0, I) (the first batch's within-batch spread / √(3·batch))."""
    rows = metrics(out)
    assert len(rows) == iterations
    first = sum(m["reward_mean"] for m in rows[:3]) / 3
    last = sum(m["reward_mean"] for m in rows[-4:]) / 4
    se = rows[0]["reward_std"] / math.sqrt(3 * batch)
    assert last - first > sigmas * se, (first, last, se)
    return rows


def cosine_to(mu: torch.Tensor, z_star: torch.Tensor) -> float:
    return torch.nn.functional.cosine_similarity(mu.flatten(), z_star.flatten(), dim=0).item()
