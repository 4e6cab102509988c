"""Fused Triton kernels for the policy's per-element work, with PyTorch references and dispatch.

- `sample_policy`: K reparameterised latents z = μ + σ ε and their per-dimension mean log-densities,
  ε generated in-kernel from (seed, element offset) and never stored (`sample.py`).
- `policy_loss`: PPO clipped surrogate + KL to N(0, I), diagnostics, and the gradient to μ, log σ in
  two passes over the K×D samples (`policy_loss.py`).
- `set_backend` / `get_backend` / `backend_info`: Triton on CUDA, else the PyTorch reference; one
  override (`--kernels`, env FIND_KERNELS); forcing Triton where it cannot run is an error (`dispatch.py`).
"""

if __name__ == "kernels":
    # This directory is installed as `findcli.kernels`. But `python -m findcli`, `python -m pytest` or
    # `torchrun -m findcli` started in a checkout put the checkout on sys.path, where this directory
    # is also a top-level package `kernels` that shadows the Hugging Face `kernels` distribution:
    # transformers (>= 5) imports that one (`from kernels import CUDAProperties, ...` in
    # transformers.integrations.hub_kernels) whenever it is installed, and every diffusers pipeline
    # load then failed. Hand the import over to the real package, looked up without the checkout.
    import importlib.machinery as _machinery
    import importlib.util as _util
    import os as _os
    import sys as _sys

    _checkout = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
    _path = [p for p in _sys.path if _os.path.abspath(p or _os.curdir) != _checkout]
    _spec = _machinery.PathFinder.find_spec("kernels", _path)
    if _spec is None:
        raise ImportError("No module named 'kernels' (this checkout's kernels/ is findcli.kernels, not the "
                          "Hugging Face `kernels` package)", name="kernels")
    _real = _util.module_from_spec(_spec)
    _sys.modules["kernels"] = _real  # the import statement returns what sys.modules holds after this file runs
    _spec.loader.exec_module(_real)
else:
    from findcli.kernels.dispatch import backend_info, get_backend, set_backend
    from findcli.kernels.policy_loss import policy_loss
    from findcli.kernels.sample import sample_policy

    __all__ = ["sample_policy", "policy_loss", "set_backend", "get_backend", "backend_info"]
