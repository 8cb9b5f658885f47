"""``export_model``: one Keras model → checked, measured, documented ONNX files.

Steps: resolve and load the ``.keras`` (safe mode) → check its interface → convert (fp32) →
structural checks → MACs → parity with Keras → fp16 / int8 → accuracy and per-class errors →
throughput ratio and latency → metadata → model card → write. Everything is built in memory
(and private temp folders for the quantizer and the latency timing); files are written only
at the end, each to a temp file beside its target and renamed into place after *all* of them
are complete, so a failed or interrupted export leaves the previous export as it was.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from cifarkit._io import atomic_path
from cifarkit.data import CLASSES, Dataset, load_dataset, stratified_subset
from cifarkit.errors import DataError, ModelError, UsageError
from cifarkit.export.card import CARD_VERSION, render_readme
from cifarkit.export.check import check_onnx, check_runtime, cpu_session
from cifarkit.export.convert import DEFAULT_OPSET, check_opset, keras_to_onnx, require
from cifarkit.export.measure import (
    LATENCY_BATCH_SIZES,
    LATENCY_BUDGET_S,
    LATENCY_SECONDS,
    LatencySetup,
    Throughput,
    accuracy,
    evaluation,
    latencies,
    throughput,
)
from cifarkit.export.metadata import (
    INPUT_DESCRIPTION,
    OUTPUT_DESCRIPTION,
    set_metadata,
    tool_versions,
    training_summary,
)
from cifarkit.export.onnx_source import OnnxSource, load_onnx_source
from cifarkit.export.parity import (
    DEFAULT_PARITY_IMAGES,
    ParityReport,
    compare,
    predict_keras,
    predict_onnx,
    require_fp32_parity,
)
from cifarkit.export.portable import PortabilityReport, check_portable, make_portable
from cifarkit.export.quantize import (
    CALIBRATION_METHODS,
    DEFAULT_CALIBRATION_IMAGES,
    QuantizationInfo,
    quantize_int8,
    to_float16,
)
from cifarkit.export.source import (
    CARD_FILE,
    ExportSource,
    as_float32,
    check_keras_contract,
    export_dir_for,
    load_keras_model,
    resolve_source,
    sha256_file,
    uses_reduced_precision,
)
from cifarkit.measure.flops import MacCount, count_macs

PRECISIONS = ("fp32", "fp16", "int8")
#: ``--format``: onnx (always built: every other format is made from, or checked against, it),
#: tflite (LiteRT fp32 + full-integer int8), ort (onnxruntime's ORT format, one per precision).
FORMATS = ("onnx", "tflite", "ort")
#: The precisions a LiteRT export writes (fp16 LiteRT files are not made: fp16 is a GPU
#: delegate setting there, not a file format).
TFLITE_PRECISIONS = ("fp32", "int8")
README_FILE = "README.md"
SYNTHETIC_KIND = "synthetic"

#: ``progress(done, total, what)``, the same shape as the data loader's callback.
Progress = Callable[[int, int, str], None]


def model_filename(precision: str, fmt: str = "onnx") -> str:
    return f"model.{precision}.{fmt}"


@dataclass
class ExportedFile:
    precision: str
    path: Path
    size_bytes: int
    sha256: str
    #: "onnx", "tflite" or "ort".
    format: str = "onnx"
    #: Top-1 on the test images (None on synthetic data).
    accuracy: float | None = None
    accuracy_delta_vs_fp32: float | None = None
    #: This file vs the Keras model (None with ``check=False``).
    parity: ParityReport | None = None
    images_per_s: float | None = None
    speed_vs_fp32: float | None = None
    #: ``measure.evaluation`` on the test images (None on synthetic data).
    evaluation: dict[str, Any] | None = None
    #: ``measure.latency_sweep`` on this CPU (None without benchmarking).
    latency: dict[str, Any] | None = None
    #: False for the fp32 baseline when only fp16/int8 were asked for.
    written: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.path.name, "format": self.format, "precision": self.precision,
            "size_bytes": self.size_bytes,
            "sha256": self.sha256, "accuracy": self.accuracy,
            "accuracy_delta_vs_fp32": self.accuracy_delta_vs_fp32,
            "parity": self.parity.to_dict() if self.parity else None,
            "images_per_s": self.images_per_s, "speed_vs_fp32": self.speed_vs_fp32,
            "evaluation": self.evaluation, "latency": self.latency,
        }


@dataclass
class ExportResult:
    name: str
    architecture: str
    source: Path
    out_dir: Path
    files: list[ExportedFile]
    data_source: str
    synthetic: bool
    test_images: int
    parity: ParityReport | None
    quantization: QuantizationInfo | None
    throughput: Throughput | None
    card: dict[str, Any]
    seconds: float
    notes: list[str] = field(default_factory=list)
    latency_setup: LatencySetup | None = None
    portability: PortabilityReport | None = None
    #: The LiteRT converter front end used ("onnx2tf <version>"), when tflite was exported.
    tflite_engine: str | None = None

    @property
    def card_path(self) -> Path:
        return self.out_dir / CARD_FILE

    @property
    def readme_path(self) -> Path:
        return self.out_dir / README_FILE

    def file(self, precision: str, fmt: str = "onnx") -> ExportedFile:
        for f in self.files:
            if f.precision == precision and f.format == fmt:
                return f
        raise KeyError(f"{precision} {fmt}")


# --- data ----------------------------------------------------------------------------------


def synthetic_dataset(n_train: int = 1000, n_test: int = 1000, seed: int = 0) -> Dataset:
    """Random uint8 pixels with random labels: exports can be checked without CIFAR-10.

    Accuracy on it means nothing, so the pipeline does not report any; parity still holds.
    """
    rng = np.random.default_rng(seed)
    return Dataset(
        x_train=rng.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8),
        y_train=rng.integers(0, 10, n_train).astype(np.int64),
        x_test=rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8),
        y_test=rng.integers(0, 10, n_test).astype(np.int64),
        source="synthetic (random uint8 pixels; no CIFAR-10 data found)",
        kind=SYNTHETIC_KIND,
    )


def resolve_data(
    data: Dataset | str | os.PathLike[str] | None = None,
    *,
    progress: Callable[[int, int, str], None] | None = None,
) -> Dataset:
    """The data an export is measured on.

    A ``Dataset`` is used as is; a path is loaded (errors are errors); ``None`` looks for
    ``$CIFARKIT_DATA`` and Keras's cache (never downloads) and falls back to synthetic pixels.
    """
    if isinstance(data, Dataset):
        return data
    if data is not None or os.environ.get("CIFARKIT_DATA"):
        return load_dataset(data, progress=progress)
    try:
        return load_dataset(None, download=False, progress=progress)
    except DataError:
        return synthetic_dataset()


def _subset(y: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    if n is None or n >= len(y):
        return np.arange(len(y))
    return stratified_subset(y, n, seed)


# --- the export ----------------------------------------------------------------------------


def validate_options(
    precisions: Sequence[str],
    calibration_images: int = DEFAULT_CALIBRATION_IMAGES,
    calibration_method: str = "minmax",
    parity_images: int = DEFAULT_PARITY_IMAGES,
    limit: int | None = None,
) -> tuple[str, ...]:
    """Check the options up front (``UsageError``); return the precisions, fp32 first."""
    if isinstance(precisions, str):  # "fp32,int8" as on the command line
        precisions = precisions.split(",")
    precisions = tuple(dict.fromkeys(p.strip().lower() for p in precisions if p.strip()))
    if not precisions:
        raise UsageError("--precision: give at least one of fp32, fp16, int8")
    if bad := [p for p in precisions if p not in PRECISIONS]:
        raise UsageError(f"--precision: unknown {', '.join(bad)}; choose from fp32, fp16, int8")
    if calibration_method not in CALIBRATION_METHODS:
        raise UsageError(
            f"--calibration-method: unknown {calibration_method!r}; use one of "
            f"{', '.join(CALIBRATION_METHODS)}"
        )
    if "int8" in precisions and calibration_images < 1:
        raise UsageError(f"--calibration-images must be ≥ 1, got {calibration_images}")
    if parity_images < 1:
        raise UsageError(f"--parity-images must be ≥ 1, got {parity_images}")
    if limit is not None and limit < 1:
        raise UsageError(f"--limit must be ≥ 1, got {limit}")
    # fp32 first: it is the reference every other precision is derived from and compared to.
    return tuple(p for p in PRECISIONS if p in precisions)


def validate_formats(formats: Sequence[str] | str) -> tuple[str, ...]:
    """``--format``: a subset of ``FORMATS`` (``UsageError`` otherwise); onnx always first."""
    if isinstance(formats, str):
        formats = formats.split(",")
    wanted = tuple(dict.fromkeys(f.strip().lower() for f in formats if f.strip()))
    if bad := [f for f in wanted if f not in FORMATS]:
        raise UsageError(f"--format: unknown {', '.join(bad)}; choose from {', '.join(FORMATS)}")
    return tuple(f for f in FORMATS if f in wanted or f == "onnx")


def _architecture(source: ExportSource, model: Any) -> tuple[str, str]:
    from cifarkit.models import get_model_info, list_models

    arch = source.arch or str(getattr(model, "name", "") or source.name)
    description = get_model_info(arch).description if arch in list_models() else ""
    return arch, description


def _write_file(tmp: Path, data: bytes) -> None:
    tmp.write_bytes(data)


def _commit(out_dir: Path, files: list[tuple[str, bytes]]) -> None:
    """Write every file to a temp file beside its target, then rename them all.

    ``files`` in the order they should land; the card goes last, since its mtime marks a
    finished export. If any write fails, every temp file is removed and nothing is renamed.
    """
    with contextlib.ExitStack() as stack:
        # ExitStack unwinds last-in-first-out: enter in reverse so renames follow ``files``.
        for name, data in reversed(files):
            tmp = stack.enter_context(atomic_path(out_dir / name))
            _write_file(tmp, data)


def export_model(
    source: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    precisions: Sequence[str] = PRECISIONS,
    formats: Sequence[str] = ("onnx",),
    opset: int = DEFAULT_OPSET,
    data: Dataset | str | os.PathLike[str] | None = None,
    limit: int | None = None,
    calibration_images: int = DEFAULT_CALIBRATION_IMAGES,
    calibration_method: str = "minmax",
    reduce_range: bool | None = None,
    tta: int | None = None,
    check: bool = True,
    parity_images: int = DEFAULT_PARITY_IMAGES,
    benchmark: bool = True,
    bench_rounds: int = 15,
    bench_threads: int = 1,
    latency_batch_sizes: Sequence[int] = LATENCY_BATCH_SIZES,
    latency_seconds: float = LATENCY_SECONDS,
    latency_budget_s: float = LATENCY_BUDGET_S,
    seed: int = 0,
    runtimes: Sequence[str] | None = None,
    exported_dir: str | os.PathLike[str] = "exported",
    command: str | None = None,
    progress: Progress | None = None,
) -> ExportResult:
    """Export a run folder, ``.keras`` file or fp32 ``.onnx`` file to ``out`` (default
    ``exported/<name>/``).

    Writes ``model.<precision>.onnx`` for each of ``precisions``, ``card.json`` and
    ``README.md``; with ``formats`` containing "tflite", ``model.fp32.tflite`` and
    ``model.int8.tflite`` (LiteRT, when fp32/int8 are among ``precisions``); with "ort",
    ``model.<precision>.ort`` beside each ONNX file. Every ONNX graph is made portable
    (``portable.make_portable``). fp32 is always built (the baseline); with ``check`` the final
    file must match the source — the Keras model, or the source ONNX file — (max |Δprob| ≤
    1e-4, 100 % top-1 agreement) or nothing is written; so must ``model.fp32.tflite`` and
    ``model.fp32.ort``. ``data``: a
    ``Dataset``, a CIFAR-10 path, or None (``$CIFARKIT_DATA`` / Keras's cache, else synthetic
    pixels). ``limit``: measure accuracy on a stratified subset of that many test images.
    ``benchmark``: measure the batch-32 speed ratio vs fp32 (``bench_threads`` threads) and
    each file's latency on this CPU at ``latency_batch_sizes`` (about ``latency_seconds`` per
    batch size, at most about ``latency_budget_s`` per file). ``command``: the command line
    to record; the card also records an equivalent ``cifarkit export`` command. ``tta``
    (fastnet models): the in-graph test-time augmentation level to export with, 0 none,
    1 mirror, 2 mirror + one-pixel translations (6 views); None keeps the trained model's.
    ``runtimes``: runtime names (``cifarkit.backends``, "all" = every one) to run each ONNX
    file in on the test images for the card's "runs in" table (top-1, agreement with
    onnxruntime, batch-1 latency); litert runs the .tflite files, so only with "tflite" in
    ``formats``. None: no table.
    """
    started = time.perf_counter()
    precisions = validate_options(precisions, calibration_images, calibration_method,
                                  parity_images, limit)
    formats = validate_formats(formats)
    check_opset(opset)
    src = resolve_source(source)
    out_dir = Path(out) if out is not None else export_dir_for(src.name, exported_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir} exists and is not a folder")
    notes = list(src.notes)
    steps = ["load", "convert", "check", *(["parity"] if check else []),
             *[p for p in precisions if p != "fp32"], "measure",
             *[f for f in formats if f != "onnx"], *(["runs in"] if runtimes else []), "write"]
    total = len(steps)
    what = f"export {src.name}"

    def step(name: str) -> None:
        if progress:
            progress(steps.index(name), total, what)

    # 1. the source: a Keras model, or an fp32 ONNX file -------------------------------------
    step("load")
    model: Any = None
    onnx_src: OnnxSource | None = None
    if src.kind == "onnx":
        if tta is not None:
            raise UsageError("--tta needs a Keras source (run folder or .keras): an ONNX "
                             "file's test-time augmentation is fixed in its graph")
        onnx_src = load_onnx_source(src.model_path)
        arch = onnx_src.architecture or src.name
        from cifarkit.models import get_model_info, list_models

        description = get_model_info(arch).description if arch in list_models() else ""
        params = onnx_src.params
        source_sha = onnx_src.sha256
        reference_name = f"the source {src.model_path.name}"
        notes.append(f"re-exported from {src.model_path.name} (sha256 {source_sha[:16]}…, "
                     "the same weights); parity is against that file")
    else:
        require("tensorflow", "tensorflow", "to load and convert Keras models")
        require("keras", "keras", "to load .keras models")
        model = load_keras_model(src.model_path)
        check_keras_contract(model, str(src.model_path))
        if reduced := uses_reduced_precision(model):
            model = as_float32(model)
            notes.append(
                f"the model was trained with mixed precision ({len(reduced)} layers compute "
                "in float16); exported and compared in float32"
            )
        if tta is not None:
            from cifarkit.models.fastnet import tta_level, with_tta

            trained_level = tta_level(model)
            model = with_tta(model, tta)
            if tta != trained_level:
                notes.append(f"test-time augmentation level {tta} set at export (the trained "
                             f"model has level {trained_level}); same weights")
        arch, description = _architecture(src, model)
        params = int(model.count_params())
        source_sha = sha256_file(src.model_path)
        reference_name = "the Keras model"
    ds = resolve_data(data)
    synthetic = ds.kind == SYNTHETIC_KIND
    if synthetic:
        notes.append("no CIFAR-10 data: parity used synthetic (random) pixels; "
                     "accuracy was not measured")
    test_idx = _subset(ds.y_test, limit, seed)
    x_test, y_test = ds.x_test[test_idx], ds.y_test[test_idx]

    # 2. fp32 ----------------------------------------------------------------------------------
    step("convert")
    if onnx_src is not None:
        converted = _at_opset(onnx_src.proto, onnx_src.opset, opset, notes)
    else:
        converted = keras_to_onnx(model, opset)
    # Every file is portable: the parity gate below runs on this final graph.
    protos: dict[str, Any] = {}
    protos["fp32"], portability = make_portable(converted)
    del converted
    step("check")
    check_onnx(protos["fp32"], model_filename("fp32"))
    check_runtime(protos["fp32"].SerializeToString(), model_filename("fp32"))
    macs = _macs(protos["fp32"], notes)

    sessions: dict[str, Any] = {}

    def session(p: str) -> Any:
        if p not in sessions:
            sessions[p] = cpu_session(protos[p].SerializeToString())
        return sessions[p]

    parity: dict[str, ParityReport] = {}
    x_parity = keras_ref = None
    if check:
        step("parity")
        idx = _subset(y_test, parity_images, seed)
        x_parity = x_test[idx]
        if onnx_src is not None:
            keras_ref = predict_onnx(cpu_session(onnx_src.blob), x_parity)
        else:
            keras_ref = predict_keras(model, x_parity)
        parity["fp32"] = compare(keras_ref, predict_onnx(session("fp32"), x_parity), synthetic)
        require_fp32_parity(parity["fp32"], reference=reference_name)
        if len(x_parity) < min(parity_images, 1000):
            notes.append(f"parity used only {len(x_parity)} images (all the data had)")

    # 3. fp16 / int8 ---------------------------------------------------------------------------
    quant_info: QuantizationInfo | None = None
    calib = ds.x_train[_subset(ds.y_train, calibration_images, seed)]
    for p in precisions:
        if p == "fp32":
            continue
        step(p)
        if p == "fp16":
            protos[p] = to_float16(protos["fp32"])
        else:
            what_calib = ("synthetic images" if synthetic
                          else f"stratified training images of {ds.source}")
            protos[p], quant_info = quantize_int8(
                protos["fp32"], calib, method=calibration_method, reduce_range=reduce_range,
                calibration_data=what_calib,
            )
            if synthetic:
                notes.append("int8 was calibrated on random pixels: its ranges do not "
                             "reflect real images; re-export with --data for a usable model")
        check_onnx(protos[p], model_filename(p))
        check_portable(protos[p], model_filename(p))
        check_runtime(protos[p].SerializeToString(), model_filename(p))
        if check and x_parity is not None and keras_ref is not None:
            parity[p] = compare(keras_ref, predict_onnx(session(p), x_parity), synthetic)

    # 4. accuracy and speed ----------------------------------------------------------------------
    step("measure")
    accuracies: dict[str, float | None] = dict.fromkeys(protos)
    evaluations: dict[str, dict[str, Any] | None] = dict.fromkeys(protos)
    if not synthetic:
        for p in protos:
            accuracies[p], probs = accuracy(session(p), x_test, y_test)
            evaluations[p] = evaluation(probs, y_test, CLASSES)
    sessions.clear()  # free them before timing: latency opens its own, as users would
    speed: Throughput | None = None
    latency: dict[str, dict[str, Any]] = {}
    latency_setup: LatencySetup | None = None
    if benchmark:
        blobs = {p: protos[p].SerializeToString() for p in protos}
        if len(protos) > 1:
            speed = throughput(blobs, x_test, rounds=bench_rounds, threads=bench_threads)
        latency, latency_setup = latencies(blobs, x_test, batch_sizes=latency_batch_sizes,
                                           seconds=latency_seconds, budget_s=latency_budget_s)
        del blobs
    base_acc = accuracies["fp32"]
    for p, acc in accuracies.items():
        if p != "fp32" and acc is not None and base_acc is not None and base_acc - acc > 0.01:
            notes.append(f"{p} loses {(base_acc - acc) * 100:.2f} points of accuracy vs fp32")

    # 5. metadata, card, files -------------------------------------------------------------------
    step("write")
    exported_at = datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    versions = tool_versions()
    training = training_summary(src.run_info)
    derived_from = None
    if onnx_src is not None:
        old = onnx_src.metadata
        training = old.get("training") if isinstance(old.get("training"), dict) else {}
        # The chain back to the Keras model: this file's weights are that model's.
        derived_from = {"file": src.model_path.name, "sha256": source_sha,
                        "keras_file": old.get("source_file"),
                        "keras_sha256": old.get("source_sha256"),
                        "exported_at": old.get("exported_at")}
    files: list[ExportedFile] = []
    payloads: list[tuple[str, bytes]] = []
    for p, proto in protos.items():
        acc = accuracies[p]
        set_metadata(proto, {
            "class_names": list(CLASSES),
            "architecture": arch,
            "precision": p,
            "input_description": INPUT_DESCRIPTION,
            "output_description": OUTPUT_DESCRIPTION,
            "accuracy": None if acc is None else f"{acc:.4f}",
            "accuracy_images": None if acc is None else str(len(y_test)),
            "accuracy_data": None if acc is None else ds.source,
            "source_file": src.model_path.name,
            "source_sha256": source_sha,
            "derived_from": derived_from,
            "versions": versions,
            "exported_at": exported_at,
            "opset": str(opset),
            "cifarkit_version": versions["cifarkit"],
            "training": training or None,
            "parity": parity[p].to_dict() if p in parity else None,
            "parity_reference": reference_name if p in parity else None,
            "portability": portability.to_dict() if p == "fp32" else None,
            "quantization": quant_info.to_dict() if p == "int8" and quant_info else None,
        })
        proto.doc_string = (
            f"cifarkit {arch} CIFAR-10 classifier ({p}); input images uint8 [batch,32,32,3] "
            "RGB 0-255, output probabilities float32 [batch,10]"
        )
        blob = proto.SerializeToString()
        written = p in precisions
        files.append(ExportedFile(
            precision=p, path=out_dir / model_filename(p), size_bytes=len(blob),
            sha256=hashlib.sha256(blob).hexdigest(), accuracy=acc,
            accuracy_delta_vs_fp32=(None if acc is None or base_acc is None or p == "fp32"
                                    else acc - base_acc),
            parity=parity.get(p),
            images_per_s=speed.images_per_s.get(p) if speed else None,
            speed_vs_fp32=speed.ratio_vs_fp32.get(p) if speed else None,
            evaluation=evaluations[p], latency=latency.get(p),
            written=written,
        ))
        if written:
            payloads.append((model_filename(p), blob))
    if "fp32" not in precisions:
        notes.append("fp32 was built as the baseline for checks and speed, but not written")

    # 6. LiteRT and ORT format, from the final ONNX files ------------------------------------
    tflite_engine: str | None = None

    def add_file(p: str, fmt: str, blob: bytes, probs: np.ndarray | None,
                 ref: np.ndarray | None) -> None:
        """Record a tflite/ort file: parity on the parity images, accuracy on the test set."""
        acc = evaluation_ = None
        if probs is not None and not synthetic:
            acc = float(np.mean(probs.argmax(1) == y_test))
            evaluation_ = evaluation(probs, y_test, CLASSES)
        report = None
        if ref is not None and keras_ref is not None and x_parity is not None:
            report = compare(keras_ref, ref, synthetic)
            if p == "fp32":
                require_fp32_parity(report, model_filename(p, fmt), reference=reference_name)
        files.append(ExportedFile(
            precision=p, format=fmt, path=out_dir / model_filename(p, fmt),
            size_bytes=len(blob), sha256=hashlib.sha256(blob).hexdigest(), accuracy=acc,
            accuracy_delta_vs_fp32=(None if acc is None or base_acc is None or p == "fp32"
                                    else acc - base_acc),
            parity=report, evaluation=evaluation_,
        ))
        payloads.append((model_filename(p, fmt), blob))

    def run_on(predict: Callable[[np.ndarray], np.ndarray]) -> tuple[Any, Any]:
        """(test-set probabilities, parity-image probabilities) of one file."""
        probs = None if synthetic else predict(x_test)
        ref = predict(x_parity) if x_parity is not None else None
        return probs, ref

    if "tflite" in formats:
        step("tflite")
        from cifarkit.export.litert import predict_tflite, to_tflite

        wanted = tuple(p for p in TFLITE_PRECISIONS if p in precisions)
        if wanted:
            tflite_blobs, tflite_engine = to_tflite(protos["fp32"], calib, wanted)
            versions["ai-edge-litert"] = _dist_version("ai-edge-litert")
            for p, blob in tflite_blobs.items():
                add_file(p, "tflite", blob, *run_on(lambda x, b=blob: predict_tflite(b, x)))
        else:
            notes.append("--format tflite writes fp32 and int8 files: neither was asked for")
    if "ort" in formats:
        step("ort")
        from cifarkit.export.ortformat import ort_session, to_ort_format

        for p in precisions:
            blob = to_ort_format(protos[p].SerializeToString(), p)
            sess = ort_session(blob)
            add_file(p, "ort", blob, *run_on(lambda x, s=sess: predict_onnx(s, x)))
            del sess

    # 7. the "runs in" table: each ONNX file in every runtime asked for -----------------------
    runs_in: dict[str, list[dict[str, Any]]] | None = None
    runs_in_setup: str | None = None
    if runtimes and not synthetic:
        step("runs in")
        runs_in, runs_in_setup = _runs_in(payloads, runtimes, x_test, y_test, bench_threads,
                                          notes)
    elif runtimes:
        notes.append("no \"runs in\" table: it needs the real test images (--data)")

    # Files from an earlier export that this one does not make would describe another model.
    made = {name for name, _ in payloads}
    leftovers = [out_dir / model_filename(p, fmt) for fmt in FORMATS for p in PRECISIONS
                 if model_filename(p, fmt) not in made
                 and (out_dir / model_filename(p, fmt)).is_file()]
    notes += [f"removed {old.name} left by an earlier export" for old in leftovers]

    import json

    data_path = None if synthetic or not Path(ds.source).exists() else ds.source
    reproduce = _equivalent_command(
        src.model_path if src.run_dir is None else src.run_dir, out_dir, precisions, opset,
        data_path, limit, calibration_images, calibration_method, check, parity_images,
        benchmark, bench_threads, quant_info.reduce_range if quant_info else None, tta,
        formats, runtimes,
    )
    if not synthetic and data_path is None:
        notes.append(f"the test data ({ds.source}) was given in memory: `reproduce` needs "
                     "--data pointing at the same images")
    custom_latency = benchmark and (latency_seconds != LATENCY_SECONDS
                                    or latency_budget_s != LATENCY_BUDGET_S
                                    or tuple(latency_batch_sizes) != LATENCY_BATCH_SIZES)
    if seed != 0 or custom_latency:
        notes.append("exported with library options the command line does not have (seed "
                     "or latency timing): `reproduce` runs the defaults")
    card = {
        "card_version": CARD_VERSION,
        "name": src.name,
        "architecture": arch,
        "description": description,
        "classes": list(CLASSES),
        "contract": {"input": INPUT_DESCRIPTION, "output": OUTPUT_DESCRIPTION},
        "source": {"file": os.fspath(src.model_path), "sha256": source_sha,
                   "run_dir": os.fspath(src.run_dir) if src.run_dir else None,
                   "kind": src.kind, "derived_from": derived_from},
        "training": training or None,
        "params": params,
        "tta": (onnx_src.card.get("tta") if onnx_src is not None else _tta_card(model)),
        "macs_per_image": macs.macs_per_image if macs else None,
        "macs": macs.to_dict() if macs else None,
        "evaluation": {"source": ds.source, "synthetic": synthetic,
                       "test_images": None if synthetic else int(len(y_test)),
                       "limit": limit, "seed": seed},
        "parity": parity["fp32"].to_dict() if "fp32" in parity else None,
        "parity_reference": reference_name,
        "portability": portability.to_dict(),
        "formats": list(formats),
        "tflite_engine": tflite_engine,
        "files": [f.to_dict() for f in files if f.written],
        "baseline_fp32": None if "fp32" in precisions else files[0].to_dict(),
        "quantization": quant_info.to_dict() if quant_info else None,
        "benchmark": speed.to_dict() if speed else None,
        "latency": latency_setup.to_dict() if latency_setup else None,
        "runs_in": runs_in,
        "runs_in_setup": runs_in_setup,
        "opset": opset,
        "versions": versions,
        "exported_at": exported_at,
        "command": command,
        "reproduce": reproduce,
        "notes": notes,
    }
    readme = render_readme(card)
    payloads += [(README_FILE, readme.encode("utf-8")),
                 (CARD_FILE, (json.dumps(card, indent=2) + "\n").encode("utf-8"))]
    out_dir.mkdir(parents=True, exist_ok=True)
    _commit(out_dir, payloads)
    for old in leftovers:
        old.unlink(missing_ok=True)
    if progress:
        progress(total, total, what)
    return ExportResult(
        name=src.name, architecture=arch, source=src.model_path, out_dir=out_dir,
        files=[f for f in files if f.written] if "fp32" in precisions else files,
        data_source=ds.source, synthetic=synthetic,
        test_images=0 if synthetic else int(len(y_test)), parity=parity.get("fp32"),
        quantization=quant_info, throughput=speed, card=card,
        seconds=time.perf_counter() - started, notes=notes, latency_setup=latency_setup,
        portability=portability, tflite_engine=tflite_engine,
    )


def _runs_in(
    payloads: list[tuple[str, bytes]], runtimes: Sequence[str], x: np.ndarray, y: np.ndarray,
    threads: int, notes: list[str],
) -> tuple[dict[str, list[dict[str, Any]]], str]:
    """{precision: ``cifarkit.backends.matrix`` rows} for each ONNX file about to be written,
    run from a temporary folder (the files are not committed yet; litert finds the .tflite
    siblings there), and the sentence that says how it was measured."""
    import tempfile

    from cifarkit.backends import matrix, resolve_runtimes
    from cifarkit.measure.machine import cpu_name

    names = resolve_runtimes(list(runtimes))
    has_tflite = any(name.endswith(".tflite") for name, _ in payloads)
    if "litert" in names and not has_tflite:
        names.remove("litert")
        notes.append("runs in: litert runs .tflite files; export with --format onnx,tflite for "
                     "its row")
    table: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="cifarkit-runs-in-") as tmp:
        for name, blob in payloads:
            Path(tmp, name).write_bytes(blob)
        for name, _ in payloads:
            if not name.endswith(".onnx"):
                continue
            precision = name.split(".")[1]
            rows = matrix(Path(tmp, name), x, y, names, threads=threads or None)
            table[precision] = [{**r.to_dict(), "file": Path(r.file).name if r.file else None,
                                 "reason": r.reason.replace(tmp + os.sep, "") if r.reason
                                 else None} for r in rows]
    threads_text = "each runtime's default threads" if not threads else (
        f"{threads} thread{'s' if threads != 1 else ''}")
    setup = (f"{len(y):,} CIFAR-10 test images, {threads_text}, {cpu_name()} "
             f"({os.cpu_count()} logical CPUs); agreement is top-1 agreement with onnxruntime "
             "(CPU) on the same images, latency the p50 of batch-1 calls.")
    return table, setup


def _dist_version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


def _at_opset(proto: Any, have: int, want: int, notes: list[str]) -> Any:
    """An ONNX source at the export's opset (onnx's version converter when they differ)."""
    import onnx

    copy = onnx.ModelProto.FromString(proto.SerializeToString())
    if have == want:
        return copy
    try:
        converted = onnx.version_converter.convert_version(copy, want)
    except Exception as exc:
        raise UsageError(f"the source is opset {have} and onnx cannot convert it to --opset "
                         f"{want} ({type(exc).__name__}: {exc}); pass --opset {have}") from None
    notes.append(f"the source ONNX file is opset {have}: converted to opset {want}")
    return converted


def _tta_card(model: Any) -> dict[str, Any] | None:
    """The card's record of in-graph test-time augmentation (None for models without it)."""
    from cifarkit.models.fastnet import tta_level
    from cifarkit.models.layers import TTA_WEIGHTS

    level = tta_level(model)
    if not level:
        return None
    what = {1: "the image and its mirror, averaged",
            2: "the image, its one-pixel translations up-left and down-right (reflection "
               "padded) and the mirrors of all three; weights 1/4 for the image and its "
               "mirror, 1/8 for each translated view"}
    return {"level": level, "views": len(TTA_WEIGHTS[level]), "description": what[level]}


def _macs(proto: Any, notes: list[str]) -> MacCount | None:
    """MACs per input image of the fp32 graph (``bench.flops.count_macs``), or None.

    ``count_macs`` fixes the batch dimension to 1 before shape inference, so work the graph
    does on a batch it builds itself (flip TTA concatenates the mirrored images: 2 rows per
    input image) is counted per *input* image, as it costs.
    """
    try:
        macs = count_macs(proto)
    except ModelError as exc:
        notes.append(f"MACs not counted: {exc}")
        return None
    if macs.uncounted:
        notes.append(f"MACs per image is a lower bound: shapes unknown for "
                     f"{', '.join(macs.uncounted)}")
    return macs


def _equivalent_command(
    source: Path, out_dir: Path, precisions: Sequence[str], opset: int, data: str | None,
    limit: int | None, calibration_images: int, calibration_method: str, check: bool,
    parity_images: int, benchmark: bool, bench_threads: int, reduce_range: bool | None,
    tta: int | None = None,
    formats: Sequence[str] = ("onnx",),
    runtimes: Sequence[str] | None = None,
) -> str:
    """A ``cifarkit export`` command that redoes this export (and so every number in its
    card), whatever way it was started (bare ``cifarkit export``, or from Python).
    ``reduce_range`` is the int8 setting used, spelled out: its default depends on the CPU."""
    args = ["cifarkit", "export", os.fspath(source), "--out", os.fspath(out_dir),
            "--precision", ",".join(precisions), "--opset", str(opset)]
    if data is not None:
        args += ["--data", data]
    if limit is not None:
        args += ["--limit", str(limit)]
    if "int8" in precisions:
        args += ["--calibration-images", str(calibration_images),
                 "--calibration-method", calibration_method]
        if reduce_range is not None:
            args += ["--reduce-range" if reduce_range else "--no-reduce-range"]
    if tta is not None:
        args += ["--tta", str(tta)]
    if tuple(formats) != ("onnx",):
        args += ["--format", ",".join(formats)]
    args += ["--no-check"] if not check else ["--parity-images", str(parity_images)]
    args += ["--no-bench"] if not benchmark else ["--bench-threads", str(bench_threads)]
    args += ["--runs-in", ",".join(runtimes) if runtimes else "none"]
    return shlex.join(args)
