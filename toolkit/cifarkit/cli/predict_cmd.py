"""``cifarkit predict PATH...``: classify image files, folders, globs or stdin with an ONNX model.

Rows stream out as batches finish (a table, CSV or JSONL); bad files become rows with an
error and a warning on stderr; a summary (images, failures, seconds, img/s, and accuracy
with ``--labels-from-folders``) ends the run. Exit code 0 when every file was classified,
1 when any failed (or no image was found); setup errors (model, provider, options) exit
with their own codes (see ``cifarkit.errors``).
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from pathlib import Path
from typing import Any

import typer

from cifarkit.cli._common import console, err_console

FORMATS = ("table", "csv", "jsonl", "parquet")
ENGINES = ("local", "ray")
TABLE_BLOCK = 200  # rows per printed table block (the table streams in blocks)


def _parse_options(items: list[str] | None) -> dict[str, str]:
    from cifarkit.errors import UsageError

    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--provider-option wants KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


class _Sink:
    """Where CSV/JSONL text goes: a file, a pipe (UTF-8, non-UTF-8 path bytes kept through
    surrogateescape), or a terminal (through ``sys.stdout`` at write time, so it prints above
    the progress bar)."""

    def __init__(self, stream: Any | None) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        if self.stream is not None:
            return self.stream.write(text)
        return sys.stdout.write(text)

    def flush(self) -> None:
        (self.stream or sys.stdout).flush()


class _Writer:
    """Streams predictions as a rich table (in blocks), CSV, or JSONL."""

    def __init__(self, fmt: str, sink: _Sink, table_console: Any, top_k: int, labels: bool,
                 classes: tuple[str, ...], parquet: Any = None) -> None:
        self.fmt, self.sink, self.table_console = fmt, sink, table_console
        self.parquet = parquet  # a runtime.predict.ParquetOutput for --format parquet
        self.top_k, self.labels = top_k, labels
        self.block: list[Any] = []
        self.first_block = True
        self.name_width = max(len(c) for c in classes)
        if fmt == "csv":
            self.csv = csv.writer(sink, lineterminator="\n")
            header = ["path", "label", "index", "confidence", "top_k", "error"]
            self.csv.writerow(header + (["true_label", "correct"] if labels else []))

    def add(self, pred: Any) -> None:
        if self.fmt == "parquet":
            self.parquet.add(pred)
        elif self.fmt == "jsonl":
            self.sink.write(json.dumps(pred.as_dict(), ensure_ascii=False) + "\n")
        elif self.fmt == "csv":
            top = ";".join(f"{label}:{p:.6f}" for label, p in pred.top_k)
            row = [
                pred.path, pred.label or "", "" if pred.index is None else pred.index,
                "" if pred.confidence is None else f"{pred.confidence:.6f}", top,
                pred.error or "",
            ]
            if self.labels:
                correct = pred.correct
                row += [pred.true_label or "", "" if correct is None else str(correct).lower()]
            self.csv.writerow(row)
        else:
            self.block.append(pred)
            if len(self.block) >= TABLE_BLOCK:
                self.flush()

    def flush(self) -> None:
        if self.fmt == "table" and self.block:
            self._print_table()
        if self.fmt in ("csv", "jsonl"):
            self.sink.flush()

    def _print_table(self) -> None:
        from rich import box
        from rich.markup import escape
        from rich.table import Table

        # Fixed widths for everything but the path, so successive blocks line up.
        table = Table(box=box.SIMPLE_HEAD if self.first_block else box.SIMPLE,
                      show_header=self.first_block, expand=True, pad_edge=False)
        # Widths come from the console width and ratios only, never from the rows.
        # Paths are shortened (relative, then cut in the middle), never wrapped mid-name;
        # --format csv/jsonl keep them whole.
        fixed = 6 + self.name_width * (2 if self.labels else 1)
        n_cols = 3 + bool(self.labels) + (self.top_k > 1)
        room = self.table_console.width - fixed - 2 * (n_cols - 1)
        path_width = max(16, room * 3 // 5 if self.top_k > 1 else room)
        table.add_column("path", no_wrap=True, width=path_width)
        table.add_column("label", style="bold cyan", width=self.name_width, no_wrap=True)
        table.add_column("conf", justify="right", width=6, no_wrap=True)
        if self.labels:
            table.add_column("truth", width=self.name_width, no_wrap=True)
        if self.top_k > 1:
            table.add_column(f"top-{self.top_k}", ratio=2, min_width=12, overflow="fold")
        for pred in self.block:
            if pred.ok:
                row = [escape(short_path(pred.path, path_width)), pred.label,
                       f"{pred.confidence:.3f}"]
                if self.labels:
                    mark = {True: "[green]", False: "[red]", None: "[dim]"}[pred.correct]
                    row.append(f"{mark}{escape(pred.true_label or '-')}")
                if self.top_k > 1:
                    row.append(" ".join(f"{escape(lab)} {p:.2f}" for lab, p in pred.top_k))
            else:
                row = [escape(short_path(pred.path, path_width)), "[red]error", ""]
                if self.labels:
                    row.append(escape(pred.true_label or "-"))
                if self.top_k > 1:
                    row.append(f"[red]{escape(pred.error or '')}")
                else:
                    row[1] = f"[red]{escape(pred.error or 'error')}"
            table.add_row(*row)
        self.table_console.print(table)
        self.first_block = False
        self.block = []


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


def _summary(stats: Any, model_line: str, per_class_console: Any) -> None:
    """The per-class table (with --labels-from-folders), then the one-line final summary."""
    from rich.table import Table

    accuracy = ""
    if stats.accuracy is not None:
        n = sum(stats.labelled.values())
        outside = f", {stats.unlabelled:,} outside class folders" if stats.unlabelled else ""
        accuracy = f"; accuracy [bold]{stats.accuracy:.2%}[/] on {n:,} labelled images{outside}"
        table = Table(title="per class")
        table.add_column("class", style="cyan")
        table.add_column("images", justify="right")
        table.add_column("correct", justify="right")
        table.add_column("accuracy", justify="right")
        table.add_column("predicted as", justify="right")
        for row in stats.per_class():
            table.add_row(row["class"], f"{row['images']:,}", f"{row['correct']:,}",
                          f"{row['accuracy']:.2%}", f"{row['predicted']:,}")
        per_class_console.print(table)
    failed = f"[red]{stats.failed:,} failed[/]" if stats.failed else "0 failed"
    err_console.print(
        f"[bold]{stats.images:,}[/] image{'' if stats.images == 1 else 's'} "
        f"({stats.succeeded:,} classified, {failed}) in "
        f"{stats.seconds:.2f} s: [bold green]{stats.images_per_second:,.0f} img/s[/]{accuracy}\n"
        f"  model {model_line}", highlight=False,
    )


def predict(
    paths: list[str] = typer.Argument(
        ..., help="Image files, folders, glob patterns ('photos/**/*.png'), or - to read "
        "newline-separated paths from stdin.", show_default=False,
    ),
    model: str = typer.Option(
        None, "--model", "-m", help="An .onnx file, a folder, or NAME[:fp32|int8|fp16|auto] in "
        "exported/ (auto: int8 on CPUs when its card says int8 pays, else fp32). Default: the "
        "model named in exported/default.",
    ),
    provider: str = typer.Option(
        "cpu", "--provider", "-p", help="cpu | cuda | tensorrt | openvino | auto. Fails unless "
        "really active (no silent CPU fallback).",
    ),
    batch_size: int = typer.Option(
        256, "--batch-size", "-b", min=1, help="Images per decode task and inference request "
        "(the session runs them in chunks of its preferred size).",
    ),
    top_k: int = typer.Option(3, "--top-k", "-k", min=1, help="Classes listed per image."),
    fmt: str = typer.Option(
        "table", "--format", "-f", help="table | csv | jsonl | parquet (needs --output: NAME"
        ".parquet is one file, any other name a folder of part files).",
    ),
    output: Path = typer.Option(
        None, "--output", "-o", help="Write the results to FILE (atomically) instead of stdout.",
    ),
    engine: str = typer.Option(
        "local", "--engine", "-e", help="local (this process and its decoder processes) | ray "
        "(a Ray Data actor pool, on a local Ray or the cluster at --address).",
    ),
    address: str = typer.Option(
        None, "--address", help="Ray cluster (HOST:PORT of the head, ray://HOST:PORT or auto). "
        "Default: $RAY_ADDRESS, else a local Ray started for this run. --engine ray only.",
        show_default=False,
    ),
    concurrency: str = typer.Option(
        None, "--concurrency", help="Inference actors: N, or MIN-MAX to autoscale (default: "
        "the cluster's CPUs / --cpus-per-actor, or GPUs / --gpus-per-actor). --engine ray only.",
        show_default=False,
    ),
    cpus_per_actor: int = typer.Option(
        1, "--cpus-per-actor", min=1, help="CPUs per actor = its onnxruntime threads. "
        "--engine ray only.",
    ),
    gpus_per_actor: float = typer.Option(
        None, "--gpus-per-actor", min=0.0, help="GPUs per actor (default: 1 with --provider cuda "
        "or tensorrt, else 0; fractions share a GPU). --engine ray only.", show_default=False,
    ),
    recursive: bool = typer.Option(
        True, "--recursive/--no-recursive", help="Walk subfolders of folder arguments.",
    ),
    workers: int = typer.Option(
        None, "--workers", "-w", min=0, help="Decoder processes (default: physical cores; 0: "
        "decode in the main process).",
    ),
    strict: bool = typer.Option(False, "--strict", help="Stop at the first file that fails."),
    labels_from_folders: bool = typer.Option(
        False, "--labels-from-folders", help="Take the true class from each image's folder name "
        "(…/cat/x.jpg) and report accuracy and a per-class summary.",
    ),
    threads: int = typer.Option(
        None, "--threads", min=1, help="onnxruntime intra-op threads (default: physical cores).",
    ),
    io_binding: bool = typer.Option(
        False, "--io-binding", help="Run through onnxruntime I/O binding (one copy per batch to "
        "the GPU, outputs bound on the device).",
    ),
    provider_option: list[str] = typer.Option(
        None, "--provider-option", help="KEY=VALUE passed to the execution provider, e.g. "
        "cudnn_conv_algo_search=HEURISTIC (repeatable).",
    ),
) -> None:
    """Classify images with an ONNX model: streaming, batched, bad files reported and skipped.

    --engine ray runs the same prediction on Ray Data (a local Ray, or a cluster at --address;
    inputs may also be s3:// and other pyarrow/fsspec URIs): see docs/scale-out.md."""
    from rich.markup import escape

    from cifarkit._io import atomic_path
    from cifarkit.backends import Classifier
    from cifarkit.engines import PredictStats, predict_files
    from cifarkit.engines.local import default_workers
    from cifarkit.errors import UsageError

    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "parquet" and output is None:
        raise UsageError("--format parquet writes a file: give --output NAME.parquet (one file) "
                         "or --output FOLDER (part files)")
    engine = engine.lower()
    if engine not in ENGINES:
        raise UsageError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    ray_engine = engine == "ray"
    _check_engine_options(ray_engine, address=address, concurrency=concurrency,
                          cpus_per_actor=cpus_per_actor, gpus_per_actor=gpus_per_actor,
                          workers=workers, threads=threads, io_binding=io_binding)
    if paths.count("-") > 1:
        raise UsageError("- (stdin) can be given once")
    options = _parse_options(provider_option)
    from cifarkit.backends.catalog import choose_model

    choice = choose_model(model, provider)
    model_path = choice.path
    if choice.reason:  # the file depended on exported/default or :auto: say which one runs
        err_console.print(f"model: {escape(os.fspath(model_path))} ({escape(choice.reason)})",
                          highlight=False)
    n_workers = default_workers() if workers is None else workers
    if ray_engine:
        from cifarkit.engines.ray import parse_concurrency, ray_module

        ray_module()  # Ray missing: say how to install it before anything else
        parse_concurrency(concurrency)
        # The actors run the model; here a CPU session only checks the contract and reads the
        # class names (the provider is checked in every actor).
        clf = Classifier(model_path, "cpu", threads=1)
    else:
        clf = Classifier(
            model_path, provider, threads=threads, provider_options=options,
            io_binding=io_binding,
            # Busy-waiting inference threads would steal the cores the decoders need.
            allow_spinning=n_workers == 0,
        )
    job: Any = None
    stats = PredictStats(classes=tuple(clf.classes))
    stopped_early = False

    def run(writer: _Writer) -> None:
        nonlocal stopped_early
        with _progress() as bar:
            task = bar.add_task("classify", total=None, failed=0)

            def on_progress(done: int, failed: int, total: int | None) -> None:
                bar.update(task, completed=done, total=total, failed=failed)

            nonlocal job
            if ray_engine:
                from cifarkit.engines.ray import RayPrediction

                job = RayPrediction(
                    paths, model_path, address=address, progress=on_progress, quiet=True,
                    provider=provider, top_k=top_k, batch_size=batch_size,
                    labels_from_folders=labels_from_folders, recursive=recursive,
                    concurrency=concurrency, cpus_per_actor=cpus_per_actor,
                    gpus_per_actor=gpus_per_actor, provider_options=options,
                )
                results = iter(job)
            else:
                results = predict_files(
                    clf, paths, recursive=recursive, top_k=top_k, batch_size=batch_size,
                    workers=n_workers, labels_from_folders=labels_from_folders,
                    progress=on_progress,
                    on_warning=lambda msg: err_console.print(
                        f"[yellow]warning:[/] {escape(msg)}", highlight=False
                    ),
                )
            try:
                for pred in results:
                    stats.add(pred)
                    writer.add(pred)
                    if not pred.ok:
                        err_console.print(
                            f"[yellow]warning:[/] {escape(pred.path)}: {escape(pred.error or '')}",
                            highlight=False,
                        )
                        if strict:
                            stopped_early = True
                            break
                    if stats.images % batch_size == 0:
                        writer.flush()
            finally:
                results.close()
                writer.flush()
        stats.finish()

    k = min(top_k, len(clf.classes))
    with clf:
        if fmt == "parquet":
            from cifarkit.engines.local import ParquetOutput

            with ParquetOutput(output, labels_from_folders) as parquet:
                run(_Writer(fmt, _Sink(None), console, k, labels_from_folders,
                            tuple(clf.classes), parquet=parquet))
        elif output is not None:
            with atomic_path(output) as tmp, open(
                tmp, "w", encoding="utf-8", errors="surrogateescape", newline=""
            ) as fh:
                from rich.console import Console

                file_console = Console(file=fh, width=160, color_system=None, soft_wrap=False)
                run(_Writer(fmt, _Sink(fh), file_console, k, labels_from_folders,
                            tuple(clf.classes)))
        elif fmt != "table" and not sys.stdout.isatty():
            stream = io.TextIOWrapper(
                sys.stdout.buffer, encoding="utf-8", errors="surrogateescape", newline="",
                write_through=False,
            )
            try:
                run(_Writer(fmt, _Sink(stream), console, k, labels_from_folders,
                            tuple(clf.classes)))
            finally:
                stream.flush()
                stream.detach()
        else:
            run(_Writer(fmt, _Sink(None), console, k, labels_from_folders, tuple(clf.classes)))

    tuned = " (tuned)" if clf.chunk_timings and not clf.tuning else ""
    if ray_engine and job is not None:
        model_line = _ray_line(job, model_path, provider, cpus_per_actor, gpus_per_actor)
    else:
        model_line = (
            f"{model_path} on {clf.provider} ({', '.join(clf.active_providers)}; {clf.threads} "
            f"threads, chunks of {clf.batch_size}{tuned}), up to {n_workers} decoder processes"
        )
    per_class_console = console if (fmt == "table" and output is None) else err_console
    _summary(stats, model_line, per_class_console)
    if output is not None:
        err_console.print(f"wrote {escape(os.fspath(output))}", highlight=False)
    if stopped_early:
        err_console.print("[red]stopped at the first failure (--strict)[/]")
    if stats.images == 0:
        err_console.print("[red]error:[/] no images found in the inputs")
        raise typer.Exit(1)
    if stats.failed:
        raise typer.Exit(1)


def _check_engine_options(ray_engine: bool, **given: Any) -> None:
    """Options of one engine given to the other are mistakes, not silently ignored."""
    from cifarkit.errors import UsageError

    ray_only = {"address": "--address", "concurrency": "--concurrency",
                "gpus_per_actor": "--gpus-per-actor"}
    local_only = {"workers": "--workers", "threads": "--threads", "io_binding": "--io-binding"}
    if not ray_engine:
        bad = [flag for key, flag in ray_only.items() if given[key] not in (None, False)]
        if given["cpus_per_actor"] != 1:
            bad.append("--cpus-per-actor")
        if bad:
            raise UsageError(f"{', '.join(bad)}: only with --engine ray")
    else:
        bad = [flag for key, flag in local_only.items() if given[key] not in (None, False)]
        if bad:
            raise UsageError(
                f"{', '.join(bad)}: not used by --engine ray (each actor decodes its own batches "
                "and runs --cpus-per-actor onnxruntime threads)"
            )


def _ray_line(job: Any, model_path: Path, provider: str, cpus: int, gpus: float | None) -> str:
    conc = job.concurrency
    actors = f"{conc[0]}–{conc[1]}" if isinstance(conc, tuple) else f"{conc}"
    gpu = f", {gpus:g} GPU" if gpus else ""
    dup = f"; {job.duplicates:,} retried rows dropped as duplicates" if job.duplicates else ""
    return (
        f"{model_path} on {provider} in {actors} Ray actors ({cpus} CPU{gpu} and {cpus} "
        f"onnxruntime thread{'s' if cpus != 1 else ''} each) on {job.address}; Ray start-up "
        f"{job.startup_seconds:.1f} s{dup}"
    )


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)
