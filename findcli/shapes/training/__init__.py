"""Training of the built-in shapes models, from scratch, on images from the project's own renderer.

    python -m findcli.shapes.training {vae,unet,clip,all,detector} --seed 0 [--out DIR] [--steps N] [--minutes M] [--preset cpu]

One module per stage, each with its own config dataclass and `SCHEDULES` (the `--preset` overrides):

- `vae`:      `VaeTrainConfig`, `train_vae`           -> <out>/vae
- `unet`:     `UnetTrainConfig`, `train_unet`         -> <out> (a complete StableDiffusionPipeline directory)
- `clip`:     `ClipTrainConfig`, `train_clip`         -> <out>/clip/open_clip_model.safetensors
- `detector`: `DetectorTrainConfig`, `train_detector` -> <out> (default findcli/shapes/model/detector)
- `all`:      vae, then unet, then clip (the generator and the reward CLIP; the detector is trained after
              them, with its own command, because it learns from the generator's img2img redraws).

`common` holds the log line, the wall-time clock and the VAE loader, `data` the scenes and the
img2img pool that several stages draw from; `__main__` is the command line.

Runtime code (the sampler, the rewards, the detector's score) never imports this package: the shipped
weights are loaded from `findcli/shapes/model/` by `findcli.shapes.models` and `findcli.shapes.detector`.
This module imports nothing, so that `python -m findcli.shapes.training` can set the OpenMP
environment before torch loads (see `__main__`).
"""
