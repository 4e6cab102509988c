"""The installed `find` script hands every non-findcli command line to GNU find, byte for byte.

Oracle: /usr/bin/find itself, run with the same argv (argv[0] = "find") in the same directory.
That includes the lines that look like ours but are GNU find's in an ordinary ML project (a folder
holding `train/`, `test/`, `bench/`, `info/` and a file `sample`): `find train`, `find train test`,
`find info`, ... and a bare `find --version` / `find --help`.
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
    res = subprocess.run([str(SCRIPT), "train", "--help"], cwd=tree, env=_env(), capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0 and "--preset" in res.stdout
    res = subprocess.run([str(SCRIPT.parent / "findcli"), "--version"], cwd=tree, env=_env(), capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.startswith("findcli ")


@pytest.fixture()
def project(tmp_path):
    """An ordinary ML project: folders named like our commands and a file named `sample`."""
    root = tmp_path / "project"
    for d in ("train", "test", "bench", "info"):
        (root / d / "sub").mkdir(parents=True)
        (root / d / f"{d}_0.csv").write_text("x,y\n")
        (root / d / "sub" / "notes.txt").write_text("n")
    (root / "sample").write_text("not a directory")
    return root


PROJECT_CASES = [
    ["train"],
    ["train", "test"],
    ["bench"],
    ["info"],
    ["sample"],
    ["--version"],
    ["--help"],
    ["train", "bench", "sample"],
]


@pytest.mark.parametrize("args", PROJECT_CASES, ids=lambda a: " ".join(a))
def test_paths_named_like_our_commands_go_to_gnu_find(project, args):
    assert SCRIPT.exists(), f"the package must be installed (pip install -e .): {SCRIPT} missing"
    ours = subprocess.run([str(SCRIPT), *args], cwd=project, env=_env(), capture_output=True, timeout=30)
    gnu = subprocess.run(["find", *args], executable=GNU, cwd=project, env=_env(), capture_output=True, timeout=30)
    assert gnu.returncode == 0 and gnu.stdout  # the oracle really listed something (or printed its --help/--version)
    assert ours.stdout == gnu.stdout
    assert ours.stderr == gnu.stderr
    assert ours.returncode == gnu.returncode


def test_gnu_version_is_what_scripts_see(project, tmp_path):
    """`find --version | grep GNU` takes the GNU branch, in a project and in an empty folder alike."""
    empty = tmp_path / "empty"
    empty.mkdir()
    for cwd in (project, empty):
        res = subprocess.run([str(SCRIPT), "--version"], cwd=cwd, env=_env(), capture_output=True, text=True,
                             timeout=30)
        assert res.returncode == 0 and "GNU" in res.stdout and not res.stdout.startswith("findcli ")


def test_non_path_words_keep_the_line_ours_in_a_project(project):
    for args in (["train", "--help"], ["train", "a red cube on a blue sphere", "--help"], ["--help", "train"]):
        res = subprocess.run([str(SCRIPT), *args], cwd=project, env=_env(), capture_output=True, text=True,
                             timeout=120)
        assert res.returncode == 0, (args, res.stderr)
        assert "Usage: find" in res.stdout and "GNU" not in res.stdout, args
    res = subprocess.run([str(SCRIPT.parent / "findcli"), "--version"], cwd=project, env=_env(), capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.startswith("findcli ")


def test_info_is_ours_outside_such_a_project(tmp_path):
    gnu = subprocess.run(["find", "info"], executable=GNU, cwd=tmp_path, env=_env(), capture_output=True, text=True,
                         timeout=30)
    res = subprocess.run([str(SCRIPT), "info"], cwd=tmp_path, env=dict(_env(), OMP_NUM_THREADS="1"),
                         capture_output=True, text=True, timeout=120)
    assert gnu.returncode != 0 and gnu.stderr  # GNU find: 'info': No such file or directory
    assert res.stderr != gnu.stderr, "handed to GNU find"
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("findcli ") and "torch" in res.stdout


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


def _no_paths(_word):
    return False


@pytest.mark.parametrize("argv,expected", [
    (["train", "a red cube"], True), (["train", "a red cube", "--lr", "-1"], True), (["--help"], False),
    (["--version"], False), (["--help", "train"], True), (["train", "--help"], True), (["bench", "--quick"], True),
    (["bench"], True), (["info"], True), (["sample", "--policy", "x.pt"], True),
    ([], False), (["."], False), (["train", "-type", "f"], False), (["train", "(", "-name", "x", ")"], False),
    (["train", "!", "x"], False), (["-L", "train"], False), (["trainer"], False), (["eval", "-print"], False),
    (["info", ","], False),
])
def test_is_ours_decision_table(argv, expected):
    assert is_ours(argv, exists=_no_paths) is expected


PROJECT_PATHS = {"train", "test", "bench", "info", "sample", "a red cube"}


@pytest.mark.parametrize("argv,expected", [
    (["train"], False), (["train", "test"], False), (["bench"], False), (["info"], False), (["sample"], False),
    (["train", "bench", "sample"], False), (["--version"], False), (["--help"], False),
    (["eval"], True),  # no `eval` path here
    (["train", "a red cube on a blue sphere"], True), (["train", "--help"], True), (["train", "test", "--lr", "1"], True),
    (["info", "nope"], True), (["sample", "--policy", "x.pt"], True),
    (["train", "a red cube"], False),  # a file of exactly that name exists: a listing
    (["train", "-type", "f"], False),
])
def test_is_ours_in_a_project_with_folders_named_like_our_commands(argv, expected):
    assert is_ours(argv, exists=PROJECT_PATHS.__contains__) is expected


def test_is_ours_looks_at_the_current_directory(project, monkeypatch):
    monkeypatch.chdir(project)
    assert not is_ours(["train"]) and not is_ours(["train", "test"]) and not is_ours(["sample"])
    assert is_ours(["train", "a red cube on a blue sphere"]) and is_ours(["eval"])
    monkeypatch.chdir(project / "train")
    assert is_ours(["train"]) and is_ours(["info"])  # no such paths in train/
