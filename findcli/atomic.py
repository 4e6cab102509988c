"""Atomic file writes: write to a temporary file beside the target, then rename over it.

A crash, Ctrl-C or full disk leaves either the old file or the new one, never half of one. The temp
file is fsync'd before the rename and the folder after it, so a power loss cannot leave the new name
pointing at unwritten blocks. A SIGKILL mid-write can only leave a hidden temp file of our own
pattern (`.STEM.XXXXXXXX.tmpSUFFIX`); `clean_stale(path)` removes those for a target at the next
start (under the target's lock, see `OutputLock`, so they cannot belong to a live writer).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
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


def _fsync(path: Path, directory: bool = False) -> None:
    fd = os.open(path, (os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)) if directory else os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as e:
        if not directory or e.errno not in (errno.EINVAL, errno.EBADF):  # some filesystems refuse dir fsync
            raise
    finally:
        os.close(fd)


def _write_error(path: Path, e: OSError) -> FindError:
    why = e.strerror or type(e).__name__
    fix = "free some space" if e.errno in (errno.ENOSPC, errno.EDQUOT) else "check the folder"
    return FindError(f"cannot write {str(path)!r} ({why}); the previous file, if any, is unchanged; {fix} "
                     "or choose another output path")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's directory; on success fsync it and rename it onto
    `path`. Any failure removes the temp file and leaves `path` as it was; an OSError of the write
    itself (a full disk, a lost mount) becomes one FindError naming the file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Keep the real suffix last so writers that infer the format from it (savefig, PIL) still work.
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    except OSError as e:
        raise _write_error(path, e) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600 files; give the result the permissions a plain open() would have.
        os.chmod(tmp_path, 0o666 & ~_umask())
        _fsync(tmp_path)
        os.replace(tmp_path, path)
        _fsync(path.parent, directory=True)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise _write_error(path, e) from None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def stale_temp_files(path: str | os.PathLike) -> list[Path]:
    """Temp files atomic_path(path) would create (`.STEM.` + mkstemp's 8 characters + `.tmpSUFFIX`)."""
    path = Path(path)
    pattern = re.compile(rf"^\.{re.escape(path.stem)}\.[A-Za-z0-9_]{{8}}\.tmp{re.escape(path.suffix)}$")
    try:
        names = os.listdir(path.parent if str(path.parent) else ".")
    except OSError:
        return []
    return [path.parent / n for n in sorted(names) if pattern.match(n)]


def clean_stale(path: str | os.PathLike) -> list[Path]:
    """Remove temp files left for `path` by a killed writer; call it only while holding its lock."""
    removed = []
    for p in stale_temp_files(path):
        with contextlib.suppress(OSError):
            p.unlink()
            removed.append(p)
    return removed


class OutputLock:
    """An advisory lock (flock) on `path`'s hidden lock file `.NAME.lock`, held while a run writes
    `path` and its side files: a second writer gets one FindError instead of racing the first.
    The lock file is removed on release; `acquire` re-checks that the file it locked is still the one
    on disk, so a release between another writer's open and lock cannot let two runs in.
    `wait=True`: block until the holder releases it instead (short critical sections shared by several
    processes of one run, e.g. the ranks updating a prompt set's index.json)."""

    def __init__(self, path: str | os.PathLike, wait: bool = False):
        self.path = Path(path)
        self.wait = wait
        self.lock_path = self.path.with_name(f".{self.path.name}.lock")
        self._fd: int | None = None
        self._made: list[Path] = []  # folders acquire created (removed again by release if left empty)

    def acquire(self) -> "OutputLock":
        import fcntl

        missing, d = [], self.lock_path.parent.absolute()
        while not d.exists() and d != d.parent:
            missing.append(d)
            d = d.parent
        try:
            self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise _write_error(self.path, e) from None
        self._made = missing  # deepest first
        while True:
            try:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise _write_error(self.lock_path, e) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if self.wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                holder = ""
                with contextlib.suppress(OSError, ValueError):
                    holder = f" (process {int(self.lock_path.read_text().strip())})"
                raise FindError(f"another find run is writing {str(self.path)!r}{holder}; wait for it to "
                                "finish or choose another --out") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.lock_path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the holder released and removed it between our open and lock: try again
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self.lock_path.unlink()
        os.close(self._fd)
        self._fd = None
        for d in self._made:  # a run that wrote nothing leaves no empty folder behind
            try:
                d.rmdir()
            except OSError:
                break

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_with(path: str | os.PathLike, writer: Callable[[Path], None]) -> None:
    """Call `writer(tmp_path)` (e.g. torch.save, fig.savefig, img.save) and rename the result onto `path`."""
    with atomic_path(path) as tmp:
        writer(tmp)
