"""``cifarkit predict PATH...``: classify image files, folders, globs or stdin with an ONNX model.

Rows stream out as batches finish (a table, CSV, JSONL or Parquet: ``engines.writers``); bad
files become rows with an error and a warning on stderr; a summary (images, failures, seconds,
img/s, and accuracy with ``--labels-from-folders``) ends the run. Exit code 0 when every file
was classified, 1 when any failed (or no image was found); setup errors (model, backend,
provider, options) exit with their own codes (see ``cifarkit.errors``). This module parses,
picks the engine by name (``engines.get_engine``) and renders; the library does the rest.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from cifarkit.cli._common import console, err_console

WARNED = "⚠"  # the table's mark on a row whose file caused warnings (in its warnings column)


def _parse_options(items: list[str] | None) -> dict[str, str]:
    from cifarkit.errors import UsageError

    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--provider-option wants KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def short_path(path: str, width: int) -> str:
    """``path`` relative to the current folder when it is under it, then cut in the middle
    with "…" to at most ``width`` characters (the file name's end stays visible)."""
    try:
        rel = os.path.relpath(path)
        if not rel.startswith(".."):
            path = rel
    except ValueError:  # another drive (Windows)
        pass
    if len(path) <= width or width < 2:
        return path
    head = (width - 1) // 3
    return path[:head] + "…" + path[len(path) - (width - 1 - head):]


class _TableRender:
    """Draws a block of rows as a rich table, as text. Widths come from the width and the
    class names only, never from the rows, so successive blocks line up; paths are shortened
    (relative, then cut in the middle), never wrapped mid-name (csv/jsonl keep them whole)."""

    def __init__(self, top_k: int, labels: bool, width: int, colors: str | None) -> None:
        self.top_k, self.labels, self.width, self.colors = top_k, labels, width, colors
        self.classes: tuple[str, ...] = ()

    def __call__(self, rows: list[Any], first: bool) -> str:
        from rich import box
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        name_width = max((len(c) for c in self.classes), default=8)
        k = min(self.top_k, len(self.classes) or self.top_k)
        table = Table(box=box.SIMPLE_HEAD if first else box.SIMPLE, show_header=first,
                      expand=True, pad_edge=False)
        label_width = name_width + 2  # room for the warnings marker
        fixed = 6 + label_width + (name_width if self.labels else 0)
        n_cols = 3 + bool(self.labels) + (k > 1)
        room = self.width - fixed - 2 * (n_cols - 1)
        path_width = max(16, room * 3 // 5 if k > 1 else room)
        table.add_column("path", no_wrap=True, width=path_width)
        table.add_column("label", style="bold cyan", width=label_width, no_wrap=True)
        table.add_column("conf", justify="right", width=6, no_wrap=True)
        if self.labels:
            table.add_column("truth", width=name_width, no_wrap=True)
        if k > 1:
            table.add_column(f"top-{k}", ratio=2, min_width=12, overflow="fold")
        for pred in rows:
            cell = pred.table_cells()
            row = [escape(short_path(cell["path"], path_width))]
            marker = f" [yellow]{WARNED}[/]" if cell["warnings"] else ""
            if cell["ok"]:
                label = escape(cell["label"])
                if cell["rejected"]:  # "unknown": the conf column shows its score
                    label = f"[magenta]{label}[/]"
                row += [label + marker, cell["confidence"]]
                mark = {True: "[green]", False: "[red]", None: "[dim]"}[cell["correct"]]
            else:
                shown = "error" if k > 1 else escape(cell["error"] or "error")
                row += [f"[red]{shown}[/]{marker}", ""]
                mark = ""
            if self.labels:
                row.append(f"{mark}{escape(cell['truth'])}")
            if k > 1:
                row.append(escape(cell["top_k"]) if cell["ok"] else f"[red]{escape(cell['error'])}")
            table.add_row(*row)
        buf = io.StringIO()
        # Colours only for a terminal (the text then goes through sys.stdout, which rich's
        # progress display decodes); files and pipes get plain text.
        Console(file=buf, width=self.width, force_terminal=self.colors is not None,
                color_system=self.colors, soft_wrap=False).print(table)  # type: ignore[arg-type]
        return buf.getvalue()


def _progress() -> Any:
    from rich.progress import (
        BarColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            if not speed and task.elapsed and task.completed:
                speed = task.completed / task.elapsed
            return Text(f"{speed:,.0f} img/s" if speed else "– img/s", style="bold green")

    class Count(ProgressColumn):
        def render(self, task: Any) -> Text:
            total = f"{int(task.total):,}" if task.total is not None else "?"
            failed = task.fields.get("failed", 0)
            extra = f" ({failed:,} failed)" if failed else ""
            return Text(f"{int(task.completed):,}/{total}{extra}")

    return Progress(
        TextColumn("[bold]classifying"), BarColumn(), Count(), Rate(), TimeElapsedColumn(),
        TimeRemainingColumn(), console=err_console, transient=True,
        disable=not err_console.is_terminal,
    )


def _summary(stats: Any, per_class_console: Any, list_skipped: bool = False) -> None:
    """The per-class table (with --labels-from-folders), then the one-line final summary."""
    from rich.markup import escape
    from rich.table import Table

    accuracy = ""
    if stats.accuracy is not None:
        n = sum(stats.labelled.values())
        outside = f", {stats.unlabelled:,} outside class folders" if stats.unlabelled else ""
        accuracy = f"; accuracy [bold]{stats.accuracy:.2%}[/] on {n:,} labelled images{outside}"
        table = Table(title="per class")
        for name in ("class", "images", "correct", "accuracy", "predicted as"):
            table.add_column(name, **({"style": "cyan"} if name == "class" else
                                      {"justify": "right"}))
        for row in stats.per_class():
            table.add_row(row["class"], f"{row['images']:,}", f"{row['correct']:,}",
                          f"{row['accuracy']:.2%}", f"{row['predicted']:,}")
        per_class_console.print(table)
    failed = f"[red]{stats.failed:,} failed[/]" if stats.failed else "0 failed"
    # Nothing classified (a missing path, only bad files): inputs, and no rate to speak of.
    what = "image" if stats.succeeded else "input"
    rate = (f": [bold green]{stats.images_per_second:,.0f} img/s[/]" if stats.succeeded
            else "")
    warned = (f", [yellow]{stats.warned:,} with warnings {WARNED}[/] (the warnings column "
              "of -f csv, jsonl, parquet)" if stats.warned else "")
    rejected = ""
    if stats.rejection is not None:
        rejected = (f", [magenta]{stats.rejected:,} unknown[/] "
                    f"({escape(stats.rejection.describe())})")
    skipped = ""
    if stats.skipped.count:
        skipped = (f"\n  {escape(stats.skipped.describe())}"
                   f"{'' if list_skipped else ': --list-skipped lists them'}")
    err_console.print(
        f"[bold]{stats.images:,}[/] {what}{'' if stats.images == 1 else 's'} "
        f"({stats.succeeded:,} classified{rejected}, {failed}{warned}) in "
        f"{stats.seconds:.2f} s{rate}{accuracy}\n  model {escape(stats.ran_on)}{skipped}",
        highlight=False, soft_wrap=True,
    )


@contextmanager
def _stdout_stream(wrap: bool) -> Iterator[Any]:
    """Where rows go without --output: a terminal through ``sys.stdout`` at write time (the
    progress display redirects it to print above itself: ``None``), a pipe or file (``wrap``)
    as UTF-8 bytes whatever the locale."""
    if not wrap:
        yield None
        return
    stream = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="",
                              write_through=False)
    try:
        yield stream
    finally:
        stream.flush()
        stream.detach()


# --- the options, declared once each (in --help's order) --------------------------------------

PathsArg = Annotated[list[str], typer.Argument(
    show_default=False, help="Image files, folders, glob patterns ('photos/**/*.png'), or - to "
    "read newline-separated paths from stdin.")]
ModelOpt = Annotated[str | None, typer.Option(
    "--model", "-m", help="An .onnx file, a folder, or NAME[:fp32|int8|fp16|auto] in exported/ "
    "(auto: int8 on CPUs when its card says int8 pays, else fp32). Default: the model named in "
    "exported/default.")]
BackendOpt = Annotated[str, typer.Option(
    "--backend", help="The runtime that runs the model: onnxruntime[:PROVIDER] | openvino | opencv "
    "| tract | litert (litert opens the .tflite beside the .onnx). Fails unless installed and able "
    "to run the model; rows name it.")]
ProviderOpt = Annotated[str, typer.Option(
    "--provider", "-p", help="onnxruntime's execution provider: cpu | cuda | tensorrt | openvino | "
    "auto. Fails unless really active (no silent CPU fallback).")]
BatchSizeOpt = Annotated[int, typer.Option(
    "--batch-size", "-b", min=1, help="Images per decode task and inference request (the session "
    "runs them in chunks of its preferred size).")]
TopKOpt = Annotated[int, typer.Option("--top-k", "-k", min=1, help="Classes listed per image.")]
FmtOpt = Annotated[str, typer.Option(
    "--format", "-f", help="table | csv | jsonl | parquet (needs --output: NAME.parquet is one "
    "file, any other name a folder of part files).")]
OutputOpt = Annotated[str | None, typer.Option(
    "--output", "-o", help="Write the results to FILE (atomically) instead of stdout. --engine "
    "ray: FOLDER/ (or a URI, s3://b/preds/) is a folder of part files written by the workers plus "
    "_SUCCESS; NAME.csv|.jsonl|.parquet one file (see docs/scale-out.md).")]
EngineOpt = Annotated[str, typer.Option(
    "--engine", "-e", help="local (this process and its decoder processes) | ray (a Ray Data actor "
    "pool, on a local Ray or the cluster at --address).")]
AddressOpt = Annotated[str | None, typer.Option(
    "--address", show_default=False, help="Ray cluster (HOST:PORT of the head, ray://HOST:PORT or "
    "auto). Default: $RAY_ADDRESS, else a local Ray started for this run. --engine ray only.")]
ConcurrencyOpt = Annotated[str | None, typer.Option(
    "--concurrency", show_default=False, help="Inference actors: N, or MIN-MAX to autoscale "
    "(default: the cluster's CPUs / --cpus-per-actor, or GPUs / --gpus-per-actor). --engine ray "
    "only.")]
CpusPerActorOpt = Annotated[int, typer.Option(
    "--cpus-per-actor", min=1, help="CPUs per actor = its onnxruntime threads. --engine ray only.")]
GpusPerActorOpt = Annotated[float | None, typer.Option(
    "--gpus-per-actor", min=0.0, show_default=False, help="GPUs per actor (default: 1 with "
    "--provider cuda or tensorrt, else 0; fractions share a GPU). --engine ray only.")]
RecursiveOpt = Annotated[bool, typer.Option(
    "--recursive/--no-recursive", help="Walk subfolders of folder arguments (a ** in a glob "
    "pattern always matches any depth).")]
WorkersOpt = Annotated[int | None, typer.Option(
    "--workers", "-w", min=0, help="Decoder processes (default: physical cores; 0: decode in the "
    "main process).")]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Stop at the first file that fails.")]
LabelsFromFoldersOpt = Annotated[bool, typer.Option(
    "--labels-from-folders", help="Take the true class from each image's folder name (…/cat/x.jpg) "
    "and report accuracy and a per-class summary.")]
ThreadsOpt = Annotated[int | None, typer.Option(
    "--threads", min=1, help="Inference threads (onnxruntime's intra-op threads; default: physical "
    "cores).")]
IoBindingOpt = Annotated[bool, typer.Option(
    "--io-binding", help="Run through onnxruntime I/O binding (one copy per batch to the GPU, "
    "outputs bound on the device).")]
ProviderOptionOpt = Annotated[list[str] | None, typer.Option(
    "--provider-option", help="KEY=VALUE passed to the execution provider, e.g. "
    "cudnn_conv_algo_search=HEURISTIC (repeatable).")]
RejectOpt = Annotated[str, typer.Option(
    "--reject", metavar="auto|VALUE|off", help="Answer 'unknown' for images that look like none of "
    "the classes: auto (the threshold recorded in the model; an error if it has none) | VALUE (a "
    "threshold on the score the model's rule names: the top probability, in (0, 1), or the "
    "model's 'score' output, any number) | off. Rows keep top-k and gain score "
    "and rejected columns; the summary counts the unknown rows. Refused for a model with a class "
    "named 'unknown'.")]
ListSkippedOpt = Annotated[bool, typer.Option(
    "--list-skipped", help="List the files that folders and globs held but that were skipped as "
    "non-images (their extension is none the installed Pillow opens; the summary counts them).")]


def predict(
    paths: PathsArg,
    model: ModelOpt = None,
    backend: BackendOpt = "onnxruntime",
    provider: ProviderOpt = "cpu",
    batch_size: BatchSizeOpt = 256,
    top_k: TopKOpt = 3,
    fmt: FmtOpt = "table",
    output: OutputOpt = None,
    engine: EngineOpt = "local",
    address: AddressOpt = None,
    concurrency: ConcurrencyOpt = None,
    cpus_per_actor: CpusPerActorOpt = 1,
    gpus_per_actor: GpusPerActorOpt = None,
    recursive: RecursiveOpt = True,
    workers: WorkersOpt = None,
    strict: StrictOpt = False,
    labels_from_folders: LabelsFromFoldersOpt = False,
    threads: ThreadsOpt = None,
    io_binding: IoBindingOpt = False,
    provider_option: ProviderOptionOpt = None,
    reject: RejectOpt = "off",
    list_skipped: ListSkippedOpt = False,
) -> None:
    """Classify images with an ONNX model: streaming, batched, bad files reported and skipped.

    --engine ray runs the same prediction on Ray Data (a local Ray, or a cluster at --address;
    inputs may also be s3:// and other pyarrow/fsspec URIs): see docs/scale-out.md."""
    from rich.markup import escape

    from cifarkit.backends.catalog import choose_model
    from cifarkit.engines import PredictRequest

    fmt = fmt.lower()
    runner = _engine(engine, fmt, output)
    choice = choose_model(model, provider)
    request = PredictRequest(
        sources=tuple(paths), model=choice.path, backend=backend.lower(), provider=provider,
        provider_options=_parse_options(provider_option), top_k=top_k, batch_size=batch_size,
        recursive=recursive, labels_from_folders=labels_from_folders, strict=strict,
        reject=reject, workers=workers, threads=threads, io_binding=io_binding, address=address,
        concurrency=concurrency, cpus_per_actor=cpus_per_actor, gpus_per_actor=gpus_per_actor,
    )
    runner.check(request)
    if runner.name == "ray":
        from cifarkit.engines.ray import quiet_ray

        quiet_ray()  # Ray missing: says how to install it; else one progress display, no logs
    if choice.reason:  # the file depended on exported/default or :auto: say which one runs
        err_console.print(f"model: {escape(os.fspath(choice.path))} ({escape(choice.reason)})",
                          highlight=False, soft_wrap=True)
    to_terminal = output is None and sys.stdout.isatty()
    render = _TableRender(top_k, labels_from_folders, 160 if output else console.width,
                          console.color_system if to_terminal else None)
    with _stdout_stream(wrap=output is None and not to_terminal) as stream:
        skipped: list[str] | None = [] if list_skipped else None
        stats = _run(runner, request, fmt, output, stream, render, skipped)
    _report(stats, fmt, output, skipped)
    raise typer.Exit(_exit_code(stats, labels_from_folders, render.classes))


def _engine(name: str, fmt: str, output: str | None) -> Any:
    """The engine called ``name``, once ``--format`` and ``--output`` are known to suit it."""
    from cifarkit.engines import FORMATS, get_engine
    from cifarkit.errors import UsageError

    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "parquet" and output is None:
        raise UsageError("--format parquet writes a file: give --output NAME.parquet (one file) "
                         "or --output FOLDER (part files)")
    runner = get_engine(name.lower())
    if output is not None and "://" in str(output) and runner.name != "ray":
        raise UsageError(f"--output {output}: a URI output needs --engine ray (its workers "
                         "write the parts); the local engine writes local files")
    return runner


def _report(stats: Any, fmt: str, output: str | None, skipped: list[str] | None) -> None:
    """After the rows: the skipped files (``--list-skipped``), the summary, what was written."""
    from rich.markup import escape

    from cifarkit.engines.rows import safe_text

    for path in skipped or ():
        err_console.print(f"skipped: {escape(safe_text(path))}", highlight=False,
                          soft_wrap=True)
    _summary(stats, console if (fmt == "table" and output is None) else err_console,
             skipped is not None)
    if output is not None:
        err_console.print(f"wrote {escape(os.fspath(output))}", highlight=False, soft_wrap=True)


def _exit_code(stats: Any, labels_from_folders: bool, classes: tuple[str, ...]) -> int:
    """0 when every input was classified; 1 (said why) when any failed or none was found; 2
    when --labels-from-folders found no input in a folder named after a class."""
    from rich.markup import escape

    if labels_from_folders and stats.unlabelled and not stats.labelled:
        names = ", ".join(classes[:8]) + (" …" if len(classes) > 8 else "")
        err_console.print("[red]error:[/] --labels-from-folders: no input is in a folder named "
                          f"after one of the model's classes ({escape(names)}); name the "
                          "folders after the classes, or leave the option out", soft_wrap=True)
        return 2
    if stats.stopped_early:
        err_console.print("[red]stopped at the first failure (--strict)[/]")
    if stats.images == 0:
        why = stats.skipped.describe()  # e.g. only .txt files, or EPS without Ghostscript
        err_console.print(f"[red]error:[/] no images found in the inputs"
                          f"{': ' + escape(why) if why else ''}", highlight=False,
                          soft_wrap=True)
    return 1 if stats.failed or stats.images == 0 else 0


def _run(runner: Any, request: Any, fmt: str, output: str | None, stream: Any,
         render: _TableRender, skipped: list[str] | None = None) -> Any:
    """The engine's run into the writer for ``fmt``, with a progress bar and a warning per
    failed input (``skipped``: a list to collect the files skipped as non-images); the
    writer commits only a run that ends without an exception."""
    from rich.markup import escape

    from cifarkit.engines import open_writer
    from cifarkit.engines.rows import safe_text

    def warn(message: str) -> None:
        err_console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False,
                          soft_wrap=True)

    if runner.name == "ray" and output is not None and fmt != "table":
        # The workers write the parts; the driver sees counts only (docs/scale-out.md).
        with _progress() as bar:
            task = bar.add_task("classify", total=None, failed=0)

            def on_counts(done: int, failed: int, total: int | None) -> None:
                bar.update(task, completed=done, total=total, failed=failed)

            def on_named(classes: tuple[str, ...]) -> None:
                render.classes = classes

            return runner.write(request, output, fmt, on_counts, on_start=on_named,
                                on_skip=None if skipped is None else skipped.append)
    with open_writer(fmt, target=output, stream=stream, labels=request.labels_from_folders,
                     render=render, reject=request.reject != "off") as writer, _progress() as bar:
        task = bar.add_task("classify", total=None, failed=0)

        def on_row(pred: Any) -> None:
            writer.add(pred)
            if not pred.ok:
                warn(f"{pred.display_path}: {safe_text(pred.error or '')}")

        def on_progress(done: int, failed: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total, failed=failed)
            writer.flush()

        def on_start(classes: tuple[str, ...]) -> None:
            render.classes = classes

        return runner.run(request, on_row, on_progress, on_start=on_start, on_warning=warn,
                          on_skip=None if skipped is None else skipped.append)


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)
