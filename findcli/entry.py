"""Console-script entry points: `find` (ours, or the system `find`) and `findcli` (always ours).

Installed scripts land ahead of /usr/bin/find on PATH, so `find` must keep working as GNU find.
The decision is made here from argv (and, for path words, the current directory) alone, before
anything heavy is imported. A `find` line is ours only when all of these hold:

* the first argument is one of our commands (train, sample, eval, bench, info, --help, --version);
* no later argument looks like a GNU find primary/operator (`-name`, `-type`, `(`, `!`, ...);
* it is not a bare `find --help` or `find --version` (those are GNU find's: scripts run
  `find --version | grep GNU`);
* it is not a list of existing paths: when the first word names an existing file or directory
  (relative to the current directory; a dangling symlink counts) and every later word does too, or
  there is none, the line is GNU find's. In a project holding `train/` and `test/`, `find train` and
  `find train test` list those folders; `find train "a red cube on a blue sphere"` and
  `find train --help` stay ours unless a file of that exact name exists.

Anything else (a bare `find`, `find .`, `find train -type f`, `find -L x`, ...) -> exec the next
`find` on PATH that is not this program (falling back to /usr/bin/find), argv and exit status
passed through unchanged (exec replaces this process, so the status is find's own). Our app stays
reachable in every case as `findcli ...` (or `python -m findcli ...`).

Our own options are all `--long`, so a single-dash word (`-name`, `-type`, `-exec`, `-print0`, ...)
or one of `( ) ! ,` can only be meant for GNU find.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable

OWN_COMMANDS = frozenset({"train", "sample", "eval", "bench", "info", "--help", "--version"})
FIND_OPERATORS = frozenset({"(", ")", "!", ","})
# Alone, these are GNU find's own flags (`find --version | grep GNU`); ours: `findcli --version`.
GNU_ALONE = frozenset({"--help", "--version"})
# A GNU find primary, option or operator word: one dash then a letter (-name, -type, -o, -not, -L).
_PRIMARY = re.compile(r"^-[A-Za-z]")
# Set in the environment of the find we exec, so that a wrapper which leads back to us cannot loop.
_GUARD = "FINDCLI_PASSTHROUGH"
FALLBACK_FIND = "/usr/bin/find"


def is_ours(args: list[str], exists: Callable[[str], bool] = os.path.lexists) -> bool:
    """True when `args` (argv without the program name) is a command for our app, not for GNU find.

    `exists` says whether a word names an existing path (relative to the current directory); a line
    made only of existing paths (`find train`, `find train test` in a project holding those folders)
    is a GNU find listing, not our command.
    """
    if not args or args[0] not in OWN_COMMANDS:
        return False
    if len(args) == 1 and args[0] in GNU_ALONE:
        return False
    if any(a in FIND_OPERATORS or _PRIMARY.match(a) for a in args[1:]):
        return False
    return not all(exists(a) for a in args)


def _looks_like_us(path: str) -> bool:
    """A `find` on PATH that would lead back here: a Python console script of ours or a pyenv shim."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return True
    if not head.startswith(b"#!"):
        return False  # a real binary
    return b"findcli" in head or b"pyenv" in head


def system_find(self_path: str | None = None) -> str:
    """The next executable `find` on PATH that is not this program, else /usr/bin/find."""
    if os.environ.get(_GUARD):
        return FALLBACK_FIND
    me = os.path.realpath(self_path or sys.argv[0])
    for d in os.environ.get("PATH", "").split(os.pathsep):
        cand = os.path.join(d or ".", "find")
        if not (os.path.isfile(cand) and os.access(cand, os.X_OK)):
            continue
        if os.path.realpath(cand) == me or _looks_like_us(cand):
            continue
        return cand
    return FALLBACK_FIND


def passthrough(args: list[str]) -> None:
    """Replace this process with the system find (never returns)."""
    target = system_find()
    env = dict(os.environ, **{_GUARD: "1"})
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        # argv[0] stays "find" so GNU find's messages read as if the user had run it directly.
        os.execve(target, ["find", *args], env)
    except OSError as e:
        sys.stderr.write(f"find: cannot run the system find at {target} ({e.strerror}); install GNU findutils\n")
        sys.exit(127)


def find_main() -> None:
    args = sys.argv[1:]
    if not is_ours(args):
        passthrough(args)
    from findcli.main import run

    run(args, prog_name="find")


def findcli_main() -> None:
    from findcli.main import run

    run(sys.argv[1:], prog_name="findcli")
