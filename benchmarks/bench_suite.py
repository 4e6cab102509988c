"""Shapes-suite benchmark: for every prompt of a suite, train a FIND policy with the default settings
on the built-in model, then evaluate baseline N(0, I) vs the policy on the same ε with the programmatic
judge and the reward. Writes per-prompt and per-category tables (JSON + Markdown).

Run (CPU or GPU):
    python benchmarks/bench_suite.py --suite benchmarks/prompts/shapes_suite.txt --n 64 \
        --out runs/suite --json benchmarks/results/suite_results.json --markdown benchmarks/results/suite_results.md

Evaluation draws from the "eval" noise namespace and training from "train" (findcli.seeds), so the
policy is judged on noise it never saw, for any pair of seeds. Summaries are paired (both arms over
the prompts that have a policy). Two processes: `--start/--limit` split a suite, and
benchmarks/suite_report.py merges and compares result files (seeds, rewards, the oracle).
Policies are written to OUT/<slug>.pt, so `find eval --prompts SUITE --policy-dir OUT` reproduces the
evaluation from the CLI.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="benchmarks/prompts/shapes_suite.txt")
    ap.add_argument("--n", type=int, default=64, help="images per arm in the evaluation")
    ap.add_argument("--eval-seed", type=int, default=1)
    ap.add_argument("--out", default="runs/suite")
    ap.add_argument("--json", default="benchmarks/results/suite_results.json")
    ap.add_argument("--markdown", default=None, help="the table as markdown (default: beside --json, .md; \"\" for none); it "
                    "used to default to benchmarks/results/suite_results.md whatever --json was, so a run of another "
                    "suite with its own --json overwrote the committed table and left it out of step with its JSON")
    ap.add_argument("--start", type=int, default=0, help="skip the first N prompts (to split a suite over processes)")
    ap.add_argument("--limit", type=int, default=0, help="at most N prompts (0 = all)")
    ap.add_argument("--reward", default="find-shapes-detector", help="training reward (find train's default on the "
                    "built-in model; evaluation always reports the clip reward)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--train-seed", type=int, default=0, help="find train --seed of every prompt")
    ap.add_argument("--set", nargs="*", default=[], help="config overrides, e.g. iterations=30 lr=0.05")
    ap.add_argument("--reuse", action="store_true", help="evaluate OUT/<slug>.pt where it exists instead of "
                    "training (e.g. after a judge change; the JSON records which prompts were reused)")
    args = ap.parse_args()

    from findcli import atomic, shapes
    from findcli.config import default
    from findcli.engine import FindTrainer
    from findcli.evaluation import evaluate_prompt, slug, success_rate, summarize
    from findcli.pipeline import SamplerSettings, load_runtime
    from findcli.training import build_reward

    dev, _, pipe, _ = load_runtime(None, args.device)
    reward, _ = build_reward("clip", None, None, dev)
    train_reward = reward if args.reward == "clip" else build_reward(args.reward, None, None, dev)[0]
    suite = shapes.load_suite(args.suite)[args.start:]
    if args.limit:
        suite = suite[: args.limit]
    overrides = {}
    for kv in args.set:
        k, v = kv.split("=", 1)
        field_type = type(getattr(default(), k))
        if field_type is bool:
            overrides[k] = v.lower() in ("1", "true", "yes")
        else:
            overrides[k] = field_type(v) if field_type is not type(None) else v
    out = Path(args.out)
    records = []
    t_start = time.perf_counter()
    for i, (category, prompt) in enumerate(suite):
        cfg = default(prompt=prompt, seed=args.train_seed, **overrides)
        t0 = time.perf_counter()
        cfg.reward = args.reward
        path = out / f"{slug(prompt)}.pt"
        if args.reuse and path.exists():
            from findcli.policy import load_policy

            policy, reused = load_policy(path).policy, True
        else:
            trainer = FindTrainer(cfg, pipe, train_reward, path)
            trainer.run(write_outputs=False)
            # the policy find train writes (--keep best: the best validated one, else the last)
            policy, reused = trainer.kept_policy(), False
        t_train = time.perf_counter() - t0
        settings = SamplerSettings(cfg.steps, cfg.guidance, cfg.eta)
        rec = evaluate_prompt(pipe, prompt, settings, reward, args.n, args.eval_seed, policy, True,
                              cfg.max_batch, category)
        rec["train_s"] = None if reused else round(t_train, 2)
        rec["reused_policy"] = reused
        if not reused:  # the training curve: batch reward mean / std, and whether the std floor set the scale
            rows = [m for m in trainer.metrics if not m.get("skipped")]
            rec["train"] = {"reward_mean": [round(m["reward_mean"], 4) for m in rows],
                            "reward_std": [round(m["reward_std"], 4) for m in rows],
                            "std_floored": [int(m.get("std_floored", False)) for m in rows]}
        if not reused and cfg.keep == "best" and trainer.best is not None:
            # which iteration was kept, and the last policy judged on the same eval draw (paired)
            rec["kept"] = {"iteration": trainer.best["iteration"], "score": trainer.best["score"],
                           "last_iteration": trainer.iteration,
                           "last_success_rate": rec["policy"]["success_rate"] if trainer.best["iteration"]
                           == trainer.iteration else success_rate(pipe, prompt, settings, args.eval_seed, args.n,
                                                                  trainer.policy, True, cfg.max_batch)}
        records.append(rec)
        b, p = rec["baseline"], rec["policy"]
        print(f"[{i + 1}/{len(suite)}] {category:<18} {prompt:<45} success {b['success_rate']:.2f} -> "
              f"{p['success_rate']:.2f}   reward {b['mean_reward']:.4f} -> {p['mean_reward']:.4f}   "
              f"train {t_train:.0f}s" + (f"   kept @{rec['kept']['iteration']} (last "
                                         f"{rec['kept']['last_success_rate']:.2f})" if "kept" in rec else ""),
              flush=True)
        result = {"suite": args.suite, "start": args.start, "train_reward": args.reward, "train_seed": args.train_seed, "n": args.n, "eval_seed": args.eval_seed, "config": cfg.to_dict(),
                  "device": str(dev), "torch_threads": torch.get_num_threads(),
                  "wall_s": round(time.perf_counter() - t_start, 1), "results": records,
                  "summary": summarize(records)}
        atomic.write_text(args.json, json.dumps(result, indent=2))  # rewritten after every prompt
    md = args.markdown if args.markdown is not None else (str(Path(args.json).with_suffix(".md")) if args.json else "")
    if md:  # --markdown "" writes none
        atomic.write_text(md, markdown(result))
    print(markdown(result))


def markdown(result: dict) -> str:
    def pct(x):
        return "–" if x is None else f"{100 * x:.0f}%"

    lines = ["| category | prompt | baseline success | FIND success | baseline reward | FIND reward |",
             "|---|---|---|---|---|---|"]
    for r in result["results"]:
        lines.append(f"| {r['category']} | {r['prompt']} | {pct(r['baseline']['success_rate'])} | "
                     f"{pct(r['policy']['success_rate'])} | {r['baseline']['mean_reward']:.4f} | "
                     f"{r['policy']['mean_reward']:.4f} |")
    lines += ["", "| category | prompts (with policy) | baseline success | FIND success | baseline reward | FIND reward |",
              "|---|---|---|---|---|---|"]
    for name, row in result["summary"].items():  # noqa: B007
        lines.append(f"| {name} | {row['prompts']} ({row.get('prompts_with_policy', row['prompts'])}) | "
                     f"{pct(row['baseline']['success_rate'])} | "
                     f"{pct(row['policy']['success_rate'])} | {row['baseline']['mean_reward']:.4f} | "
                     f"{row['policy']['mean_reward']:.4f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
