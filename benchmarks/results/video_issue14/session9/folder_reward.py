"""Session 9: the video reward from another weights folder, for `find train/eval --reward`.

    VCLIP_DIR=runs/vclip_obj/ft VCLIP_COMBINE=min find train --model builtin-video \
        --reward benchmarks/results/video_issue14/session9/folder_reward.py:reward "PROMPT"

VCLIP_DIR: a folder with video_clip.safetensors + config.json (default: the shipped one);
VCLIP_COMBINE: "full" or "min" (findcli.shapes.video.reward.VideoClipReward's combine; default "min").
"""
import os

from findcli.shapes.video.reward import VideoClipReward

_CACHE: dict = {}


def reward(videos, prompts):
    key = str(videos.device)
    if key not in _CACHE:
        _CACHE[key] = VideoClipReward(videos.device, folder=os.environ.get("VCLIP_DIR") or None,
                                      combine=os.environ.get("VCLIP_COMBINE", "min"))
    return _CACHE[key](videos, prompts)


reward.accepts_video = True
