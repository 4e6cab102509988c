"""The one exception type that reaches the user: a one-line message saying what to do next."""


class FindError(Exception):
    """A user-facing error. The CLI prints `error: <message>` on one line and exits with `exit_code`."""

    def __init__(self, message: str, exit_code: int = 2):
        # Collapse to one line: the message is what the user reads, and other tools grep it.
        super().__init__(" ".join(str(message).split()))
        self.exit_code = exit_code


class UserCodeError(FindError):
    """An exception raised inside the user's code (a `--reward module:function`): the CLI prints the
    original traceback, then this one line naming whose code it was."""

    def __init__(self, message: str, original: BaseException, exit_code: int = 1):
        super().__init__(message, exit_code)
        self.original = original


# Exit status of a run stopped by a signal after saving its checkpoint (EX_TEMPFAIL, sysexits.h):
# "temporary failure, run it again" — with --resume. Distinct from success (0), errors (1, 2) and an
# abort (128 + the signal's number).
INTERRUPTED_EXIT = 75


class Aborted(BaseException):
    """A stop that saves nothing: a second signal, or one before training started. A BaseException, as
    KeyboardInterrupt is, so no `except Exception` on the way can swallow it. Exits 128 + signum."""

    def __init__(self, signum: int, message: str = "aborted"):
        super().__init__(message)
        self.signum = int(signum)
        self.exit_code = 128 + self.signum
