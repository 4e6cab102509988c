"""The Typer app: one module per command, registered here; errors become one line and an exit code."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer
from typer.core import TyperGroup

from findcli import __version__
from findcli.errors import Aborted, FindError, UserCodeError


def _click_class(name: str) -> type:
    """The click exception class `name` as this Typer uses it (recent Typer vendors its own click)."""
    for cls in typer.BadParameter.__mro__:
        if cls.__name__ == name:
            return cls
    import click  # older Typer: plain click

    return getattr(click.exceptions, name)


_ClickException, _Exit = _click_class("ClickException"), type(typer.Exit())
# click turns Ctrl-C into its own Abort (not typer's subclass-free twin): catch both.
_Abort = (type(typer.Abort()), _click_class("Abort"))
if not hasattr(typer.Exit(), "exit_code"):  # pragma: no cover - very old Typer
    _Exit = _click_class("Exit")


def _err(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


class _OneLineErrors(TyperGroup):
    """Every failure the user can fix prints as `error: ...` on one line with a non-zero exit."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        import signal

        def _sigint(signum, frame):  # noqa: ARG001 - Typer would turn KeyboardInterrupt into a silent exit 130
            raise Aborted(signum, "aborted")

        try:
            previous = signal.signal(signal.SIGINT, _sigint)
        except ValueError:  # not the main thread
            previous = None
        try:
            rv = super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                              standalone_mode=False, **extra)
        except UserCodeError as e:
            # The bug is in the user's code: their traceback first, then one line saying whose it is.
            import traceback

            traceback.print_exception(type(e.original), e.original, e.original.__traceback__, file=sys.stderr)
            _err(f"error: {e}")
            sys.exit(e.exit_code)
        except FindError as e:
            _err(f"error: {e}")
            sys.exit(e.exit_code)
        except Aborted as e:
            _err(f"error: {e}")
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            _err("error: aborted")
            sys.exit(130)
        except _Exit as e:
            if isinstance(e.__cause__, KeyboardInterrupt):  # Typer turns Ctrl-C into a silent Exit(130)
                _err("error: aborted")
            sys.exit(e.exit_code)
        except _ClickException as e:
            hint = f" (see '{prog_name or 'find'} --help')"
            ctx = getattr(e, "ctx", None)
            if ctx is not None and ctx.command_path:
                hint = f" (see '{ctx.command_path} --help')"
            _err(f"error: {' '.join(e.format_message().split())}{hint}")
            sys.exit(e.exit_code)
        except _Abort:
            _err("error: aborted")
            sys.exit(130)
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(
    cls=_OneLineErrors,
    name="find",
    help="FIND: learn where to start. Fine-tune the initial noise distribution of a frozen diffusion model "
         "so it follows the prompt (Chen et al., ACM MM 2024). Any other command line is handed to the system find.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"findcli {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True,
                                                    help="print the version and exit")] = None,
) -> None:
    pass


def _register() -> None:
    from findcli.commands import bench, eval as eval_cmd, info, sample, train

    app.command("train")(train.train)
    app.command("sample")(sample.sample)
    app.command("eval")(eval_cmd.eval_)
    app.command("bench")(bench.bench)
    app.command("info")(info.info)


_register()


def run(args: list[str], prog_name: str = "find") -> None:
    app(args=args, prog_name=prog_name)
