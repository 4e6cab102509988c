"""Session 8 (2026-12-05): candidate per-object combinations of the video reward, measured on cached videos.

Reads the videos `benchmarks/video_world.py --policy-dir DIR --n N --seed S` cached (both arms, N(0, I)
and the suite's FIND policy, one paired draw); draws nothing. Per video it computes the video reward's
parts with the shipped weights: the full caption's score and each named object's sub-caption score
("a red sphere moving right"), and the motion judge's verdicts (the full prompt's success and constraints,
and each sub-caption judged on its own: "this object is present and moves its way"). Then, per candidate
combination, the AUC for the judge's success per arm, the mean per arm, the paired win rate of the
policy over the baseline, and the mean score of videos by how many named objects the judge passes (0, 1
or 2), which is the ranking a partial-video hack exploits.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/results/video_issue14/session8/score_parts.py \
        --policy-dir benchmarks/results/video_issue14/suite --n 32 --seed 1 --only two_ --json OUT.json

The judge is used here only as the evaluation label; the reward module never sees it.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import re
from pathlib import Path

import torch

from findcli import shapes
from findcli.evaluation import rank_auc, slug
from findcli.policy import load_policy
from findcli.sampling import settings_from_meta
from findcli.shapes.video.reward import load_video_clip
from findcli.shapes.video.world import parse_video_prompt

ROOT = Path(__file__).resolve().parents[4]
spec = importlib.util.spec_from_file_location("video_world", ROOT / "benchmarks" / "video_world.py")
VW = importlib.util.module_from_spec(spec)
spec.loader.exec_module(VW)


def softmin(s: torch.Tensor, tau: float) -> torch.Tensor:  # s (N, K) -> (N,)
    return -tau * torch.logsumexp(-s / tau, dim=1) + tau * torch.log(torch.tensor(float(s.shape[1])))


COMBOS = {
    "full (old)": lambda full, sub: full,
    "min(objects)": lambda full, sub: sub.min(1).values,
    "min(full, objects)": lambda full, sub: torch.minimum(full, sub.min(1).values),
    "mean(full, min(objects))": lambda full, sub: 0.5 * (full + sub.min(1).values),
    "mean(objects)": lambda full, sub: sub.mean(1),
    "softmin(objects, tau=1)": lambda full, sub: softmin(sub, 1.0),
    "softmin(objects, tau=2)": lambda full, sub: softmin(sub, 2.0),
    "mean(full, softmin tau=1)": lambda full, sub: 0.5 * (full + softmin(sub, 1.0)),
    "full - (max - min)(objects)": lambda full, sub: full - (sub.max(1).values - sub.min(1).values),
    "full - 0.5 (max - min)(objects)": lambda full, sub: full - 0.5 * (sub.max(1).values - sub.min(1).values),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="builtin-video")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--seed", type=int, nargs="+", default=[1], help="eval seeds (draws pooled per prompt)")
    ap.add_argument("--cache", default="runs/video/videos")
    ap.add_argument("--policy-dir", required=True)
    ap.add_argument("--only", default="two_")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    world = shapes.world_of(a.model)
    suite = [(c, p) for c, p in world.load_suite(ROOT / "benchmarks" / "prompts" / "video_suite.txt")
             if re.search(a.only, f"{c}\t{p}")]
    cache = Path(a.cache) / world.model_version()
    model = load_video_clip()
    pdir = Path(a.policy_dir)

    def no_pipe():
        raise SystemExit("a video is not cached; run benchmarks/video_world.py with the same arguments first")

    per_prompt, pooled = [], {"baseline": [], "policy": []}
    for category, prompt in suite:
        ppath = pdir / f"{slug(prompt)}.pt"
        settings = settings_from_meta(load_policy(ppath).meta, source=str(ppath))
        if not settings.frames:
            settings = dataclasses.replace(settings, frames=world.default_frames)
        sp = parse_video_prompt(prompt)
        subs = [f"a {o.phrase()}" for o in sp.objects]
        acc = {"baseline": [], "policy": []}
        for seed in a.seed:
            entry = {"prompt": prompt, "category": category, "seed": seed, "sub_captions": subs}
            for arm, path in (("baseline", None), ("policy", ppath)):
                x = VW.arm_videos(no_pipe, prompt, settings, a.n, seed, cache, path)
                with torch.no_grad():
                    v = model.encode_video(x)
                    t = model.encode_prompts([prompt] + subs)
                    s = model.scale() * v @ t.T  # (N, 1 + K)
                ok, per = world.judge_images(x, prompt)
                obj_ok = torch.stack([world.judge_images(x, c)[0] for c in subs], 1)  # (N, K) each object on its own
                entry[arm] = {"full": s[:, 0].tolist(), "sub": s[:, 1:].tolist(), "success": ok.tolist(),
                              "per_constraint": {k: v_.tolist() for k, v_ in per.items()}, "object_ok": obj_ok.tolist()}
                acc[arm].append((s[:, 0], s[:, 1:], ok, obj_ok))
            per_prompt.append(entry)
            print(prompt, seed, {arm: (sum(entry[arm]["success"]), [sum(c) for c in zip(*entry[arm]["object_ok"])])
                                 for arm in ("baseline", "policy")}, flush=True)
        for arm in acc:
            pooled[arm].append(tuple(torch.cat([r[i] for r in acc[arm]]) for i in range(4)))

    def summary(rows_b, rows_p):
        out = {}
        fb, sb, okb, ob = (torch.cat([r[i] for r in rows_b]) for i in range(4))
        fp, spp, okp, op = (torch.cat([r[i] for r in rows_p]) for i in range(4))
        nb, np_ = ob.sum(1), op.sum(1)  # named objects the judge passes (0..2)
        for name, fn in COMBOS.items():
            rb, rp = fn(fb, sb), fn(fp, spp)
            both_r, both_n = torch.cat([rb, rp]), torch.cat([nb, np_])
            out[name] = {
                "auc_baseline": rank_auc(rb, okb), "auc_policy": rank_auc(rp, okp),
                "auc_pooled": rank_auc(both_r, torch.cat([okb, okp])),
                "mean_baseline": float(rb.mean()), "mean_policy": float(rp.mean()),
                "paired_policy_win": float((rp > rb).float().mean()),
                "p_policy_above_baseline": rank_auc(both_r, torch.cat([torch.zeros_like(okb), torch.ones_like(okp)])),
                # both arms pooled: mean score by the number of named objects the judge passes
                "mean_by_objects_ok": {k: (float(both_r[both_n == k].mean()) if (both_n == k).any() else None,
                                           int((both_n == k).sum())) for k in (0, 1, 2)},
                # AUC of "both objects pass on their own" vs "exactly one passes" (pooled arms)
                "auc_two_vs_one_object_ok": rank_auc(both_r[both_n >= 1], (both_n[both_n >= 1] == 2)),
                # AUC of "one or more objects pass" vs none
                "auc_some_vs_none_ok": rank_auc(both_r, both_n >= 1),
            }
        out["judge"] = {"success_baseline": float(okb.float().mean()), "success_policy": float(okp.float().mean()),
                        "objects_ok_baseline": [int((nb == k).sum()) for k in (0, 1, 2)],
                        "objects_ok_policy": [int((np_ == k).sum()) for k in (0, 1, 2)]}
        return out

    result = {"pooled": summary(pooled["baseline"], pooled["policy"]), "per_prompt": {}}
    for i, (_, prompt) in enumerate(suite):
        result["per_prompt"][prompt] = summary([pooled["baseline"][i]], [pooled["policy"][i]])

    def fmt(v):
        return "–" if v is None or v != v else f"{v:.3f}"

    for scope, res in [("pooled", result["pooled"])] + list(result["per_prompt"].items()):
        print(f"\n{scope}: judge {res['judge']}")
        print("| score | AUC base | AUC policy | AUC pooled | mean base | mean policy | P(pol>base) | paired win | "
              "mean by #objects ok 0/1/2 | AUC 2 vs 1 obj | AUC >=1 vs 0 |")
        for name in COMBOS:
            r = res[name]
            m = r["mean_by_objects_ok"]
            print(f"| {name} | {fmt(r['auc_baseline'])} | {fmt(r['auc_policy'])} | {fmt(r['auc_pooled'])} | "
                  f"{r['mean_baseline']:.2f} | {r['mean_policy']:.2f} | {fmt(r['p_policy_above_baseline'])} | "
                  f"{r['paired_policy_win']:.2f} | "
                  + " / ".join("–" if m[k][0] is None else f"{m[k][0]:.2f} ({m[k][1]})" for k in (0, 1, 2))
                  + f" | {fmt(r['auc_two_vs_one_object_ok'])} | {fmt(r['auc_some_vs_none_ok'])} |")
    if a.json:
        Path(a.json).write_text(json.dumps({"args": vars(a), "result": result, "videos": per_prompt}, indent=1))


if __name__ == "__main__":
    main()
