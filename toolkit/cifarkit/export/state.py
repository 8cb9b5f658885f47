"""``ExportState``: what the export's steps (``pipeline.STEPS``) share.

The options and the source first; each step then fills in its part (the graphs, the
measurements, the files). The views every file or the card needs (contract metadata, a
file's metadata, the card itself) are methods here, so the steps stay short.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cifarkit import contract
from cifarkit.backends.onnxruntime import cpu_session
from cifarkit.export import blockscore
from cifarkit.export.calibrate import Calibration, HeldOut
from cifarkit.export.card import CARD_VERSION
from cifarkit.export.data import ExportImages
from cifarkit.export.measure import LatencySetup, Throughput
from cifarkit.export.metadata import input_description, output_description
from cifarkit.export.onnx_source import OnnxSource
from cifarkit.export.options import ExportOptions
from cifarkit.export.parity import ParityReport
from cifarkit.export.portable import PortabilityReport
from cifarkit.export.quantize import QuantizationInfo
from cifarkit.export.result import ExportedFile
from cifarkit.export.source import ExportSource, tta_card
from cifarkit.measure.flops import MacCount

#: ``progress(done, total, what)``, the same shape as the data loader's callback.
Progress = Callable[[int, int, str], None]


@dataclass
class ExportState:
    """What the steps share: the options and the source, then what each step adds."""

    opts: ExportOptions
    src: ExportSource
    out_dir: Path
    stage: Path  # the files before they are committed; backends open them here
    progress: Progress | None
    notes: list[str]
    # the source
    model: Any = None  # the Keras model (None for an ONNX source)
    onnx_src: OnnxSource | None = None
    arch: str = ""
    description: str = ""
    params: int = 0
    source_sha: str = ""
    reference_name: str = "the Keras model"
    info: contract.ModelInfo | None = None  # classes, image size, preprocessing
    images: ExportImages | None = None
    held_out: HeldOut | None = None  # what temperature and unknown threshold are fitted on
    # the graphs and what was measured on them
    protos: dict[str, Any] = field(default_factory=dict)
    portability: PortabilityReport | None = None
    macs: MacCount | None = None
    sessions: dict[str, Any] = field(default_factory=dict)
    reference: np.ndarray | None = None  # the source's probabilities on the parity images
    #: The calibrated fp32 graph's probabilities on the parity images (LiteRT/ORT files).
    calibrated_reference: np.ndarray | None = None
    calibration: dict[str, Calibration] = field(default_factory=dict)
    block_scores: dict[str, dict[str, Any]] = field(default_factory=dict)  # export.blockscore
    uncalibrated_test: dict[str, np.ndarray] = field(default_factory=dict)
    tflite_calibration: dict[str, Any] | None = None  # LiteRT int8's own temperature
    parity: dict[str, ParityReport] = field(default_factory=dict)
    quant: QuantizationInfo | None = None
    accuracies: dict[str, float | None] = field(default_factory=dict)
    evaluations: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    speed: Throughput | None = None
    latency: dict[str, dict[str, Any]] = field(default_factory=dict)
    latency_setup: LatencySetup | None = None
    robustness: dict[str, Any] | None = None  # the corruption table (``export.robustness``)
    # what is written
    exported_at: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    training: dict[str, Any] | None = None
    derived_from: dict[str, Any] | None = None
    files: list[ExportedFile] = field(default_factory=list)
    payloads: list[tuple[str, bytes]] = field(default_factory=list)
    tflite_engine: str | None = None
    runs_in: dict[str, list[dict[str, Any]]] | None = None
    runs_in_setup: str | None = None
    card: dict[str, Any] = field(default_factory=dict)

    # --- progress, sessions, staged files ---------------------------------------------------

    @property
    def step_names(self) -> list[str]:
        o = self.opts
        return ["load", "convert", "check", *(["parity"] if o.check else []),
                *[p for p in o.precisions if p != "fp32"],
                *(["calibrate"] if self.held_out is not None else []),
                *(["unknown score"] if o.unknown_score == "blocks" else []), "measure",
                *(["corruptions"] if o.corruptions else []),
                *[f for f in o.formats if f != "onnx"], *(["runs in"] if o.runtimes else []),
                "write"]

    def step(self, name: str) -> None:
        if self.progress:
            names = self.step_names
            self.progress(names.index(name), len(names), f"export {self.src.name}")

    def session(self, precision: str) -> Any:
        """A CPU session of one graph, kept for parity and accuracy (freed before timing)."""
        if precision not in self.sessions:
            self.sessions[precision] = cpu_session(self.protos[precision].SerializeToString())
        return self.sessions[precision]

    def add_payload(self, name: str, blob: bytes) -> Path:
        """A file to write, staged so backends can open it now."""
        self.payloads.append((name, blob))
        path = self.stage / name
        path.write_bytes(blob)
        return path

    def delta(self, precision: str, acc: float | None) -> float | None:
        base = self.accuracies.get("fp32")
        return None if acc is None or base is None or precision == "fp32" else acc - base

    @property
    def cifar10(self) -> bool:
        return self.info is not None and self.info.classes == contract.CIFAR10_CLASSES

    # --- what the files and the card say ----------------------------------------------------

    def contract_metadata(self) -> dict[str, Any]:
        """The metadata ``cifarkit.contract`` reads (checks run on graphs that carry it)."""
        assert self.info is not None
        return {"class_names": list(self.info.classes),
                "image_size": str(self.info.image_size), "preprocess": self.info.preprocess}

    def metadata(self, p: str) -> dict[str, Any]:
        """The ``metadata_props`` of the ``p`` ONNX file (``metadata.py`` lists the keys)."""
        info, images, acc = self.info, self.images, self.accuracies[p]
        assert info is not None and images is not None
        return {
            "class_names": list(info.classes),
            "architecture": self.arch,
            "precision": p,
            "input_description": input_description(info.image_size),
            "output_description": output_description(info.n_classes),
            "image_size": str(info.image_size),
            "preprocess": info.preprocess,
            "accuracy": None if acc is None else f"{acc:.4f}",
            "accuracy_images": None if acc is None else str(len(images.y_test)),
            "accuracy_data": None if acc is None else images.source,
            "source_file": self.src.model_path.name,
            "source_sha256": self.source_sha,
            "derived_from": self.derived_from,
            "versions": self.versions,
            "exported_at": self.exported_at,
            "opset": str(self.opts.opset),
            "cifarkit_version": self.versions["cifarkit"],
            "training": self.training or None,
            "parity": self.parity[p].to_dict() if p in self.parity else None,
            "parity_reference": self.reference_name if p in self.parity else None,
            "portability": (self.portability.to_dict() if p == "fp32" and self.portability
                            else None),
            "quantization": self.quant.to_dict() if p == "int8" and self.quant else None,
            "calibration": self.calibration[p].metadata() if p in self.calibration else None,
            "unknown": self.unknown_rule(p),
        }

    def unknown_rule(self, p: str) -> dict[str, Any] | None:
        """The file's ``unknown`` metadata: the block score's rule, else the top probability's."""
        if p in self.block_scores:
            return blockscore.rule(self.block_scores[p])
        return self.calibration[p].unknown() if p in self.calibration else None

    def doc_string(self, p: str) -> str:
        info = self.info
        assert info is not None
        kind = "CIFAR-10 classifier" if self.cifar10 else "classifier"
        s = info.image_size
        return (f"cifarkit {self.arch} {kind} ({p}); input images uint8 [batch,{s},{s},3] RGB "
                f"0-255, output probabilities float32 [batch,{info.n_classes}]")

    def calibration_card(self) -> dict[str, Any] | None:
        """The card's ``calibration``: what it was fitted on, and per precision T, the figures
        before → after and the unknown rule (None when not calibrated)."""
        held = self.held_out
        if held is None or not self.calibration:
            return None
        return {"fitted_on": held.description, "images": int(len(held.y)),
                "acceptance": self.opts.unknown_acceptance,
                "unknown_score": "score" if self.block_scores else "msp",
                **({"block_score": self.block_scores} if self.block_scores else {}),
                "recorded_val_accuracy": held.recorded_accuracy,
                "precisions": {p: c.to_dict() for p, c in self.calibration.items()},
                "tflite_int8": self.tflite_calibration}

    def card_dict(self, reproduce: str) -> dict[str, Any]:
        """``card.json``'s content."""
        o, src, images, info = self.opts, self.src, self.images, self.info
        assert images is not None and info is not None and self.portability is not None
        return {
            "card_version": CARD_VERSION,
            "name": src.name,
            "architecture": self.arch,
            "description": self.description,
            "classes": list(info.classes),
            "contract": {"input": input_description(info.image_size),
                         "output": output_description(info.n_classes)},
            "source": {"file": os.fspath(src.model_path), "sha256": self.source_sha,
                       "run_dir": os.fspath(src.run_dir) if src.run_dir else None,
                       "kind": src.kind, "derived_from": self.derived_from},
            "training": self.training or None,
            "params": self.params,
            "tta": (self.onnx_src.card.get("tta") if self.onnx_src is not None
                    else tta_card(self.model)),
            "macs_per_image": self.macs.macs_per_image if self.macs else None,
            "macs": self.macs.to_dict() if self.macs else None,
            "evaluation": {"source": images.source, "synthetic": images.synthetic,
                           "test_images": None if images.synthetic else int(len(images.y_test)),
                           "limit": o.limit, "seed": o.seed},
            "parity": self.parity["fp32"].to_dict() if "fp32" in self.parity else None,
            "parity_reference": self.reference_name,
            "portability": self.portability.to_dict(),
            "formats": list(o.formats),
            "tflite_engine": self.tflite_engine,
            "files": [f.to_dict() for f in self.files if f.written],
            "baseline_fp32": None if "fp32" in o.precisions else self.files[0].to_dict(),
            "quantization": self.quant.to_dict() if self.quant else None,
            "benchmark": self.speed.to_dict() if self.speed else None,
            "latency": self.latency_setup.to_dict() if self.latency_setup else None,
            "calibration": self.calibration_card(),
            **({"robustness": self.robustness} if self.robustness else {}),
            "runs_in": self.runs_in,
            "runs_in_setup": self.runs_in_setup,
            "opset": o.opset,
            "versions": self.versions,
            "exported_at": self.exported_at,
            "command": o.command,
            "reproduce": reproduce,
            "notes": self.notes,
        }
