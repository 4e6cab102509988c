"""The `meta` key of a benchmark result: card, versions, date, command, the plan's switches."""

from __future__ import annotations

import os
import platform
from datetime import datetime, timezone

import torch

from findcli.bench.flops import peak_tflops
from findcli.bench.plans import Plan


def meta(plan: Plan, device: torch.device, dtype: torch.dtype, sections: list[str], command: str) -> dict:
    from findcli import __version__

    versions = {"findcli": __version__, "torch": torch.__version__, "python": platform.python_version()}
    for mod in ("diffusers", "transformers", "triton", "open_clip", "xformers"):
        try:
            versions[mod] = getattr(__import__(mod), "__version__", "installed")
        except Exception:  # noqa: BLE001 - absent or broken: recorded as not available
            versions[mod] = None
    return {
        "card": card_name(device), "device": str(device), "dtype": str(dtype).removeprefix("torch."),
        "peak_tflops": peak_tflops(card_name(device), dtype),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "command": command,
        "quick": plan.quick, "compile": plan.compile, "sections": sections, "section_s": {},
        "threads": 1 if (plan.quick and device.type == "cpu") else torch.get_num_threads(),
        "versions": versions, "notes": list(plan.notes),
    }


def card_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{os.cpu_count()}-core CPU ({platform.machine()}, no GPU)"
