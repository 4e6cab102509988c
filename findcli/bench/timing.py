"""The one timing helper of `find bench`: warm-up first, CUDA synchronised around every timed call, medians.

Every measured median in the benchmarks (rollouts, the UNet forward, the policy kernels, the copy
bandwidth) goes through `time_call`. One-shot wall times (a section, building a model, a short FIND
run) are plain `time.perf_counter` differences: there is nothing to warm up or take a median of.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from typing import Callable, NamedTuple

import torch

MIN_REPS = 3  # rollout rows: at least this many timed calls...
MAX_REPS = 30  # ...and at most this many, within the row's budget


class Timing(NamedTuple):
    first_s: float  # the first call, timed on its own: the warm-up (with torch.compile, the compilation)
    median_s: float  # median of the timed calls
    reps: int  # timed calls; -1 when triton.testing.do_bench chose its own count


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op off CUDA)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device, budget_s: float, *, warmup: int = 1,
              min_reps: int = MIN_REPS, max_reps: int | None = MAX_REPS, do_bench: bool = False,
              do_bench_rep_ms: int | None = None) -> Timing:
    """Time `fn()`: `warmup` untimed-for-the-median calls (the first timed alone, as `first_s`), then the median.

    The median is over at least `min_reps` synchronised `time.perf_counter` calls, more while the
    timed calls stay under `budget_s` seconds (and under `max_reps`; None: no cap). do_bench=True on
    CUDA instead takes the median of `triton.testing.do_bench` (for calls of milliseconds; it warms up
    and picks its count itself, over `do_bench_rep_ms`, default max(100, 1000·budget_s)) after the
    first call; without triton it falls back to the loop."""
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    first = time.perf_counter() - t0
    if do_bench and device.type == "cuda":
        try:
            import triton.testing
        except ImportError:
            pass
        else:
            rep = do_bench_rep_ms if do_bench_rep_ms is not None else max(100, int(1000 * budget_s))
            ms = triton.testing.do_bench(fn, warmup=25, rep=rep, return_mode="median")
            return Timing(first, float(ms) / 1e3, -1)
    for _ in range(warmup - 1):
        fn()
    sync(device)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_reps or (time.perf_counter() - start < budget_s
                                    and (max_reps is None or len(times) < max_reps)):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return Timing(first, statistics.median(times), len(times))


@contextlib.contextmanager
def threads_for(quick: bool, device: torch.device):
    """Quick runs on a CPU are single-threaded (restored after): on shared cores, intra-op threads turn
    millisecond calls into stalls."""
    threads = torch.get_num_threads()
    if quick and device.type == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
