"""The installed `find` script hands every non-findcli command line to GNU find, byte for byte.

Oracle: /usr/bin/find itself, run with the same argv (argv[0] = "find") in the same directory.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from findcli.entry import is_ours

SCRIPT = Path(sys.executable).parent / "find"
GNU = "/usr/bin/find"

pytestmark = pytest.mark.skipif(not Path(GNU).exists(), reason="no GNU find at /usr/bin/find on this machine")


@pytest.fixture()
def tree(tmp_path):
    (tmp_path / "train" / "sub").mkdir(parents=True)
    (tmp_path / "train" / "a.txt").write_text("a")
    (tmp_path / "train" / "sub" / "b.py").write_text("b")
    (tmp_path / "sample").mkdir()
    (tmp_path / "sample" / "c.txt").write_text("c")
    os.symlink(tmp_path / "train", tmp_path / "link")
    return tmp_path


def _env():
    # Our script first on PATH, as after installing into an activated virtualenv.
    return dict(os.environ, PATH=f"{SCRIPT.parent}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
                LC_ALL="C")


CASES = [
    ["train", "-type", "f"],
    [],
    ["."],
    ["train", "-maxdepth", "1", "-print"],
    ["-L", "link", "-name", "*.py"],
    [".", "(", "-name", "a.txt", "-o", "-name", "c.txt", ")", "-print"],
    ["sample", "!", "-name", "c.txt"],
    ["train", "-type", "f", "-exec", "echo", "found", "{}", ";"],
    ["train", "-newer", "sample", "-o", "-print0"],
    ["does-not-exist"],
    ["train", "-badprimary"],
    ["info", "-name", "x"],
]


@pytest.mark.parametrize("args", CASES, ids=lambda a: " ".join(a) or "(bare)")
def test_passthrough_is_byte_identical_to_gnu_find(tree, args):
    assert SCRIPT.exists(), f"the package must be installed (pip install -e .): {SCRIPT} missing"
    ours = subprocess.run([str(SCRIPT), *args], cwd=tree, env=_env(), capture_output=True, timeout=60)
    gnu = subprocess.run(["find", *args], executable=GNU, cwd=tree, env=_env(), capture_output=True, timeout=60)
    assert ours.stdout == gnu.stdout
    assert ours.stderr == gnu.stderr
    assert ours.returncode == gnu.returncode


def test_our_commands_still_run_through_the_find_script(tree):
    res = subprocess.run([str(SCRIPT), "--version"], cwd=tree, env=_env(), capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.startswith("findcli ")
    res = subprocess.run([str(SCRIPT), "train", "--help"], cwd=tree, env=_env(), capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0 and "--preset" in res.stdout


def test_findcli_script_is_always_ours(tree):
    script = SCRIPT.parent / "findcli"
    res = subprocess.run([str(script), "train", "-type", "f"], cwd=tree, env=_env(), capture_output=True, text=True,
                         timeout=120)
    assert res.returncode != 0 and "error:" in res.stderr  # parsed by our CLI, not handed to GNU find


def test_a_wrapper_that_leads_back_to_us_is_skipped(tree, tmp_path):
    """A second copy of our console script earlier on PATH must not cause an exec loop."""
    shim_dir = tmp_path / "shims"
    shim_dir.mkdir()
    shutil.copy(SCRIPT, shim_dir / "find")
    env = dict(_env(), PATH=f"{shim_dir}{os.pathsep}{_env()['PATH']}")
    ours = subprocess.run([str(shim_dir / "find"), "train", "-type", "f"], cwd=tree, env=env, capture_output=True,
                          timeout=60)
    gnu = subprocess.run(["find", "train", "-type", "f"], executable=GNU, cwd=tree, capture_output=True, timeout=60)
    assert ours.returncode == 0 and ours.stdout == gnu.stdout


@pytest.mark.parametrize("argv,expected", [
    (["train", "a red cube"], True), (["train", "a red cube", "--lr", "-1"], True), (["--help"], True),
    (["--version"], True), (["bench", "--quick"], True), (["info"], True), (["sample", "--policy", "x.pt"], True),
    ([], False), (["."], False), (["train", "-type", "f"], False), (["train", "(", "-name", "x", ")"], False),
    (["train", "!", "x"], False), (["-L", "train"], False), (["trainer"], False), (["eval", "-print"], False),
    (["info", ","], False),
])
def test_is_ours_decision_table(argv, expected):
    assert is_ours(argv) is expected
