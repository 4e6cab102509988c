"""Hand check of the motion judge on the built-in video generator's own videos (issue 14).

Draws (or reuses from benchmarks/video_world.py's cache) the baseline videos of 30 items, find eval's
paired draw at eval seed 0 from N(0, I), the generator's default sampler, and writes one sheet per
prompt (a row of 8 frames per video, 80 px, numbered) for a person to label, plus the judge's verdicts
in a separate file that the person should not open before labelling. Then `--labels FILE` (one 0/1 per
line, sheet order, '#' starts a comment) prints the agreement.

    python benchmarks/handcheck/video_handcheck.py          # -> benchmarks/handcheck/video/<model_version>/
    python benchmarks/handcheck/video_handcheck.py --labels benchmarks/handcheck/video/<model_version>/labels.txt
"""

import argparse
import json
import sys
from pathlib import Path

import torch

# (prompt, how many of its first videos): the items of the first hand check (RESULTS.md §11), 30 in all.
ITEMS = [("a red sphere moving right", 8), ("a blue cube moving left", 7), ("a red sphere moving left", 5),
         ("a green pyramid moving down", 5), ("a red cube moving to the left", 5)]


def agreement(out: Path, labels_file: Path) -> dict:
    verdicts = json.loads((out / "judge.json").read_text())
    lines = [x.split("#")[0].strip() for x in labels_file.read_text().splitlines()]
    labels = [int(x) for x in lines if x in ("0", "1")]
    if len(labels) != sum(1 for x in lines if x):
        sys.exit(f"error: {labels_file} has a label that is not 0 or 1; one 0/1 per line, '#' starts a comment")
    judge = [v["judge"] for v in verdicts["videos"]]
    if len(labels) != len(judge):
        sys.exit(f"error: {labels_file} has {len(labels)} labels for {len(judge)} videos; one 0/1 per line")
    disagree = [v["item"] for v, h in zip(verdicts["videos"], labels) if int(v["judge"]) != h]
    return {"model_version": verdicts["model_version"], "videos": len(labels),
            "agreement": sum(int(a) == int(b) for a, b in zip(labels, judge)) / len(labels),
            "hand_success": sum(labels), "judge_success": sum(judge),
            "both_success": sum(1 for a, b in zip(labels, judge) if a and b), "disagree": disagree}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="default: benchmarks/handcheck/video/<the shipped model_version>")
    ap.add_argument("--labels", default=None, help="after labelling: print the agreement with the judge")
    ap.add_argument("--cache", default="runs/video/videos", help="benchmarks/video_world.py's video cache")
    args = ap.parse_args()
    from findcli import shapes

    world = shapes.world_of("builtin-video")
    version = world.model_version()
    out = Path(args.out or f"benchmarks/handcheck/video/{version}")
    if args.labels:
        print(json.dumps(agreement(out, Path(args.labels))))
        return
    from PIL import Image, ImageDraw

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from video_world import arm_settings, arm_videos

    from findcli import atomic
    from findcli.pipeline import load_pipeline, to_pil

    settings = arm_settings(world, None)
    pipe = None

    def get_pipe():
        nonlocal pipe
        if pipe is None:
            pipe = load_pipeline(str(world.model_dir()), torch.device("cpu"), torch.float32)
        return pipe

    out.mkdir(parents=True, exist_ok=True)
    verdicts, cell = [], 80
    for s, (prompt, k) in enumerate(ITEMS):
        videos = arm_videos(get_pipe, prompt, settings, 32, 0, Path(args.cache) / version)[:k]
        ok, _ = world.judge_images(videos, prompt)
        frames = videos.shape[1]
        sheet = Image.new("RGB", (60 + frames * (cell + 4), 30 + k * (cell + 6)), "white")
        pen = ImageDraw.Draw(sheet)
        pen.text((6, 8), f"{prompt}  ({version}, eval seed 0)", fill="black")
        for j in range(k):
            y = 30 + j * (cell + 6)
            pen.text((8, y + cell // 2 - 6), f"#{len(verdicts)}", fill="black")
            for f, img in enumerate(to_pil(videos[j])):
                sheet.paste(img.resize((cell, cell), Image.NEAREST), (60 + f * (cell + 4), y))
            verdicts.append({"item": len(verdicts), "prompt": prompt, "video": j, "judge": int(ok[j])})
        atomic.write_with(out / f"sheet_{s}.png", lambda p, im=sheet: im.save(p, format="PNG"))
    atomic.write_text(out / "judge.json", json.dumps({"model_version": version, "eval_seed": 0, "videos": verdicts}, indent=1))
    print(f"{len(verdicts)} videos on {len(ITEMS)} sheets in {out}; label them before opening judge.json")


if __name__ == "__main__":
    main()
