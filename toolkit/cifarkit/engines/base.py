"""The engine seam: one ``PredictRequest``, one interface, two engines.

    request = PredictRequest(sources=("photos/",), model=resolve_model("fastnet-relu:auto"))
    stats = get_engine("local").run(request, on_row=print)      # or get_engine("ray")

An engine turns the request's inputs into one ``Prediction`` per input, handed to ``on_row``
as it is ready (input order locally, completion order on Ray), calls ``on_progress(done,
failed, total)`` after each batch, and returns the run's ``PredictStats``. Every option is
checked once, here, when the request is made (``--concurrency`` parsed, defaults filled in);
each engine refuses the options of the other (``check``) rather than ignoring them. The model
runs through ``cifarkit.backends`` (``open_model``): onnxruntime's ``Classifier`` with its
execution provider, or another backend's ``RuntimeModel``; either is really used or the run
fails, and rows name the backend and provider that computed them.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from cifarkit.data.formats import SkippedFiles
from cifarkit.engines.inputs import OnSkip
from cifarkit.engines.reject import Rejection, parse_reject
from cifarkit.engines.rows import Prediction
from cifarkit.errors import UsageError

if TYPE_CHECKING:
    from cifarkit.contract import ModelInfo

DEFAULT_BATCH = 256
ENGINES = {"local": ("cifarkit.engines.local", "LocalEngine"),
           "ray": ("cifarkit.engines.ray", "RayEngine")}
OnRow = Callable[[Prediction], None]
OnStart = Callable[[tuple[str, ...]], None]  # the model's class names, once it is open
OnWarning = Callable[[str], None]  # a problem that is no input's
Progress = Callable[[int, int, "int | None"], None]  # (done, failed, total or None)


def parse_concurrency(text: str | int | tuple[int, int] | None) -> int | tuple[int, int] | None:
    """``N`` → N actors; ``MIN-MAX`` → an autoscaling pool; None → the default."""
    if text is None or isinstance(text, int | tuple):
        return text  # type: ignore[return-value]
    m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", text)
    if not m:
        raise UsageError(f"--concurrency wants N or MIN-MAX, got {text!r}")
    lo = int(m.group(1))
    hi = int(m.group(2)) if m.group(2) else None
    if lo < 1 or (hi is not None and hi < lo):
        raise UsageError(f"--concurrency wants N >= 1 or 1 <= MIN <= MAX, got {text!r}")
    return lo if hi is None else (lo, hi)


@dataclass(frozen=True)
class PredictRequest:
    """Everything a prediction run needs, checked on creation. Picklable: the Ray actors get
    it as it is. ``model`` is a file (``backends.resolve_model`` turns names into files)."""

    sources: tuple[str, ...]
    model: Path
    backend: str = "onnxruntime"  # a runtime, or onnxruntime:PROVIDER (backends.parse_backend)
    provider: str = "cpu"  # onnxruntime's execution provider
    provider_options: dict[str, str] = field(default_factory=dict)
    top_k: int = 3
    batch_size: int = DEFAULT_BATCH
    recursive: bool = True
    labels_from_folders: bool = False
    strict: bool = False  # stop at the first input that fails
    reject: str | float = "off"  # off | auto | a score threshold (engines.reject)
    # the local engine
    workers: int | None = None  # decoder processes (None: the physical cores)
    threads: int | None = None  # inference threads (None: the physical cores)
    io_binding: bool = False
    # the Ray engine
    address: str | None = None  # None: $RAY_ADDRESS, else a local Ray for the run
    concurrency: int | tuple[int, int] | str | None = None
    cpus_per_actor: int = 1
    gpus_per_actor: float | None = None  # None: 1 with a GPU provider, else 0

    def __post_init__(self) -> None:
        from cifarkit.backends import parse_backend
        from cifarkit.backends.providers import PROVIDERS

        put = object.__setattr__  # frozen: normalise once, here
        put(self, "sources", tuple(os.fspath(s) for s in self.sources))
        put(self, "model", Path(self.model))
        put(self, "provider_options", {str(k): str(v) for k, v in self.provider_options.items()})
        put(self, "concurrency", parse_concurrency(self.concurrency))
        put(self, "reject", parse_reject(self.reject))
        if self.sources.count("-") > 1:
            raise UsageError("- (stdin) can be given once")
        name, provider = parse_backend(self.backend)  # NAME or onnxruntime:PROVIDER
        if provider is not None and self.provider not in ("cpu", provider):
            raise UsageError(f"--backend {self.backend} and --provider {self.provider} "
                             "disagree; give the provider once")
        put(self, "backend", name)
        put(self, "provider", provider or self.provider)
        if self.provider not in PROVIDERS:
            raise UsageError(f"unknown provider {self.provider!r}; choose one of: "
                             f"{', '.join(PROVIDERS)}")
        ort_only = {"--provider": self.provider != "cpu", "--io-binding": self.io_binding,
                    "--provider-option": bool(self.provider_options)}
        if self.backend != "onnxruntime" and any(ort_only.values()):
            flags = ", ".join(flag for flag, given in ort_only.items() if given)
            raise UsageError(f"{flags}: onnxruntime's execution provider options; --backend "
                             f"{self.backend} runs on the CPU with its own settings")
        for name, value, least in (("top_k", self.top_k, 1), ("batch_size", self.batch_size, 1),
                                   ("workers", self.workers, 0), ("threads", self.threads, 1),
                                   ("cpus_per_actor", self.cpus_per_actor, 1),
                                   ("gpus_per_actor", self.gpus_per_actor, 0)):
            if value is not None and value < least:
                raise UsageError(f"{name} must be >= {least}, got {value}")

    @property
    def actor_gpus(self) -> float:
        """GPUs per Ray actor: as given, else 1 with a GPU provider and 0 without."""
        from cifarkit.backends.providers import GPU_PROVIDERS

        if self.gpus_per_actor is not None:
            return float(self.gpus_per_actor)
        return 1.0 if self.provider in GPU_PROVIDERS else 0.0

    def given(self, names: Sequence[str]) -> list[str]:
        """The options among ``names`` set to something other than their default."""
        fields = self.__dataclass_fields__
        return [n for n in names if getattr(self, n) != _default(fields[n])]


def _default(f: Any) -> Any:
    from dataclasses import MISSING

    return f.default_factory() if f.default is MISSING else f.default


@dataclass
class PredictStats:
    """Running totals for the final summary; per-class counts when true labels are known.
    ``ran_on`` says in one line what computed the rows (model, backend, provider, threads or
    actors); ``stopped_early``: ``strict`` ended the run at a failed input; ``skipped``: the
    files the walk left out as non-images; ``warned``: rows that carry warnings."""

    classes: tuple[str, ...] = ()
    images: int = 0
    failed: int = 0
    started: float = field(default_factory=time.perf_counter)
    finished: float | None = None
    labelled: Counter[str] = field(default_factory=Counter)
    correct: Counter[str] = field(default_factory=Counter)
    predicted: Counter[str] = field(default_factory=Counter)
    unlabelled: int = 0
    ran_on: str = ""
    stopped_early: bool = False
    skipped: SkippedFiles = field(default_factory=SkippedFiles)
    warned: int = 0
    rejection: Rejection | None = None  # --reject's rule (None: off)
    rejected: int = 0  # rows answered "unknown"

    def add(self, pred: Prediction) -> None:
        self.images += 1
        self.warned += bool(pred.warnings)
        self.rejected += bool(pred.rejected)
        if not pred.ok:
            self.failed += 1
            return
        self.predicted[pred.label or ""] += 1
        if pred.true_label is None:
            self.unlabelled += 1
        else:
            self.labelled[pred.true_label] += 1
            self.correct[pred.true_label] += bool(pred.correct)

    def counts(self) -> dict[str, Any]:
        """The row totals as plain data (what a Ray worker sends the driver for its rows)."""
        return {"images": self.images, "failed": self.failed, "warned": self.warned,
                "unlabelled": self.unlabelled, "rejected": self.rejected,
                "labelled": dict(self.labelled), "correct": dict(self.correct),
                "predicted": dict(self.predicted)}

    def merge(self, counts: dict[str, Any]) -> None:
        """Add another ``counts()`` (rows counted elsewhere) to these totals."""
        for name in ("images", "failed", "warned", "unlabelled", "rejected"):
            setattr(self, name, getattr(self, name) + counts[name])
        for name in ("labelled", "correct", "predicted"):
            getattr(self, name).update(counts[name])

    def finish(self) -> PredictStats:
        self.finished = time.perf_counter()
        return self

    @property
    def succeeded(self) -> int:
        return self.images - self.failed

    @property
    def seconds(self) -> float:
        return (self.finished or time.perf_counter()) - self.started

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    @property
    def accuracy(self) -> float | None:
        n = sum(self.labelled.values())
        return sum(self.correct.values()) / n if n else None

    def per_class(self) -> list[dict[str, Any]]:
        """Rows ``{class, images, correct, accuracy, predicted}`` for classes seen as truth."""
        rows = []
        for name in self.classes:
            n = self.labelled[name]
            if n:
                rows.append({
                    "class": name, "images": n, "correct": self.correct[name],
                    "accuracy": self.correct[name] / n, "predicted": self.predicted[name],
                })
        return rows


class Engine(Protocol):
    """What ``get_engine`` returns."""

    name: str

    def check(self, request: PredictRequest) -> None:
        """``UsageError`` for options this engine does not use."""

    def run(self, request: PredictRequest, on_row: OnRow, on_progress: Progress | None = None,
            *, on_start: OnStart | None = None, on_warning: OnWarning | None = None,
            on_skip: OnSkip | None = None, stdin: TextIO | None = None) -> PredictStats:
        """Predict every input: ``on_start(classes)`` once the model is known, ``on_row`` per
        input, ``on_progress`` per batch, ``on_warning`` for problems that are no input's,
        ``on_skip(path)`` per file skipped as a non-image (``PredictStats.skipped`` counts
        them either way)."""
        ...


def get_engine(name: str) -> Engine:
    """``local`` or ``ray`` (Ray is imported only when that engine runs)."""
    if name not in ENGINES:
        raise UsageError(f"--engine must be one of {', '.join(ENGINES)}, got {name!r}")
    module, cls = ENGINES[name]
    return getattr(importlib.import_module(module), cls)()


def consume(rows: Iterable[Prediction], stats: PredictStats, on_row: OnRow,
            strict: bool) -> None:
    """Each row into ``stats``, then to ``on_row``; with ``strict``, stop after the first
    failed one. The rows are closed however this ends (their decoders or Ray job stop)."""
    with contextlib.closing(iter(rows)) as it:  # type: ignore[type-var]
        for pred in it:
            stats.add(pred)
            on_row(pred)
            if strict and not pred.ok:
                stats.stopped_early = True
                break


def skip_counter(stats: PredictStats, on_skip: OnSkip | None) -> OnSkip:
    """``on_skip`` for the walk: counts into ``stats.skipped``, then tells the caller."""

    def skip(path: str) -> None:
        stats.skipped.add(path)
        if on_skip is not None:
            on_skip(path)

    return skip


def refuse(request: PredictRequest, options: dict[str, str], why: str) -> None:
    """``UsageError`` naming the given ``options`` (field → flag), if any."""
    bad = [options[n] for n in request.given(list(options))]
    if bad:
        raise UsageError(f"{', '.join(bad)}: {why}")


# --- the model, through the backends seam ---------------------------------------------------


def open_model(request: PredictRequest, threads: int | None, *,
               allow_spinning: bool = False) -> Any:
    """The request's model on its backend: onnxruntime's ``Classifier`` (with the provider,
    its options and I/O binding) or another backend's ``RuntimeModel``. Both have
    ``classes``, ``image_size``, ``has_score``, ``predict_proba``, ``predict_scored`` and
    ``close``; neither falls back."""
    if request.backend == "onnxruntime":
        from cifarkit.backends import Classifier

        return Classifier(request.model, request.provider, threads=threads,
                          provider_options=request.provider_options,
                          io_binding=request.io_binding, allow_spinning=allow_spinning)
    from cifarkit.backends import get_runtime

    return get_runtime(request.backend).open(request.model, threads=threads)


def run_model(model: Any, images: Any, rule: Rejection | None) -> tuple[Any, Any]:
    """(probabilities, the model's ``score`` output or None) of ``images``: both from the
    same runtime calls when ``rule`` scores with that output, else the probabilities alone."""
    if rule is not None and rule.uses_output:
        return model.predict_scored(images)
    return model.predict_proba(images), None


def check_scored(model: Any, rule: Rejection | None) -> None:
    """``ModelError`` before any input when ``rule`` needs a ``score`` output that the opened
    ``model`` (a ``.tflite`` file may lack what its ONNX sibling has) does not return."""
    if rule is not None and rule.uses_output and not model.has_score:
        from cifarkit.measure.ood import missing_score

        raise missing_score(f"--reject: {model.path}", backend_of(model)[0] or "the runtime")


def backend_of(model: Any) -> tuple[str | None, str | None]:
    """(backend, provider) that ``model`` really runs on, for the rows it computes."""
    from cifarkit.backends import Classifier, RuntimeModel

    if isinstance(model, Classifier):
        return "onnxruntime", model.provider
    if isinstance(model, RuntimeModel):
        return model.name, model.provider  # the other runtimes run on the CPU: "cpu"
    return None, None


def describe_model(model: Any) -> str:
    """One line: the file, the backend and how it runs (the summary's model line)."""
    from cifarkit.backends import Classifier

    if isinstance(model, Classifier):
        tuned = " (tuned)" if model.chunk_timings and not model.tuning else ""
        return (f"{model.path} on onnxruntime {model.provider} ({', '.join(model.active_providers)}"
                f"; {model.threads} threads, chunks of {model.batch_size}{tuned})")
    return f"{model.path} on {model.name} ({model.threads} threads)"


def model_info(request: PredictRequest) -> ModelInfo:
    """What the model says about itself, read by the contract from its ONNX metadata without
    running it (a ``.tflite`` file: from the ONNX file beside it, as the litert backend does)."""
    from cifarkit.contract import read_onnx

    path = request.model
    if path.suffix != ".onnx" and path.with_suffix(".onnx").is_file():
        path = path.with_suffix(".onnx")
    return read_onnx(path, uint8_only=False)


def model_classes(request: PredictRequest) -> tuple[str, ...]:
    """The model's class names (``model_info``)."""
    return model_info(request).classes


def rejection(request: PredictRequest, info: ModelInfo | None = None) -> Rejection | None:
    """The request's ``--reject`` rule for its model (None: off), checked before any input is
    read; both engines apply this one."""
    if request.reject == "off":
        return None
    from cifarkit.engines.reject import resolve

    return resolve(request.reject, info or model_info(request), request.model)


__all__ = [
    "DEFAULT_BATCH",
    "ENGINES",
    "Engine",
    "PredictRequest",
    "PredictStats",
    "backend_of",
    "check_scored",
    "describe_model",
    "get_engine",
    "model_classes",
    "model_info",
    "open_model",
    "parse_concurrency",
    "rejection",
    "run_model",
]
