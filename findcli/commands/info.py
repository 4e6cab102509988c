"""`find info`: devices, versions, and which kernel path / attention backend will be used and why."""

from __future__ import annotations

import importlib
import platform

from findcli.commands import options as o
from findcli.commands.common import console


def _version(mod: str) -> str:
    try:
        return getattr(importlib.import_module(mod), "__version__", "installed")
    except Exception as e:  # noqa: BLE001 - any import failure is reported as such
        return f"not usable ({type(e).__name__}: {str(e).splitlines()[0][:80] if str(e) else ''})"


def xformers_status() -> tuple[bool, str]:
    """(usable, reason): importable AND its attention kernel runs on this machine's GPU."""
    import torch

    try:
        import xformers.ops as xops
    except Exception as e:  # noqa: BLE001
        return False, f"not importable ({type(e).__name__}); `pip install 'findcli[xformers]'`"
    if not torch.cuda.is_available():
        return False, "importable, but xformers attention needs a CUDA GPU"
    try:
        q = torch.zeros(1, 16, 1, 64, device="cuda", dtype=torch.float16)
        xops.memory_efficient_attention(q, q, q)
        return True, "importable and its kernel runs"
    except Exception as e:  # noqa: BLE001
        return False, f"importable but its kernel fails here ({str(e).splitlines()[0][:100]})"


def info(
    device: o.Device = o.DeviceChoice.auto,
    kernels: o.Kernels = None,
) -> None:
    """Show devices, versions, the kernel path and the attention backend."""
    import torch

    from findcli import __version__
    from findcli.kernels import backend_info, set_backend
    from findcli import shapes
    from findcli.pipeline import resolve_device

    dev = resolve_device(device.value)
    console.print(f"findcli {__version__}   python {platform.python_version()}   {platform.platform()}")
    for mod in ("torch", "triton", "diffusers", "transformers", "open_clip", "xformers"):
        console.print(f"  {mod:<13} {_version(mod)}")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            console.print(f"  cuda:{i} {p.name}  {p.total_memory / 2**30:.0f} GiB  cc {p.major}.{p.minor}")
    else:
        console.print(f"  no CUDA device; {torch.get_num_threads()} CPU threads")
    console.print(f"device: {dev}")
    if kernels is not None:
        set_backend(kernels.value)
    try:
        b = backend_info(dev)
        console.print(f"kernels: requested={b['requested']} -> {b['resolved']} ({b['reason']})")
    except Exception as e:  # noqa: BLE001 - info reports, it does not fail
        console.print(f"kernels: {e}")
    ok, why = xformers_status()
    console.print(f"attention: {'xformers available' if ok else 'sdpa'} — PyTorch SDPA is the default; xformers {why}")
    from findcli.generators import supported_pipelines

    console.print(f"pipelines: {', '.join(supported_pipelines())}")
    for w in shapes.WORLDS.values():  # --model builtin, --model builtin-video
        have = (w.folder / "model_index.json").is_file()
        console.print(f"built-in model {w.id}: {f'{w.folder} ({w.model_version()})' if have else 'missing'}")
