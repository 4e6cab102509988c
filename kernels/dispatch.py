"""Choose once between the fused Triton kernels and the PyTorch reference, with one override.

Rule: ``auto`` takes Triton when it is importable and the tensors live on CUDA, else the PyTorch
reference. The override is ``set_backend("auto"|"triton"|"torch")`` (the CLI's ``--kernels``) or,
when ``set_backend`` was never called, the environment variable ``FIND_KERNELS`` (how tests pick).
Forcing ``triton`` where it cannot run raises ``FindError``; it never falls back silently.

The one exception to "Triton needs CUDA": with ``TRITON_INTERPRET=1`` set *before* the kernel modules
are imported, ``@triton.jit`` builds interpreted kernels that run on CPU tensors (how CI tests them).
Triton decides this when a kernel is decorated, so the check looks at what the kernels were built as,
not only at the environment now.

This module also gives kernel files a stand-in ``triton`` / ``tl`` when Triton is not installed, so
they still import and their PyTorch references still work.
"""

from __future__ import annotations

import os

import torch

from findcli.errors import FindError

try:  # Triton is Linux-only and optional: the PyTorch reference covers everything without it.
    import triton
    import triton.language as tl

    HAS_TRITON = True
    _IMPORT_ERROR = ""
except Exception as exc:  # noqa: BLE001 - ImportError, or a broken install raising something else
    HAS_TRITON = False
    _IMPORT_ERROR = f"{type(exc).__name__}: {exc}"

    class _MissingTriton:
        """Stands in for `triton` and `triton.language` so kernel modules import; nothing launches."""

        def jit(self, fn=None, **_kwargs):
            return fn if fn is not None else (lambda f: f)

        def __getattr__(self, _name):  # tl.constexpr and friends, used only as annotations
            return None

    triton = _MissingTriton()
    tl = _MissingTriton()

BACKENDS = ("auto", "triton", "torch")

_requested: str | None = None  # set by set_backend; None means "read FIND_KERNELS, default auto"


def set_backend(name: str) -> None:
    """Override the choice for every later call: "auto", "triton" or "torch"."""
    global _requested
    name = str(name).strip().lower()
    if name not in BACKENDS:
        raise FindError(f"unknown kernels backend {name!r}: use one of auto, triton, torch.")
    _requested = name


def requested_backend() -> str:
    """What was asked for: set_backend's value, else FIND_KERNELS, else "auto"."""
    if _requested is not None:
        return _requested
    env = os.environ.get("FIND_KERNELS", "").strip().lower()
    if not env:
        return "auto"
    if env not in BACKENDS:
        raise FindError(f"FIND_KERNELS={env!r} is not a kernels backend: set it to auto, triton or torch.")
    return env


def _kernels_interpreted() -> bool:
    """True when our @triton.jit kernels were built by the interpreter (they then run on CPU)."""
    from triton.runtime.interpreter import InterpretedFunction

    from findcli.kernels import sample

    return isinstance(sample._sample_fwd_kernel, InterpretedFunction)


def _as_device(device) -> torch.device:
    return device if isinstance(device, torch.device) else torch.device(device)


def _triton_status(device: torch.device) -> tuple[bool, str]:
    """(can the Triton kernels run on tensors on `device`, a sentence saying why)."""
    if not HAS_TRITON:
        return False, f"Triton is not importable ({_IMPORT_ERROR})"
    if device.type == "cuda":
        return True, "Triton is importable and the tensors are on CUDA"
    if _kernels_interpreted():
        return True, "Triton kernels were built by the interpreter (TRITON_INTERPRET=1), which runs on CPU tensors"
    if os.environ.get("TRITON_INTERPRET") == "1":
        return False, (
            "TRITON_INTERPRET=1 was set after findcli.kernels was imported, so the kernels were built for a GPU"
        )
    return False, f"the tensors are on {device.type}, and Triton needs CUDA (or TRITON_INTERPRET=1 for CPU)"


def _resolve(device) -> tuple[str, str, str | None]:
    """(requested, resolved or None, reason). resolved is None when forced Triton cannot run."""
    device = _as_device(device)
    requested = requested_backend()
    ok, why = _triton_status(device)
    if requested == "torch":
        return requested, "torch", "the PyTorch reference was requested"
    if requested == "triton":
        if ok:
            return requested, "triton", f"Triton was requested, and {why}"
        return requested, None, why
    # auto: Triton only for CUDA tensors, even when the interpreter could run it on CPU (it is slow there).
    if ok and device.type == "cuda":
        return requested, "triton", why
    if device.type != "cuda":
        return requested, "torch", f"the tensors are on {device.type}, so the PyTorch reference runs"
    return requested, "torch", f"{why}, so the PyTorch reference runs"


def get_backend(device) -> str:
    """The backend ("triton" or "torch") that runs for tensors on `device`.

    Raises FindError when "triton" is forced but cannot run there.
    """
    requested, resolved, why = _resolve(device)
    if resolved is None:
        raise FindError(
            f"--kernels triton was requested but cannot run: {why}; "
            "use --kernels auto or torch (or FIND_KERNELS=torch), or run on a CUDA device."
        )
    return resolved


def backend_info(device) -> dict:
    """{"requested", "resolved", "reason"} for `find info`; resolved is None when forced Triton cannot run."""
    try:
        requested, resolved, why = _resolve(device)
    except FindError as exc:  # a bad FIND_KERNELS value: report it rather than crash `find info`
        return {"requested": os.environ.get("FIND_KERNELS"), "resolved": None, "reason": str(exc)}
    reason = why[0].upper() + why[1:] + "."
    if resolved is None:
        reason = f"Triton was requested but cannot run: {why}."
    return {"requested": requested, "resolved": resolved, "reason": reason}
