"""The two fine-tuned detectors of RESULTS.md §6.11 as `module:function` rewards, scored exactly as
`find-shapes-detector` scores (the same DetectorReward, other weights). For measurements only:

    PYTHONPATH=. python benchmarks/reward_auc.py ... --rewards find-shapes-detector \
        benchmarks.results.detector_touch_issue10.touch_detector:touch \
        benchmarks.results.detector_touch_issue10.touch_detector:control

`touch`: the shipped detector fine-tuned 500 steps with touching count scenes (touching_share 0.7),
folder $FIND_TOUCH_DETECTOR (default runs/detector_ft_touch); `control`: the same fine-tune without
them (touching_share 0), folder $FIND_CONTROL_DETECTOR (default runs/detector_ft_ctrl)."""
import os

from findcli.shapes.detector import DetectorReward

_loaded: dict[str, DetectorReward] = {}


def _score(folder, images, prompts):
    if folder not in _loaded:
        _loaded[folder] = DetectorReward("cpu", folder=folder)
    return _loaded[folder](images, prompts)


def touch(images, prompts):
    return _score(os.environ.get("FIND_TOUCH_DETECTOR", "runs/detector_ft_touch"), images, prompts)


def control(images, prompts):
    return _score(os.environ.get("FIND_CONTROL_DETECTOR", "runs/detector_ft_ctrl"), images, prompts)


touch.value_range = control.value_range = DetectorReward.value_range
