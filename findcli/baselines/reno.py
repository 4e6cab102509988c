"""ReNO-style reward-based noise optimisation (issue 13): per delivered image, gradient ascent on its
initial noise z through the differentiable reward, the VAE decode and the sampler, with ReNO's norm
regulariser, keeping the best z seen.

ReNO (Eyring, Karthik, Roth, Dosovitskiy, Akata, NeurIPS 2024; github.com/ExplainableML/ReNO,
arguments.py, training/trainer.py, training/optim.py) as published, and what is used here:

  model / steps   one-step models (SD-Turbo, SDXL-Turbo, PixArt-α DMD, Hyper-SD), 1 inference step,
                  guidance 1 (no CFG), fp16. Here: the frozen pipeline's own sampler (DDIM with eta 0
                  for SD 1.x/2.x), `steps` steps (default: the sampler's) and its CFG; few steps are
                  what keeps the backward affordable.
  iterations      50 (n_iters); the last one only scores (no update). Same here (`iterations`).
  optimiser       SGD, lr 5.0, momentum 0.9, Nesterov, gradient-norm clip 0.1 on z. Same here; the clip
                  is applied per image (ReNO optimises one image at a time; here a batch of images is
                  optimised together, each row exactly as if alone: the objective is a sum over rows).
  regulariser     λ·(½‖z‖² − (D−1)·log‖z‖), λ = 0.01 (reg_weight), D = dimensions of z: the negative
                  log-density of the chi distribution of ‖z‖ under N(0, I) (up to a constant), whose
                  minimum is its mode √(D−1), so ‖z‖ stays where Gaussian noise lives. Same here.
  keep-best       the image (and z) of the iteration with the best reward (the regulariser not
                  included) is delivered. Same here.
  rewards         a weighted sum of HPSv2, ImageReward, PickScore, CLIP losses. Here: the run's reward,
                  which must be differentiable in the image (the built-in shapes detector is; a user
                  function is when called directly — the reward combiner and UserReward run under
                  no_grad, and a reward without a gradient is a one-line FindError).
  checkpointing   ReNO enables the UNet's and text encoder's gradient checkpointing. Here: the prompt is
                  encoded once without gradients, and each denoising step's noise prediction (UNet +
                  CFG) and the VAE decode run under torch.utils.checkpoint (non-reentrant): activations
                  are recomputed in the backward instead of kept.

Cost, in `generate_cost`: every denoiser forward is counted by the hook of base.counting, including
the recompute that checkpointing runs during the backward; so an image costs
iterations × steps × R rows of forward plus (iterations − 1) × steps × R rows of recompute
(R = 2 with CFG, else 1). The backward itself (the vector-Jacobian products through the UNet,
roughly 2 forwards' worth of FLOPs per row) is not a forward and is not in unet_rows; the rows it
went through are counted apart in `generate_backward_rows` (= the recompute rows), and its time is
in wall_s. Reward calls: `iterations` per image (each scores one image once, its backward included).

Noise: image i starts from row 0 of best_of_n.delivery_noise(shape, seed, i, 1) (the "bench" seed
namespace, the same draw best-of-N's candidates of image i come from); per-step noise of
stochastic samplers comes from noise_seed("step", that image's seed, 0) and is redrawn identically
at every iteration (ReNO re-seeds its generator every iteration too).
"""

from __future__ import annotations

import copy
import math
from dataclasses import replace

import torch
from torch.utils.checkpoint import checkpoint

from findcli.baselines.base import Cost, CountedReward, counting
from findcli.baselines.best_of_n import DELIVERY_INDEX, delivery_noise, delivery_seed, sampler_record
from findcli.errors import FindError
from findcli.generators.base import SamplerSettings, _repeat

# ReNO's published settings (arguments.py / optim.py of github.com/ExplainableML/ReNO)
PUBLISHED = {"iterations": 50, "lr": 5.0, "momentum": 0.9, "nesterov": True, "grad_clip": 0.1,
             "reg_weight": 0.01, "optimiser": "SGD", "steps": 1, "guidance": 1.0}


def reward_name(reward) -> str:
    for attr in ("spec", "name"):
        v = getattr(reward, attr, None)
        if isinstance(v, str) and v:
            return v
    return getattr(reward, "__qualname__", None) or type(reward).__name__


class ReNO:
    name = "reno"

    def __init__(self, pipe, prompt: str, reward, settings: SamplerSettings | None = None,
                 steps: int | None = None, iterations: int = PUBLISHED["iterations"], lr: float = PUBLISHED["lr"],
                 reg_weight: float = PUBLISHED["reg_weight"], grad_clip: float | None = PUBLISHED["grad_clip"],
                 momentum: float = PUBLISHED["momentum"], nesterov: bool = PUBLISHED["nesterov"],
                 checkpointing: bool = True, max_batch: int = 4):
        from findcli.pipeline import Rollout

        base = settings or SamplerSettings()
        steps = int(steps or base.steps)
        if steps < 1:
            raise FindError(f"ReNO needs at least one denoising step (got {steps})")
        if int(iterations) < 1:
            raise FindError(f"ReNO needs at least one iteration (got {iterations})")
        self.sampler = replace(base, steps=steps)
        self.pipe, self.prompt = pipe, prompt
        self.gen = Rollout(pipe, prompt, self.sampler, max_batch)
        if self.gen.family != "sd":
            raise FindError(f"the ReNO baseline drives Stable Diffusion 1.x/2.x pipelines; this is a "
                            f"{self.gen.family} model")
        self.steps, self.iterations, self.lr = steps, int(iterations), float(lr)
        self.reg_weight, self.grad_clip = float(reg_weight), (None if grad_clip is None else float(grad_clip))
        self.momentum, self.nesterov, self.checkpointing = float(momentum), bool(nesterov), bool(checkpointing)
        self.max_batch = self.gen.max_batch
        self.dim = math.prod(self.gen.latent_shape)
        # z lives in fp32 (fp64 for an fp64 pipeline) and is cast to the denoiser's dtype per forward
        self.z_dtype = torch.promote_types(self.gen.dtype, torch.float32)
        unet = pipe.unet
        self.cfg = self.sampler.guidance > 1.0 and unet.config.time_cond_proj_dim is None
        self.rows_per_step = 2 if self.cfg else 1
        self.raw_reward = reward
        self.train_cost, self.generate_cost = Cost(), Cost()
        self.reward = CountedReward(reward, self.generate_cost)
        self.generate_backward_rows = 0
        self.settings = {
            "method": self.name,
            "iterations": self.iterations, "lr": self.lr, "optimiser": "SGD", "momentum": self.momentum,
            "nesterov": self.nesterov, "grad_clip": self.grad_clip, "grad_clip_scope": "per image",
            "reg_weight": self.reg_weight,
            "regulariser": "reg_weight * (0.5 |z|^2 - (D - 1) log |z|): chi log-density, minimum at |z| = sqrt(D - 1)",
            "keep": "best reward seen (regulariser excluded), image and z",
            "checkpointing": self.checkpointing,
            "backward_cost": "not in unet_rows (forward + checkpoint recompute are); see generate_backward_rows",
            "reward": reward_name(reward), "max_batch": self.max_batch,
            "noise": f"N(0, I); seeds noise_seed('bench', seed, {DELIVERY_INDEX} + image), row 0",
            "published": dict(PUBLISHED),
            **sampler_record(self.gen, self.sampler),
        }
        self.last_history: torch.Tensor | None = None  # (n, iterations) reward of every iteration
        self.last_best_z: torch.Tensor | None = None  # (n, *latent_shape) the z delivered
        self.last_best_reward: torch.Tensor | None = None  # (n,)

    def train_step(self) -> None:
        return None

    # ------------------------------------------------------------------ the differentiable sampler

    def _noise_pred(self, x_in, t, emb, tcond):
        pipe = self.pipe
        eps = pipe.unet(x_in, t, encoder_hidden_states=emb, timestep_cond=tcond, return_dict=False)[0]
        if self.cfg:
            uncond, text = eps.chunk(2)
            eps = uncond + self.sampler.guidance * (text - uncond)
        return eps

    def _step_generators(self, step_seeds: list[int]):
        from findcli.seeds import noise_seed

        return [torch.Generator(self.gen.device).manual_seed(noise_seed("step", s, 0)) for s in step_seeds]

    def images(self, z: torch.Tensor, step_seeds: list[int] | None = None) -> torch.Tensor:
        """z (m, *latent_shape) -> images (m, 3, H, W) in [0, 1] (float32; float64 for an fp64 pipeline), differentiable in z when
        gradients are enabled: the stock StableDiffusionPipeline loop (init_noise_sigma, CFG, the
        scheduler's step, VAE decode and postprocess as sd.py does), with checkpointed steps."""
        pipe, g = self.pipe, self.gen
        m = z.shape[0]
        g.check_latents(z)
        grad = torch.is_grad_enabled() and z.requires_grad
        ckpt = self.checkpointing and grad
        sched = copy.deepcopy(pipe.scheduler)  # set_timesteps / step state stay off the shared pipeline
        sched.set_timesteps(self.steps, device=g.device)
        gens = self._step_generators(step_seeds if step_seeds is not None else [0] * m)
        extra = pipe.prepare_extra_step_kwargs(gens, self.sampler.eta)  # eta / generator where step takes them
        pe, ne = g.embeds["prompt_embeds"], g.embeds["negative_prompt_embeds"]
        emb = torch.cat([_repeat(ne, m), _repeat(pe, m)]) if self.cfg else _repeat(pe, m)
        tcond = None
        if pipe.unet.config.time_cond_proj_dim is not None:
            w = torch.tensor(self.sampler.guidance - 1).repeat(m)
            tcond = pipe.get_guidance_scale_embedding(w, embedding_dim=pipe.unet.config.time_cond_proj_dim)
            tcond = tcond.to(device=g.device, dtype=g.dtype)
        latents = g.pack(z.to(g.device, g.dtype)) * sched.init_noise_sigma
        for t in sched.timesteps:
            x_in = torch.cat([latents] * 2) if self.cfg else latents
            if hasattr(sched, "scale_model_input"):
                x_in = sched.scale_model_input(x_in, t)
            if ckpt:
                eps = checkpoint(self._noise_pred, x_in, t, emb, tcond, use_reentrant=False)
            else:
                eps = self._noise_pred(x_in, t, emb, tcond)
            latents = sched.step(eps, t, latents, **extra, return_dict=False)[0]
        if ckpt:
            return checkpoint(g.decode, latents, use_reentrant=False).to(self.z_dtype)
        return g.decode(latents).to(self.z_dtype)

    def regulariser(self, z: torch.Tensor) -> torch.Tensor:
        """(m,) ½‖z‖² − (D−1)·log‖z‖ per row, in fp32 at least (ReNO computes it in fp32)."""
        norm = torch.linalg.vector_norm(z.flatten(1).to(torch.promote_types(z.dtype, torch.float32)), dim=1)
        return 0.5 * norm ** 2 - (self.dim - 1) * torch.log(norm)

    def _score(self, reward, images: torch.Tensor, need_grad: bool) -> torch.Tensor:
        r = reward(images, [self.prompt] * images.shape[0])
        if not isinstance(r, torch.Tensor) or r.reshape(-1).shape[0] != images.shape[0]:
            raise FindError(f"reward {reward_name(self.raw_reward)} must return one value per image "
                            f"({images.shape[0]}) as a tensor")
        if need_grad and r.grad_fn is None:
            raise FindError(f"reward {reward_name(self.raw_reward)} is not differentiable in the image (its "
                            "output carries no gradient); ReNO needs a reward whose __call__ supports autograd, "
                            "e.g. find-shapes-detector or a user function called directly")
        return r.reshape(-1).to(device=self.gen.device, dtype=self.z_dtype)

    def objective(self, z: torch.Tensor, step_seeds: list[int] | None = None) -> torch.Tensor:
        """(m,) J(z) = reward(images(z)) − reg_weight·regulariser(z), no gradient (not counted)."""
        with torch.no_grad():
            z = z.to(self.gen.device, self.z_dtype)
            return self._score(self.raw_reward, self.images(z, step_seeds), False) - self.reg_weight * self.regulariser(z)

    def value_and_grad(self, z: torch.Tensor, step_seeds: list[int] | None = None):
        """(J (m,), dJ/dz (m, *latent_shape)): the gradient ReNO ascends, before clipping (not counted)."""
        z = z.detach().to(self.gen.device, self.z_dtype).requires_grad_(True)
        with torch.enable_grad():
            j = self._score(self.raw_reward, self.images(z, step_seeds), True) - self.reg_weight * self.regulariser(z)
            (grad,) = torch.autograd.grad(j.sum(), z)
        return j.detach(), grad

    # ------------------------------------------------------------------ optimisation

    def _clip(self, grad: torch.Tensor) -> torch.Tensor:
        """torch.nn.utils.clip_grad_norm_ (max_norm / (norm + 1e-6), at most 1), per row."""
        if self.grad_clip is None:
            return grad
        norm = torch.linalg.vector_norm(grad.flatten(1), dim=1)
        coef = (self.grad_clip / (norm + 1e-6)).clamp(max=1.0)
        return grad * coef.view(-1, *([1] * (grad.ndim - 1)))

    def optimise(self, eps: torch.Tensor, step_seeds: list[int]):
        """ReNO on a batch of starting noises eps (m, *latent_shape): (best images, best z, best reward,
        history (m, iterations)). Counted by the caller's ledger (reward calls by self.reward)."""
        z = eps.detach().to(self.gen.device, self.z_dtype).clone().requires_grad_(True)
        opt = torch.optim.SGD([z], lr=self.lr, momentum=self.momentum, nesterov=self.nesterov)
        m = z.shape[0]
        best_r = torch.full((m,), float("-inf"), dtype=self.z_dtype, device=z.device)
        best_img, best_z = None, z.detach().clone()
        history = []
        for it in range(self.iterations):
            need_grad = it < self.iterations - 1
            with torch.enable_grad() if need_grad else torch.no_grad():
                img = self.images(z, step_seeds)
                r = self._score(self.reward, img, need_grad)
            r_d = r.detach()
            history.append(r_d.float().cpu())
            better = r_d > best_r  # NaN never wins
            if best_img is None:  # the start is the fallback when every score is NaN
                best_img, better = img.detach().clone(), torch.ones_like(better)
            best_img[better] = img.detach()[better]
            best_z[better] = z.detach()[better]
            best_r = torch.where(better, r_d, best_r)
            if need_grad:
                loss = (-r + self.reg_weight * self.regulariser(z)).sum()
                (grad,) = torch.autograd.grad(loss, z)
                self.generate_backward_rows += m * self.steps * self.rows_per_step
                opt.zero_grad(set_to_none=True)
                z.grad = self._clip(grad)
                opt.step()
        return best_img, best_z, best_r.float().cpu(), torch.stack(history, dim=1)

    def generate(self, n: int, seed: int) -> torch.Tensor:
        """n images (n, 3, H, W) in [0, 1]: per image, ReNO from its own seeded N(0, I) start."""
        n = int(n)
        imgs, zs, rs, hs = [], [], [], []
        with counting(self.pipe, self.generate_cost):
            for start in range(0, n, self.max_batch):
                idx = list(range(start, min(n, start + self.max_batch)))
                eps = torch.cat([delivery_noise(self.gen.latent_shape, seed, i, 1, self.gen.device) for i in idx])
                img, z, r, h = self.optimise(eps, [delivery_seed(seed, i) for i in idx])
                imgs.append(img), zs.append(z), rs.append(r), hs.append(h)
        self.generate_cost.images += n
        if not imgs:
            return torch.empty((0, *self.gen.media_shape))
        self.last_best_z, self.last_best_reward, self.last_history = torch.cat(zs), torch.cat(rs), torch.cat(hs)
        return torch.cat(imgs)
