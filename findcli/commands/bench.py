"""`find bench`: kernels, denoiser throughput, one training iteration end to end, and a steps sweep."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from findcli.commands import options as o
from findcli.commands.common import console


def bench(
    quick: Annotated[bool, typer.Option("--quick", help="CPU-sized run of every section, under a minute")] = False,
    only: Annotated[Optional[list[str]], typer.Option("--only", metavar="SECTIONS", help="sections to run: kernels, denoiser, "
                                                      "end_to_end, steps_sweep, compare (repeat or comma list; default all but "
                                                      "compare)")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="write the results as JSON (a section not "
                                                     "run is null); rewritten after each section")] = None,
    compile: Annotated[Optional[bool], typer.Option("--compile/--no-compile", help="run the torch.compile rows "
                                                    "(default: yes, except with --quick)")] = None,
    model_family: Annotated[Optional[list[str]], typer.Option(
        "--model-family", metavar="FAMILIES", help="denoiser section: run these pipeline families' rows instead "
        "of the sd rows (sd, sdxl, pixart, sd3, flux, animatediff, modelscope, cogvideox, wan; repeat or comma "
        "list). With --quick each family's tiny random pipeline (CPU-sized); otherwise its reference architecture "
        "with random weights at its native resolution (sd, sdxl, flux, wan), on a GPU only")] = None,
    device: o.Device = o.DeviceChoice.auto,
    dtype: o.Dtype = o.DtypeChoice.auto,
) -> None:
    """Benchmark rollouts and a FIND iteration; print tables, optionally write JSON."""
    from findcli import atomic
    from findcli.bench import parse_families, parse_sections, run_bench, tables
    from findcli.pipeline import resolve_device, resolve_dtype

    sections = parse_sections(only)
    families = parse_families(model_family)
    if json_out is not None:
        atomic.check_writable(json_out)
    dev = resolve_device(device.value)
    dt = resolve_dtype(dtype.value, dev)

    def write(result: dict) -> None:
        if json_out is not None:
            atomic.write_text(json_out, json.dumps(result, indent=2) + "\n")

    # Recorded in the JSON's meta: the real command line when run from a shell, else the command name.
    command = "find " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["bench"] else "find bench"
    result = run_bench(sections, quick, dev, dt, compile=compile, command=command, on_section=write,
                       families=families)
    if not console.is_terminal:
        console.width = max(console.width, 220)  # logs and pipes: keep each row on one line
    for table in tables(result):
        console.print(table)
    if json_out is not None:
        console.print(f"wrote {json_out}")
