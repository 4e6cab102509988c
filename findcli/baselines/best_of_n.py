"""Best-of-N (issue 13): for every delivered image, draw N candidates from the model's own prior
N(0, I), generate and score all N, deliver the argmax.

It does not train (`train_step` is None). Its cost is all delivery cost: per image, N generations
(N × steps × (2 with CFG, else 1) denoiser rows) and N reward calls, counted into `generate_cost` by
base.counting (the denoiser hook) and base.CountedReward. Compared with FIND "at equal reward
calls", N is the number of reward calls one delivered image may spend.

Noise: candidate j of image i is row j of `delivery_noise(shape, seed, i, N)`, a draw of the
"bench" seed namespace (findcli.seeds: the benchmarks' own draws, never train/eval/sample noise) at
index DELIVERY_INDEX + i. ReNO (reno.py) starts image i from `delivery_noise(shape, seed, i, 1)`,
which is candidate 0 of the same draw (the first rows of a draw do not depend on k), so the two
baselines can be paired on their starting noise. Stochastic samplers (DDIM eta > 0)
draw their per-step noise of candidate j from noise_seed("step", noise_seed("bench", seed,
DELIVERY_INDEX + i), j): exactly what `Rollout(...)(z_i, that seed)` does, whatever the chunking.
"""

from __future__ import annotations

import torch

from findcli.baselines.base import Cost, CountedReward, counting
from findcli.errors import FindError
from findcli.generators.base import SamplerSettings

# Index offset in the "bench" namespace for the baselines' per-image draws: clear of the small
# indices other benchmarks use (find bench's denoiser draw is index 0).
DELIVERY_INDEX = 1 << 32


def delivery_seed(seed: int, image: int) -> int:
    """The 63-bit seed of delivered image `image`'s draw for the user's `seed`."""
    from findcli.seeds import noise_seed

    return noise_seed("bench", seed, DELIVERY_INDEX + int(image))


def delivery_noise(latent_shape: tuple[int, ...], seed: int, image: int, k: int, device) -> torch.Tensor:
    """(k, *latent_shape) float32 draws of N(0, I) for delivered image `image` (same sampler as FIND's
    prior noise, findcli.policy.prior_noise)."""
    from findcli.policy import prior_noise

    return prior_noise(tuple(latent_shape), delivery_seed(seed, image), int(k), device)


def sampler_record(gen, settings: SamplerSettings) -> dict:
    """The sampler settings a baseline ran with (resolved sizes, the scheduler actually used)."""
    return {"steps": settings.steps, "guidance": settings.guidance, "eta": settings.eta, "height": gen.height,
            "width": gen.width, "scheduler": type(gen.pipe.scheduler).__name__}


class BestOfN:
    name = "best-of-n"

    def __init__(self, pipe, prompt: str, reward, n_candidates: int = 16,
                 settings: SamplerSettings | None = None, max_batch: int = 16):
        from findcli.pipeline import Rollout

        if int(n_candidates) < 1:
            raise FindError(f"best-of-N needs at least one candidate per image (got N={n_candidates})")
        self.pipe, self.prompt = pipe, prompt
        self.n_candidates = int(n_candidates)
        self.sampler = settings or SamplerSettings()
        self.gen = Rollout(pipe, prompt, self.sampler, max_batch)
        self.max_batch = self.gen.max_batch
        self.train_cost, self.generate_cost = Cost(), Cost()
        self.reward = CountedReward(reward, self.generate_cost)
        self.settings = {
            "method": self.name,
            "n_candidates": self.n_candidates,
            "budget": "equal reward calls: each delivered image costs N generations and N reward calls",
            "selection": "argmax of the reward over the N candidates (first on ties; a NaN score never wins)",
            "noise": f"N(0, I); seeds noise_seed('bench', seed, {DELIVERY_INDEX} + image), candidate j = row j",
            "reward": self.reward.spec,
            "max_batch": self.max_batch,
            **sampler_record(self.gen, self.sampler),
        }
        self.last_scores: torch.Tensor | None = None  # (n, N) float32 scores of the last generate()
        self.last_choice: torch.Tensor | None = None  # (n,) int64 candidate delivered per image

    def train_step(self) -> None:
        return None

    def _flush(self, buf: list, best: dict) -> None:
        """Generate, decode and score one chunk of (image, candidate, z, step seed) through the stock
        pipeline call, and keep the running best per image."""
        from findcli.seeds import noise_seed

        gen = self.gen
        z = torch.stack([b[2] for b in buf])
        gens = [torch.Generator(gen.device).manual_seed(noise_seed("step", b[3], b[1])) for b in buf]
        gen.check_latents(z)
        lat = gen.denoise(gen.pack(z.to(gen.device, gen.dtype)), len(buf), gens)
        media = gen.decode(lat).float()
        scores = self.reward(media, [self.prompt] * len(buf)).detach().float().reshape(-1).cpu()
        if scores.shape[0] != len(buf):
            raise FindError(f"reward {self.reward.spec} returned {scores.shape[0]} values for {len(buf)} images")
        for row, (i, j, _, _) in enumerate(buf):
            s = float(scores[row])
            best["scores"][i, j] = s
            if best["choice"][i] < 0 or s > best["value"][i]:  # NaN > x is False: NaN never wins
                best["choice"][i], best["value"][i] = j, s
                if best["images"] is None:
                    best["images"] = torch.empty((best["n"], *media.shape[1:]), dtype=media.dtype,
                                                 device=media.device)
                best["images"][i] = media[row]
        buf.clear()

    @torch.no_grad()
    def generate(self, n: int, seed: int) -> torch.Tensor:
        """n images (n, 3, H, W) in [0, 1]: per image the best of N candidates under the reward."""
        n, big_n = int(n), self.n_candidates
        best = {"n": n, "images": None, "scores": torch.full((n, big_n), float("nan")),
                "choice": torch.full((n,), -1, dtype=torch.long), "value": torch.full((n,), float("-inf"))}
        with counting(self.pipe, self.generate_cost):
            buf: list = []
            for i in range(n):
                eps = delivery_noise(self.gen.latent_shape, seed, i, big_n, self.gen.device)
                s_i = delivery_seed(seed, i)
                for j in range(big_n):
                    buf.append((i, j, eps[j], s_i))
                    if len(buf) == self.max_batch:
                        self._flush(buf, best)
            if buf:
                self._flush(buf, best)
        self.generate_cost.images += n
        self.last_scores, self.last_choice = best["scores"], best["choice"]
        if best["images"] is None:  # n == 0
            return torch.empty((0, *self.gen.media_shape))
        return best["images"]
