"""`find train` without --reward: the built-in detector on the built-in model, clip on any other model.
Oracle: the reward recorded in the written policy file."""

from typer.testing import CliRunner

from findcli.training import default_reward
from findcli.main import app
from findcli.policy import load_policy


def test_default_reward_depends_on_the_model(tiny_pipeline_dir):
    assert default_reward(None) == "find-shapes-detector"
    assert default_reward(str(tiny_pipeline_dir)) == "clip"


def test_find_train_on_the_builtin_model_records_the_detector_reward(tmp_path):
    out = tmp_path / "out.pt"
    res = CliRunner().invoke(app, ["train", "two red spheres", "--iterations", "1", "--batch", "2", "--steps", "2",
                                   "--device", "cpu", "--kernels", "torch", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert load_policy(out).meta["reward"] == "find-shapes-detector=1.0"  # the canonical spec
