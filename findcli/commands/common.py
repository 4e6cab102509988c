"""What the commands share: the console (user text is never markup), choice types, and a progress
display that is a rich bar on a terminal and plain lines in a pipe or a batch log."""

from __future__ import annotations

import io
import sys
import time
from enum import Enum

from rich.console import Console
from rich.markup import escape


class _SafeStdout(io.TextIOBase):
    """sys.stdout that goes quiet instead of raising when the reader has gone (`find train … | head`):
    the run must go on and save its files; only what it prints is lost."""

    def __init__(self):
        self.closed_pipe = False

    @property
    def _out(self):
        return sys.stdout

    def write(self, s: str) -> int:
        if not self.closed_pipe:
            try:
                self._out.write(s)
            except BrokenPipeError:
                self._quiet()
        return len(s)

    def flush(self) -> None:
        if not self.closed_pipe:
            try:
                self._out.flush()
            except BrokenPipeError:
                self._quiet()

    def _quiet(self) -> None:
        import os

        self.closed_pipe = True
        try:  # point fd 1 at /dev/null so the interpreter's own flush at exit cannot fail either
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass

    def isatty(self) -> bool:
        try:
            return self._out.isatty()
        except (ValueError, AttributeError):
            return False

    def fileno(self) -> int:
        return self._out.fileno()

    @property
    def encoding(self):
        return getattr(self._out, "encoding", "utf-8")


# markup/emoji off: prompts, paths and reward specs are the user's text ("[/]" or ":x:" print as typed);
# styles are given as arguments (console.print(..., style="bold")), never inside strings.
console = Console(file=_SafeStdout(), markup=False, emoji=False, highlight=False, soft_wrap=True)


def esc(text: object) -> str:
    """User text for the few rich APIs that always parse markup (console.status, TextColumn)."""
    return escape(str(text))


def choice(name: str, values: tuple[str, ...]) -> type[Enum]:
    """A str Enum for Typer from a tuple of choices defined in the library (config.CHOICES, ...)."""
    return Enum(name, {v: v for v in values}, type=str)


def enum_values(values: dict) -> dict:
    return {k: (v.value if isinstance(v, Enum) else v) for k, v in values.items() if v is not None}


class Progress:
    """A rich progress bar on a terminal; elsewhere (pipe, Slurm log) one plain line every `every`
    updates and at the end, so a batch log shows the run as it goes. `child` adds a second bar to the
    same display (find train --prompts: prompts, and the iterations of the current one)."""

    def __init__(self, name: str, total: int, completed: int = 0, every: int | None = None):
        self.name, self.total, self.completed = name, total, completed
        self.every = every or max(1, min(10, total // 20 or 1))
        self.tty = console.is_terminal
        self._bar = None
        self._shared = False  # a child: its task lives in its parent's display
        self._closed = False  # a child whose bar was removed: later updates are dropped
        self._t0 = time.perf_counter()
        self._done0 = completed
        self._printed: tuple | None = None  # (completed, live) of the last plain line

    def __enter__(self) -> "Progress":
        if self.tty:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, \
                TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), TimeRemainingColumn(),
                                     TextColumn("{task.fields[live]}", markup=False), console=console)
            self._bar.__enter__()
            self._task = self._bar.add_task(esc(self.name), total=self.total, completed=self.completed, live="")
        return self

    def child(self, name: str, total: int, completed: int = 0) -> "Progress":
        """A second bar under this one (on a terminal, in the same display; elsewhere its own plain
        lines); close it with its __exit__ (removes the bar)."""
        c = Progress(name, total, completed)
        if self._bar is not None:
            c._bar, c._shared = self._bar, True
            c._task = self._bar.add_task(esc(name), total=total, completed=completed, live="")
        return c

    def update(self, completed: int, live: str = "") -> None:
        if self._closed:
            return
        self.completed = completed
        if self._bar is not None:
            self._bar.update(self._task, completed=completed, live=live)
        elif (completed % self.every == 0 or completed == self.total) and (completed, live) != self._printed:
            # a plain line per step reached (a set's prompt count is re-sent every few seconds: once is enough)
            self._printed = (completed, live)
            elapsed = time.perf_counter() - self._t0
            done = completed - self._done0
            left = f"~{elapsed / done * (self.total - completed):.0f} s left" if done > 0 else "time left not known yet"
            console.print(f"{self.name} {completed}/{self.total}  {elapsed:.0f} s elapsed, {left}  {live}")

    def __exit__(self, *exc) -> None:
        if self._bar is not None and self._shared:
            self._bar.remove_task(self._task)
            self._bar, self._closed = None, True
        elif self._bar is not None:
            self._bar.__exit__(*exc)
