"""Shared test fixtures: tiny seeded diffusers components built on the CPU, no downloads; the kernels' backend reset."""

import os

# Nothing in the test suite may reach a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402  (does not import triton)

# Triton kernels: compiled where CUDA exists, so a GPU machine tests what it runs; without CUDA (CI) the
# interpreter runs them on CPU tensors. Triton decides when a kernel is decorated, so this must come
# before findcli.kernels is imported; TRITON_INTERPRET set in the environment (1 or 0) wins either way.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
from findcli.testing import build_tiny_pipeline  # noqa: E402  (the recipe lives in the library for find bench --quick)


@pytest.fixture(scope="session")
def tiny_pipeline_dir(tmp_path_factory):
    """The tiny pipeline saved with save_pretrained: what `--model PATH` loads."""
    path = tmp_path_factory.mktemp("tiny-sd")
    build_tiny_pipeline().save_pretrained(path)
    return path


@pytest.fixture
def fresh_backend(monkeypatch):
    """The kernels backend as never set (no set_backend call, no FIND_KERNELS), restored after the test."""
    from findcli.kernels import dispatch

    monkeypatch.setattr(dispatch, "_requested", None)
    monkeypatch.delenv("FIND_KERNELS", raising=False)


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module's tests (restored after): on shared 2-core machines, intra-op
    threads on busy cores turn millisecond calls into stalls. Use with pytestmark = usefixtures."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
