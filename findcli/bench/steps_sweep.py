"""Section `steps_sweep`: T in {10, 20, 50}: rollout time; on the built-in model also the alignment gain
of a short FIND run at that T (judge success rate, policy minus N(0, I) on the same ε) — a related
method reports noise-optimisation gains shrinking as steps grow.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Callable

from findcli.bench.denoiser import rollout_row
from findcli.bench.models import Models
from findcli.bench.plans import PROMPTS, Plan, error_status


def steps_sweep(plan: Plan, models: Models, log: Callable[[str], None]) -> dict:
    """Rollout time against T; on the built-in model, FIND's alignment gain at each T."""
    from findcli.config import default
    from findcli.engine import FindTrainer
    from findcli.evaluation import evaluate_prompt
    from findcli.pipeline import SamplerSettings

    out: dict = {"steps": list(plan.sweep_steps), "batch": plan.sweep_batch, "find_iterations": plan.find_iterations,
                 "find_batch": plan.find_batch, "eval_n": plan.eval_n, "rows": []}
    for name in plan.sweep_models:
        pipe = models.pipe(name)
        for steps in plan.sweep_steps:
            row: dict = {"model": name, "steps": steps}
            if isinstance(pipe, str):
                out["rows"].append({**row, "status": pipe})
                continue
            try:
                r = rollout_row(pipe, PROMPTS[name], steps, plan.sweep_batch, plan.row_budget_s)
                row.update(rollout_s=r["rollout_s"], images_per_s=r["images_per_s"], step_ms=r["step_ms"])
                if name == "builtin":
                    reward, reward_name = models.reward(name)
                    cfg = default(prompt=PROMPTS[name], steps=steps, batch=plan.find_batch,
                                  iterations=plan.find_iterations).validate()
                    t0 = time.perf_counter()
                    with tempfile.TemporaryDirectory() as d:
                        trainer = FindTrainer(cfg, pipe, reward, Path(d) / "bench.pt")
                        for _ in range(cfg.iterations):
                            trainer.step()
                    row["find_s"] = round(time.perf_counter() - t0, 3)
                    rec = evaluate_prompt(pipe, PROMPTS[name], SamplerSettings(steps, cfg.guidance, cfg.eta), reward,
                                          plan.eval_n, seed=1, policy=trainer.policy, builtin=True)
                    base, pol = rec["baseline"]["success_rate"], rec["policy"]["success_rate"]
                    row.update(reward=reward_name, baseline_success=base, find_success=pol,
                               gain=round(pol - base, 4), win_rate=rec["policy"]["win_rate"],
                               baseline_reward=round(rec["baseline"]["mean_reward"], 5),
                               find_reward=round(rec["policy"]["mean_reward"], 5))
                else:
                    row["alignment"] = "n/a: success rates need the built-in model's judge"
                row["status"] = "ok"
            except Exception as e:  # noqa: BLE001 - report and keep going
                row["status"] = error_status(e)
            out["rows"].append(row)
            log(f"  {name} T={steps}: " + (f"{row['images_per_s']:.3f} images/s"
                                           + (f", gain {row['gain']:+.3f}" if "gain" in row else "")
                                           if row["status"] == "ok" else row["status"]))
    return out
