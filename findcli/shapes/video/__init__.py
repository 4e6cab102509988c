"""The built-in "video world": the shapes world in motion (issue 14, first part).

  world.py   grammar ("a red cube moving left [and a blue sphere moving up]"), VideoSpec, biased
             training captions (BIASES.md), hard negatives, and the renderer of F-frame clips with
             per-frame ground-truth boxes
  judge.py   the motion judge: per-frame objects from the image judge's `segment`, tracks across
             frames, and the constraints present_every_frame / direction / binding
  measure.py reproduces the judge's acceptance/rejection rates quoted in judge.py and BIASES.md
  BIASES.md  the training-caption bias table, intended baseline rates, the judge's measured rates
  models.py  the video generator's architecture: an AnimateDiff MotionAdapter on the built-in image
             generator, trained by `python -m findcli.shapes.training motion`; the trained pipeline
             is model/ (benchmarks/TRAINING_LOG.md, "Video generator"), selected by `--model builtin-video`
  reward.py  `find-shapes-video-clip`, the video-text reward (ViCLIP's role; weights in reward_model/,
             trained by `python -m findcli.shapes.training video_clip`)

The public prompt suite is benchmarks/prompts/video_suite.txt.
"""
