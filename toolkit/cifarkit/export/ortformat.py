"""ORT format (onnxruntime's flatbuffer model for ORT Mobile / minimal builds).

Converted with onnxruntime's own tool (``onnxruntime.tools.convert_onnx_models_to_ort``),
"fixed" optimization style: the graph optimizations are applied once at conversion, without
the x86-only NCHWc layout (the tool leaves it out unless the target is amd64), so the file
runs on ARM phones as well. The export checks the result through ``cifarkit.backends``'
onnxruntime runtime (``backends.onnxruntime.cpu_session`` opens ORT-format bytes too).
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

from cifarkit.errors import ExportError
from cifarkit.export.convert import require


def ort_filename(precision: str) -> str:
    return f"model.{precision}.ort"


def to_ort_format(onnx_blob: bytes, precision: str) -> bytes:
    """Serialized ONNX → ORT-format bytes."""
    require("onnxruntime", "onnxruntime", "for --format ort")
    from onnxruntime.tools.convert_onnx_models_to_ort import (
        OptimizationStyle,
        convert_onnx_models_to_ort,
    )

    with tempfile.TemporaryDirectory(prefix="cifarkit-ort-") as tmp:
        src = Path(tmp) / "in" / f"model.{precision}.onnx"
        src.parent.mkdir()
        src.write_bytes(onnx_blob)
        out = Path(tmp) / "out"
        try:
            # The tool prints its progress; the library never prints.
            with contextlib.redirect_stdout(io.StringIO()):
                convert_onnx_models_to_ort(src, out,
                                           optimization_styles=[OptimizationStyle.Fixed])
        except Exception as exc:
            raise ExportError(f"{ort_filename(precision)}: onnxruntime's ORT-format "
                              f"converter failed: {type(exc).__name__}: {exc}") from None
        found = sorted(out.rglob("*.ort"))
        if not found:
            raise ExportError(f"{ort_filename(precision)}: the converter wrote no .ort file")
        return found[0].read_bytes()
