"""Shared test fixtures: tiny seeded diffusers components built on the CPU, no downloads."""

import os

# Triton kernels run on the CPU through the interpreter in CI; must be set before triton is imported.
os.environ.setdefault("TRITON_INTERPRET", "1")
# Nothing in the test suite may reach a hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
