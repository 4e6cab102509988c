"""Where the Triton kernel tests run: the CPU under TRITON_INTERPRET=1 (CI), else CUDA, else skipped."""

import pytest
import torch

from findcli.kernels import dispatch

if not dispatch.HAS_TRITON:
    DEVICE, RUNNABLE, WHY = "cpu", False, "triton is not importable"
elif dispatch._kernels_interpreted():
    DEVICE, RUNNABLE, WHY = "cpu", True, ""
else:
    DEVICE, RUNNABLE, WHY = "cuda", torch.cuda.is_available(), "kernels compiled for GPU but no CUDA device"
requires_triton = pytest.mark.skipif(not RUNNABLE, reason=WHY)
