"""``cifarkit data``: where the data comes from, its shapes and class balance; a sample grid."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from cifarkit.cli._common import console, progress_bar

DATA_HELP = (
    "CIFAR-10 source: a cifar-10-batches-py folder, cifar-10-python.tar.gz, or train/ and "
    "test/ class folders. Default: $CIFARKIT_DATA, then Keras's cache, then Keras's download."
)


def data(
    data_path: Path = typer.Option(None, "--data", help=DATA_HELP),
    limit: int = typer.Option(None, "--limit", help="Stratified subset of N images per split."),
    grid: Path = typer.Option(None, "--grid", help="Write a PNG of the first N images per class."),
    per_class: int = typer.Option(
        8, "--per-class", min=1, max=50, help="Images per class in --grid."
    ),
    no_cache: bool = typer.Option(False, "--no-cache", help="Decode image folders afresh."),
) -> None:
    """Summarise the CIFAR-10 data: source, shapes, per-class counts."""
    import numpy as np
    from rich.table import Table

    from cifarkit.data import load_dataset

    start = time.perf_counter()
    with progress_bar() as update:
        ds = load_dataset(data_path, limit=limit, use_cache=not no_cache, progress=update)
    seconds = time.perf_counter() - start

    console.print(f"[bold]source[/]: {ds.source} ({ds.kind}), loaded in {seconds:.2f} s")
    for note in ds.notes:
        console.print(f"  [dim]{note}[/]")
    console.print(
        f"train: x {ds.x_train.shape} {ds.x_train.dtype}, y {ds.y_train.shape}    "
        f"test: x {ds.x_test.shape} {ds.x_test.dtype}, y {ds.y_test.shape}"
    )
    table = Table(title="images per class")
    table.add_column("label", justify="right")
    table.add_column("class", style="cyan")
    table.add_column("train", justify="right")
    table.add_column("test", justify="right")
    tr = np.bincount(ds.y_train, minlength=10)
    te = np.bincount(ds.y_test, minlength=10)
    for i, name in enumerate(ds.classes):
        table.add_row(str(i), name, f"{tr[i]:,}", f"{te[i]:,}")
    table.add_row("", "[bold]total", f"[bold]{tr.sum():,}", f"[bold]{te.sum():,}")
    console.print(table)
    if grid is not None:
        from cifarkit.plots import sample_grid

        sample_grid(ds.x_train, ds.y_train, ds.classes, grid, per_class=per_class)
        console.print(f"wrote {grid}")


def register(app: typer.Typer) -> None:
    app.command("data")(data)
