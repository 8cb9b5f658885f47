"""``export_model``: one Keras model (or fp32 ONNX file) → checked, measured, documented files.

The export is a sequence of named steps over one ``ExportState`` state (``STEPS``): the source
(load and check it, pick the images) → the portable fp32 graph (convert, structural checks,
MACs) → parity with the source → fp16 / int8 (checked and compared the same way) → measure
(accuracy and per-class errors, throughput ratio, latency) → the ONNX files with their
metadata → accuracy under corruptions (``--corruptions``) → LiteRT and ORT-format files,
each run once through ``cifarkit.backends`` (``extra_formats``) → the "runs in" table → card
and atomic write.

Everything is built in memory and in a private staging folder (where backends open the
files before they are committed); files are written into the output folder only at the end,
each to a temp file beside its target and renamed into place after *all* of them are
complete, so a failed or interrupted export leaves the previous export as it was.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from cifarkit import contract
from cifarkit._io import atomic_path
from cifarkit.backends.onnxruntime import cpu_session, session_proba
from cifarkit.errors import ModelError, UsageError
from cifarkit.export.blockscore import (
    LEARNT_IMAGES,
    add_block_score,
    record_test_acceptance,
)
from cifarkit.export.calibrate import (
    add_test_figures,
    fold_temperature,
    held_out_images,
)
from cifarkit.export.calibrate import fit as fit_temperature
from cifarkit.export.calibrate import record as calibration_record
from cifarkit.export.card import render_readme
from cifarkit.export.check import check_onnx, check_runtime
from cifarkit.export.convert import check_opset, keras_to_onnx, require
from cifarkit.export.data import export_images, resolve_data
from cifarkit.export.extra_formats import ort_files, tflite_files
from cifarkit.export.measure import (
    accuracy,
    evaluation,
    latencies,
    macs,
    runs_in,
    throughput,
)
from cifarkit.export.metadata import (
    set_metadata,
    tool_versions,
    training_summary,
)
from cifarkit.export.onnx_source import at_opset, load_onnx_source
from cifarkit.export.options import (
    FORMATS,
    PRECISIONS,
    ExportOptions,
    reproduce_command,
)
from cifarkit.export.parity import compare, predict_keras, require_fp32_parity
from cifarkit.export.portable import check_portable, make_portable
from cifarkit.export.quantize import quantize_int8, to_float16
from cifarkit.export.result import README_FILE, ExportedFile, ExportResult, model_filename
from cifarkit.export.source import (
    CARD_FILE,
    as_float32,
    check_keras_contract,
    export_dir_for,
    load_keras_model,
    resolve_source,
    sha256_file,
    uses_reduced_precision,
)
from cifarkit.export.state import ExportState, Progress

# --- 1. the source: a Keras model or an fp32 ONNX file, and the images ----------------------


def _load_source(st: ExportState) -> None:
    st.step("load")
    if st.src.kind == "onnx":
        _load_onnx(st)
    else:
        _load_keras(st)
    size = st.info.image_size if st.info is not None else int(st.model.inputs[0].shape[1])
    ds = resolve_data(st.opts.data, image_size=size)
    if st.info is None:  # a Keras model: its classes are the data's, unless run.json says
        st.info = _keras_info(st, ds.classes)
    o = st.opts
    st.images = export_images(ds, st.info.classes, st.info.image_size, limit=o.limit,
                              parity_images=o.parity_images if o.check else None,
                              calibration_images=o.calibration_images, seed=o.seed)
    st.held_out = held_out_images(o.held_out, ds, st.info.classes, st.info.image_size,
                                  _training_record(st), st.notes,
                                  LEARNT_IMAGES if o.unknown_score == "blocks" else 0, o.seed)
    if st.images.synthetic:
        st.notes.append("no CIFAR-10 data: parity used synthetic (random) pixels; "
                        "accuracy was not measured")


def _training_record(st: ExportState) -> dict[str, Any] | None:
    """What the training recorded: ``run.json``, or an ONNX source's ``training`` entry."""
    if st.onnx_src is None:
        return st.src.run_info or None
    training = st.onnx_src.metadata.get("training")
    return training if isinstance(training, dict) else None


def _load_onnx(st: ExportState) -> None:
    if st.opts.tta is not None:
        raise UsageError("--tta needs a Keras source (run folder or .keras): an ONNX "
                         "file's test-time augmentation is fixed in its graph")
    st.onnx_src = onnx_src = load_onnx_source(st.src.model_path)
    st.arch = onnx_src.architecture or st.src.name
    st.description = _description(st.arch)
    st.params, st.source_sha, st.info = onnx_src.params, onnx_src.sha256, onnx_src.info
    st.reference_name = f"the source {st.src.model_path.name}"
    st.notes.append(f"re-exported from {st.src.model_path.name} (sha256 "
                    f"{st.source_sha[:16]}…, the same weights); parity is against that file")
    if onnx_src.removed_score:
        st.notes.append("the source's score output was taken out: each file's is fitted "
                        "afresh (--unknown-score blocks) or left out")
    if onnx_src.removed_temperature is not None:
        st.notes.append(f"the source's folded temperature (T={onnx_src.removed_temperature:.4g})"
                        " was taken out: parity is against its uncalibrated probabilities and "
                        "each precision's temperature is fitted afresh")


def _load_keras(st: ExportState) -> None:
    require("tensorflow", "tensorflow", "to load and convert Keras models")
    require("keras", "keras", "to load .keras models")
    model = load_keras_model(st.src.model_path)
    check_keras_contract(model, str(st.src.model_path))
    if reduced := uses_reduced_precision(model):
        model = as_float32(model)
        st.notes.append(
            f"the model was trained with mixed precision ({len(reduced)} layers compute "
            "in float16); exported and compared in float32"
        )
    if st.opts.tta is not None:
        from cifarkit.models.fastnet import tta_level, with_tta

        trained_level = tta_level(model)
        model = with_tta(model, st.opts.tta)
        if st.opts.tta != trained_level:
            st.notes.append(f"test-time augmentation level {st.opts.tta} set at export (the "
                            f"trained model has level {trained_level}); same weights")
    st.model = model
    st.arch = st.src.arch or str(getattr(model, "name", "") or st.src.name)
    st.description = _description(st.arch)
    st.params = int(model.count_params())
    st.source_sha = sha256_file(st.src.model_path)


def _keras_info(st: ExportState, data_classes: tuple[str, ...]) -> contract.ModelInfo:
    """Classes (run.json's, else the data's, else CIFAR-10's) and image size of the model."""
    size = int(st.model.inputs[0].shape[1])
    n_out = int(st.model.outputs[0].shape[-1])
    named = st.src.run_info.get("classes")
    where = f"{st.src.model_path}"
    for classes in (named, data_classes, contract.CIFAR10_CLASSES):
        if isinstance(classes, (list, tuple)) and len(classes) == n_out:
            return contract.ModelInfo(
                classes=contract.check_class_names(list(classes), where), image_size=size,
                preprocess=st.src.run_info.get("preprocess") or contract.DEFAULT_PREPROCESS)
    raise ModelError(f"{where}: the model has {n_out} outputs and neither run.json nor the "
                     f"data names {n_out} classes; export it with the data it was trained on")


def _description(arch: str) -> str:
    from cifarkit.models import get_model_info, list_models

    return get_model_info(arch).description if arch in list_models() else ""


# --- 2.–4. the portable fp32 graph, parity with the source, fp16 / int8 -------------------


def _portable_fp32(st: ExportState) -> None:
    st.step("convert")
    if st.onnx_src is not None:
        converted = at_opset(st.onnx_src.proto, st.onnx_src.opset, st.opts.opset, st.notes)
    else:
        converted = keras_to_onnx(st.model, st.opts.opset)
    # Every file is portable: the parity gate runs on this final graph.
    st.protos["fp32"], st.portability = make_portable(converted)
    st.step("check")
    _check_graph(st, "fp32")
    st.macs = macs(st.protos["fp32"], st.notes)


def _check_graph(st: ExportState, precision: str) -> None:
    """Stamp the contract's metadata (the checks read it) and run every structural check."""
    proto, name = st.protos[precision], model_filename(precision)
    set_metadata(proto, st.contract_metadata())
    check_onnx(proto, name)
    if precision != "fp32":  # make_portable checked fp32
        check_portable(proto, name)
    check_runtime(proto.SerializeToString(), name)


def _parity(st: ExportState) -> None:
    if not st.opts.check:
        return
    st.step("parity")
    images = st.images
    assert images is not None and images.x_parity is not None
    x = images.x_parity
    if st.onnx_src is not None:
        st.reference = session_proba(cpu_session(st.onnx_src.blob), x)
    else:
        st.reference = predict_keras(st.model, x)
    st.parity["fp32"] = compare(st.reference, session_proba(st.session("fp32"), x),
                                images.synthetic)
    require_fp32_parity(st.parity["fp32"], reference=st.reference_name)
    if len(x) < min(st.opts.parity_images, 1000):
        st.notes.append(f"parity used only {len(x)} images (all the data had)")


def _precisions(st: ExportState) -> None:
    images = st.images
    assert images is not None
    for p in st.opts.precisions:
        if p == "fp32":
            continue
        st.step(p)
        if p == "fp16":
            st.protos[p] = to_float16(st.protos["fp32"])
        else:
            what = ("synthetic images" if images.synthetic
                    else f"stratified training images of {images.source}")
            st.protos[p], st.quant = quantize_int8(
                st.protos["fp32"], images.x_calibration, method=st.opts.calibration_method,
                reduce_range=st.opts.reduce_range, calibration_data=what,
            )
            if images.synthetic:
                st.notes.append("int8 was calibrated on random pixels: its ranges do not "
                                "reflect real images; re-export with --data for a usable model")
        _check_graph(st, p)
        if st.reference is not None and images.x_parity is not None:
            st.parity[p] = compare(st.reference, session_proba(st.session(p), images.x_parity),
                                   images.synthetic)
            if p == "fp32":
                require_fp32_parity(st.parity[p], reference=st.reference_name)


# --- 4b. temperature per precision, folded; the unknown threshold -----------------------------


def _calibrate(st: ExportState) -> None:
    held, images = st.held_out, st.images
    if held is None:
        return
    assert images is not None
    st.step("calibrate")
    for p in st.protos:
        before = session_proba(st.session(p), held.x)
        fitted = fit_temperature(before, held)
        if images.labelled:  # the test figures before → after, and the fold checked on them
            st.uncalibrated_test[p] = session_proba(st.session(p), images.x_test)
        folded = fold_temperature(st.protos[p], fitted.temperature)
        del st.sessions[p]
        _check_graph(st, p)
        after = session_proba(st.session(p), held.x)
        st.calibration[p] = calibration_record(before, after, folded, fitted, held, p,
                                               st.opts.unknown_acceptance)
        if fitted.at_bound:
            st.notes.append(f"{p}: the temperature fit ran to its bound (T={folded:.3g}): the "
                            "held-out images are too few or too easy to calibrate on")
    if st.reference is not None and images.x_parity is not None:
        # LiteRT/ORT files are made from the calibrated graphs: compared with calibrated fp32
        # (itself checked against the source above: parity, then the fold).
        st.calibrated_reference = session_proba(st.session("fp32"), images.x_parity)
    _check_held_out_accuracy(st)


def _check_held_out_accuracy(st: ExportState) -> None:
    """Where the held-out images are the training's validation split redrawn, fp32 must score
    on them what the training recorded: a check that they are the same images."""
    held, fp32 = st.held_out, st.calibration.get("fp32")
    if held is None or held.recorded_accuracy is None or fp32 is None:
        return
    acc, recorded = fp32.held_out["accuracy"], held.recorded_accuracy
    agree = "matching" if abs(acc - recorded) <= 0.005 else "NOT matching (other images?)"
    st.notes.append(f"held-out images: fp32 top-1 {acc:.2%} on them, {agree} the "
                    f"{recorded:.2%} validation accuracy the training recorded")


def _unknown_score(st: ExportState) -> None:
    """``--unknown-score blocks``: the block score as each graph's ``score`` output, and its
    threshold as the file's unknown rule (``export.blockscore``)."""
    if st.opts.unknown_score != "blocks":
        return
    held, info = st.held_out, st.info
    assert info is not None
    if held is None or held.learnt is None:
        raise UsageError("--unknown-score blocks needs held-out images and the training "
                         "images they were kept from (--data, --held-out); the notes say why "
                         "there are none, or use --unknown-score msp")
    st.step("unknown score")
    # fp32 gains its score first; an int8 graph's stem is copied from the nodes before it.
    for p in st.protos:
        st.block_scores[p] = add_block_score(
            st.protos["fp32"], st.protos[p], held, info.n_classes, st.opts.unknown_acceptance, p,
            model_filename(p))
        st.sessions.pop(p, None)
        _check_graph(st, p)


# --- 5. accuracy, speed and latency -------------------------------------------------------


def _measure(st: ExportState) -> None:
    st.step("measure")
    o, images, info = st.opts, st.images, st.info
    assert images is not None and info is not None
    st.accuracies = dict.fromkeys(st.protos)
    st.evaluations = dict.fromkeys(st.protos)
    if images.labelled:
        for p in st.protos:
            if p in st.block_scores:  # one pass: the probabilities and the rule's acceptance
                probs = record_test_acceptance(st.block_scores[p], st.session(p), images.x_test)
                st.accuracies[p] = float(np.mean(probs.argmax(axis=1) == images.y_test))
            else:
                st.accuracies[p], probs = accuracy(st.session(p), images.x_test, images.y_test)
            st.evaluations[p] = evaluation(probs, images.y_test, info.classes)
            if p in st.calibration:
                add_test_figures(st.calibration[p], st.uncalibrated_test.pop(p), probs,
                                 images.y_test, p)
    st.sessions.clear()  # free them before timing: latency opens its own, as users would
    if o.benchmark:
        blobs = {p: proto.SerializeToString() for p, proto in st.protos.items()}
        if len(blobs) > 1:
            st.speed = throughput(blobs, images.x_test, rounds=o.bench_rounds,
                                  threads=o.bench_threads)
        st.latency, st.latency_setup = latencies(
            blobs, images.x_test, batch_sizes=o.latency_batch_sizes, seconds=o.latency_seconds,
            budget_s=o.latency_budget_s)
    base = st.accuracies["fp32"]
    for p, acc in st.accuracies.items():
        if p != "fp32" and acc is not None and base is not None and base - acc > 0.01:
            st.notes.append(f"{p} loses {(base - acc) * 100:.2f} points of accuracy vs fp32")


# --- 6. the ONNX files: metadata, checksums -------------------------------------------------


def _onnx_files(st: ExportState) -> None:
    st.exported_at = (datetime.now(timezone.utc).isoformat(timespec="seconds")
                      .replace("+00:00", "Z"))
    st.versions = tool_versions()
    st.training, st.derived_from = _provenance(st)
    speed = st.speed
    for p, proto in st.protos.items():
        set_metadata(proto, st.metadata(p))
        proto.doc_string = st.doc_string(p)
        blob = proto.SerializeToString()
        written = p in st.opts.precisions
        acc = st.accuracies[p]
        st.files.append(ExportedFile(
            precision=p, path=st.out_dir / model_filename(p), size_bytes=len(blob),
            sha256=hashlib.sha256(blob).hexdigest(), accuracy=acc,
            accuracy_delta_vs_fp32=st.delta(p, acc), parity=st.parity.get(p),
            images_per_s=speed.images_per_s.get(p) if speed else None,
            speed_vs_fp32=speed.ratio_vs_fp32.get(p) if speed else None,
            evaluation=st.evaluations[p], latency=st.latency.get(p), written=written,
        ))
        if written:
            st.add_payload(model_filename(p), blob)
    if "fp32" not in st.opts.precisions:
        st.notes.append("fp32 was built as the baseline for checks and speed, but not written")


def _provenance(st: ExportState) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(training summary, the chain back to the Keras model for an ONNX source)."""
    if st.onnx_src is None:
        return training_summary(st.src.run_info), None
    old = st.onnx_src.metadata
    training = old.get("training") if isinstance(old.get("training"), dict) else {}
    # This file's weights are that model's.
    return training, {"file": st.src.model_path.name, "sha256": st.source_sha,
                      "keras_file": old.get("source_file"),
                      "keras_sha256": old.get("source_sha256"),
                      "exported_at": old.get("exported_at")}


def _corruptions(st: ExportState) -> None:
    """Accuracy under the CIFAR-10-C corruptions, each written ONNX file as staged."""
    o, images = st.opts, st.images
    assert images is not None
    if not o.corruptions:
        return
    st.step("corruptions")
    if not images.labelled:
        st.notes.append("no corruption table: it needs the real test images (--data)")
        return
    from cifarkit.export.robustness import robustness_card

    files = {p: st.stage / model_filename(p) for p in o.precisions}
    what, progress = f"export {st.src.name}: corruptions", st.progress
    st.robustness = robustness_card(
        files, st.src.name, images.x_test, images.y_test, o.corruptions, o.seed,
        None if progress is None else lambda done, total, _: progress(done, total, what))


# --- 7. LiteRT and ORT format: ``extra_formats`` (``tflite_files``, ``ort_files``) ---------


# --- 8. the "runs in" table: each ONNX file in every runtime asked for ---------------------


def _runs_in(st: ExportState) -> None:
    images, info = st.images, st.info
    assert images is not None and info is not None
    if not st.opts.runtimes:
        return
    if images.synthetic:
        st.notes.append("no \"runs in\" table: it needs the real test images (--data)")
        return
    st.step("runs in")
    what = "CIFAR-10 test images" if st.cifar10 else "test images"
    st.runs_in, st.runs_in_setup = runs_in(
        st.stage, [name for name, _ in st.payloads], st.opts.runtimes, images.x_test,
        images.y_test, st.opts.bench_threads, st.notes, what)


# --- 9. card, README and the atomic write ---------------------------------------------------


def _write(st: ExportState) -> None:
    st.step("write")
    # Files from an earlier export that this one does not make would describe another model.
    made = {name for name, _ in st.payloads}
    leftovers = [st.out_dir / model_filename(p, fmt) for fmt in FORMATS for p in PRECISIONS
                 if model_filename(p, fmt) not in made
                 and (st.out_dir / model_filename(p, fmt)).is_file()]
    st.notes += [f"removed {old.name} left by an earlier export" for old in leftovers]
    st.card = st.card_dict(_reproduce(st))
    st.payloads += [(README_FILE, render_readme(st.card).encode("utf-8")),
                    (CARD_FILE, (json.dumps(st.card, indent=2) + "\n").encode("utf-8"))]
    st.out_dir.mkdir(parents=True, exist_ok=True)
    _commit(st.out_dir, st.payloads)
    for old in leftovers:
        old.unlink(missing_ok=True)


def _reproduce(st: ExportState) -> str:
    """The reproduce command, and notes where it cannot redo everything."""
    images = st.images
    assert images is not None
    used = replace(st.opts, data=images.path,
                   reduce_range=st.quant.reduce_range if st.quant else None)
    src = st.src
    command = reproduce_command(src.model_path if src.run_dir is None else src.run_dir,
                                st.out_dir, used)
    if not images.synthetic and images.path is None:
        st.notes.append(f"the test data ({images.source}) was given in memory: `reproduce` "
                        "needs --data pointing at the same images")
    if st.opts.unreproducible():
        st.notes.append("exported with library options the command line does not have (seed "
                        "or latency timing): `reproduce` runs the defaults")
    return command


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


# --- the export ------------------------------------------------------------------------------

#: The steps, in order; each reads and extends the ``ExportState``.
STEPS: tuple[Callable[[ExportState], None], ...] = (
    _load_source, _portable_fp32, _parity, _precisions, _calibrate, _unknown_score, _measure,
    _onnx_files,
    _corruptions, tflite_files, ort_files, _runs_in, _write,
)


def run_export(source: str | os.PathLike[str], out: str | os.PathLike[str] | None = None,
               options: ExportOptions | None = None,
               progress: Progress | None = None) -> ExportResult:
    """Export ``source`` with ``options`` (``export_model`` documents them) to ``out``."""
    started = time.perf_counter()
    opts = (options or ExportOptions()).validated()
    check_opset(opts.opset)
    src = resolve_source(source)
    out_dir = Path(out) if out is not None else export_dir_for(src.name, opts.exported_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir} exists and is not a folder")
    with tempfile.TemporaryDirectory(prefix="cifarkit-export-") as stage:
        st = ExportState(opts, src, out_dir, Path(stage), progress, list(src.notes))
        for run_step in STEPS:
            run_step(st)
    if progress:
        total = len(st.step_names)
        progress(total, total, f"export {src.name}")
    assert st.images is not None
    return ExportResult(
        name=src.name, architecture=st.arch, source=src.model_path, out_dir=out_dir,
        files=[f for f in st.files if f.written] if "fp32" in opts.precisions else st.files,
        data_source=st.images.source, synthetic=st.images.synthetic,
        test_images=0 if st.images.synthetic else int(len(st.images.y_test)),
        parity=st.parity.get("fp32"), quantization=st.quant, throughput=st.speed,
        card=st.card, seconds=time.perf_counter() - started, notes=st.notes,
        latency_setup=st.latency_setup, portability=st.portability,
        tflite_engine=st.tflite_engine,
    )


def export_model(source: str | os.PathLike[str], out: str | os.PathLike[str] | None = None,
                 *, progress: Progress | None = None, **options: Any) -> ExportResult:
    """Export a run folder, ``.keras`` file or fp32 ``.onnx`` file to ``out`` (default
    ``exported/<name>/``); ``options`` are ``ExportOptions`` fields.

    Writes ``model.<precision>.onnx`` for each of ``precisions``, ``card.json`` and
    ``README.md``; with ``formats`` containing "tflite", ``model.fp32.tflite`` and
    ``model.int8.tflite`` (LiteRT, when fp32/int8 are among ``precisions``); with "ort",
    ``model.<precision>.ort`` beside each ONNX file. Every ONNX graph is made portable
    (``portable.make_portable``). fp32 is always built (the baseline); with ``check`` the final
    file must match the source — the Keras model, or the source ONNX file — (max |Δprob| ≤
    1e-4, 100 % top-1 agreement) or nothing is written; so must ``model.fp32.tflite`` and
    ``model.fp32.ort``. ``data``: a ``Dataset``, a data folder (CIFAR-10 or class folders),
    or None (``$CIFARKIT_DATA`` / Keras's cache, else synthetic pixels). ``limit``: measure
    accuracy on a stratified subset of that many test images. ``calibration_images``,
    ``calibration_method``, ``reduce_range`` (None: by this CPU): int8 settings.
    ``parity_images``: how many test images parity compares. ``benchmark``: measure the
    batch-32 speed ratio vs fp32 (``bench_threads`` threads, ``bench_rounds`` rounds) and
    each file's latency on this CPU at ``latency_batch_sizes`` (about ``latency_seconds`` per
    batch size, at most about ``latency_budget_s`` per file). ``seed``: of the stratified
    subsets. ``command``: the command line to record; the card also records an equivalent
    ``cifarkit export`` command. ``tta`` (fastnet models): the in-graph test-time
    augmentation level to export with, 0 none, 1 mirror, 2 mirror + one-pixel translations
    (6 views); None keeps the trained model's. ``runtimes``: runtime names
    (``cifarkit.backends``, "all" = every one) to run each ONNX file in on the test images
    for the card's "runs in" table (top-1, agreement with onnxruntime, batch-1 latency);
    litert runs the .tflite files, so only with "tflite" in ``formats``. None: no table.
    ``exported_dir``: the parent of the default output folder. ``held_out``: the images each
    precision's temperature and the unknown threshold are fitted on (``export.calibrate``:
    "auto", "val", "training-split", a folder of class folders, or "none");
    ``unknown_acceptance``: the share of them the unknown threshold accepts;
    ``unknown_score``: "msp" (the top probability) or "blocks" (``export.blockscore``: a
    second output ``score`` in every graph, fitted on training images the model learnt from).
    ``corruptions``: measure each written ONNX file's accuracy under the CIFAR-10-C
    corruptions (15 × severities 1–5) on that many stratified test images, seeded by
    ``seed``, for the card's ``robustness`` table (0: not measured).
    """
    return run_export(source, out, ExportOptions(**options), progress)
