"""Blind hand count of generated count images, and what it says about the judge and the detector
(issue 10: the reward AUC on the count templates, RESULTS.md §6.12).

    # 1. sheets: 64 random images per (draw seed, template) from reward_auc.py's cache, shown with
    #    their index and the prompt's colour and shape only (no judge verdict, no score)
    python benchmarks/handcheck/counts/count_handcheck.py sheets --sets 4:"count 3" 1:"count 4" 4:"count 4" \
        3:"count 3" 3:"count 4"   # sets appended later keep the earlier sheets and items unchanged
    # 2. a person writes, per sheet, the number of objects of the named colour and shape in each
    #    image, -1 where it cannot be told (a smear that may be one or two): labels_<k>.txt
    #    (labels_4_first.txt, labels_5_first.txt: sheets 4-5 as first labelled, before the ten
    #    pink-white "purple cubes" on them were marked -1, their colour not purple to a person;
    #    RESULTS.md §6.12 reports both)
    # 3. agreement and AUCs
    python benchmarks/handcheck/counts/count_handcheck.py eval [--detector DIR] [--count-mix W] [--json out.json]

`eval` reports per set: the judge's agreement with the hand verdict (count == k); the AUC of the
detector's score for the HAND verdict; the AUC of the detector's score and of the hand verdict
itself for the JUDGE's verdict (the second is what a perfect reward would score against the judge,
i.e. the ceiling the judge leaves any reward); and how often the detector's two count estimates
(distinct instances, rounded; density mass, rounded) equal the hand count.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from reward_auc import pick_prompts, slug  # noqa: E402

PER_SET = 64
PER_SHEET = 32


def load_images(cache: Path, seed: int, prompt: str) -> torch.Tensor:
    f = cache / f"{slug(prompt)}_n64_s{seed}.pt"
    if not f.exists():
        sys.exit(f"error: {f} is missing; run `python benchmarks/reward_auc.py --seed {seed} --generate-only` first")
    return torch.load(f, weights_only=True)


def sheets(a) -> None:
    from PIL import Image, ImageDraw

    items = []
    g = torch.Generator().manual_seed(a.sample_seed)
    for spec in a.sets:
        seed, template = spec.split(":", 1)
        block = [(int(seed), p, i) for p in pick_prompts(4, int(seed))[template] for i in range(64)]
        items += [block[j] for j in torch.randperm(len(block), generator=g)[:PER_SET].tolist()]
    (HERE / "items.json").write_text(json.dumps({"sets": a.sets, "sample_seed": a.sample_seed, "items": items}, indent=0))
    cache, loaded = Path(a.cache), {}
    cols, px = 8, 200
    for k in range(0, len(items), PER_SHEET):
        chunk = items[k : k + PER_SHEET]
        sheet = Image.new("RGB", (cols * px, (len(chunk) + cols - 1) // cols * (px + 16)), "white")
        draw = ImageDraw.Draw(sheet)
        for j, (seed, p, i) in enumerate(chunk):
            if (seed, p) not in loaded:
                loaded[(seed, p)] = load_images(cache, seed, p)
            im = (loaded[(seed, p)][i].clamp(0, 1) * 255).byte().permute(1, 2, 0).numpy()
            x, y = j % cols * px, j // cols * (px + 16)
            sheet.paste(Image.fromarray(im).resize((px, px), Image.BICUBIC), (x, y + 16))
            draw.text((x + 2, y + 2), f"#{k + j} {' '.join(p.split()[1:])}", fill="black")
        sheet.save(HERE / f"sheet_{k // PER_SHEET}.jpg", quality=90)
    print(f"{len(items)} images on {(len(items) + PER_SHEET - 1) // PER_SHEET} sheets in {HERE}")


def evaluate(a) -> None:
    import findcli.shapes.detector as D
    from findcli.evaluation import rank_auc
    from findcli.shapes.judge import judge
    from findcli.shapes.world import parse_prompt

    torch.set_num_threads(1)
    if a.count_mix is not None:
        D.COUNT_MIX = a.count_mix
    meta = json.loads((HERE / "items.json").read_text())
    items = meta["items"]
    hand = []
    for k in range(0, len(items), PER_SHEET):
        f = HERE / f"labels_{k // PER_SHEET}.txt"
        hand += [int(t) for t in f.read_text().split()]
    if len(hand) != len(items):
        sys.exit(f"error: {len(hand)} labels for {len(items)} images; one count (or -1) per image, in sheet order")
    model = D.load_detector(a.detector)
    per_prompt, rows = {}, []
    for (seed, p, i), h in zip(items, hand):
        if (seed, p) not in per_prompt:
            x = load_images(Path(a.cache), seed, p)
            spec = parse_prompt(p)
            c = D.class_index(spec.objects[0].colour, spec.objects[0].shape)
            s = D.summarise(*model(x))
            per_prompt[(seed, p)] = (judge(x, p)[0], D.prompt_score(s, spec)["score"], D.distinct_count(s, c),
                                     s["count"][:, c], spec.count)
        ok, score, distinct, mass, k = per_prompt[(seed, p)]
        rows.append(dict(seed=seed, prompt=p, index=i, hand=h, k=k, judge=bool(ok[i]), score=score[i].item(),
                         distinct=distinct[i].item(), mass=mass[i].item()))
    out = []
    for spec in meta["sets"]:
        seed, template = spec.split(":", 1)
        k = int(template.split()[1])  # "count 3" -> 3
        mine = [r for r in rows if r["seed"] == int(seed) and r["k"] == k]
        lab = [r for r in mine if r["hand"] >= 0]
        truth = torch.tensor([r["hand"] == r["k"] for r in lab])
        jv = torch.tensor([r["judge"] for r in lab])
        score = torch.tensor([r["score"] for r in lab])
        hc = torch.tensor([float(r["hand"]) for r in lab])
        res = {
            "set": spec, "images": len(mine), "labelled": len(lab), "ambiguous": len(mine) - len(lab),
            "hand_success": truth.float().mean().item(), "judge_success": jv.float().mean().item(),
            "judge_agrees_with_hand": (truth == jv).float().mean().item(),
            "judge_ok_hand_not": int((jv & ~truth).sum()), "hand_ok_judge_not": int((truth & ~jv).sum()),
            "auc_detector_for_hand": rank_auc(score, truth),
            "auc_detector_for_judge": rank_auc(score, jv),
            "auc_hand_for_judge": rank_auc(truth.float(), jv),
            "distinct_equals_hand": (torch.tensor([r["distinct"] for r in lab]).round() == hc).float().mean().item(),
            "mass_equals_hand": (torch.tensor([r["mass"] for r in lab]).round() == hc).float().mean().item(),
        }
        out.append(res)
        print(json.dumps(res))
    print("\n| set | labelled (ambiguous) | judge agrees with hand | AUC detector for hand | AUC detector for judge | AUC of the hand verdict for judge (a perfect reward) |")
    print("|---|---|---|---|---|---|")
    for r in out:
        print(f"| seed {r['set'].replace(':', ', ')} | {r['labelled']} ({r['ambiguous']}) | {r['judge_agrees_with_hand']:.3f} | "
              f"{r['auc_detector_for_hand']:.3f} | {r['auc_detector_for_judge']:.3f} | {r['auc_hand_for_judge']:.3f} |")
    if a.json:
        Path(a.json).write_text(json.dumps({"detector": a.detector or "shipped", "count_mix": D.COUNT_MIX, "sets": out,
                                            "rows": rows}, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sheets")
    s.add_argument("--sets", nargs="+", required=True, help='SEED:TEMPLATE, e.g. 4:"count 3"')
    s.add_argument("--sample-seed", type=int, default=123)
    s.add_argument("--cache", default=str(ROOT / "runs/reward_auc/images"))
    e = sub.add_parser("eval")
    e.add_argument("--detector", default=None, help="a detector folder (default: the shipped one)")
    e.add_argument("--cache", default=str(ROOT / "runs/reward_auc/images"))
    e.add_argument("--count-mix", type=float, default=None,
                   help="the detector's COUNT_MIX for its score (default: the shipped value; 1 = the distinct count alone, the rule before 2026-12-05)")
    e.add_argument("--json", default=None)
    a = ap.parse_args()
    sheets(a) if a.cmd == "sheets" else evaluate(a)


if __name__ == "__main__":
    main()
