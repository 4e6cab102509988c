"""The one exception type that reaches the user: a one-line message saying what to do next."""


class FindError(Exception):
    """A user-facing error. The CLI prints `error: <message>` on one line and exits with `exit_code`."""

    def __init__(self, message: str, exit_code: int = 2):
        # Collapse to one line: the message is what the user reads, and other tools grep it.
        super().__init__(" ".join(str(message).split()))
        self.exit_code = exit_code
