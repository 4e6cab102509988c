"""Fused Triton kernels for the policy's per-element work, with PyTorch references and dispatch.

- `sample_policy`: K reparameterised latents z = μ + σ ε and their per-dimension mean log-densities,
  ε generated in-kernel from (seed, element offset) and never stored (`sample.py`).
- `policy_loss`: PPO clipped surrogate + KL to N(0, I), diagnostics, and the gradient to μ, log σ in
  two passes over the K×D samples (`policy_loss.py`).
- `set_backend` / `get_backend` / `backend_info`: Triton on CUDA, else the PyTorch reference; one
  override (`--kernels`, env FIND_KERNELS); forcing Triton where it cannot run is an error (`dispatch.py`).
"""

from findcli.kernels.dispatch import backend_info, get_backend, set_backend
from findcli.kernels.policy_loss import policy_loss
from findcli.kernels.sample import sample_policy

__all__ = ["sample_policy", "policy_loss", "set_backend", "get_backend", "backend_info"]
