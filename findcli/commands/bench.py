"""`find bench`: placeholder until the benchmark sections land."""

from findcli.errors import FindError


def bench() -> None:
    """Benchmarks (kernels, denoiser, end-to-end, steps sweep)."""
    raise FindError("find bench is not implemented in this build yet")
