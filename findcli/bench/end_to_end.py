"""Section `end_to_end`: one `find train` iteration (FindTrainer.step) split into denoise / decode /
reward / update, iterations/s and images/s, for the default preset and for `--preset paper`.

The split is FindTrainer's own per-phase timing (synchronised on CUDA); medians over the timed
iterations after `plan.e2e_warmup` untimed ones.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Callable

from findcli.bench.models import Models
from findcli.bench.plans import PROMPTS, Plan, error_status
from findcli.errors import FindError


def _median(ms: list[dict], key: str) -> float:
    return statistics.median(m[key] for m in ms)


def end_to_end(plan: Plan, models: Models, log: Callable[[str], None]) -> dict:
    """FindTrainer.step() on each model, default and paper presets: medians of the timed iterations."""
    from findcli.config import PRESETS
    from findcli.engine import FindTrainer

    out: dict = {"warmup_iterations": plan.e2e_warmup, "timed_iterations": plan.e2e_iterations, "rows": []}
    for name in plan.e2e_models:
        pipe = models.pipe(name)
        for preset in ("default", "paper"):
            row: dict = {"model": name, "preset": preset}
            if isinstance(pipe, str):
                out["rows"].append({**row, "status": pipe})
                continue
            try:
                reward, reward_name = models.reward(name)
                cfg = PRESETS[preset](prompt=PROMPTS[name], **plan.e2e_overrides[preset]).validate()
                row.update(batch=cfg.batch, steps=cfg.steps, eta=cfg.eta, guidance=cfg.guidance, reward=reward_name)
                with tempfile.TemporaryDirectory() as d:
                    trainer = FindTrainer(cfg, pipe, reward, Path(d) / "bench.pt")
                    for _ in range(plan.e2e_warmup):
                        trainer.step()
                    ms = [trainer.step() for _ in range(plan.e2e_iterations)]
                ok = [m for m in ms if not m.get("skipped")]
                if not ok:
                    raise FindError("every timed iteration was skipped (non-finite rewards)")
                parts = {k: _median(ok, k) for k in ("denoise_s", "decode_s", "reward_s", "update_s", "iter_s")}
                parts["other_s"] = max(0.0, parts["iter_s"] - sum(parts[k] for k in ("denoise_s", "decode_s",
                                                                                      "reward_s", "update_s")))
                row.update({k: round(v, 5) for k, v in parts.items()})
                row["share"] = {k.removesuffix("_s"): round(parts[k] / parts["iter_s"], 4)
                                for k in ("denoise_s", "decode_s", "reward_s", "update_s", "other_s")}
                row["iterations_per_s"] = round(1.0 / parts["iter_s"], 4)
                row["images_per_s"] = round(cfg.batch / parts["iter_s"], 4)
                row["status"] = "ok"
            except Exception as e:  # noqa: BLE001 - report and keep going
                row["status"] = error_status(e)
            out["rows"].append(row)
            log(f"  {name} {preset}: " + (f"{row['iter_s']:.3f} s/iteration" if row["status"] == "ok" else row["status"]))
    return out
