"""``cifarkit bench [MODEL...]``: accuracy, per-class errors and latency of ONNX models.

Default: every model in ``exported/`` × the precisions present × ``cpu`` (+ ``cuda`` when it
is really active; otherwise a row "unavailable: <reason>"), on the full test split, batch
sizes 1, 8, 32, 128, 512. An explicit ``--provider`` that is not active exits with the
provider error (code 6) before any work. TensorFlow is imported only with ``--keras``.

``--backend`` (alias ``--runtime``) names what the models run on (``cifarkit.backends``):
runtimes other than onnxruntime, and onnxruntime on an execution provider
(``onnxruntime:cuda``, the same as ``--provider cuda``). An explicit one that is not installed
or not active exits with code 6 and what to install before any work; ``all`` lists a missing
runtime as unavailable. A runtime that cannot run a file is reported with its own reason,
the sweep carries on and writes its reports, then the command exits with code 4.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from cifarkit.cli._common import DataOpt, console, err_console, parse_csv, progress_display


def _ints(value: str | None, what: str) -> list[int] | None:
    from cifarkit.errors import UsageError

    items = parse_csv(value, what)
    if not items:
        return None
    try:
        return [int(v) for v in items]
    except ValueError:
        raise UsageError(f"{what}: expected comma-separated integers, got {value!r}") from None


# --- the options, declared once each (in --help's order) --------------------------------------

ModelsArg = Annotated[list[str] | None, typer.Argument(
    show_default=False, help="Models: NAME (every precision in exported/NAME), NAME:PRECISION, "
    "NAME:auto or 'default' (the file predict would run on the first --provider), an .onnx file or "
    "a folder. Default: every model in exported/.")]
SplitOpt = Annotated[str, typer.Option("--split", help="test | val | train.")]
LimitOpt = Annotated[int | None, typer.Option(
    "--limit", min=1, help="A stratified subset of N images (default: the whole split).")]
ProviderOpt = Annotated[str | None, typer.Option(
    "--provider", "-p", help="Comma-separated: cpu, cuda, tensorrt, openvino, auto. Each must be "
    "really active. Default: cpu + cuda when active (else reported as unavailable).")]
BackendOpt = Annotated[str | None, typer.Option(
    "--backend", "--runtime", "-r", help="Comma-separated backends: onnxruntime (on --provider's "
    "providers), onnxruntime:PROVIDER (cpu, cuda, tensorrt, openvino, auto), openvino, opencv, "
    "tract, litert, or all (every runtime; those not installed are listed as unavailable). "
    "Default: onnxruntime. Each file is compared with onnxruntime (top-1 agreement, max |Δp|). "
    "litert runs the model.<precision>.tflite beside each ONNX file. --runtime is the old name.")]
PrecisionOpt = Annotated[str | None, typer.Option(
    "--precision", help="Comma-separated: fp32, fp16, int8 (default: all present).")]
BatchSizesOpt = Annotated[str, typer.Option(
    "--batch-sizes", "-b", help="Comma-separated batch sizes to time.")]
WarmupOpt = Annotated[int, typer.Option(
    "--warmup", min=0, help="Untimed runs before each timing.")]
IterationsOpt = Annotated[int | None, typer.Option(
    "--iterations", "-n", min=1, help="Timed runs per batch size.")]
DurationOpt = Annotated[float | None, typer.Option(
    "--duration", help="Seconds of timed runs per batch size (default 1.0; at least 5 runs). Not "
    "with --iterations.")]
ThreadsOpt = Annotated[int | None, typer.Option(
    "--threads", min=1, help="onnxruntime intra-op threads (default: physical cores).")]
KerasOpt = Annotated[str | None, typer.Option(
    "--keras", help="Time the Keras model too: a .keras file, or 'auto' (the source recorded in "
    "each export's card.json, or runs/<name>/model.keras). Imports TensorFlow.")]
JsonPathOpt = Annotated[Path | None, typer.Option("--json", help="Write the JSON report here.")]
MarkdownOpt = Annotated[Path | None, typer.Option(
    "--markdown", help="Write the Markdown report here (e.g. benchmarks/RESULTS.md).")]
PlotsOpt = Annotated[Path | None, typer.Option(
    "--plots", help="Write the PNG figures into this folder (default with --markdown: a figures/ "
    "folder beside it).")]
NoPlotsOpt = Annotated[bool, typer.Option("--no-plots", help="No figures, even with --markdown.")]
ConfusionsOpt = Annotated[int, typer.Option(
    "--confusions", min=0, help="How many of the most common confusions to list.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No tables on stdout.")]
QuickOpt = Annotated[bool, typer.Option(
    "--quick", help="The main job's lighter sweep: the default model (exported/default), every "
    "precision, gets the whole sweep; every other model a stratified 2,000 images, batch sizes 1 "
    "and 32, 0.5 s of timed runs each.")]
CorruptionsOpt = Annotated[int | None, typer.Option(
    "--corruptions", min=10, metavar="N", help="Also measure accuracy under CIFAR-10-C's 15 "
    "corruptions x 5 severities on N stratified images (seeded; onnxruntime, CPU).")]
OodOpt = Annotated[Path | None, typer.Option(
    "--ood", metavar="DIR", help="Also tell images of other subjects apart: every image under DIR "
    "(any depth; folder names ignored) against the split, on every model x precision x backend: "
    "AUROC, FPR at 95 % TPR and the share rejected on each side at the model's recorded threshold "
    "(else the one accepting 95 % of the split).")]


def bench(
    models: ModelsArg = None,
    data: DataOpt = None,
    split: SplitOpt = "test",
    limit: LimitOpt = None,
    provider: ProviderOpt = None,
    backend: BackendOpt = None,
    precision: PrecisionOpt = None,
    batch_sizes: BatchSizesOpt = "1,8,32,128,512",
    warmup: WarmupOpt = 5,
    iterations: IterationsOpt = None,
    duration: DurationOpt = None,
    threads: ThreadsOpt = None,
    keras: KerasOpt = None,
    json_path: JsonPathOpt = None,
    markdown: MarkdownOpt = None,
    plots: PlotsOpt = None,
    no_plots: NoPlotsOpt = False,
    confusions: ConfusionsOpt = 10,
    quiet: QuietOpt = False,
    quick: QuickOpt = False,
    corruptions: CorruptionsOpt = None,
    ood: OodOpt = None,
) -> None:
    """Accuracy, per-class errors and latency of exported ONNX models on real images."""
    from cifarkit.bench import BenchConfig, rich_report
    from cifarkit.errors import UsageError

    if iterations is not None and duration is not None:
        raise UsageError("give --iterations or --duration, not both")
    if keras is not None:
        from cifarkit.cli._tfquiet import quiet_tensorflow

        quiet_tensorflow()
    config = BenchConfig(
        models=list(models or []), data=data, split=split, limit=limit,
        providers=parse_csv(provider, "--provider") or None,
        runtimes=parse_csv(backend, "--backend") or None,
        precisions=parse_csv(precision, "--precision") or None,
        batch_sizes=_ints(batch_sizes, "--batch-sizes") or [], warmup=warmup,
        iterations=iterations, duration=duration, threads=threads, keras=keras,
        n_confusions=confusions, argv=["cifarkit", *sys.argv[1:]], quick=quick,
        corruptions=corruptions, ood=ood,
    )
    result = _run(config)
    if not quiet:
        for item in rich_report(result):
            console.print(item)
    _write_reports(result, json_path, markdown, None if no_plots else plots,
                   markdown is not None and not no_plots)
    _finish(result, quiet)


def _run(config: Any) -> Any:
    """``run_bench`` under a progress bar that names what is being measured."""
    from rich.markup import escape

    from cifarkit.bench import run_bench

    with progress_display(disable=not err_console.is_terminal) as bar:
        task = bar.add_task("benchmark", total=None)

        def on_progress(done: int, total: int, what: str) -> None:
            bar.update(task, completed=done, total=total, description=escape(what))

        return run_bench(config, progress=on_progress)


def _finish(result: Any, quiet: bool) -> None:
    """The closing line on stderr; the first failure raised (exit code 4) when any failed."""
    from rich.markup import escape

    on = ", ".join(result.providers)
    if result.multi_runtime:
        on = ", ".join(result.runtimes) + (f" (onnxruntime on {on})" if on else "")
    err_console.print(
        f"benchmarked {len(result.models)} model file(s) on {on} "
        f"with {len(result.labels):,} images in {result.seconds:.1f} s", highlight=False,
    )
    if result.failures:
        from cifarkit.errors import RuntimeModelError

        if quiet:  # otherwise the report above lists them
            for f in result.failures[1:]:
                err_console.print(f"error: {escape(f.reason)}", style="red", highlight=False)
        first, n = result.failures[0], len(result.failures)
        more = f" (and {n - 1} more file/runtime pair(s), listed above)" if n > 1 else ""
        raise RuntimeModelError(f"{first.reason}{more}")


def _write_reports(result: Any, json_path: Path | None, markdown: Path | None,
                   plot_dir: Path | None, default_plots: bool) -> None:
    """The figures (``--plots``, else beside ``--markdown`` when ``default_plots``), the JSON
    and the Markdown report, each announced on stderr."""
    from rich.markup import escape

    from cifarkit.bench.report import write_figures, write_json, write_markdown

    figures: dict[str, Path] = {}
    if plot_dir is None and default_plots and markdown is not None:
        plot_dir = markdown.parent / "figures"
    if plot_dir is not None:
        figures = write_figures(result, plot_dir)
        err_console.print(f"wrote {len(figures)} figures to {escape(str(plot_dir))}",
                          highlight=False)
    if json_path is not None:
        write_json(result, json_path)
        err_console.print(f"wrote {escape(str(json_path))}", highlight=False)
    if markdown is not None:
        write_markdown(result, markdown, figures)
        err_console.print(f"wrote {escape(str(markdown))}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)
