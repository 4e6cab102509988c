"""Section `kernels`: the policy's per-element work, PyTorch eager vs torch.compile vs the fused Triton kernels.

Ops, each at SD1.5 scale (K ∈ {8, 64}, D = 4×64×64) and video scale (K = 64, D = 4×16×64×64):
  sample       fwd:      z = μ + σ ε and the K log-densities                 (floor: write z, 4·K·D bytes)
  policy_loss  fwd:      PPO clipped surrogate + KL + diagnostics            (floor: read z, 4·K·D)
  policy_loss  fwd+bwd:  the same plus ∂/∂μ, ∂/∂log σ                       (floor: read z twice, 8·K·D)
  step         fwd+bwd:  sample, then the loss and its gradient (the engine's policy step; 12·K·D)
Times are medians (findcli.bench.timing.time_call): `triton.testing.do_bench` on CUDA,
`time.perf_counter` after warm-up on CPU. "GB/s" is the op's floor bytes (above) divided by the
median time, reported beside a device copy bandwidth (bytes read + written by `dst.copy_(src)`)
measured in the same run. torch.compile's first call (compilation) is timed apart and never enters
the medians.

`find bench --only kernels` and `python benchmarks/bench_kernels.py` both call `run(quick, device)`.
--quick: tiny sizes, CPU-friendly, finishes in seconds; PyTorch paths only unless CUDA is present.
"""

from __future__ import annotations

from datetime import datetime, timezone

import torch

from findcli.bench.plans import error_status
from findcli.bench.timing import Timing, threads_for, time_call
from findcli.kernels import dispatch
from findcli.kernels.policy_loss import policy_loss_torch, policy_loss_triton
from findcli.kernels.sample import HALF_LOG_2PI, sample_policy_torch, sample_policy_triton

FULL_SCALES = [("sd15", 8, 4 * 64 * 64), ("sd15", 64, 4 * 64 * 64), ("video", 64, 4 * 16 * 64 * 64)]
QUICK_SCALES = [("tiny", 4, 1024), ("tiny", 16, 4096)]
CLIP, KL_WEIGHT, SEED = 0.2, 0.01, 1234


def _time(fn, device: torch.device, quick: bool, warmup: int = 0) -> Timing:
    """time_call with the kernels' sizes: on CUDA do_bench's median (100 ms of calls); on a CPU
    2 (quick) or 5 warm-up calls, then at least 5 timed calls within 0.05 s (quick) or 0.5 s.
    `warmup` extra calls lead (torch.compile's first call, reported as first_s)."""
    return time_call(fn, device, 0.05 if quick else 0.5, warmup=warmup + (2 if quick else 5), min_reps=5,
                     max_reps=None, do_bench=True, do_bench_rep_ms=100)


def copy_bandwidth_gbps(device: torch.device, quick: bool) -> float:
    """Device copy bandwidth, counting bytes read plus bytes written (as the tutorial's GB/s do)."""
    n = (1 << 22) if quick or device.type != "cuda" else (1 << 28)  # 16 MiB / 1 GiB of fp32 on CUDA
    src = torch.empty(n, device=device, dtype=torch.float32).uniform_()
    dst = torch.empty_like(src)
    ms = 1e3 * _time(lambda: dst.copy_(src), device, quick).median_s
    return 2 * src.numel() * 4 / (ms * 1e-3) / 1e9


# ----------------------------------------------------------------------------------------------
# The implementations under test
# ----------------------------------------------------------------------------------------------


def _sample_global_rng(mu: torch.Tensor, log_sigma: torch.Tensor, k: int):
    """sample_policy_torch's math with the global RNG: torch.compile traces torch.randn into its own
    fused Philox kernel, whereas a torch.Generator argument would break the graph."""
    eps = torch.randn((k, mu.numel()), device=mu.device, dtype=torch.float32)
    z = mu + torch.exp(log_sigma) * eps
    e = (z - mu) * torch.exp(-log_sigma)
    logp = (-0.5 * e.square()).mean(-1) - log_sigma.mean() - HALF_LOG_2PI
    return z, logp


def _impls(device: torch.device, quick: bool) -> dict:
    """{impl: (sample_fn(mu, ls, k), loss_fn(z, mu, ls, logp_old, adv)) or a skip reason string}."""
    impls: dict = {
        "eager": (lambda mu, ls, k: sample_policy_torch(mu, ls, SEED, k),
                  lambda *a: policy_loss_torch(*a, CLIP, KL_WEIGHT)),
    }
    if quick and device.type != "cuda":
        impls["compile"] = "skipped: torch.compile on CPU is slow and not the target (quick mode)"
    else:
        loss_c = torch.compile(policy_loss_torch)
        impls["compile"] = (torch.compile(_sample_global_rng), lambda *a: loss_c(*a, CLIP, KL_WEIGHT))
    if not dispatch.HAS_TRITON:
        impls["triton"] = "skipped: triton is not importable"
    elif device.type != "cuda":
        impls["triton"] = "skipped: Triton kernels need CUDA (interpreter timings would be meaningless)"
    else:
        impls["triton"] = (lambda mu, ls, k: sample_policy_triton(mu, ls, SEED, k),
                           lambda *a: policy_loss_triton(*a, CLIP, KL_WEIGHT))
    return impls


def _cases(sample_fn, loss_fn, mu, log_sigma, k):
    """{(op, pass): (fn, floor bytes)} for one implementation at one scale."""
    d = mu.numel()
    with torch.no_grad():
        z, logp_old = sample_policy_torch(mu, log_sigma, SEED + 1, k)
    # Ratios spread around 1 so that some rows clip, as in training.
    logp_old = logp_old + 0.1 * torch.randn(k, device=mu.device)
    adv = torch.randn(k, device=mu.device)
    params = (mu, log_sigma)

    def sample_fwd():
        with torch.no_grad():
            return sample_fn(mu, log_sigma, k)

    def loss_fwd():
        with torch.no_grad():
            return loss_fn(z, mu, log_sigma, logp_old, adv)

    def loss_fwd_bwd():
        loss, _ = loss_fn(z, mu, log_sigma, logp_old, adv)
        return torch.autograd.grad(loss, params)

    def step():
        with torch.no_grad():
            zs, lp = sample_fn(mu, log_sigma, k)
        loss, _ = loss_fn(zs, mu, log_sigma, lp, adv)
        return torch.autograd.grad(loss, params)

    kd = 4 * k * d  # bytes of one fp32 K×D tensor
    return {
        ("sample", "fwd"): (sample_fwd, kd),
        ("policy_loss", "fwd"): (loss_fwd, kd),
        ("policy_loss", "fwd+bwd"): (loss_fwd_bwd, 2 * kd),
        ("step", "fwd+bwd"): (step, 3 * kd),
    }


# ----------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------


def run(quick: bool = False, device: str | None = None) -> dict:
    """Time every (scale, op, pass, implementation); return a JSON-serialisable dict."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    # Quick CPU runs are smoke tests on shared machines: intra-op threads on busy cores turn
    # microsecond ops into 100 ms stalls, so run single-threaded (restored after).
    with threads_for(quick, dev):
        return _run(quick, dev)


def _run(quick: bool, dev: torch.device) -> dict:
    torch.manual_seed(0)
    copy_gbps = copy_bandwidth_gbps(dev, quick)
    impls = _impls(dev, quick)
    rows = []
    for scale, k, d in QUICK_SCALES if quick else FULL_SCALES:
        mu = (0.1 * torch.randn(d, device=dev)).requires_grad_()
        log_sigma = (0.1 * torch.randn(d, device=dev)).requires_grad_()
        for impl, fns in impls.items():
            cases = _cases(*fns, mu, log_sigma, k) if not isinstance(fns, str) else None
            for op, pass_ in (("sample", "fwd"), ("policy_loss", "fwd"), ("policy_loss", "fwd+bwd"), ("step", "fwd+bwd")):
                row = {"scale": scale, "K": k, "D": d, "op": op, "pass": pass_, "impl": impl,
                       "ms": None, "floor_bytes": None, "gbps": None, "frac_of_copy": None, "compile_s": None}
                if cases is None:
                    rows.append({**row, "status": fns})
                    continue
                fn, nbytes = cases[(op, pass_)]
                row["floor_bytes"] = nbytes
                try:
                    # torch.compile's first call compiles: timed apart (first_s), never in the medians.
                    timing = _time(fn, dev, quick, warmup=1 if impl == "compile" else 0)
                except Exception as exc:  # noqa: BLE001 - report, keep benchmarking the rest
                    rows.append({**row, "status": error_status(exc)})
                    continue
                if impl == "compile":
                    row["compile_s"] = round(timing.first_s, 3)
                ms = 1e3 * timing.median_s
                gbps = nbytes / (ms * 1e-3) / 1e9
                rows.append({**row, "ms": round(ms, 5), "gbps": round(gbps, 2),
                             "frac_of_copy": round(gbps / copy_gbps, 4), "status": "ok"})
    return {
        "benchmark": "kernels",
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "triton": _triton_version(),
        "quick": quick,
        "copy_gbps": round(copy_gbps, 2),
        "rows": rows,
    }


def _triton_version() -> str | None:
    if not dispatch.HAS_TRITON:
        return None
    import triton

    return triton.__version__


def format_table(result: dict) -> str:
    head = f"{'scale':<6} {'K':>3} {'D':>7} {'op':<12} {'pass':<8} {'impl':<8} {'ms':>9} {'GB/s':>8} {'%copy':>6}  status"
    lines = [f"device: {result['device']}   copy bandwidth: {result['copy_gbps']} GB/s (read + write)", head]
    for r in result["rows"]:
        ms = f"{r['ms']:.4f}" if r["ms"] is not None else "-"
        gb = f"{r['gbps']:.1f}" if r["gbps"] is not None else "-"
        pc = f"{100 * r['frac_of_copy']:.1f}" if r["frac_of_copy"] is not None else "-"
        status = r["status"] + (f" (compile {r['compile_s']} s)" if r["compile_s"] is not None else "")
        lines.append(f"{r['scale']:<6} {r['K']:>3} {r['D']:>7} {r['op']:<12} {r['pass']:<8} {r['impl']:<8} "
                     f"{ms:>9} {gb:>8} {pc:>6}  {status}")
    return "\n".join(lines)
