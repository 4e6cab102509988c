"""Hand-check of the judge on generated images: draw 50 images from the built-in model (5 per prompt,
10 prompts over the categories), save them as numbered sheets for a person to label, and save the
judge's verdicts. After labelling, `--labels FILE` (one 0/1 per line, image order) prints agreement.

    python benchmarks/handcheck/make_handcheck.py --out benchmarks/handcheck
    python benchmarks/handcheck/make_handcheck.py --out benchmarks/handcheck --labels benchmarks/handcheck/labels.txt
"""

import argparse
import json
from pathlib import Path

import torch

PROMPTS = [
    "a red sphere", "a blue cube", "a red cube", "a green pyramid on a yellow cube",
    "a red cube on a blue sphere", "a blue cube to the left of a red sphere", "a purple sphere and a green cube",
    "two red spheres", "three blue cubes", "a yellow pyramid above a white sphere",
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="benchmarks/handcheck")
    ap.add_argument("--labels", default=None)
    args = ap.parse_args()
    out = Path(args.out)
    if args.labels:
        verdicts = json.loads((out / "judge.json").read_text())
        labels = [int(x.split("#")[0]) for x in Path(args.labels).read_text().split("\n") if x.split("#")[0].strip()]
        judge = [v["judge"] for v in verdicts]
        assert len(labels) == len(judge), (len(labels), len(judge))
        agree = sum(int(a) == int(b) for a, b in zip(labels, judge))
        tp = sum(1 for a, b in zip(labels, judge) if a and b)
        print(json.dumps({"images": len(labels), "agreement": agree / len(labels), "hand_success": sum(labels),
                          "judge_success": sum(judge), "both_success": tp}))
        return
    from PIL import Image, ImageDraw

    from findcli.pipeline import SamplerSettings, load_pipeline, to_pil
    from findcli.sampling import draw
    from findcli.shapes.judge import judge

    pipe = load_pipeline(None, torch.device("cpu"), torch.float32)
    verdicts, images = [], []
    for i, prompt in enumerate(PROMPTS):
        d = draw(pipe, prompt, SamplerSettings(20, 7.5, 0.0), 100 + i, 5, None, True)
        ok, _ = judge(d.baseline_images, prompt)
        for j in range(5):
            verdicts.append({"index": len(verdicts), "prompt": prompt, "judge": int(ok[j])})
        images += to_pil(d.baseline_images)
    # Sheets: one row per prompt, images scaled ×3, numbered.
    sheet = Image.new("RGB", (5 * 200 + 420, 10 * 200), "white")
    draw_ = ImageDraw.Draw(sheet)
    for k, img in enumerate(images):
        r, c = divmod(k, 5)
        sheet.paste(img.resize((192, 192), Image.NEAREST), (420 + c * 200, r * 200))
        draw_.text((420 + c * 200 + 4, r * 200 + 4), str(k), fill="yellow")
        if c == 0:
            draw_.text((6, r * 200 + 90), PROMPTS[r], fill="black")
    sheet.save(out / "sheet.png")
    (out / "judge.json").write_text(json.dumps(verdicts, indent=1))


if __name__ == "__main__":
    main()
