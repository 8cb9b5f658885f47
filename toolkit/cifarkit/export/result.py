"""What an export made: one ``ExportedFile`` per file, and the ``ExportResult``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cifarkit.export.measure import LatencySetup, Throughput
from cifarkit.export.parity import ParityReport
from cifarkit.export.portable import PortabilityReport
from cifarkit.export.quantize import QuantizationInfo
from cifarkit.export.source import CARD_FILE

README_FILE = "README.md"


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
