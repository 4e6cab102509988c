"""Denoiser throughput: full rollouts (T DDIM steps with classifier-free guidance, then the VAE decode)
in images/s, for the built-in shapes model and a random-weight Stable Diffusion 1.5-architecture
pipeline at 512 px; eager vs torch.compile (compile time reported apart), PyTorch SDPA vs xformers,
several batch sizes; FLOPs per image (FlopCounterMode) and achieved TFLOP/s against the card's peak.

The measurement code lives in `findcli.bench.denoiser` so that `find bench` runs it from
any install; this script is the standalone entry point.

Run:  python benchmarks/bench_denoiser.py [--quick] [--device cuda|cpu] [--dtype fp16|bf16|fp32]
                                          [--no-compile] [--model-family FAMILIES] [--json FILE]
      find bench --only denoiser   (the same, inside the CLI)
--quick: the tiny test pipeline (and the built-in model if present), CPU-sized, seconds.
--model-family sdxl,flux,wan (any of findcli.generators.FAMILIES; repeat or comma list): those
  families' rows instead: with --quick their tiny random pipelines; otherwise each reference
  architecture with random weights at its native resolution (findcli.bench.families), GPU only.
"""

import sys

from findcli.bench import script_main

if __name__ == "__main__":
    sys.exit(script_main("denoiser"))
