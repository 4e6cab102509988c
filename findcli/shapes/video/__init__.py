"""The built-in "video world": the shapes world in motion (issue 14, first part).

  world.py   grammar ("a red cube moving left [and a blue sphere moving up]"), VideoSpec, biased
             training captions (BIASES.md), hard negatives, and the renderer of F-frame clips with
             per-frame ground-truth boxes
  judge.py   the motion judge: per-frame objects from the image judge's `segment`, tracks across
             frames, and the constraints present_every_frame / direction / binding
  measure.py reproduces the judge's acceptance/rejection rates quoted in judge.py and BIASES.md
  video_suite.txt  a public prompt suite (category<TAB>prompt)
  BIASES.md  the training-caption bias table, intended baseline rates, the judge's measured rates

No generator, reward model or CLI wiring exists for videos yet (later parts of issue 14).
"""
