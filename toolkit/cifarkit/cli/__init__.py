"""The ``cifarkit`` command: a thin typer layer over the library.

Each command module parses options, calls the library, and renders with rich. Errors from
the library (``CifarkitError``) become one red line on stderr and the error's exit code; a
traceback only with ``--debug``. Command modules import heavy libraries inside the command
functions, so ``cifarkit --help`` and ``cifarkit predict --help`` start fast.
"""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

from cifarkit.cli._common import err_console, state

app = typer.Typer(
    name="cifarkit",
    help="Train Keras CIFAR-10 classifiers, export them to ONNX, run and benchmark them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root(
    debug: bool = typer.Option(
        False, "--debug", help="Show full tracebacks on errors, and TensorFlow's own log lines."
    ),
) -> None:
    from cifarkit.cli._tfquiet import setup_environment

    state.debug = debug
    setup_environment()  # before any command imports TensorFlow


# Command modules (one per stage). Each defines ``register(app)``.
from cifarkit.cli import (  # noqa: E402
    bench_cmd,
    data_cmd,
    export_cmd,
    models_cmd,
    predict_cmd,
    train_cmd,
)

for _module in (models_cmd, data_cmd, train_cmd, export_cmd, predict_cmd, bench_cmd):
    _module.register(app)


def main() -> None:
    from cifarkit._signals import sigterm_as_interrupt
    from cifarkit.errors import CifarkitError

    sigterm_as_interrupt()  # a kill stops like Ctrl-C: runs stay resumable, exit code 130
    try:
        rc = app(standalone_mode=False)
    except CifarkitError as exc:
        if state.debug:
            err_console.print_exception()
        # soft_wrap: one line however long, so a log or `2> file` keeps the message whole.
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False,
                          soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:
        # typer's usage errors carry their own exit codes. Matched by what they do, not by
        # class: typer up to 0.2x raises click's exceptions, later versions their vendored
        # copies (click is then not installed at all).
        kind = type(exc).__name__
        if kind == "Exit" and isinstance(getattr(exc, "exit_code", None), int):
            sys.exit(exc.exit_code)
        if kind == "Abort":
            err_console.print("[yellow]aborted[/]")
            sys.exit(130)
        if callable(getattr(exc, "show", None)) and isinstance(getattr(exc, "exit_code", None),
                                                                int):
            exc.show()
            sys.exit(exc.exit_code)
        if state.debug:
            err_console.print_exception()
        else:
            err_console.print(
                f"[bold red]internal error:[/] {type(exc).__name__}: {exc}\n"
                "run again with --debug for the traceback", highlight=False, soft_wrap=True,
            )
        sys.exit(70)
    sys.exit(rc if isinstance(rc, int) else 0)


__all__ = ["app", "main"]
