"""``cifarkit data``: where the data comes from, its shapes and class balance; a sample grid."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from cifarkit.cli._common import DATA_HELP, console, progress_bar

#: Classes listed in the terminal table before it is cut (JSON-free command: say so).
MAX_ROWS = 30


def data(
    path: Path = typer.Argument(None, help=DATA_HELP, show_default=False),
    data_path: Path = typer.Option(None, "--data", help="Same as PATH."),
    limit: int = typer.Option(None, "--limit", help="Stratified subset of N images per split."),
    image_size: int = typer.Option(32, "--image-size", help="Decode images to N×N."),
    grid: Path = typer.Option(None, "--grid", help="Write a PNG of the first N images per class."),
    per_class: int = typer.Option(
        8, "--per-class", min=1, max=50, help="Images per class in --grid."
    ),
    strict: bool = typer.Option(False, "--strict", help="Fail on a file that cannot be decoded "
                                "(default: skip it and list it)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Decode image folders afresh."),
) -> None:
    """Summarise a dataset: source, classes, counts per split, imbalance, image sizes and
    formats, files that could not be decoded, byte-identical files across splits (leaks)."""
    from rich.markup import escape

    from cifarkit.data import load_dataset
    from cifarkit.data.inspect import summarize

    start = time.perf_counter()
    with progress_bar() as update:
        ds = load_dataset(path or data_path, limit=limit, use_cache=not no_cache,
                          progress=update, image_size=image_size, strict=strict)
    seconds = time.perf_counter() - start
    summary = summarize(ds)
    console.print(f"[bold]source[/]: {ds.source} ({ds.kind}, {ds.layout}), "
                  f"{len(ds.classes)} classes, loaded in {seconds:.2f} s")
    for note in ds.notes:
        console.print(f"  [dim]{note}[/]")
    console.print("    ".join(f"{split}: x {ds.split(split)[0].shape} {ds.split(split)[0].dtype}"
                               for split in summary.counts))
    _print_counts(ds.classes, summary.counts)
    if summary.sizes:
        sizes = ", ".join(f"{k} {w}×{h}" for k, (w, h) in summary.sizes.items())
        formats = ", ".join(f"{k} {n:,}" for k, n in summary.formats.items())
        console.print(f"image files: {sizes}; formats: {formats} → decoded to "
                      f"{ds.image_size}×{ds.image_size}")
    if summary.duplicates_within:
        console.print(f"[dim]{summary.duplicates_within} file(s) repeat another of their "
                      "split byte for byte[/]")
    for line in ds.skipped[:10]:
        console.print(f"[yellow]skipped[/] {escape(line)}", highlight=False)
    if len(ds.skipped) > 10:
        console.print(f"[yellow]… and {len(ds.skipped) - 10} more skipped[/]")
    for warning in summary.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    if grid is not None:
        from cifarkit.plots import sample_grid

        sample_grid(ds.x_train if len(ds.y_train) else ds.x_test,
                    ds.y_train if len(ds.y_train) else ds.y_test, ds.classes, grid,
                    per_class=per_class)
        console.print(f"wrote {grid}")


def _print_counts(classes: tuple[str, ...], counts: dict[str, list[int]]) -> None:
    from rich.table import Table

    table = Table(title="images per class")
    table.add_column("label", justify="right")
    table.add_column("class", style="cyan")
    for split in counts:
        table.add_column(split, justify="right")
    for i, name in enumerate(classes[:MAX_ROWS]):
        table.add_row(str(i), name, *(f"{c[i]:,}" for c in counts.values()))
    if len(classes) > MAX_ROWS:
        table.add_row("…", f"{len(classes) - MAX_ROWS} more classes", *("" for _ in counts))
    table.add_row("", "[bold]total", *(f"[bold]{sum(c):,}" for c in counts.values()))
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("data")(data)
