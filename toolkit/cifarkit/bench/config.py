"""What ``cifarkit bench`` is asked (``BenchConfig``) and what it finds (``BenchResult`` and its
rows): plain data, shared by the sweep and the reports."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cifarkit.backends import REFERENCE
from cifarkit.backends.catalog import PRECISIONS
from cifarkit.backends.providers import GPU_PROVIDERS
from cifarkit.measure.flops import CpuPeak, MacCount
from cifarkit.measure.latency import DEFAULT_WARMUP, LatencyStats
from cifarkit.measure.metrics import AccuracyReport

if TYPE_CHECKING:
    from cifarkit.bench.keras_baseline import KerasComparison

DEFAULT_BATCH_SIZES = (1, 8, 32, 128, 512)
#: ``quick`` (``cifarkit bench --quick``, ``make demo``): the default model (every precision
#: of ``exported/default``'s model) gets the whole sweep; every other model file a stratified
#: subset of this many images, these batch sizes and this many seconds of timed runs each.
QUICK_IMAGES = 2000
QUICK_BATCH_SIZES = (1, 32)
QUICK_DURATION = 0.5
PRECISION_ORDER = PRECISIONS  # fp32, int8, fp16: the order of every report
SPLITS = ("test", "val", "train")
Progress = Callable[[int, int, str], None]


@dataclass
class BenchConfig:
    """What to benchmark. ``models``: model references (``NAME``, ``NAME:PRECISION``, an
    ``.onnx`` file or a folder); empty = every model in ``exported/``."""

    models: Sequence[str] = ()
    data: str | os.PathLike[str] | None = None
    split: str = "test"
    limit: int | None = None
    seed: int = 0
    #: onnxruntime's execution providers; None: the default sweep (``default_providers``)
    providers: Sequence[str] | None = None
    #: backends (``cifarkit.backends.parse_backend``: ``openvino``, ``onnxruntime:cuda``;
    #: ``["all"]``: every registered runtime); None: onnxruntime only
    runtimes: Sequence[str] | None = None
    precisions: Sequence[str] | None = None
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES
    warmup: int = DEFAULT_WARMUP
    iterations: int | None = None
    duration: float | None = None
    threads: int | None = None
    #: a ``.keras`` path, ``"auto"`` (the source recorded beside each export), or None
    keras: str | os.PathLike[str] | None = None
    n_confusions: int = 10
    exported: Path | None = None  # default: backends.exported_dir()
    runs: Path | None = None  # where ``keras="auto"`` looks for runs/<name>/model.keras
    argv: list[str] | None = None  # the command line recorded in the report
    #: the lighter sweep of QUICK_*: the default model in full, the others lighter
    quick: bool = False
    #: accuracy under the CIFAR-10-C corruptions on this many images (None: not measured)
    corruptions: int | None = None
    #: a folder of images of other subjects: how well each model tells them apart (``ood``)
    ood: str | os.PathLike[str] | None = None


@dataclass(frozen=True)
class Backend:
    """What one column of the sweep runs on: a runtime and, for onnxruntime, one execution
    provider (the other runtimes run on the CPU: ``provider`` None). ``reason``: why it
    cannot run here; the default sweep and ``all`` record that instead of failing."""

    runtime: str
    provider: str | None = None
    reason: str | None = None

    @property
    def name(self) -> str:
        """The backend's name for ``cifarkit.backends.open_backend``."""
        return self.runtime if self.provider is None else f"{self.runtime}:{self.provider}"

    @property
    def where(self) -> str:
        """How progress and rows name it: onnxruntime's provider, else the runtime."""
        return self.provider or self.runtime

    @property
    def io_binding_variants(self) -> list[bool]:
        # On a GPU, once with and once without I/O binding: the copy to the device differs.
        return [False, True] if self.provider in GPU_PROVIDERS else [False]


@dataclass
class ModelFile:
    name: str
    precision: str
    path: Path
    architecture: str | None = None
    size_bytes: int = 0
    macs: MacCount | None = None
    input_kind: str | None = None

    @property
    def label(self) -> str:
        return f"{self.name}:{self.precision}"


@dataclass
class AccuracyResult:
    model: str
    precision: str
    provider: str
    report: AccuracyReport
    probs: np.ndarray  # [N, n_classes] float32: kept for the figures, not written to JSON
    seconds: float  # wall time of the accuracy pass (chunked predict_proba, not a benchmark)
    runtime: str = REFERENCE
    agreement: float | None = None  # top-1 agreement with onnxruntime's reference run
    max_abs_diff: float | None = None  # max |Δp| against it
    #: the rows of ``BenchResult.images`` the probs are of (None: all; ``quick``: a subset)
    indices: np.ndarray | None = None
    #: the model's ``score`` output [N] float32, from the same runs (None: it has none)
    scores: np.ndarray | None = None
    score_max_abs_diff: float | None = None  # max |Δscore| against onnxruntime's
    score_agrees: bool | None = None  # within backends.SCORE_RTOL of its scale everywhere


@dataclass
class LatencyRow:
    model: str
    precision: str
    provider: str
    io_binding: bool
    threads: int | None
    batch_size: int | None
    stats: LatencyStats | None = None
    status: str = "ok"  # or "unavailable", "failed"
    reason: str | None = None
    active_providers: str | None = None
    macs_per_image: int | None = None
    gflops: float | None = None
    #: achieved ÷ the peak of the arithmetic the row runs (see ``flops.row_peak``)
    peak_share: float | None = None
    peak: str | None = None  # that arithmetic: "fp32", "int8", "int8 64 % + fp32 36 %"
    runtime: str = REFERENCE


@dataclass
class RuntimeFailure:
    """A runtime that could not run a model file, with its own reason (one line)."""

    model: str
    precision: str
    runtime: str
    reason: str


@dataclass
class KerasResult:
    model: str
    precision: str
    provider: str
    keras_path: Path
    keras_device: str
    comparisons: list[KerasComparison]
    top1_agreement: float  # argmax agreement of Keras and ONNX on the largest timed batch
    max_abs_diff: float
    chunk: int  # the ONNX classifier's predict_proba chunk size


@dataclass
class BenchResult:
    config: BenchConfig
    environment: dict[str, Any]
    models: list[ModelFile]
    classes: tuple[str, ...]
    images: np.ndarray  # the labelled images benchmarked (uint8 NHWC)
    labels: np.ndarray
    data_source: str
    split: str
    #: what was swept, in report order: onnxruntime's providers (the unavailable ones
    #: after), the other runtimes, then the runtimes that are not installed
    backends: list[Backend] = field(default_factory=list)
    accuracy: list[AccuracyResult] = field(default_factory=list)
    latency: list[LatencyRow] = field(default_factory=list)
    keras: list[KerasResult] = field(default_factory=list)
    runtime_versions: dict[str, str | None] = field(default_factory=dict)
    failures: list[RuntimeFailure] = field(default_factory=list)
    # (cores, precision, model path) → the peak CPU rows are measured against
    cpu_peaks: dict[tuple[int, str, str], CpuPeak | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # warnings about this run's numbers
    data_notes: list[str] = field(default_factory=list)  # what the data loader said
    corruptions: list[Any] = field(default_factory=list)  # measure.robustness.CorruptionRow
    ood: list[Any] = field(default_factory=list)  # bench.ood.OODRow
    ood_images: Any = None  # bench.ood.OODImages (--ood): its source, images, skipped files
    seconds: float = 0.0

    @property
    def providers(self) -> list[str]:
        """onnxruntime's active providers benchmarked."""
        return [b.provider for b in self.backends if b.provider and b.reason is None]

    @property
    def unavailable(self) -> dict[str, str]:
        """onnxruntime's providers that are not active here → why."""
        return {b.provider: b.reason for b in self.backends if b.provider and b.reason}

    @property
    def runtimes(self) -> list[str]:
        """The runtimes benchmarked."""
        return list(dict.fromkeys(b.runtime for b in self.backends if b.reason is None))

    @property
    def runtime_unavailable(self) -> dict[str, str]:
        """The runtimes that are not installed here → why."""
        return {b.runtime: b.reason for b in self.backends if b.provider is None and b.reason}

    @property
    def multi_runtime(self) -> bool:
        """True when runtimes other than onnxruntime were asked for (reports then show a
        runtime column; a default run's reports stay as they were)."""
        return self.runtimes != [REFERENCE] or bool(self.runtime_unavailable)
