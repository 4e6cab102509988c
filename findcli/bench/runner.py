"""Running sections: `--only` parsing, `run_bench` (what `find bench` calls) and the scripts' entry point."""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from typing import Callable

import torch

from findcli.bench import plans
from findcli.bench.meta import meta
from findcli.bench.models import Models
from findcli.bench.plans import OPTIONAL_SECTIONS, SECTIONS
from findcli.bench.timing import threads_for
from findcli.errors import FindError


def parse_sections(values: list[str] | None) -> list[str]:
    """--only values (repeatable, or comma lists) -> sections in canonical order; all when empty."""
    if not values:
        return list(SECTIONS)
    known = SECTIONS + OPTIONAL_SECTIONS
    wanted = []
    for value in values:
        for name in value.split(","):
            name = name.strip().replace("-", "_")
            if not name:
                continue
            if name not in known:
                raise FindError(f"unknown benchmark section {name!r} in --only; choose from {', '.join(known)} "
                                "(repeat --only or give a comma list)")
            wanted.append(name)
    if not wanted:
        raise FindError(f"--only named no section; choose from {', '.join(known)}")
    return [s for s in known if s in wanted]


def parse_families(values: list[str] | None) -> list[str]:
    """--model-family values (repeatable, or comma lists) -> families in the order given, without repeats;
    [] when none. The families are findcli.generators.FAMILIES'."""
    from findcli.generators import FAMILIES

    wanted: list[str] = []
    for value in values or []:
        for name in value.split(","):
            name = name.strip().lower()
            if not name:
                continue
            if name not in FAMILIES:
                raise FindError(f"unknown model family {name!r} in --model-family; choose from {', '.join(FAMILIES)} "
                                "(repeat --model-family or give a comma list)")
            if name not in wanted:
                wanted.append(name)
    if values and not wanted:
        raise FindError(f"--model-family named no family; choose from {', '.join(FAMILIES)}")
    return wanted


def run_bench(sections: list[str], quick: bool, device: torch.device, dtype: torch.dtype,
              compile: bool | None = None, command: str = "find bench",
              log: Callable[[str], None] | None = None,
              on_section: Callable[[dict], None] | None = None,
              families: list[str] | None = None) -> dict:
    """Run the chosen sections; returns {"meta", "kernels", "denoiser", "end_to_end", "steps_sweep"}.

    The plan is `plans.QUICK` or `plans.FULL`, read at call time (tests shrink it there).
    `on_section(result)` is called after each section with the result so far (for incremental JSON).
    `families` (--model-family, parsed by parse_families): the denoiser section runs those families'
    rows instead of its sd rows (findcli.bench.denoiser.run_families).
    """
    from findcli.bench import kernels  # imported on use: it loads the Triton kernels
    from findcli.bench.denoiser import denoiser
    from findcli.bench.end_to_end import end_to_end
    from findcli.bench.steps_sweep import steps_sweep

    plan = plans.QUICK if quick else plans.FULL
    if compile is not None:
        plan = replace(plan, compile=compile)
    log = log or _stderr
    result: dict = {"meta": meta(plan, device, dtype, sections, command)}
    result["meta"]["model_families"] = list(families or [])
    if families and not plan.quick:
        result["meta"]["notes"].append(
            "--model-family rows at full size: each family's denoiser and VAE at its reference checkpoint's "
            "published architecture with random (seeded) weights, at its native resolution; text encoders one "
            "layer deep at the hidden sizes the denoiser reads (they run once per prompt, not per image)")
    result.update({s: None for s in SECTIONS})  # "compare" appears only when run (--only compare)
    models = Models(device, dtype, log)
    with threads_for(plan.quick, device):
        for section in sections:
            log(f"[{section}]")
            t0 = time.perf_counter()
            if section == "kernels":
                result["kernels"] = kernels.run(quick, str(device))
            elif section == "denoiser":
                result["denoiser"] = denoiser(plan, models, log, families=families)
            elif section == "end_to_end":
                result["end_to_end"] = end_to_end(plan, models, log)
            elif section == "steps_sweep":
                result["steps_sweep"] = steps_sweep(plan, models, log)
            elif section == "compare":
                result["compare"] = compare_section(plan, device, log)
            result["meta"]["section_s"][section] = round(time.perf_counter() - t0, 2)
            if on_section is not None:
                on_section(result)
    return result


def compare_section(plan, device: torch.device, log: Callable[[str], None]) -> dict:
    """`--only compare` on the built-in model with the detector reward (findcli.bench.compare);
    --quick: 60 s of training per method, 8 eval images every 5 steps, best-of-4, 5 ReNO iterations."""
    from findcli import shapes
    from findcli.bench.compare import CompareConfig, run_compare
    from findcli.pipeline import load_pipeline

    try:
        pipe = load_pipeline(None, device, torch.float32)
    except FindError as e:
        return {"status": f"skipped: {e}"}
    cfg = CompareConfig()
    if plan.quick:
        cfg.budget_s, cfg.eval_every, cfg.eval_n, cfg.n_candidates, cfg.reno_iterations = 60.0, 5, 8, 4, 5
    return run_compare(pipe, shapes.detector_reward(device), cfg, log=log)


def _stderr(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def script_main(section: str, argv: list[str] | None = None) -> int:
    """The `python benchmarks/bench_<section>.py` entry point: one section, a table, optional JSON."""
    import argparse
    import json

    from rich.console import Console

    from findcli.bench.tables import tables
    from findcli.pipeline import resolve_device, resolve_dtype

    parser = argparse.ArgumentParser(description=f"find bench --only {section}")
    parser.add_argument("--quick", action="store_true", help="CPU-sized run (under a minute)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--dtype", default="auto", help="auto (fp16 on CUDA, fp32 on CPU), fp32, fp16 or bf16")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    parser.add_argument("--json", default=None, help="write the result here as JSON")
    if section == "denoiser":
        parser.add_argument("--model-family", action="append", default=None, metavar="FAMILIES",
                            help="run these pipeline families' rows instead of the sd rows (repeat or comma "
                                 "list): tiny random pipelines with --quick, else each reference architecture "
                                 "with random weights at its native resolution (GPU only)")
    args = parser.parse_args(argv)
    try:
        families = parse_families(getattr(args, "model_family", None))
        dev = resolve_device(args.device)
        result = run_bench([section], args.quick, dev, resolve_dtype(args.dtype, dev),
                           compile=False if args.no_compile else None, command=" ".join(["python", *sys.argv]),
                           families=families)
    except FindError as e:
        _stderr(f"error: {e}")
        return 2
    if args.json:
        from findcli.atomic import write_text

        write_text(args.json, json.dumps(result, indent=2) + "\n")
    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = max(console.width, 220)  # logs and pipes: keep each row on one line
    for table in tables(result):
        console.print(table)
    return 0
