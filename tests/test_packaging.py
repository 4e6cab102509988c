"""The installed package is the source tree: a wheel (non-editable `pip install .`) must carry every
Python package of the repository. Oracle: the filesystem (every directory with an __init__.py)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_source_package_is_listed_in_pyproject():
    cfg = _config()
    listed = set(cfg["packages"])
    dirs = {name: Path(path) for name, path in cfg["package-dir"].items()}
    on_disk = set()
    for top, path in dirs.items():
        for init in (ROOT / path).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / path)
            on_disk.add(".".join((top, *rel.parts)) if rel.parts else top)
    # a package nested under another mapped one is found twice (findcli.kernels lives at kernels/)
    missing = sorted(on_disk - listed)
    assert not missing, f"packages missing from pyproject's [tool.setuptools] packages: {missing}"
    assert listed <= on_disk, f"listed but not on disk: {sorted(listed - on_disk)}"


def test_listed_package_data_dirs_exist():
    """Each package-data pattern matches at least one file (a renamed folder would drop data silently)."""
    cfg = _config()
    dirs = {name: Path(path) for name, path in cfg["package-dir"].items()}
    for pkg, patterns in cfg["package-data"].items():
        top = pkg.split(".")[0]
        base = ROOT / dirs[top] / Path(*pkg.split(".")[1:])
        for pat in patterns:
            assert any(p.is_file() for p in base.glob(pat)), f"{pkg}: pattern {pat!r} matches no file"
