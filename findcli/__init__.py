"""findcli: FIND (Chen et al., ACM MM 2024) for diffusers pipelines.

Learns a per-prompt Gaussian N(mu, sigma^2) over the initial latent z_T of a frozen diffusion model
by policy optimisation. This top-level module stays import-light on purpose: the `find` console
script imports it before deciding whether to hand the command line to the system `find`.
"""

__version__ = "0.1.0"
