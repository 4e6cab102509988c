"""Atomic file writes: write to a temporary file beside the target, then rename over it.

A crash, Ctrl-C or full disk leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from findcli.errors import FindError


def check_writable(path: str | os.PathLike) -> Path:
    """Fail early (before hours of training) if `path` cannot be created; creates nothing itself."""
    path = Path(path)
    if path.is_dir():
        raise FindError(f"output path {str(path)!r} is a directory; give a file name such as {str(path / 'out.pt')!r}")
    ancestor = path.parent if str(path.parent) else Path(".")
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent  # folders that do not exist yet are created at write time
    problem = None
    if not ancestor.is_dir():
        problem = f"{str(ancestor)!r} is a file, not a folder"
    elif not os.access(ancestor, os.W_OK | os.X_OK):
        problem = "permission denied"
    elif ancestor == path.parent:
        try:  # the real test (read-only mounts pass os.access): create and remove a probe file
            fd, probe = tempfile.mkstemp(prefix=".find-probe-", dir=ancestor)
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            problem = e.strerror or str(e)
    if problem:
        raise FindError(f"cannot write to {str(path)!r} ({problem}); choose a writable output path")
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's directory; on success rename it onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Keep the real suffix last so writers that infer the format from it (savefig, PIL) still work.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600 files; give the result the permissions a plain open() would have.
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_with(path: str | os.PathLike, writer: Callable[[Path], None]) -> None:
    """Call `writer(tmp_path)` (e.g. torch.save, fig.savefig, img.save) and rename the result onto `path`."""
    with atomic_path(path) as tmp:
        writer(tmp)
