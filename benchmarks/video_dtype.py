"""fp32 vs bf16 for the built-in video world on the CPU, side by side in one process: seconds per rollout
(the unit of a FIND iteration: `--batch` 8 clips, DDIM 20, CFG 7.5, 8 frames) and, on the same ε, how
often the motion judge's verdict and the video reward's order agree between the two dtypes.

bf16 here is what `--dtype auto` gives on a CPU with native bf16 (findcli.pipeline.resolve_dtype):
bf16 weights, attention in fp32 (findcli.pipeline.configure_pipeline). Prompts: the video tuning split
(benchmarks/results/video_issue14/session16/tune_prompts.txt), never the suite.

    OMP_NUM_THREADS=2 python benchmarks/video_dtype.py --n 16 --json runs/video_dtype.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from findcli import atomic, shapes
from findcli.pipeline import SamplerSettings, load_runtime
from findcli.rewards import build_reward
from findcli.sampling import draw

TUNE = Path(__file__).parent / "results" / "video_issue14" / "session16" / "tune_prompts.txt"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", default=str(TUNE), help="one prompt per line (category<TAB>prompt allowed)")
    ap.add_argument("--n", type=int, default=16, help="videos per prompt and dtype (batches of 8)")
    ap.add_argument("--seed", type=int, default=100, help="eval-namespace seed of the first batch")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    world = shapes.world_of("builtin-video")
    pipes = {}
    for name in ("fp32", "bf16"):
        _, _, pipes[name], used = load_runtime("builtin-video", "cpu", name)  # as find train / eval load it
        print(f"{name}: attention {used['attention']} in {used['attention_dtype'] or 'the weights dtype'}")
    reward = build_reward(world.default_reward, torch.device("cpu"), reward_model=world.clip_model)
    settings = SamplerSettings(frames=world.default_frames, steps=20, guidance=7.5)
    prompts = [ln.split("\t")[-1].strip() for ln in Path(a.prompts).read_text().splitlines()
               if ln.strip() and not ln.startswith("#")]
    rows, times = [], {"fp32": [], "bf16": []}
    for prompt in prompts:
        arm = {name: {"ok": [], "r": []} for name in pipes}
        for b in range(a.n // 8):
            for name, pipe in pipes.items():  # interleaved, so a slower spell of the machine hits both
                t = time.perf_counter()
                x = draw(pipe, prompt, settings, a.seed + b, 8, None, baseline=True).baseline_images.float()
                times[name].append(time.perf_counter() - t)
                ok, _ = world.judge_images(x, prompt)
                arm[name]["ok"].append(ok.bool())
                arm[name]["r"].append(reward(x, [prompt] * len(x)).float())
        ok32, ok16 = torch.cat(arm["fp32"]["ok"]), torch.cat(arm["bf16"]["ok"])
        r32, r16 = torch.cat(arm["fp32"]["r"]), torch.cat(arm["bf16"]["r"])
        # Pairs whose order the reward keeps: what FIND's advantages see.
        i, j = torch.triu_indices(len(r32), len(r32), 1)
        same_order = float(((r32[i] - r32[j]).sign() == (r16[i] - r16[j]).sign()).float().mean())
        row = dict(prompt=prompt, n=len(ok32), success_fp32=float(ok32.float().mean()),
                   success_bf16=float(ok16.float().mean()), verdicts_agree=float((ok32 == ok16).float().mean()),
                   reward_max_abs_diff=float((r32 - r16).abs().max()), reward_std=float(r32.std()),
                   reward_pair_order_agree=same_order)
        rows.append(row)
        print(json.dumps(row), flush=True)
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    n = sum(r["n"] for r in rows)
    summary = dict(threads=torch.get_num_threads(), rollouts_per_dtype=len(times["fp32"]),
                   median_rollout_s=med, speedup=med["fp32"] / med["bf16"],
                   verdicts_agree=sum(r["verdicts_agree"] * r["n"] for r in rows) / n,
                   success_fp32=sum(r["success_fp32"] * r["n"] for r in rows) / n,
                   success_bf16=sum(r["success_bf16"] * r["n"] for r in rows) / n)
    print(json.dumps(summary))
    if a.json:
        atomic.write_text(Path(a.json), json.dumps(dict(summary=summary, prompts=rows, seconds=times), indent=1) + "\n")


if __name__ == "__main__":
    main()
