"""The models the benchmarks run: the shipped shapes model, a random-weight SD1.5 architecture, the tiny
test pipeline; and their rewards (the built-in CLIP, or a cheap user-style function).

  builtin  the shipped shapes model (findcli/shapes/model; skipped with the reason when absent);
           reward: its built-in CLIP, as `find train` uses it.
  sd15     the Stable Diffusion 1.5 architecture built here from its published config with random
           weights (no download): UNet 860 M, VAE, CLIP ViT-L/14 text encoder, 512 px, DDIM.
  tiny     --quick only: the test suite's tiny pipeline (findcli.testing), 16 px images.
  The random models use `colourfulness_reward`, a cheap user-style reward (what `--reward
  module:function` plugs in): its time is the floor of the reward phase, not a CLIP's.
"""

from __future__ import annotations

import tempfile
import time
from typing import Callable

import torch

from findcli.errors import FindError


def sd15_configs() -> dict:
    """Stable Diffusion 1.5's published component configs (runwayml/stable-diffusion-v1-5), written out."""
    return {
        "unet": dict(
            sample_size=64, in_channels=4, out_channels=4, center_input_sample=False, flip_sin_to_cos=True,
            freq_shift=0, down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, downsample_padding=1,
            mid_block_scale_factor=1.0, act_fn="silu", norm_num_groups=32, norm_eps=1e-5,
            cross_attention_dim=768, attention_head_dim=8,
        ),
        "vae": dict(
            in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512),
            layers_per_block=2, act_fn="silu", latent_channels=4, norm_num_groups=32, sample_size=512,
            scaling_factor=0.18215,
        ),
        # CLIP ViT-L/14's text tower (openai/clip-vit-large-patch14).
        "text_encoder": dict(
            vocab_size=49408, hidden_size=768, intermediate_size=3072, num_attention_heads=12,
            num_hidden_layers=12, max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5,
            projection_dim=768, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407,
        ),
        "scheduler": dict(
            num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
            clip_sample=False, set_alpha_to_one=False, steps_offset=1,
        ),
        "tokenizer_max_length": 77,
    }


def build_sd15_pipeline(device: torch.device, dtype: torch.dtype, seed: int = 0):
    """An SD1.5-architecture StableDiffusionPipeline with random weights, built on `device` (no download)."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from findcli.shapes import write_tokenizer

    c = sd15_configs()
    torch.manual_seed(seed)
    with torch.device(device):  # initialise on the device: an 860 M-parameter init is slow on a CPU
        unet = UNet2DConditionModel(**c["unet"])
        vae = AutoencoderKL(**c["vae"])
        text_encoder = CLIPTextModel(CLIPTextConfig(**c["text_encoder"]))
    with tempfile.TemporaryDirectory() as d:
        write_tokenizer(d)
        tokenizer = CLIPTokenizer.from_pretrained(d, model_max_length=c["tokenizer_max_length"])
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=DDIMScheduler(**c["scheduler"]), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    pipe = pipe.to(device, dtype)
    pipe.find_source = "random SD1.5 architecture"
    return pipe


def colourfulness_reward(images: torch.Tensor, prompts: list[str]) -> torch.Tensor:  # noqa: ARG001
    """A cheap user-style reward: per image, the mean over pixels of (max − min over RGB), in [0, 1].
    Random-weight models can emit non-finite pixels in half precision; they count as 0 so the
    benchmark's iterations are never skipped."""
    x = torch.nan_to_num(images.float(), nan=0.0, posinf=0.0, neginf=0.0)
    return (x.amax(dim=1) - x.amin(dim=1)).mean(dim=(1, 2))  # (N,)


class Models:
    """Each model built once per run (on first use); a model that cannot be had is a skip reason."""

    def __init__(self, device: torch.device, dtype: torch.dtype, log: Callable[[str], None]):
        self.device, self.dtype, self.log = device, dtype, log
        self._pipes: dict[str, object] = {}
        self._rewards: dict[str, object] = {}

    def pipe(self, name: str):
        """The pipeline, configured as `find train` runs it (SDPA, eager, channels-last on CUDA), or a str reason."""
        if name not in self._pipes:
            from diffusers.utils import logging as diffusers_logging

            from findcli.pipeline import configure_pipeline, load_pipeline

            diffusers_logging.set_verbosity_error()  # its advice on casting random models is noise here
            t0 = time.perf_counter()
            try:
                if name == "builtin":
                    pipe = load_pipeline(None, self.device, self.dtype)
                elif name == "sd15":
                    pipe = build_sd15_pipeline(self.device, self.dtype)
                elif name == "tiny":
                    from findcli.testing import build_tiny_pipeline

                    pipe = build_tiny_pipeline().to(self.device, self.dtype)
                    pipe.find_source = "tiny test pipeline"
                else:
                    raise FindError(f"unknown benchmark model {name!r}")
                configure_pipeline(pipe, attention="sdpa", compile=False)
                self.log(f"  model {name}: ready in {time.perf_counter() - t0:.1f} s")
            except FindError as e:
                pipe = f"skipped: {e}"
                self.log(f"  model {name}: {pipe}")
            self._pipes[name] = pipe
        return self._pipes[name]

    def reward(self, name: str):
        """(reward callable, description): the built-in CLIP on the built-in model, else colourfulness."""
        if name not in self._rewards:
            if name == "builtin":
                from findcli.rewards import build_reward

                self._rewards[name] = (build_reward("clip", self.device, reward_model="builtin"), "clip (built-in CLIP)")
            else:
                self._rewards[name] = (colourfulness_reward, "colourfulness (cheap user-style function)")
        return self._rewards[name]
