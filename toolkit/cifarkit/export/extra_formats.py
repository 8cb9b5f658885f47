"""Export's LiteRT and ORT-format steps (``--format tflite,ort``): files made from the final
ONNX graphs, staged beside their ONNX siblings (whose metadata names the classes) and each
run once through ``cifarkit.backends``: parity with the calibrated fp32 graph (or the source),
accuracy on the test images. Steps of ``pipeline.STEPS`` over the ``ExportState``.
"""

from __future__ import annotations

import hashlib

import numpy as np

from cifarkit.errors import CifarkitError, ExportError
from cifarkit.export.calibrate import tflite_record
from cifarkit.export.measure import evaluation
from cifarkit.export.metadata import dist_version
from cifarkit.export.options import TFLITE_PRECISIONS
from cifarkit.export.parity import compare, require_fp32_parity
from cifarkit.export.result import ExportedFile, model_filename
from cifarkit.export.state import ExportState


def tflite_files(st: ExportState) -> None:
    """``--format tflite``: LiteRT fp32 / full-integer int8 files from the final fp32 graph."""
    if "tflite" not in st.opts.formats:
        return
    st.step("tflite")
    wanted = tuple(p for p in TFLITE_PRECISIONS if p in st.opts.precisions)
    if not wanted:
        st.notes.append("--format tflite writes fp32 and int8 files: neither was asked for")
        return
    from cifarkit.export.litert import to_tflite

    assert st.images is not None
    blobs, st.tflite_engine = to_tflite(st.protos["fp32"], st.images.x_calibration, wanted)
    st.versions["ai-edge-litert"] = dist_version("ai-edge-litert")
    if "int8" in blobs and st.held_out is not None and "fp32" in st.calibration:
        _tflite_int8_figures(st, blobs["int8"])
    for p, blob in blobs.items():
        _checked_file(st, p, "tflite", blob, "litert")


def _tflite_int8_figures(st: ExportState, blob: bytes) -> None:
    """LiteRT's int8 file carries fp32's temperature (it is quantized from the calibrated fp32
    graph by LiteRT's own converter); its held-out figures and MSP threshold, measured.

    Not re-fitted: its Softmax output is int8 too (steps of 1/256), so most small
    probabilities are exactly 0 and a fit on ``log p`` follows the floor, not the logits
    (tried: converting again with such a T made its held-out ECE worse)."""
    held = st.held_out
    assert held is not None
    probs = _staged_probs(st, "int8", blob, held.x)
    st.tflite_calibration = tflite_record(probs, st.calibration["fp32"].temperature, held,
                                          st.opts.unknown_acceptance)


def _staged_probs(st: ExportState, p: str, blob: bytes, x: np.ndarray) -> np.ndarray:
    """Probabilities of a .tflite blob staged beside its ONNX sibling (which names the
    classes), run by the litert backend; ``_checked_file`` stages the final file later."""
    from cifarkit.backends import get_runtime

    path = st.stage / model_filename(p, "tflite")
    path.write_bytes(blob)
    with get_runtime("litert").open(path) as model:
        return model.predict_proba(x).astype(np.float64)


def ort_files(st: ExportState) -> None:
    """``--format ort``: an ORT-format file beside each ONNX file."""
    if "ort" not in st.opts.formats:
        return
    st.step("ort")
    from cifarkit.export.ortformat import to_ort_format

    for p in st.opts.precisions:
        _checked_file(st, p, "ort", to_ort_format(st.protos[p].SerializeToString(), p),
                      "onnxruntime")


#: What a file a backend cannot run is reported as.
_CANNOT_LOAD = {"litert": "LiteRT cannot load the file",
                "onnxruntime": "onnxruntime cannot load the ORT-format file"}


def _checked_file(st: ExportState, p: str, fmt: str, blob: bytes, runtime: str) -> None:
    """Stage a tflite/ort file (beside its ONNX sibling, whose metadata names the classes),
    open it once in its backend: parity on the parity images, accuracy on the test set."""
    from cifarkit.backends import get_runtime

    images, info = st.images, st.info
    assert images is not None and info is not None
    path = st.add_payload(model_filename(p, fmt), blob)
    try:
        with get_runtime(runtime).open(path) as model:
            probs = None if images.synthetic else model.predict_proba(images.x_test)
            ref = None if images.x_parity is None else model.predict_proba(images.x_parity)
    except CifarkitError as exc:
        raise ExportError(f"{_CANNOT_LOAD[runtime]}: {exc}") from None
    acc = evaluation_ = report = None
    if probs is not None:
        acc = float(np.mean(probs.argmax(1) == images.y_test))
        evaluation_ = evaluation(probs, images.y_test, info.classes)
    reference = (st.calibrated_reference if st.calibrated_reference is not None
                 else st.reference)
    if ref is not None and reference is not None:
        report = compare(reference, ref, images.synthetic)
        if p == "fp32":
            calibrated = reference is st.calibrated_reference
            require_fp32_parity(report, model_filename(p, fmt), reference=(
                "the calibrated model.fp32.onnx" if calibrated else st.reference_name))
    st.files.append(ExportedFile(
        precision=p, format=fmt, path=st.out_dir / model_filename(p, fmt),
        size_bytes=len(blob), sha256=hashlib.sha256(blob).hexdigest(), accuracy=acc,
        accuracy_delta_vs_fp32=st.delta(p, acc), parity=report, evaluation=evaluation_,
    ))
