"""FIND vs DPOK/DDPO-style LoRA fine-tuning, best-of-N and ReNO on the built-in model (issue 13):
same prompts, reward (the built-in detector, differentiable for ReNO), judge, one method after another
on this machine. Thin entry point over findcli.bench.compare (also `find bench --only compare`).

    python benchmarks/compare.py --budget-s 600 --json benchmarks/results/compare.json \
        --markdown benchmarks/results/compare.md --png benchmarks/results/compare.png
    python benchmarks/compare.py --quick        # minutes: small budget, few images
"""

from __future__ import annotations

import argparse
import json


def parse_overrides(items: list[str], ap: argparse.ArgumentParser) -> dict:
    """["dpok.lr=3e-4", ...] -> {"dpok": {"lr": 3e-4}}; a malformed item is a one-line usage error."""
    from findcli.bench.compare import METHODS

    out: dict = {}
    for item in items:
        key, eq, raw = item.partition("=")
        method, dot, name = key.partition(".")
        if not eq or not dot or not name or method not in METHODS:
            ap.error(f"--set {item!r}: write METHOD.KEY=VALUE with METHOD one of {', '.join(METHODS)}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out.setdefault(method, {})[name] = value
    return out


def main(argv=None) -> None:
    from findcli.bench.compare import METHODS, CompareConfig

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", nargs="*", default=list(CompareConfig.prompts))
    ap.add_argument("--methods", default=",".join(METHODS), help="comma list of " + ", ".join(METHODS))
    ap.add_argument("--budget-s", type=float, default=CompareConfig.budget_s)
    ap.add_argument("--eval-every", type=int, default=CompareConfig.eval_every)
    ap.add_argument("--eval-n", type=int, default=CompareConfig.eval_n)
    ap.add_argument("--n-candidates", type=int, default=CompareConfig.n_candidates)
    ap.add_argument("--reno-iterations", type=int, default=CompareConfig.reno_iterations)
    ap.add_argument("--reno-n", type=int, default=None, help="images ReNO optimises (default: --eval-n)")
    ap.add_argument("--no-features", action="store_true",
                    help="skip the feature diversity (the built-in CLIP's image features)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="budget 60 s, eval 8 images every 5 steps, N 4, ReNO 5")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="METHOD.KEY=VALUE",
                    help="override one documented setting of one method (repeatable), e.g. --set dpok.lr=3e-4; "
                         "the value is read as JSON (numbers, true/false, null) or else kept as a string")
    ap.add_argument("--tuned", action="store_true",
                    help="DPOK/DDPO at the settings chosen on the tuning prompt (findcli.bench.compare.TUNED) "
                         "instead of the published ones; --set still overrides")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json")
    ap.add_argument("--markdown")
    ap.add_argument("--png")
    args = ap.parse_args(argv)
    from findcli import atomic
    from findcli.bench.compare import markdown, plot, run_compare
    from findcli.bench.meta import card_name
    from findcli.pipeline import load_runtime
    from findcli import shapes

    cfg = CompareConfig(prompts=tuple(args.prompts), methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()),
                        budget_s=args.budget_s, eval_every=args.eval_every, eval_n=args.eval_n,
                        n_candidates=args.n_candidates, reno_iterations=args.reno_iterations, seed=args.seed,
                        reno_n=args.reno_n)
    cfg.overrides = parse_overrides(args.overrides, ap)
    if args.tuned:
        from findcli.bench.compare import TUNED

        cfg.overrides = {m: {**TUNED.get(m, {}), **cfg.overrides.get(m, {})} for m in {*TUNED, *cfg.overrides}}
    if args.quick:
        cfg.budget_s, cfg.eval_every, cfg.eval_n, cfg.n_candidates, cfg.reno_iterations = 60.0, 5, 8, 4, 5
    dev, _, pipe, _ = load_runtime(None, args.device)
    reward = shapes.detector_reward(dev)  # differentiable in the image (ReNO needs it); the default reward
    if not args.no_features:
        from findcli.rewards import ClipScore

        clip = ClipScore("builtin", dev, None).scorer  # the built-in CLIP: a feature space, not the reward

        def builtin_clip_features(images):
            return clip.image_features(images)

        cfg.features = builtin_clip_features
    meta = {"card": card_name(dev), "device": str(dev), "command": "python benchmarks/compare.py "
            + " ".join(argv if argv is not None else __import__("sys").argv[1:])}

    def save_partial(partial: dict) -> None:  # a long run keeps what it has measured so far
        if args.json:
            atomic.write_text(args.json, json.dumps({**partial, "meta": meta}, indent=2) + "\n")

    result = run_compare(pipe, reward, cfg, log=lambda s: print(s, flush=True), progress=save_partial)
    result["meta"] = meta
    print(markdown(result))
    if args.json:
        atomic.write_text(args.json, json.dumps(result, indent=2) + "\n")
    if args.markdown:
        atomic.write_text(args.markdown, markdown(result))
    if args.png:
        plot(result, args.png)


if __name__ == "__main__":
    main()
