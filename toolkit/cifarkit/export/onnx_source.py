"""An fp32 ONNX file as the export source: loaded, checked, and what it says about itself.

The shipped models exist only as ONNX files; re-exporting one keeps its weights and takes
its description from the file's ``metadata_props`` (architecture, training, the ``.keras``
it came from) and, when it is the very file that card describes (same SHA-256), from the
``card.json`` beside it (parameter count, in-graph TTA).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cifarkit.contract import ModelInfo
from cifarkit.errors import ModelError, UsageError
from cifarkit.export.source import CARD_FILE, sha256_file


@dataclass
class OnnxSource:
    proto: Any
    blob: bytes
    sha256: str
    opset: int
    metadata: dict[str, Any]
    #: Classes, image size and preprocessing, as the file's metadata and graph say.
    info: ModelInfo
    #: The card beside the file, when it describes this very file (else empty).
    card: dict[str, Any] = field(default_factory=dict)
    #: The temperature the file had folded in, taken out of ``proto`` and ``blob`` (export
    #: fits its own on the uncalibrated logits).
    removed_temperature: float | None = None
    #: The file had a ``score`` output, taken out of ``proto`` and ``blob`` (refitted).
    removed_score: bool = False

    @property
    def architecture(self) -> str | None:
        return self.metadata.get("architecture")

    @property
    def params(self) -> int:
        """Trainable + frozen parameters: the card's count, else the float initializers'."""
        if isinstance(self.card.get("params"), int):
            return int(self.card["params"])
        from onnx import TensorProto

        return int(sum(np.prod(t.dims) for t in self.proto.graph.initializer
                       if t.data_type == TensorProto.FLOAT and len(t.dims) >= 1))


def load_onnx_source(path: str | Path) -> OnnxSource:
    """Load an fp32 contract ONNX file (``ModelError`` for anything else)."""
    import onnx

    from cifarkit.contract import probabilities_only
    from cifarkit.errors import ExportError
    from cifarkit.export.calibrate import unfold_temperature
    from cifarkit.export.check import check_contract
    from cifarkit.export.metadata import read_metadata

    path = Path(path)
    try:
        blob = path.read_bytes()
        proto = onnx.ModelProto.FromString(blob)
    except Exception as exc:  # DecodeError, OSError
        raise ModelError(f"{path}: not a readable ONNX file ({type(exc).__name__}: {exc})"
                         ) from None
    try:
        info = check_contract(proto, str(path))
    except ExportError as exc:
        raise ModelError(str(exc)) from None
    meta = read_metadata(proto)
    has_half = any(t.data_type == onnx.TensorProto.FLOAT16 for t in proto.graph.initializer)
    quantized = any(n.op_type in ("QuantizeLinear", "DequantizeLinear", "QLinearConv")
                    for n in proto.graph.node)
    precision = meta.get("precision") or ("int8" if quantized else "fp16" if has_half
                                          else "fp32")
    if precision != "fp32" or has_half or quantized:
        raise ModelError(
            f"{path} is a {precision} model: export from the fp32 file (model.fp32.onnx), "
            "which every other precision is derived from"
        )
    # A score output (export.blockscore) goes: the export fits its own, and the score's
    # reader of the logits would stop the temperature coming out.
    removed_score = len(proto.graph.output) > 1
    probabilities_only(proto.graph)
    removed = unfold_temperature(proto)
    if removed is not None or removed_score:  # the parity reference is this graph too
        blob = proto.SerializeToString()
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    sha = sha256_file(path)
    card: dict[str, Any] = {}
    card_path = path.parent / CARD_FILE
    if card_path.is_file():
        try:
            candidate = json.loads(card_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            candidate = {}
        files = candidate.get("files") if isinstance(candidate, dict) else None
        if any(f.get("sha256") == sha for f in files or [] if isinstance(f, dict)):
            card = candidate
    return OnnxSource(proto=proto, blob=blob, sha256=sha, opset=int(opset), metadata=meta,
                      info=info, card=card, removed_temperature=removed,
                      removed_score=removed_score)


def at_opset(proto: Any, have: int, want: int, notes: list[str]) -> Any:
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
