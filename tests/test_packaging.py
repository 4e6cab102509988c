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


def test_the_checkouts_kernels_dir_does_not_shadow_the_hugging_face_kernels_package():
    # `python -m findcli` / `python -m pytest` / `torchrun -m findcli` started in the checkout put it on
    # sys.path, where kernels/ (installed as findcli.kernels) is also a top-level package `kernels`.
    # transformers >= 5 imports the Hugging Face `kernels` distribution whenever it is installed, and
    # every diffusers pipeline load failed ("cannot import name 'CUDAProperties' from 'kernels'").
    # Oracle: a fresh interpreter started in the checkout with the checkout first on sys.path, as
    # `python -m` does, compared with what is installed.
    import importlib.metadata
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    try:
        importlib.metadata.version("kernels")
        installed = True
    except importlib.metadata.PackageNotFoundError:
        installed = False
    code = ("import sys; sys.path.insert(0, '.')\n"
            "try:\n    import kernels\nexcept ImportError as e:\n    print('IMPORTERROR', e)\n"
            "else:\n    print('FILE', kernels.__file__)\n"
            "import findcli.kernels as k; print('OURS', k.__file__, callable(k.sample_policy))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in out.stdout.strip().splitlines())
    if installed:
        assert "FILE" in lines and not Path(lines["FILE"]).resolve().is_relative_to(root / "kernels"), out.stdout
    else:
        assert "IMPORTERROR" in lines, out.stdout
    assert Path(lines["OURS"].split()[0]).resolve() == root / "kernels" / "__init__.py"
    # and the import that failed: diffusers' VAE (through transformers' hub kernels) from the checkout
    out = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, '.'); "
                          "from diffusers import AutoencoderKL; print('ok')"],
                         cwd=root, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
