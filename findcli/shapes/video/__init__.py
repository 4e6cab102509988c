"""The built-in "video world": the shapes world in motion (issue 14, first part).

  world.py   grammar ("a red cube moving left [and a blue sphere moving up]"), VideoSpec, biased
             training captions (BIASES.md), hard negatives, and the renderer of F-frame clips with
             per-frame ground-truth boxes
  judge.py   the motion judge: per-frame objects from the image judge's `segment`, tracks across
             frames, and the constraints present_every_frame / direction / binding
  measure.py reproduces the judge's acceptance/rejection rates quoted in judge.py and BIASES.md
  video_suite.txt  a public prompt suite (category<TAB>prompt)
  BIASES.md  the training-caption bias table, intended baseline rates, the judge's measured rates
  models.py  the video generator's architecture: an AnimateDiff MotionAdapter on the built-in image
             generator, trained by `python -m findcli.shapes.training motion` (no trained weights are
             shipped yet: benchmarks/TRAINING_LOG.md, "Video generator")

No video reward model or CLI wiring (`--model builtin-video`) exists yet (later parts of issue 14).
"""
