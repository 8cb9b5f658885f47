"""Shared CLI pieces: consoles, global state, options more than one command declares, a
progress bar fed by library callbacks."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console()
err_console = Console(stderr=True)


@dataclass
class _State:
    debug: bool = False


state = _State()

DATA_HELP = (
    "Dataset: a folder of class folders (<class>/ or train/<class>/ with val/ and/or test/), "
    "a cifar-10-batches-py folder, or cifar-10-python.tar.gz. Default: $CIFARKIT_DATA, then "
    "Keras's CIFAR-10 cache, then Keras's download."
)
#: ``--data`` of train and bench (export's own says what export does without data).
DataOpt = Annotated[Path | None, typer.Option("--data", help=DATA_HELP)]


def parse_csv(value: str | None, what: str) -> list[str]:
    """``"a,b, c"`` → ``["a", "b", "c"]`` (option values such as ``--precision fp32,int8``)."""
    if not value:
        return []
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        from cifarkit.errors import UsageError

        raise UsageError(f"{what}: empty list")
    return items


def progress_display(transient: bool = True, disable: bool = False) -> Progress:
    """A rich progress display on stderr: what, bar, done/total, elapsed, remaining."""
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TimeRemainingColumn(), console=err_console, transient=transient,
        disable=disable,
    )


@contextlib.contextmanager
def progress_bar(transient: bool = True) -> Iterator[Callable[[int, int, str], None]]:
    """Yield ``update(done, total, what)``: the library's progress callback, drawn by rich."""
    with progress_display(transient) as progress:
        tasks: dict[str, TaskID] = {}

        def update(done: int, total: int, what: str) -> None:
            if what not in tasks:
                tasks[what] = progress.add_task(what, total=total)
            progress.update(tasks[what], completed=done, total=total)

        yield update
