"""DDIM inversion: from a clean latent z_0 back to the initial latent z_T that the deterministic DDIM
sampler (eta 0) would denoise to (about) z_0.

    for t in the inverse schedule (low noise -> high noise):
        ε      = ε_θ(z, t, prompt)                 (with CFG when guidance > 1)
        z      = DDIMInverseScheduler.step(ε, t, z)

It is the loop of diffusers' StableDiffusionDiffEditPipeline.invert with inpaint_strength 1 and no
noise regularisation, written out because the Stable Diffusion pipeline itself has no inversion call
(the test compares the two on the same latents). Used by the layout teacher of the conditional policy
(findcli.shapes.layouts): a scene that satisfies the prompt, inverted, is a z_T whose coarse layout the
sampler turns back into that scene.

UNet ε/v-prediction pipelines with `encode_prompt` (the Stable Diffusion 1.x/2.x family, the built-in
model) only; any other pipeline is refused in one line.
"""

from __future__ import annotations

import torch

from findcli.errors import FindError


def check_invertible(pipe) -> None:
    """One-line error unless `pipe` is a UNet pipeline whose encode_prompt gives (prompt_embeds,
    negative_prompt_embeds), the Stable Diffusion 1.x/2.x interface the inversion calls."""
    if getattr(pipe, "unet", None) is None or not hasattr(pipe, "encode_prompt") or getattr(pipe, "vae", None) is None:
        raise FindError(f"DDIM inversion needs a Stable Diffusion-style UNet pipeline; {type(pipe).__name__} is not one")
    if getattr(pipe, "text_encoder_2", None) is not None or getattr(pipe.unet.config, "addition_embed_type", None):
        raise FindError(f"DDIM inversion supports the Stable Diffusion 1.x/2.x family; {type(pipe).__name__} adds "
                        "pooled or time conditioning it does not pass")


@torch.no_grad()
def ddim_invert(pipe, latents: torch.Tensor, prompts: list[str], steps: int = 20, guidance: float = 1.0) -> torch.Tensor:
    """(N, C, H, W) clean latents (VAE-encoded and scaled as the sampler's output is) -> (N, C, H, W)
    inverted initial latents, each conditioned on its prompt, in the pipeline's dtype and device.
    `steps`: the sampler's DDIM steps (the inverse schedule visits the same timesteps in reverse);
    `guidance` > 1 inverts with classifier-free guidance (negative prompt "")."""
    from diffusers import DDIMInverseScheduler

    check_invertible(pipe)
    if latents.shape[0] != len(prompts):
        raise FindError(f"DDIM inversion: {latents.shape[0]} latents for {len(prompts)} prompts")
    unet = pipe.unet
    device, dtype = unet.device, unet.dtype
    inverse = DDIMInverseScheduler.from_config(pipe.scheduler.config)
    inverse.set_timesteps(steps, device=device)
    cfg = guidance > 1.0
    pe, ne = pipe.encode_prompt(list(prompts), device, 1, cfg)
    cond = torch.cat([ne, pe]) if cfg else pe
    z = latents.to(device=device, dtype=dtype)
    for t in inverse.timesteps:
        eps = unet(torch.cat([z, z]) if cfg else z, t, encoder_hidden_states=cond).sample
        if cfg:
            uncond, text = eps.chunk(2)
            eps = uncond + guidance * (text - uncond)
        z = inverse.step(eps, t, z).prev_sample
    return z
