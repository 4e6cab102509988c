"""Shared test fixtures: tiny seeded diffusers components built on the CPU, no downloads."""

import os

# Triton kernels run on the CPU through the interpreter in CI; must be set before triton is imported.
os.environ.setdefault("TRITON_INTERPRET", "1")
# Nothing in the test suite may reach a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
from findcli.testing import build_tiny_pipeline  # noqa: E402  (the recipe lives in the library for find bench --quick)


@pytest.fixture(scope="session")
def tiny_pipeline_dir(tmp_path_factory):
    """The tiny pipeline saved with save_pretrained: what `--model PATH` loads."""
    path = tmp_path_factory.mktemp("tiny-sd")
    build_tiny_pipeline().save_pretrained(path)
    return path
