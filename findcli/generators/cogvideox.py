"""CogVideoX text-to-video (CogVideoXPipeline: CogVideoX-2b/5b, CogVideoX1.5-5b).

Facts the adapter relies on (diffusers 0.42 pipeline_cogvideox.py):
  latents     FRAMES FIRST, (B, F_lat, C, h, w), F_lat = (num_frames - 1) // vae_scale_factor_temporal + 1,
              h, w = H, W // vae_scale_factor_spatial (2 ** (len(vae blocks) - 1), 8 for the released VAE):
              latent_layout "FCHW". CogVideoX 1.5 (transformer.patch_size_t set) pads F_lat up to a
              multiple of patch_size_t with that many extra latent frames in front; the latents passed
              in have the padded count (prepare_latents is sized from the padded num_frames) and the
              decode drops the padding frames first.
  scaling     prepare_latents multiplies the given latents by scheduler.init_noise_sigma (1.0 for the
              CogVideoX DDIM/DPM schedulers); the policy stays on unit-variance noise.
  text        one T5 encoder; encode_prompt(max_sequence_length=...) must be the transformer's
              max_text_seq_length (226 released), since the patch embedding concatenates exactly that many
              text tokens before the video tokens; the same value is passed to the call. The negative
              prompt is "" (the pipeline's default) when guidance > 1.
  decode      pipe.decode_latents: permute to (B, C, F, h, w), * 1 / vae.config.scaling_factor,
              vae.decode(...).sample; then video_processor.postprocess_video(output_type="pt") ->
              (B, F, 3, H, W) in [0, 1].
  frames      the CogVideoX VAE decodes latent frames in slices of num_latent_frames_batch_size (2), the
              first slice taking the odd one out, and each slice's temporal upsampling keeps a lone first
              frame: the video has num_frames frames only for num_frames = 8m or 8m + 1 with the released
              VAE (49 = 8*6 + 1, 81 for 1.5); any other --frames is a one-line error naming the nearest
              ones (the pipeline would silently return another length).
  scheduler   native: CogVideoXDDIMScheduler (2b; v-prediction, zero-SNR betas, snr_shift_scale) or
              CogVideoXDPMScheduler (5b; stochastic: it draws noise each step from the per-sample
              generators the rollout passes, so a seed repeats). ddim = False: a plain DDIMScheduler built
              from this config would drop the snr shift. CogVideoXDDIMScheduler.step takes an `eta`
              argument but never uses it (its update is the eta = 0 DDIM step, no variance term), so eta is
              not meaningful and --eta is refused (the base class allows it only for DDIMScheduler).
  quirks      use_dynamic_cfg left False (the pipeline default); no resolution binning; height and width
              must be multiples of 8 (the pipeline's check) and of vae_scale_factor_spatial * patch_size
              (else the transformer's patchify would not tile the latent).
"""

from __future__ import annotations

import math

import torch

from findcli.errors import FindError
from findcli.generators.base import Generator


def _cogvideox_decoded_frames(latent_frames: int, batch: int, ratio: int) -> int:
    """How many frames AutoencoderKLCogVideoX._decode returns for `latent_frames` latent frames: slices
    of `batch` (the first one taking the remainder), each upsampled in time log2(ratio) times, where a
    slice of odd length > 1 keeps its first frame and doubles the rest, and a single frame stays one."""
    n_slices = max(latent_frames // batch, 1)
    rem = latent_frames % batch
    sizes = [batch + rem] + [batch] * (n_slices - 1) if latent_frames >= batch else [latent_frames]
    total = 0
    for f in sizes:
        for _ in range(int(round(math.log2(ratio)))):
            f = 1 + 2 * (f - 1) if f > 1 and f % 2 == 1 else (2 * f if f > 1 else 1)
        total += f
    return total


class CogVideoX(Generator):
    family = "cogvideox"
    pipeline_classes = ("CogVideoXPipeline",)
    latent_layout = "FCHW"
    video = True
    ddim = False
    denoiser_attr = "transformer"

    # ------------------------------------------------------------------ sizes

    def default_size(self) -> tuple[int, int, int]:
        cfg, f = self.pipe.transformer.config, self.pipe.vae_scale_factor_spatial
        return cfg.sample_height * f, cfg.sample_width * f, cfg.sample_frames

    @property
    def max_sequence_length(self) -> int:
        return int(self.pipe.transformer.config.max_text_seq_length)

    def _latent_frames(self, frames: int | None = None) -> tuple[int, int]:
        """(latent frames the pipeline denoises, padding frames it drops before decoding) for num_frames =
        `frames` (default: this generator's)."""
        n = ((frames or self.frames) - 1) // self.pipe.vae_scale_factor_temporal + 1
        pt = self.pipe.transformer.config.patch_size_t
        pad = (pt - n % pt) if pt is not None and n % pt else 0
        return n + pad, pad

    def check_settings(self) -> None:
        super().check_settings()
        pipe = self.pipe
        multiple = math.lcm(8, pipe.vae_scale_factor_spatial * pipe.transformer.config.patch_size)
        if self.height % multiple or self.width % multiple:
            raise FindError(f"this cogvideox model needs --height and --width multiples of {multiple} "
                            f"(got {self.height}x{self.width})")
        if not self._reproduces(self.frames):
            near = sorted((f for f in range(max(1, self.frames - 16), self.frames + 17) if self._reproduces(f)),
                          key=lambda f: (abs(f - self.frames), f))[:2]
            raise FindError(f"--frames {self.frames} would give {self._decoded(self.frames)}-frame videos with this "
                            f"cogvideox VAE; use a frame count it reproduces, e.g. "
                            f"{' or '.join(str(f) for f in sorted(near))}")

    def _decoded(self, frames: int) -> int:
        """The number of frames the pipeline returns for num_frames = `frames`."""
        n, pad = self._latent_frames(frames)
        vae = self.pipe.vae
        return _cogvideox_decoded_frames(n - pad, getattr(vae, "num_latent_frames_batch_size", 2),
                                         int(vae.config.temporal_compression_ratio))

    def _reproduces(self, frames: int) -> bool:
        return self._decoded(frames) == frames

    def natural_shape(self) -> tuple[int, int, int, int]:
        f = self.pipe.vae_scale_factor_spatial
        n, _ = self._latent_frames()
        return n, self.pipe.transformer.config.in_channels, self.height // f, self.width // f

    # ------------------------------------------------------------------ rollout

    def encode(self) -> dict:
        do_cfg = self.settings.guidance > 1.0
        pe, ne = self.pipe.encode_prompt(prompt=self.prompt, negative_prompt=None, do_classifier_free_guidance=do_cfg,
                                         num_videos_per_prompt=1, max_sequence_length=self.max_sequence_length,
                                         device=self.device)
        return {"prompt_embeds": pe, "negative_prompt_embeds": ne}  # (1, L, E); ne None without CFG

    def call_kwargs(self) -> dict:
        kw = super().call_kwargs()  # steps, guidance, height, width, num_frames (no eta: ddim = False)
        kw.update(max_sequence_length=self.max_sequence_length, use_dynamic_cfg=False)
        return kw

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """What the pipeline does after its loop for output_type="pt": drop the 1.5 padding frames,
        decode_latents, postprocess_video."""
        pipe = self.pipe
        _, pad = self._latent_frames()
        video = pipe.decode_latents(latents[:, pad:])
        return pipe.video_processor.postprocess_video(video=video, output_type="pt")

    def pooled_text(self) -> torch.Tensor:
        """The T5 encoder's last hidden state averaged over the prompt's own tokens (E,) (T5 has no
        pooled output; padding is left out so that the feature does not depend on the padded length)."""
        pipe = self.pipe
        ids = pipe.tokenizer(self.prompt, truncation=True, max_length=self.max_sequence_length,
                             add_special_tokens=True, return_tensors="pt").input_ids.to(pipe.text_encoder.device)
        return pipe.text_encoder(ids)[0][0].mean(dim=0)
