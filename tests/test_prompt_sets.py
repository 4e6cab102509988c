"""`find train --prompts FILE --out-dir DIR` in one process, on the built-in model at tiny settings.

Oracles: `find train PROMPT --out FILE` run alone (each policy of a set must be that run's, bit for
bit, resumed or not), the prompt file as written (duplicates, unknown words, file-name clashes), and
`find eval --prompts FILE --policy-dir DIR` (it must find every policy the set wrote).
"""

import json

import pytest
import torch
from typer.testing import CliRunner

from findcli.errors import INTERRUPTED_EXIT
from findcli.evaluation import slug
from findcli.main import app
from findcli.policy import load_policy

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = ["--iterations", "3", "--batch", "4", "--steps", "4", "--device", "cpu", "--kernels", "torch"]


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def one_line_error(res) -> str:
    assert res.exit_code != 0, res.output
    errors = [ln for ln in res.stderr.strip().splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and res.stderr.strip().splitlines()[-1] == errors[0], res.stderr
    return errors[0]


def same_policy(a, b) -> bool:
    pa, pb = load_policy(a).policy, load_policy(b).policy
    return torch.equal(pa.mu, pb.mu) and torch.equal(pa.log_sigma, pb.log_sigma)


def index_of(out_dir):
    return json.loads((out_dir / "index.json").read_text())


def test_a_set_trains_each_prompt_as_find_train_alone_and_lists_what_it_cannot(tmp_path):
    prompts = tmp_path / "set.txt"
    prompts.write_text("# a set\nsingle\ta red sphere\na red sphere\n  a   red sphere  \nA Red Sphere\n"
                       "colour\ta purple dog\n")
    out = tmp_path / "set"
    res = invoke("train", "--prompts", prompts, "--out-dir", out, *FAST)
    error = one_line_error(res)
    assert res.exit_code == 1
    assert "2 of 3 prompts failed" in error and "'a purple dog'" in error and "'A Red Sphere'" in error
    assert "repeats 1 prompt(s)" in res.stderr and "'a red sphere'" in res.stderr  # the duplicate: a warning
    assert "not trained: 'a purple dog': unknown word 'dog'" in res.stdout  # listed, the others still ran

    index = index_of(out)
    assert index["format"] == "findcli-prompt-set" and index["complete"] is False
    assert index["duplicates"] == ["a red sphere"] and index["config"]["iterations"] == 3
    assert list(index["prompts"]) == ["a red sphere", "A Red Sphere", "a purple dog"]  # file order, once each
    done, clash, unknown = (index["prompts"][p] for p in index["prompts"])
    assert done["status"] == "done" and done["file"] == "a_red_sphere.pt" and done["category"] == "single"
    assert done["iterations"] == 3 and done["attempts"] == 1 and done["rank"] == 0
    meta = load_policy(out / "a_red_sphere.pt").meta
    assert done["final_stats"]["reward_mean"] == meta["final_stats"]["reward_mean"]
    assert clash["status"] == "failed" and "a_red_sphere.pt" in clash["error"]
    assert unknown["status"] == "failed" and "unknown word 'dog'" in unknown["error"] and unknown["category"] == "colour"
    assert index["counts"] == {"pending": 0, "running": 0, "done": 1, "interrupted": 0, "failed": 2}
    assert sorted(p.name for p in out.glob("*.pt")) == ["a_red_sphere.ckpt.pt", "a_red_sphere.pt"]

    alone = tmp_path / "alone.pt"
    assert invoke("train", "a red sphere", "--out", alone, *FAST).exit_code == 0
    assert same_policy(out / "a_red_sphere.pt", alone)

    # find eval reads the layout the set wrote
    clean = tmp_path / "clean.txt"
    clean.write_text("single\ta red sphere\n")
    res = invoke("eval", "--prompts", clean, "--policy-dir", out, "--n", 2, "--steps", 4, "--device", "cpu",
                 "--json", tmp_path / "eval.json")
    assert res.exit_code == 0, res.output
    assert "policy" in json.loads((tmp_path / "eval.json").read_text())["results"][0]

    # rerun: the finished prompt is skipped (its file untouched), the others are listed again
    before = (out / "a_red_sphere.pt").stat().st_mtime_ns
    res = invoke("train", "--prompts", prompts, "--out-dir", out, *FAST)
    assert res.exit_code == 1 and "to train: 0" in res.stdout and "already done: 1" in res.stdout
    assert (out / "a_red_sphere.pt").stat().st_mtime_ns == before
    assert index_of(out)["prompts"]["a red sphere"]["attempts"] == 1


REWARD = """
import json, os, signal, torch
CALLS = {}
def reward(images, prompts):
    p = prompts[0]
    CALLS[p] = CALLS.get(p, 0) + 1
    what = json.load(open(BEHAVIOUR)).get(p) if os.path.exists(BEHAVIOUR) else None
    if what == "raise":
        raise RuntimeError("the reward broke on " + p)
    if what == "sigint" and CALLS[p] == 2:
        os.kill(os.getpid(), signal.SIGINT)
    return -100.0 * ((images - 0.5) ** 2).flatten(1).mean(1)
"""


def test_a_failed_prompt_is_retried_and_an_interrupted_one_resumes_bit_exactly(tmp_path):
    behaviour = tmp_path / "behaviour.json"
    reward = tmp_path / "synth.py"
    reward.write_text(f"BEHAVIOUR = {str(behaviour)!r}\n" + REWARD)
    spec = f"{reward}:reward"
    prompts = tmp_path / "set.txt"
    prompts.write_text("a red sphere\na blue cube\na green pyramid\ntwo red spheres\n")
    out = tmp_path / "set"
    behaviour.write_text(json.dumps({"a blue cube": "raise", "a green pyramid": "sigint"}))

    res = invoke("train", "--prompts", prompts, "--out-dir", out, "--reward", spec, *FAST)
    assert res.exit_code == INTERRUPTED_EXIT, res.output
    assert "RuntimeError: the reward broke on a blue cube" in res.stderr  # the user's traceback
    st = {p: e["status"] for p, e in index_of(out)["prompts"].items()}
    assert st == {"a red sphere": "done", "a blue cube": "failed", "a green pyramid": "interrupted",
                  "two red spheres": "pending"}
    entries = index_of(out)["prompts"]
    assert "the reward broke on a blue cube" in entries["a blue cube"]["error"]
    assert entries["a green pyramid"]["iterations"] == 2 and "SIGINT" in entries["a green pyramid"]["errors"][0]
    first = (out / "a_red_sphere.pt").stat().st_mtime_ns

    behaviour.unlink()  # the reward is fixed: the same command finishes the set
    res = invoke("train", "--prompts", prompts, "--out-dir", out, "--reward", spec, *FAST)
    assert res.exit_code == 0, res.output
    assert "to train: 3 (1 resumed)  already done: 1" in res.stdout
    index = index_of(out)
    assert index["complete"] is True and index["counts"]["done"] == 4
    assert (out / "a_red_sphere.pt").stat().st_mtime_ns == first
    entries = index["prompts"]
    assert entries["a blue cube"]["attempts"] == 2 and entries["a blue cube"]["error"] is None
    assert entries["a green pyramid"]["resumed_from"] == 2 and entries["a green pyramid"]["iterations"] == 3

    alone = tmp_path / "alone.pt"  # the interrupted prompt, trained without a break
    assert invoke("train", "a green pyramid", "--out", alone, "--reward", spec, *FAST).exit_code == 0
    assert same_policy(out / f"{slug('a green pyramid')}.pt", alone)


@pytest.mark.parametrize("content,args,needle", [
    (None, [], "does not exist"),
    ("# only a comment\n\n", [], "holds no prompts"),
    (b"\xff\xfe a red sphere\n", [], "cannot read prompt file"),
    ("a red sphere\n", ["a red sphere"], "a PROMPT does not go with --prompts"),
    ("a red sphere\n", ["--out", "x.pt"], "--out does not go with --prompts"),
    ("a red sphere\n", ["--resume", "x.pt"], "--resume does not go with --prompts"),
    ("a red sphere\n", ["--init", "x.pt"], "conditional policy 'x.pt' does not exist"),
    ("a red sphere\n", ["--init-dir", "/nonexistent/inits"], "--init-dir '/nonexistent/inits' is not a folder"),
    ("a red sphere\n", ["--batch", "0"], "--batch must be an integer in"),
    ("a red sphere\n", ["--model", "/nonexistent/model"], "does not exist"),
])
def test_bad_prompt_sets_are_one_line_errors_that_write_nothing(tmp_path, content, args, needle):
    prompts = tmp_path / "set.txt"
    if isinstance(content, bytes):
        prompts.write_bytes(content)
    elif content is not None:
        prompts.write_text(content)
    out = tmp_path / "set"
    res = invoke("train", "--prompts", prompts, "--out-dir", out, *args, "--device", "cpu")
    assert needle in one_line_error(res)
    assert not out.exists() or not (out / "index.json").exists()


def test_prompts_and_out_dir_go_together_and_a_set_keeps_its_settings(tmp_path):
    prompts = tmp_path / "set.txt"
    prompts.write_text("a red sphere\n")
    assert "--out-dir goes with --prompts" in one_line_error(invoke("train", "--out-dir", tmp_path / "d"))
    assert "needs --out-dir DIR" in one_line_error(invoke("train", "--prompts", prompts))
    (tmp_path / "file").write_text("")
    assert "is a file" in one_line_error(invoke("train", "--prompts", prompts, "--out-dir", tmp_path / "file"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "index.json").write_text("{not json")
    assert "cannot be read as a prompt-set index" in one_line_error(
        invoke("train", "--prompts", prompts, "--out-dir", tmp_path / "bad"))
    # an index recorded with other settings: refused before anything loads (no training needed to test it)
    from findcli.config import default

    (tmp_path / "old").mkdir()
    saved = dict(default(iterations=3, batch=4, steps=4, reward="find-shapes-detector").to_dict(), prompt="")
    (tmp_path / "old" / "index.json").write_text(json.dumps(
        {"format": "findcli-prompt-set", "version": 1, "config": saved, "prompts": {}}))
    error = one_line_error(invoke("train", "--prompts", prompts, "--out-dir", tmp_path / "old", "--batch", 8,
                                  "--steps", 4, "--device", "cpu"))
    assert "other settings (--batch 4 there, 8 now)" in error
    assert json.loads((tmp_path / "old" / "index.json").read_text())["prompts"] == {}  # untouched


def test_init_dir_starts_each_prompt_as_find_train_init_alone_and_lists_a_prompt_without_a_start(tmp_path):
    # the starts: a first set's policies (3 iterations from N(0, I))
    prompts = tmp_path / "set.txt"
    prompts.write_text("a red sphere\na blue cube\n")
    starts = tmp_path / "starts"
    assert invoke("train", "--prompts", prompts, "--out-dir", starts, *FAST).exit_code == 0
    (starts / "a_blue_cube.pt").unlink()  # one prompt has no start: listed as failed, never started

    out = tmp_path / "from_starts"
    res = invoke("train", "--prompts", prompts, "--out-dir", out, "--init-dir", starts, *FAST, "--seed", 7)
    assert res.exit_code == 1 and "1 of 2 prompts failed: 'a blue cube'" in one_line_error(res)
    assert f"start from their policy in {starts}" in res.stdout
    index = index_of(out)
    assert index["init_dir"] == str(starts.resolve())
    red, blue = index["prompts"]["a red sphere"], index["prompts"]["a blue cube"]
    assert red["status"] == "done" and red["init"] == str(starts / "a_red_sphere.pt")
    assert blue["status"] == "failed" and "--init-dir has no policy to start it from" in blue["error"]
    assert not (out / "a_blue_cube.pt").exists()

    # oracle: find train PROMPT --init START alone, with the same settings, bit for bit; and not N(0, I)'s run
    alone, cold = tmp_path / "alone.pt", tmp_path / "cold.pt"
    assert invoke("train", "a red sphere", "--out", alone, "--init", starts / "a_red_sphere.pt", *FAST,
                  "--seed", 7).exit_code == 0
    assert same_policy(out / "a_red_sphere.pt", alone)
    assert invoke("train", "a red sphere", "--out", cold, *FAST, "--seed", 7).exit_code == 0
    assert not same_policy(out / "a_red_sphere.pt", cold)

    # the set was started from these starts: another --init-dir (or none) is refused, nothing written
    before = (out / "index.json").read_text()
    for extra in ([], ["--init-dir", tmp_path]):
        error = one_line_error(invoke("train", "--prompts", prompts, "--out-dir", out, *extra, *FAST, "--seed", 7))
        assert "rerun with its --init-dir to resume it" in error
    assert (out / "index.json").read_text() == before
    # also when no prompt of the set has trained yet: the index alone ties the set to its --init-dir
    only_blue, untrained = tmp_path / "blue.txt", tmp_path / "untrained"
    only_blue.write_text("a blue cube\n")
    assert invoke("train", "--prompts", only_blue, "--out-dir", untrained, "--init-dir", starts, *FAST).exit_code == 1
    assert index_of(untrained)["prompts"]["a blue cube"]["status"] == "failed"
    assert "rerun with its --init-dir to resume it" in one_line_error(
        invoke("train", "--prompts", only_blue, "--out-dir", untrained, *FAST))
    # --init-dir alone, or with --conditional: one line each
    assert "--init-dir goes with --prompts FILE --out-dir DIR" in one_line_error(
        invoke("train", "a red sphere", "--init-dir", starts))
    assert "--init-dir goes with --prompts FILE --out-dir DIR" in one_line_error(
        invoke("train", "--prompts", prompts, "--conditional", "--out", tmp_path / "c.pt", "--init-dir", starts))


def test_init_conditional_starts_each_prompt_from_its_prediction_as_find_train_init_alone(tmp_path):
    prompts = tmp_path / "set.txt"
    prompts.write_text("a red sphere\na blue cube\n")
    cond = tmp_path / "cond.pt"
    assert invoke("train", "--prompts", prompts, "--conditional", "--out", cond, "--iterations", "1", "--batch", "2",
                  "--steps", "4", "--device", "cpu").exit_code == 0
    out = tmp_path / "from_cond"
    res = invoke("train", "--prompts", prompts, "--out-dir", out, "--init", cond, *FAST, "--seed", 7)
    assert res.exit_code == 0, res.output
    assert f"start from {cond}'s prediction" in res.stdout
    index = index_of(out)
    assert index["init"] == str(cond.resolve()) and index["init_dir"] is None
    assert all(e["status"] == "done" and e["init"] == str(cond) for e in index["prompts"].values())
    # oracle: find train PROMPT --init COND.pt alone, bit for bit; and not N(0, I)'s run
    for p in ("a red sphere", "a blue cube"):
        alone = tmp_path / f"alone_{slug(p)}.pt"
        assert invoke("train", p, "--out", alone, "--init", cond, *FAST, "--seed", 7).exit_code == 0
        assert same_policy(out / f"{slug(p)}.pt", alone)
    cold = tmp_path / "cold.pt"
    assert invoke("train", "a red sphere", "--out", cold, *FAST, "--seed", 7).exit_code == 0
    assert not same_policy(out / "a_red_sphere.pt", cold)
    # the set is tied to its --init; a one-prompt policy, or --init with --init-dir: one line, nothing written
    before = (out / "index.json").read_text()
    assert "rerun with its --init to resume it" in one_line_error(
        invoke("train", "--prompts", prompts, "--out-dir", out, *FAST, "--seed", 7))
    assert (out / "index.json").read_text() == before
    assert "is a one-prompt policy" in one_line_error(
        invoke("train", "--prompts", prompts, "--out-dir", tmp_path / "x", "--init", cold, *FAST))
    assert "not both" in one_line_error(
        invoke("train", "--prompts", prompts, "--out-dir", tmp_path / "y", "--init", cond, "--init-dir", out, *FAST))
    assert "does not exist" in one_line_error(
        invoke("train", "--prompts", prompts, "--out-dir", tmp_path / "z", "--init", tmp_path / "nope.pt", *FAST))
    assert not any((tmp_path / d).exists() for d in ("x", "y", "z"))
