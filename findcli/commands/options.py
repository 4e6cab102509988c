"""Options shared by several commands, defined once as Annotated aliases; choices are str Enums."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Optional

import typer


class DeviceChoice(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class DtypeChoice(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    fp16 = "fp16"
    bf16 = "bf16"


class KernelsChoice(str, Enum):
    auto = "auto"
    triton = "triton"
    torch = "torch"


class AttentionChoice(str, Enum):
    sdpa = "sdpa"
    xformers = "xformers"


Model = Annotated[Optional[str], typer.Option("--model", help="diffusers pipeline folder or hub id; builtin-video: "
                                              "the built-in video model (default: the built-in shapes model)")]
Device = Annotated[DeviceChoice, typer.Option("--device", help="auto picks cuda when a GPU is visible")]
Dtype = Annotated[DtypeChoice, typer.Option("--dtype", help="auto: fp16 on CUDA; fp32 on CPU, but bf16 for builtin-video on a CPU with native bf16")]
Kernels = Annotated[Optional[KernelsChoice], typer.Option("--kernels", help="policy kernels: auto (Triton on "
                                                          "CUDA), triton (error if it cannot run), torch; "
                                                          "default: $FIND_KERNELS, else auto")]
Attention = Annotated[AttentionChoice, typer.Option("--attention", help="UNet attention backend")]
Compile = Annotated[bool, typer.Option("--compile/--no-compile", help="torch.compile the UNet and VAE decoder")]
MaxBatch = Annotated[int, typer.Option("--max-batch", help="images per pipeline call (CFG doubles UNet rows)")]
Seed = Annotated[int, typer.Option("--seed", help="seed of the noise ε")]
Reward = Annotated[Optional[list[str]], typer.Option("--reward", help="clip | pickscore | imagereward | hpsv2 | "
                                                     "find-shapes-detector | find-shapes-video-clip | "
                                                     "module:function; repeat or name=weight,... to combine "
                                                     "(default: find-shapes-detector on the built-in model, "
                                                     "find-shapes-video-clip on builtin-video, clip elsewhere)")]
RewardModel = Annotated[Optional[str], typer.Option("--reward-model", help="open_clip ARCH:TAG or ARCH:/ckpt for "
                                                    "clip (default: built-in CLIP or ViT-L-14:openai)")]
Height = Annotated[Optional[int], typer.Option("--height", help="pixels (default: the model's; a policy's own "
                                               "size for sample/eval)")]
Width = Annotated[Optional[int], typer.Option("--width", help="pixels (default: the model's; a policy's own size "
                                             "for sample/eval)")]
Frames = Annotated[Optional[int], typer.Option("--frames", help="video families: frames per sample, the "
                                              "pipeline's num_frames (default: the model's)")]
