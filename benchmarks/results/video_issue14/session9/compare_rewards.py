"""Session 9 (2026-12-05): video reward folders compared on the generator's cached videos.

For each reward folder (`--reward-dirs`; the shipped one is `findcli/shapes/video/reward_model`) and each
suite prompt it scores the videos `benchmarks/video_world.py` cached (the N(0, I) arm, and the policy arm
where `--policy-dir` holds a policy for the prompt; eval seeds `--seed`, pooled per prompt) with the full
caption and, for two-object prompts, min(full, each object's sub-caption) (`combine="min"`). The motion
judge labels the videos (the full prompt's success, and each sub-caption judged on its own: "this object
is present and moves its way"); the rewards never see it. Draws nothing: a video not in the cache stops it.

Per reward, score and prompt/category: AUC of the judge's success on the baseline arm (the question
"does the reward rank the generator's own good videos first"), the same on the policy arm, P(policy video
> baseline video), and for two-object prompts the mean score by the number of objects the judge passes
(0 / 1 / 2) and the AUC of "both objects pass" against "exactly one passes" (pooled arms), which is the
ranking a one-correct-object hack exploits.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/results/video_issue14/session9/compare_rewards.py \
        --reward-dirs findcli/shapes/video/reward_model runs/vclip_obj/ft --policy-dir benchmarks/results/video_issue14/suite \
        --n 32 --seed 1 2 --json OUT.json
"""
from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import torch

from findcli import shapes
from findcli.evaluation import rank_auc, slug
from findcli.shapes.video.reward import load_video_clip, sub_captions
from findcli.shapes.video.world import parse_video_prompt

ROOT = Path(__file__).resolve().parents[4]
spec = importlib.util.spec_from_file_location("video_world", ROOT / "benchmarks" / "video_world.py")
VW = importlib.util.module_from_spec(spec)
spec.loader.exec_module(VW)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="builtin-video")
    ap.add_argument("--reward-dirs", nargs="+", required=True)
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--seed", type=int, nargs="+", default=[1], help="eval seeds (draws pooled per prompt)")
    ap.add_argument("--cache", default="runs/video/videos")
    ap.add_argument("--policy-dir", default=None)
    ap.add_argument("--only", default=".")
    ap.add_argument("--skip-missing", action="store_true", help="leave out prompts/arms whose videos are not cached")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    world = shapes.world_of(a.model)
    suite = VW.suite_lines(world, only=a.only)
    cache = Path(a.cache) / world.model_version()
    plain = VW.arm_settings(world, None)  # video_world.py's key without --policy-dir

    class Missing(Exception):
        pass

    def no_pipe():
        raise Missing

    # videos and judge labels, once
    data = []  # (category, prompt, arm, videos, ok, objects_ok or None)
    for category, prompt in suite:
        ppath = Path(a.policy_dir) / f"{slug(prompt)}.pt" if a.policy_dir else None
        ppath = ppath if ppath is not None and ppath.exists() else None
        settings = VW.arm_settings(world, ppath)
        subs = sub_captions(parse_video_prompt(prompt))
        for arm, path in (("baseline", None), ("policy", ppath)):
            if arm == "policy" and path is None:
                continue
            xs = []
            try:
                for seed in a.seed:
                    try:
                        xs.append(VW.arm_videos(no_pipe, prompt, settings, a.n, seed, cache, path))
                    except Missing:  # the same baseline ε drawn without a policy folder (same sampler)
                        if path is not None or (settings.steps, settings.guidance, settings.eta) != (plain.steps, plain.guidance, plain.eta):
                            raise
                        xs.append(VW.arm_videos(no_pipe, prompt, plain, a.n, seed, cache, None))
            except Missing:
                if not a.skip_missing:
                    raise SystemExit(f"not cached: {prompt!r} {arm}; run benchmarks/video_world.py first")
                print(f"skip (not cached): {prompt!r} {arm}", flush=True)
                continue
            x = torch.cat(xs)
            ok, _ = world.judge_images(x, prompt)
            obj_ok = torch.stack([world.judge_images(x, c)[0] for c in subs], 1) if len(subs) > 1 else None
            data.append((category, prompt, arm, x, ok, obj_ok))
            print(f"{prompt!r} {arm}: {int(ok.sum())}/{len(ok)} judged successes", flush=True)

    result = {}
    for rdir in a.reward_dirs:
        model = load_video_clip(rdir)
        scored = []
        for category, prompt, arm, x, ok, obj_ok in data:
            subs = sub_captions(parse_video_prompt(prompt))
            with torch.no_grad():
                v = torch.cat([model.encode_video(c) for c in x.split(64)])
                t = model.encode_prompts([prompt] + (subs if len(subs) > 1 else []))
                s = model.scale() * v @ t.T
            full = s[:, 0]
            mn = torch.minimum(full, s[:, 1:].min(1).values) if s.shape[1] > 1 else full
            scored.append((category, prompt, arm, {"full": full, "min": mn}, ok, obj_ok))

        def summarise(rows):
            out = {}
            for score in ("full", "min"):
                b = [r for r in rows if r[2] == "baseline"]
                p = [r for r in rows if r[2] == "policy"]
                # AUC per prompt, then averaged (the per-template AUC of RESULTS.md), and pooled
                aucs = [rank_auc(r[3][score], r[4]) for r in b]
                aucs = [u for u in aucs if u is not None and u == u]
                o = {"auc_baseline_mean_over_prompts": sum(aucs) / len(aucs) if aucs else None,
                     "auc_baseline_pooled": rank_auc(torch.cat([r[3][score] for r in b]), torch.cat([r[4] for r in b])) if b else None}
                if p:
                    pa = [rank_auc(r[3][score], r[4]) for r in p]
                    pa = [u for u in pa if u is not None and u == u]
                    o["auc_policy_mean_over_prompts"] = sum(pa) / len(pa) if pa else None
                    # P(policy > baseline) per prompt, averaged
                    wins = []
                    for rp in p:
                        rb = next(r for r in b if r[1] == rp[1])
                        both = torch.cat([rb[3][score], rp[3][score]])
                        lab = torch.cat([torch.zeros(len(rb[4]), dtype=torch.bool), torch.ones(len(rp[4]), dtype=torch.bool)])
                        wins.append(rank_auc(both, lab))
                    o["p_policy_above_baseline"] = sum(wins) / len(wins)
                multi = [r for r in rows if r[5] is not None]
                if multi:
                    nok = torch.cat([r[5].sum(1) for r in multi])
                    # centred per prompt (both arms) so prompts with different score levels pool fairly
                    centre = {q: torch.cat([r[3][score] for r in multi if r[1] == q]).mean() for q in dict.fromkeys(r[1] for r in multi)}
                    scc = torch.cat([r[3][score] - centre[r[1]] for r in multi])
                    o["mean_centred_by_objects_ok"] = {k: (float(scc[nok == k].mean()) if (nok == k).any() else None, int((nok == k).sum())) for k in (0, 1, 2)}
                    o["auc_two_vs_one_object_ok"] = rank_auc(scc[nok >= 1], nok[nok >= 1] == 2)
                    o["auc_one_vs_none_object_ok"] = rank_auc(scc[nok <= 1], nok[nok <= 1] == 1)
                out[score] = o
            return out

        res = {"all": summarise(scored)}
        for cat in dict.fromkeys(r[0] for r in scored):
            res[cat] = summarise([r for r in scored if r[0] == cat])
        for prompt in dict.fromkeys(r[1] for r in scored):
            res[prompt] = summarise([r for r in scored if r[1] == prompt])
        result[rdir] = res

    def fmt(v):
        return "–" if v is None or v != v else f"{v:.3f}"

    for rdir, res in result.items():
        print(f"\n## {rdir}")
        print("| scope | score | AUC base (mean over prompts) | AUC policy | P(pol>base) | centred mean by #obj ok 0/1/2 | AUC 2 vs 1 obj | AUC 1 vs 0 obj |")
        print("|---|---|---|---|---|---|---|---|")
        for scope, r in res.items():
            for score in ("full", "min"):
                o = r[score]
                m = o.get("mean_centred_by_objects_ok")
                ms = " / ".join("–" if m[k][0] is None else f"{m[k][0]:+.2f} ({m[k][1]})" for k in (0, 1, 2)) if m else ""
                print(f"| {scope} | {score} | {fmt(o['auc_baseline_mean_over_prompts'])} | {fmt(o.get('auc_policy_mean_over_prompts'))} | "
                      f"{fmt(o.get('p_policy_above_baseline'))} | {ms} | {fmt(o.get('auc_two_vs_one_object_ok'))} | {fmt(o.get('auc_one_vs_none_object_ok'))} |")
    if a.json:
        Path(a.json).write_text(json.dumps({"args": vars(a), "result": result}, indent=1, default=str))


if __name__ == "__main__":
    main()
