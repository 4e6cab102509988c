"""`--reward benchmarks.results.detector_touch_issue10.touch_detector:reward`: the detector trained with
`touching_share` (folder in $FIND_TOUCH_DETECTOR, default runs/detector_touch), scored exactly as
`find-shapes-detector` scores (same DetectorReward, other weights). For measurements only."""
import os

from findcli.shapes.detector import DetectorReward

_R = None


def reward(images, prompts):
    global _R
    if _R is None:
        _R = DetectorReward("cpu", folder=os.environ.get("FIND_TOUCH_DETECTOR", "runs/detector_touch"))
    return _R(images, prompts)


reward.value_range = DetectorReward.value_range
