"""Every bad input: one `error:` line on stderr that says what to do, a non-zero exit, no file written."""

import pytest
import torch
from typer.testing import CliRunner

from findcli.main import app
from findcli.policy import GaussianPolicy, save_policy

PROMPT = "a red cube on a blue sphere"
CPU = ["--device", "cpu", "--kernels", "torch"]


def invoke(*args, env=None):
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


def assert_one_line_error(res, *needles):
    assert res.exit_code != 0, res.output
    lines = res.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error: "), res.stderr
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1, res.stderr
    for n in needles:
        assert n in errors[0], (n, errors[0])


def test_empty_prompt(tiny_pipeline_dir, tmp_path):
    res = invoke("train", "   ", "--model", tiny_pipeline_dir, "--out", tmp_path / "o.pt", *CPU)
    assert_one_line_error(res, "prompt is empty")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("flag,value,needle", [
    ("--steps", 0, "--steps must be an integer in"), ("--batch", 0, "--batch must be an integer in"),
    ("--lr", -1, "--lr must be a finite number in (0, 10]"), ("--clip", 1.5, "--clip must be a finite number in (0, 1)"), ("--clip", 0, "--clip must be a finite number in (0, 1)"),
    ("--iterations", 0, "--iterations must be an integer in"), ("--eta", 2, "--eta must be a finite number in [0, 1]"),
    ("--replay", 0, "--replay must be an integer in"),
])
def test_out_of_range_settings(tiny_pipeline_dir, tmp_path, flag, value, needle):
    res = invoke("train", PROMPT, "--model", tiny_pipeline_dir, flag, value, "--out", tmp_path / "o.pt", *CPU)
    assert_one_line_error(res, needle)
    assert list(tmp_path.iterdir()) == []


def test_unknown_option_and_bad_choice_are_one_line():
    assert_one_line_error(invoke("train", PROMPT, "--bogus"), "No such option", "--help")
    assert_one_line_error(invoke("train", PROMPT, "--baseline", "magic"), "--baseline")


def test_missing_model_path(tmp_path):
    res = invoke("train", PROMPT, "--model", tmp_path / "nope", "--out", tmp_path / "o.pt", *CPU)
    assert_one_line_error(res, "does not exist")


def test_folder_without_model_index(tmp_path):
    (tmp_path / "m").mkdir()
    res = invoke("train", PROMPT, "--model", tmp_path / "m", "--out", tmp_path / "o.pt", *CPU)
    assert_one_line_error(res, "model_index.json")


def test_hub_id_while_offline_names_hf_hub_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    res = invoke("train", PROMPT, "--model", "someorg/some-model-that-is-not-cached", "--out", tmp_path / "o.pt", *CPU)
    assert_one_line_error(res, "HF_HUB_OFFLINE", "hf download someorg/some-model-that-is-not-cached")
    assert not (tmp_path / "o.pt").exists()


def test_cuda_without_gpu(tiny_pipeline_dir, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: --device cuda is valid here")
    res = invoke("train", PROMPT, "--model", tiny_pipeline_dir, "--out", tmp_path / "o.pt", "--device", "cuda")
    assert_one_line_error(res, "--device cuda", "no CUDA GPU")


def test_forcing_triton_where_it_cannot_run(tiny_pipeline_dir, tmp_path, monkeypatch):
    from findcli.kernels import dispatch

    monkeypatch.setattr(dispatch, "_triton_status", lambda device: (False, "forced off for the test"))
    res = invoke("train", PROMPT, "--model", tiny_pipeline_dir, "--out", tmp_path / "o.pt", "--device", "cpu",
                 "--kernels", "triton")
    assert_one_line_error(res, "triton")


def test_unwritable_output_path(tiny_pipeline_dir, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = invoke("train", PROMPT, "--model", tiny_pipeline_dir, "--out", blocker / "o.pt", *CPU)
    assert_one_line_error(res, "cannot write")
    res = invoke("train", PROMPT, "--model", tiny_pipeline_dir, "--out", tmp_path, *CPU)
    assert_one_line_error(res, "is a directory")


def test_long_prompt_warns_it_was_truncated(tiny_pipeline_dir, tmp_path):
    # The reward cannot be built, so the run stops right after the prompt check: the warning is under test.
    long_prompt = " ".join(["a red cube on a blue sphere"] * 10)
    res = invoke("train", long_prompt, "--model", tiny_pipeline_dir, "--out", tmp_path / "o.pt",
                 "--reward", "tests_nonexistent_module_x:f", *CPU)
    assert "truncated" in res.stderr and res.stderr.count("warning:") == 1
    assert_one_line_error(res, "tests_nonexistent_module_x")


def test_unknown_word_for_the_builtin_model_lists_known_words(tmp_path):
    res = invoke("train", "a red banana", "--out", tmp_path / "o.pt", *CPU)
    assert_one_line_error(res, "banana", "known words")


def _policy_file(path, shape=(4, 8, 8), model="m"):
    save_policy(path, GaussianPolicy(shape), {"model": str(model), "prompt": PROMPT, "steps": 2, "guidance": 3.0,
                                              "eta": 0.0, "reward": "clip"})


def test_sample_with_corrupt_policy(tmp_path):
    (tmp_path / "p.pt").write_bytes(b"\x00garbage")
    res = invoke("sample", "--policy", tmp_path / "p.pt", "--out-dir", tmp_path / "s", *CPU)
    assert_one_line_error(res, "corrupt")
    assert not (tmp_path / "s").exists()


def test_sample_with_policy_of_another_version(tmp_path):
    _policy_file(tmp_path / "p.pt")
    blob = torch.load(tmp_path / "p.pt", weights_only=True)
    blob["version"] = 99
    torch.save(blob, tmp_path / "p.pt")
    assert_one_line_error(invoke("sample", "--policy", tmp_path / "p.pt", *CPU), "format version 99")


def test_sample_with_policy_whose_shape_does_not_match_the_model(tiny_pipeline_dir, tmp_path):
    _policy_file(tmp_path / "p.pt", shape=(4, 16, 16), model=tiny_pipeline_dir)
    res = invoke("sample", "--policy", tmp_path / "p.pt", "--out-dir", tmp_path / "s", "--no-reward", *CPU)
    assert_one_line_error(res, "does not match the model's latent shape")
    assert not (tmp_path / "s").exists()


def test_init_with_mismatched_policy(tiny_pipeline_dir, tmp_path):
    _policy_file(tmp_path / "other.pt", shape=(4, 16, 16))
    (tmp_path / "brightness.py").write_text("def reward(images, prompts):\n    return images.mean((1, 2, 3))\n")
    res = invoke("train", PROMPT, "--model", tiny_pipeline_dir, "--init", tmp_path / "other.pt",
                 "--reward", f"{tmp_path / 'brightness.py'}:reward", "--out", tmp_path / "o.pt", *CPU)
    assert_one_line_error(res, "does not match the model's latent shape")
    assert not (tmp_path / "o.pt").exists()


def test_resume_of_a_policy_without_a_checkpoint(tiny_pipeline_dir, tmp_path):
    _policy_file(tmp_path / "p.pt")
    res = invoke("train", "--resume", tmp_path / "p.pt", *CPU)
    assert_one_line_error(res, "no training checkpoint beside it", "p.ckpt.pt")


def test_eval_needs_exactly_one_prompt_source():
    assert_one_line_error(invoke("eval"), "--prompt")


def test_version_and_help_exit_zero():
    res = invoke("--version")
    assert res.exit_code == 0 and "findcli" in res.stdout
    assert invoke("train", "--help").exit_code == 0


def test_eval_with_policy_whose_shape_does_not_match_the_model(tiny_pipeline_dir, tmp_path):
    _policy_file(tmp_path / "p.pt", shape=(4, 16, 16), model=tiny_pipeline_dir)
    res = invoke("eval", "--prompt", PROMPT, "--policy", tmp_path / "p.pt", "--n", 2, "--json", tmp_path / "e.json",
                 "--reward", "tests_nonexistent_module_x:f", *CPU)
    assert_one_line_error(res, "does not match the model's latent shape")
    assert not (tmp_path / "e.json").exists()
