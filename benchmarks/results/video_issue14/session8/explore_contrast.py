"""Session 8 exploration: per-object scores built from two-object captions that alter one named object
(its direction, colour or shape; the renderer-grammar's hard negatives), on the cached videos. Reads
score_parts_two_seeds12.json's videos (or the file named on the command line) and the cache; draws nothing."""

import json
import sys
import importlib.util
from pathlib import Path
import torch
from findcli import shapes
from findcli.evaluation import rank_auc, slug
from findcli.policy import load_policy
from findcli.sampling import settings_from_meta
from findcli.shapes.video.reward import load_video_clip
from findcli.shapes.video.world import (
    parse_video_prompt,
    VideoSpec,
    Mover,
    DIRECTIONS,
    COLOURS,
    SHAPES,
)

ROOT = Path(__file__).resolve().parents[4]
spec = importlib.util.spec_from_file_location(
    "video_world", ROOT / "benchmarks" / "video_world.py"
)
VW = importlib.util.module_from_spec(spec)
spec.loader.exec_module(VW)
world = shapes.world_of("builtin-video")
cache = Path("runs/video/videos") / world.model_version()
model = load_video_clip()
pdir = Path("benchmarks/results/video_issue14/suite")
parts = json.load(
    open(
        sys.argv[1]
        if len(sys.argv) > 1
        else "benchmarks/results/video_issue14/session8/score_parts_two_seeds12.json"
    )
)


def negs_of(sp, k, kinds=("dir", "col", "shape")):
    o = sp.objects[k]
    alt = []
    if "dir" in kinds:
        alt += [Mover(o.colour, o.shape, d) for d in DIRECTIONS if d != o.direction]
    if "col" in kinds:
        alt += [Mover(c, o.shape, o.direction) for c in COLOURS if c != o.colour]
    if "shape" in kinds:
        alt += [Mover(o.colour, s, o.direction) for s in SHAPES if s != o.shape]
    out = []
    for a in alt:
        objs = list(sp.objects)
        objs[k] = a
        s = VideoSpec(sp.kind, tuple(objs))
        if s.meaning() != sp.meaning():
            out.append(s.caption())
    return out


rows = {"baseline": [], "policy": []}
for entry in parts["videos"]:
    prompt = entry["prompt"]
    sp = parse_video_prompt(prompt)
    ppath = pdir / f"{slug(prompt)}.pt"
    settings = settings_from_meta(load_policy(ppath).meta, source=str(ppath))
    negs = [negs_of(sp, k) for k in range(2)]
    caps = [prompt] + negs[0] + negs[1]
    t = model.encode_prompts(caps)
    for arm, path in (("baseline", None), ("policy", ppath)):
        x = VW.arm_videos(None, prompt, settings, 32, entry.get("seed", 1), cache, path)
        with torch.no_grad():
            s = model.scale() * model.encode_video(x) @ t.T
        full = s[:, 0]
        n0 = len(negs[0])
        sn = [s[:, 1 : 1 + n0], s[:, 1 + n0 :]]
        margin = torch.stack([full - m.max(1).values for m in sn], 1)  # (N, 2)
        logp = torch.stack(
            [full - torch.logsumexp(torch.cat([full[:, None], m], 1), 1) for m in sn], 1
        )
        e = entry[arm]
        rows[arm].append(
            dict(
                full=full,
                sub=torch.tensor(e["sub"]),
                margin=margin,
                logp=logp,
                ok=torch.tensor(e["success"]),
                nobj=torch.tensor(e["object_ok"]).sum(1),
                present=torch.tensor(e["per_constraint"]["present_every_frame"]),
            )
        )

combos = {
    "full (old)": lambda r: r["full"],
    "min(sub)": lambda r: r["sub"].min(1).values,
    "min margin_k": lambda r: r["margin"].min(1).values,
    "full + min margin_k": lambda r: r["full"] + r["margin"].min(1).values,
    "full + min logp_k": lambda r: r["full"] + r["logp"].min(1).values,
    "min logp_k": lambda r: r["logp"].min(1).values,
    "sum logp_k": lambda r: r["logp"].sum(1),
}


def rep(scope, rb, rp):
    def cat(rs, k):
        return torch.cat([r[k] for r in rs])

    okb, okp = cat(rb, "ok"), cat(rp, "ok")
    nb, np_ = cat(rb, "nobj"), cat(rp, "nobj")
    pb, pp = cat(rb, "present"), cat(rp, "present")
    print(f"\n{scope}")
    print(
        "| score | AUC base | AUC policy | mean base | mean policy | P(pol>base) | mean by #obj ok 0/1/2 | AUC present base | AUC present pol |"
    )
    for name, fn in combos.items():
        sb, sp_ = torch.cat([fn(r) for r in rb]), torch.cat([fn(r) for r in rp])
        both, nn = torch.cat([sb, sp_]), torch.cat([nb, np_])

        def f(v):
            return "–" if v != v else f"{v:.3f}"

        by = " / ".join(
            f"{both[nn == k].mean():.2f}" if (nn == k).any() else "–" for k in (0, 1, 2)
        )
        print(
            f"| {name} | {f(rank_auc(sb, okb))} | {f(rank_auc(sp_, okp))} | {sb.mean():.2f} | {sp_.mean():.2f} | "
            f"{f(rank_auc(both, torch.cat([torch.zeros_like(okb), torch.ones_like(okp)])))} | {by} | {f(rank_auc(sb, pb))} | {f(rank_auc(sp_, pp))} |"
        )


rep("pooled", rows["baseline"], rows["policy"])
for i, e in enumerate(parts["videos"]):
    rep(
        f"{e['prompt']} (seed {e.get('seed', 1)})",
        [rows["baseline"][i]],
        [rows["policy"][i]],
    )
