"""``cifarkit export``: Keras runs (or an fp32 ONNX file) → checked, portable ONNX files
(fp32/fp16/int8), optionally LiteRT and ORT-format files, + model card."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from cifarkit.cli._common import console, err_console, parse_csv, progress_bar

DATA_HELP = (
    "CIFAR-10 source (as for `cifarkit data`). Default: $CIFARKIT_DATA, then Keras's cache; "
    "with neither, the checks use synthetic images and no accuracy is measured (never "
    "downloads)."
)


def _size(n: int) -> str:
    return f"{n / 1024:.0f} KiB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.1f} MiB"


def _render(result: Any) -> None:
    from rich.table import Table

    table = Table(title=f"{result.name} ({result.architecture}) → {result.out_dir}")
    reference = "Keras" if result.card.get("parity_reference") in (None, "the Keras model") \
        else "source"
    for col, justify in (("file", "left"), ("precision", "left"), ("size", "right"),
                         (f"parity vs {reference}", "right"), ("accuracy", "right"),
                         ("speed vs fp32", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for f in result.files:
        parity = "—"
        if f.parity is not None:
            colour = "green" if f.parity.top1_agreement == 1.0 else "yellow"
            parity = (f"max Δ {f.parity.max_abs_diff:.1e} · "
                      f"[{colour}]{f.parity.top1_agreement:.2%}[/] top-1")
        acc = "—" if f.accuracy is None else f"{f.accuracy:.2%}"
        if f.accuracy_delta_vs_fp32 is not None:
            acc += f" ({f.accuracy_delta_vs_fp32 * 100:+.2f} pt)"
        speed = "—"
        if f.speed_vs_fp32 is not None:
            speed = f"{f.speed_vs_fp32:.2f}× ({f.images_per_s:,.0f} img/s)"
        name = f.path.name if f.written else f"[dim]{f.path.name} (baseline, not written)[/]"
        table.add_row(name, f.precision, _size(f.size_bytes), parity, acc, speed)
    console.print(table)
    if not result.synthetic:
        console.print(f"accuracy on {result.test_images:,} test images of {result.data_source}")
    if result.parity is not None:
        what = "synthetic images" if result.parity.synthetic else "test images"
        console.print(f"parity: fp32 vs {result.card.get('parity_reference', 'Keras')} on "
                      f"{result.parity.images:,} {what} "
                      f"(gate: max |Δprob| ≤ 1e-4, 100% top-1) [green]passed[/]")
    if result.throughput is not None:
        t = result.throughput
        threads = "default threads" if t.threads == 0 else f"{t.threads} thread(s)"
        console.print(f"speed: batch {t.batch}, onnxruntime CPU, {threads}, {t.cpu} "
                      f"({t.cpu_count} cores), median ratio of {t.rounds} interleaved rounds")
    if result.latency_setup is not None:
        ls = result.latency_setup
        console.print(f"latency: onnxruntime CPU, {ls.threads} threads, {ls.cpu} (p50 per call)")
        for f in result.files:
            if f.latency:
                by = {p["batch_size"]: p for p in f.latency["points"]}
                best = f.latency["best"]
                console.print(f"  {f.precision}: batch 1 {by[1]['p50_ms']:.2f} ms · batch 32 "
                              f"{by[32]['p50_ms']:.1f} ms · best {best['images_per_s']:,.0f} "
                              f"img/s at batch {best['batch_size']}")
    if result.quantization is not None:
        q = result.quantization
        console.print(f"int8: QDQ S8S8 per-channel, {q.calibration_method} calibration on "
                      f"{q.calibration_images} training images, reduce_range={q.reduce_range} "
                      f"(CPU VNNI: {q.cpu_vnni}), {q.folded_affine} post-ReLU batch-norm "
                      "ops folded")
    if result.portability is not None:
        port = result.portability
        console.print(f"portable: {port.reverse_sequence_to_slice} ReverseSequence → Slice, "
                      f"{port.constant_reshapes} constant Reshape shape(s), {port.simplifier} "
                      f"({port.nodes_before} → {port.nodes_after} nodes)")
    if result.tflite_engine:
        console.print(f"tflite: via {result.tflite_engine}; int8 full-integer, uint8 input "
                      "(scale 1, zero point 0)")
    _render_calibration(result.card.get("calibration"))
    _render_robustness(result.card.get("robustness"))
    for precision, rows in (result.card.get("runs_in") or {}).items():
        cells = []
        for r in rows:
            if r["status"] == "ok":
                cells.append(f"{r['runtime']} {r['agreement']:.2%}")
            else:
                cells.append(f"{r['runtime']} [yellow]{r['status']}[/]")
        console.print(f"runs in ({precision}, top-1 agreement with onnxruntime): "
                      + " · ".join(cells))
    for note in result.notes:
        console.print(f"  [dim]{escape(note)}[/]")
    console.print(f"wrote {result.out_dir}/ (card.json, README.md) in {result.seconds:.0f} s")


def _render_calibration(calibration: dict[str, Any] | None) -> None:
    """One line per precision: T, test ECE before → after, the unknown threshold."""
    if not calibration:
        return  # the reason is among the notes
    blocks = calibration.get("block_score") or {}
    score = "the block score (output `score`)" if blocks else "top probability"
    console.print(f"calibrated on {escape(calibration['fitted_on'])}; unknown = {score} "
                  f"under the threshold that accepts {calibration['acceptance']:.0%} of them")
    for p, c in calibration["precisions"].items():
        test = c.get("test")
        ece = (f"test ECE {test['ece_before']:.3f} → {test['ece_after']:.3f}, NLL "
               f"{test['nll_before']:.3f} → {test['nll_after']:.3f}, "
               f"{test['accepted']:.1%} of test images accepted" if test else
               f"held-out ECE {c['held_out']['ece_before']:.3f} → "
               f"{c['held_out']['ece_after']:.3f}")
        if p in blocks:
            b = blocks[p]
            rule = (f"score below {b['threshold']:.3f} (accepts "
                    f"{b.get('test_accepted', b['held_out_accepted']):.1%} of the "
                    f"{'test' if 'test_accepted' in b else 'held-out'} images)")
        else:
            rule = f"top probability below {c['threshold']:.3f}"
        console.print(f"  {p}: T={c['temperature']:.3f} · {ece} · unknown: {rule}")


def _render_robustness(robustness: dict[str, Any] | None) -> None:
    """One line per precision: mean accuracy over the corrupted sets and its drop."""
    if not robustness:
        return
    console.print(f"corruptions: {len(robustness['corruptions'])} × severities 1–5 on "
                  f"{robustness['n_images']:,} test images (seed {robustness['seed']})")
    for p, r in robustness["precisions"].items():
        console.print(f"  {p}: clean {r['clean']:.2%} · corrupted mean {r['mean']:.2%} · "
                      f"drop {r['drop'] * 100:.1f} pt")


# --- the options, declared once each (in --help's order) --------------------------------------

SourcesArg = Annotated[list[Path] | None, typer.Argument(
    show_default=False, help="Run folders (runs/<arch>/), .keras files, or fp32 .onnx files (e.g. "
    "a shipped exported/<name>/model.fp32.onnx: re-exported with the same weights). Default: every "
    "runs/*/ whose export is missing or older than its model.keras.")]
OutOpt = Annotated[Path | None, typer.Option(
    "--out", "-o", help="Output folder (one source only). Default: exported/<name>/.")]
PrecisionOpt = Annotated[str, typer.Option(
    "--precision", "-p", help="Comma-separated: fp32, fp16, int8.")]
FormatsOpt = Annotated[str, typer.Option(
    "--format", "-f", help="Comma-separated: onnx (always), tflite (LiteRT model.fp32.tflite + "
    "full-integer model.int8.tflite), ort (ORT format, one per precision).")]
OpsetOpt = Annotated[int, typer.Option(
    "--opset", help="ONNX opset (13 up to what tf2onnx supports).")]
CalibrationImagesOpt = Annotated[int, typer.Option(
    "--calibration-images", help="INT8: stratified training images to calibrate on.")]
CalibrationMethodOpt = Annotated[str, typer.Option(
    "--calibration-method", help="INT8: minmax | entropy | percentile.")]
ReduceRangeOpt = Annotated[bool | None, typer.Option(
    "--reduce-range/--no-reduce-range", show_default=False, help="INT8: 7-bit weights, safe on "
    "every x86 CPU (without VNNI the integer kernels can saturate at 8 bits). Default: on unless "
    "this CPU has VNNI; say --reduce-range for files that will run on other machines.")]
TtaOpt = Annotated[int | None, typer.Option(
    "--tta", min=0, max=2, show_default=False, help="fastnet models: in-graph test-time "
    "augmentation level. 0 none, 1 the image and its mirror (as trained), 2 also one-pixel "
    "translations (6 views: more accurate, 3x the work of 1). Default: the trained model's.")]
DataOpt = Annotated[Path | None, typer.Option("--data", help=DATA_HELP)]
LimitOpt = Annotated[int | None, typer.Option(
    "--limit", help="Measure accuracy on a stratified subset of N test images.")]
ParityImagesOpt = Annotated[int, typer.Option(
    "--parity-images", help="Test images compared between Keras and ONNX.")]
NoCheckOpt = Annotated[bool, typer.Option(
    "--no-check", help="Skip the Keras-vs-ONNX parity check (the ONNX checker, the contract and "
    "onnxruntime loading still run).")]
NoBenchOpt = Annotated[bool, typer.Option(
    "--no-bench", help="Skip the speed ratio and the latency sweep.")]
BenchThreadsOpt = Annotated[int, typer.Option(
    "--bench-threads", min=0, help="onnxruntime threads for the speed ratio (0 = its default, one "
    "per core).")]
RuntimesOpt = Annotated[str, typer.Option(
    "--runs-in", help="Runtimes for the card's \"runs in\" table: each ONNX file run on the test "
    "images (onnxruntime,openvino,opencv,tract,litert; all; none). Not installed: a row saying so; "
    "litert needs --format tflite.")]
HeldOutOpt = Annotated[str, typer.Option(
    "--held-out", help="Images the model never saw, to fit each precision's temperature "
    "(calibrated probabilities, folded into the graph) and the unknown threshold on: auto (the "
    "data's val/ split, else the training's validation split redrawn from --data; else not "
    "calibrated, with a note), val, training-split, a folder of class folders, or none. Never the "
    "test split.")]
UnknownAcceptanceOpt = Annotated[float, typer.Option(
    "--unknown-acceptance", help="Share of the held-out images the unknown threshold "
    "accepts.")]
UnknownScoreOpt = Annotated[str, typer.Option(
    "--unknown-score", metavar="msp|blocks", help="The unknown rule's score: msp (the top "
    "probability) or blocks (a Mahalanobis score on every block's features, computed in the "
    "graph as a second output `score`; fitted on 5,000 training images; rejects far more "
    "images of other subjects, see docs/confidence.md).")]
CorruptionsOpt = Annotated[int, typer.Option(
    "--corruptions", min=0, metavar="N", help="Also measure each ONNX file's accuracy under "
    "CIFAR-10-C's 15 corruptions x 5 severities on N stratified test images (seeded; the card's "
    "robustness table). 0 = off.")]
RunsDirOpt = Annotated[Path, typer.Option("--runs", help="Where bare `export` looks.")]
ExportedDirOpt = Annotated[Path, typer.Option(
    "--exported", help="Parent of the default output folders.")]
ForceOpt = Annotated[bool, typer.Option(
    "--force", help="Bare `export`: re-export runs that are up to date too.")]


def export(
    sources: SourcesArg = None,
    out: OutOpt = None,
    precision: PrecisionOpt = "fp32,fp16,int8",
    formats: FormatsOpt = "onnx",
    opset: OpsetOpt = 17,
    calibration_images: CalibrationImagesOpt = 500,
    calibration_method: CalibrationMethodOpt = "minmax",
    reduce_range: ReduceRangeOpt = None,
    tta: TtaOpt = None,
    data: DataOpt = None,
    limit: LimitOpt = None,
    parity_images: ParityImagesOpt = 1000,
    no_check: NoCheckOpt = False,
    no_bench: NoBenchOpt = False,
    bench_threads: BenchThreadsOpt = 1,
    runtimes: RuntimesOpt = "all",
    held_out: HeldOutOpt = "auto",
    unknown_acceptance: UnknownAcceptanceOpt = 0.95,
    unknown_score: UnknownScoreOpt = "msp",
    corruptions: CorruptionsOpt = 0,
    runs_dir: RunsDirOpt = Path("runs"),
    exported_dir: ExportedDirOpt = Path("exported"),
    force: ForceOpt = False,
) -> None:
    """Export Keras models to portable ONNX (fp32, fp16, int8) and optionally LiteRT / ORT
    format, check them, and write a model card."""
    from cifarkit.export import ExportOptions

    # checked now (before TensorFlow is imported); runs-in names are resolved by the exporter
    # (so the card's reproduce command says "all")
    options = ExportOptions(
        precisions=parse_csv(precision, "--precision"),
        formats=parse_csv(formats, "--format"), opset=opset,
        calibration_images=calibration_images, calibration_method=calibration_method,
        reduce_range=reduce_range, tta=tta, limit=limit, check=not no_check,
        parity_images=parity_images, benchmark=not no_bench, bench_threads=bench_threads,
        runtimes=None if runtimes.strip() == "none" else parse_csv(runtimes, "--runs-in"),
        held_out=held_out, unknown_acceptance=unknown_acceptance,
        unknown_score=unknown_score, corruptions=corruptions,
        exported_dir=exported_dir,
        command=" ".join(["cifarkit", *sys.argv[1:]]) if sys.argv else None,
    ).validated()
    todo = _sources(sources or [], out, opset, runs_dir, exported_dir, force)
    if todo:
        _export_all(todo, out, options, data)


def _sources(sources: list[Path], out: Path | None, opset: int, runs_dir: Path,
             exported_dir: Path, force: bool) -> list[Path]:
    """The sources to export (bare `export`: the runs whose export is missing or stale),
    checked before TensorFlow is imported where that can be; [] when there is nothing to do."""
    from cifarkit.errors import UsageError
    from cifarkit.export import MIN_OPSET, check_opset, find_stale_runs, resolve_source

    if opset < MIN_OPSET:  # the upper bound needs tf2onnx (TensorFlow): checked below
        check_opset(opset)
    if out is not None and len(sources) != 1:
        raise UsageError("--out needs exactly one run folder or .keras file")
    for src in sources:  # fail on a bad path before importing TensorFlow
        resolve_source(src)
    from cifarkit.cli._tfquiet import quiet_tensorflow

    quiet_tensorflow()  # check_opset imports tf2onnx, and with it TensorFlow
    check_opset(opset)
    if sources:
        return sources
    stale, skipped = find_stale_runs(runs_dir, exported_dir)
    if force:
        stale += [run for run, why in skipped if why.startswith("up to date")]
        stale.sort()
    for run, why in skipped:
        if not (force and why.startswith("up to date")):
            console.print(f"[dim]skip {run}: {escape(why)}[/]")
    if not stale:
        console.print(f"nothing to export: no run in {runs_dir}/ has a missing or outdated "
                      "export")
    return stale


def _export_all(sources: list[Path], out: Path | None, options: Any, data: Path | None) -> None:
    """Each source exported and rendered; with several, a failure is reported and the others
    go on, and the command exits with the first failure's code."""
    from dataclasses import replace

    from cifarkit.errors import CifarkitError
    from cifarkit.export import resolve_data, run_export

    with progress_bar() as update:
        ds = resolve_data(data, progress=update)
    if ds.kind == "synthetic":
        err_console.print("[yellow]no CIFAR-10 data found[/] (no --data, $CIFARKIT_DATA or "
                          "Keras cache): checking with synthetic images")
    else:
        console.print(f"data: {ds.source}: {len(ds.x_test):,} test, {len(ds.x_train):,} train")
    options = replace(options, data=ds)
    failures: list[tuple[Path, CifarkitError]] = []
    for src in sources:
        try:
            with progress_bar() as update:
                result = run_export(src, out, options, progress=update)
        except CifarkitError as exc:
            if len(sources) == 1:
                raise
            err_console.print(f"[bold red]error:[/] {src}: {escape(str(exc))}", highlight=False)
            failures.append((src, exc))
            continue
        _render(result)
    if failures:
        err_console.print(f"[bold red]{len(failures)} of {len(sources)} exports failed[/]: "
                          + ", ".join(str(s) for s, _ in failures))
        raise typer.Exit(failures[0][1].exit_code)


def register(app: typer.Typer) -> None:
    app.command("export")(export)
