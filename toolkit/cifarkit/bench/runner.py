"""The benchmark sweep: models × precisions × runtimes (× providers) × batch sizes, on real
images.

``run_bench(BenchConfig(...))`` resolves the models, checks the providers, loads the labelled
images, then for every model file and active provider

1. runs the whole image set through the ONNX model (``Classifier.predict_proba``) and
   computes the accuracy metrics (``metrics.evaluate``);
2. times one ``session.run`` per batch size (``latency.time_batches``), on CUDA/TensorRT
   once with and once without I/O binding;
3. turns images/s into GFLOP/s with the graph's MACs per image, and (CPU rows) into a share
   of this CPU's FP32 peak.

Then, when asked (``keras=``), it times the source Keras model beside the fp32 ONNX file
(``keras_baseline``). Providers: an explicit list must all be really active (else
``ProviderError`` before any work is done); the default sweep (``providers=None``) is
``cpu`` + ``cuda`` (+ ``openvino`` when this onnxruntime build has it), and a provider that
does not become active is recorded as unavailable, with the reason, instead of failing.

Runtimes (``runtimes=``, names from ``cifarkit.backends``): onnxruntime (default, with the
providers above) and other runtimes on the CPU, each file through the same accuracy pass and
``time_batches``, plus its agreement with onnxruntime (top-1 agreement and max |Δp| against
onnxruntime's probabilities for the same file, on the reference provider, cpu first). An
explicit runtime that is not installed raises ``RuntimeUnavailableError`` before any work;
``all`` records it as unavailable. A runtime that cannot run a file is recorded
(``BenchResult.failures``, its reason in one line) and the sweep carries on; the CLI then
exits non-zero.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cifarkit.bench.keras_baseline import KerasComparison
from cifarkit.errors import ModelError, ProviderError, UsageError
from cifarkit.measure.flops import (
    CpuPeak,
    MacCount,
    achieved_gflops,
    count_macs,
    row_peak,
    runtime_int8_share,
)
from cifarkit.measure.latency import DEFAULT_WARMUP, LatencyStats, check_budget, time_batches
from cifarkit.measure.machine import collect_environment, load_average
from cifarkit.measure.metrics import AccuracyReport, evaluate

DEFAULT_BATCH_SIZES = (1, 8, 32, 128, 512)
#: ``quick`` (``cifarkit bench --quick``, ``make demo``): the default model (every precision
#: of ``exported/default``'s model) gets the whole sweep; every other model file a stratified
#: subset of this many images, these batch sizes and this many seconds of timed runs each.
QUICK_IMAGES = 2000
QUICK_BATCH_SIZES = (1, 32)
QUICK_DURATION = 0.5
PRECISION_ORDER = ("fp32", "int8", "fp16")
SPLITS = ("test", "train")
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
    providers: Sequence[str] | None = None
    #: runtimes from ``cifarkit.backends`` (``["all"]``: every registered one); None:
    #: onnxruntime only
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
    exported: Path | None = None  # default: runtime.exported_dir()
    runs: Path | None = None  # where ``keras="auto"`` looks for runs/<name>/model.keras
    argv: list[str] | None = None  # the command line recorded in the report
    #: the lighter sweep of QUICK_*: the default model in full, the others lighter
    quick: bool = False


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
    runtime: str = "onnxruntime"
    agreement: float | None = None  # top-1 agreement with onnxruntime's reference run
    max_abs_diff: float | None = None  # max |Δp| against it
    #: the rows of ``BenchResult.images`` the probs are of (None: all; ``quick``: a subset)
    indices: np.ndarray | None = None


@dataclass
class LatencyRow:
    model: str
    precision: str
    provider: str
    io_binding: bool
    threads: int | None
    batch_size: int | None
    stats: LatencyStats | None = None
    status: str = "ok"  # or "unavailable"
    reason: str | None = None
    active_providers: str | None = None
    macs_per_image: int | None = None
    gflops: float | None = None
    #: achieved ÷ the peak of the arithmetic the row runs (see ``flops.row_peak``)
    peak_share: float | None = None
    peak: str | None = None  # that arithmetic: "fp32", "int8", "int8 64 % + fp32 36 %"
    runtime: str = "onnxruntime"


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
    providers: list[str]  # active providers benchmarked
    accuracy: list[AccuracyResult] = field(default_factory=list)
    latency: list[LatencyRow] = field(default_factory=list)
    keras: list[KerasResult] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)  # provider → reason
    runtimes: list[str] = field(default_factory=lambda: ["onnxruntime"])  # benchmarked
    runtime_unavailable: dict[str, str] = field(default_factory=dict)  # runtime → reason
    runtime_versions: dict[str, str | None] = field(default_factory=dict)
    failures: list[RuntimeFailure] = field(default_factory=list)
    # (cores, precision, model path) → the peak CPU rows are measured against
    cpu_peaks: dict[tuple[int, str, str], CpuPeak | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # warnings about this run's numbers
    data_notes: list[str] = field(default_factory=list)  # what the data loader said
    seconds: float = 0.0

    @property
    def multi_runtime(self) -> bool:
        """True when runtimes other than onnxruntime were asked for (reports then show a
        runtime column; a default run's reports stay as they were)."""
        return self.runtimes != ["onnxruntime"] or bool(self.runtime_unavailable)


# --- models ---------------------------------------------------------------------------------

_FILE_RE = re.compile(r"^model\.(fp32|fp16|int8)\.onnx$")


def _precision_of(path: Path) -> str:
    m = _FILE_RE.match(path.name)
    if m:
        return m.group(1)
    try:
        import onnx

        proto = onnx.load(os.fspath(path), load_external_data=False)
        for entry in proto.metadata_props:
            if entry.key == "precision" and entry.value:
                return entry.value
    except Exception:
        pass
    for p in PRECISION_ORDER:
        if p in path.stem.lower():
            return p
    return "unknown"


def _name_of(path: Path) -> str:
    return path.parent.name if _FILE_RE.match(path.name) and path.parent.name else path.stem


def _describe(root: Path) -> str:
    from cifarkit.backends.catalog import list_exported

    found = list_exported(root)
    if not found:
        return "no models are exported there yet"
    return "exported: " + ", ".join(f"{n} ({'/'.join(ps)})" for n, ps in found.items())


def resolve_models(
    specs: Sequence[str], precisions: Sequence[str] | None = None, root: Path | None = None,
    provider: str = "cpu",
) -> list[ModelFile]:
    """The model files to benchmark (see ``BenchConfig.models``), filtered by
    ``precisions`` when given. Raises ``ModelError`` when nothing is left. ``default`` and
    ``NAME:auto`` resolve as ``predict`` does, for ``provider``."""
    from cifarkit.backends.catalog import (
        AUTO,
        PRECISIONS,
        choose_model,
        exported_dir,
        list_exported,
    )

    for p in precisions or ():
        if p not in PRECISIONS:
            raise UsageError(f"unknown precision {p!r}; choose from {', '.join(PRECISIONS)}")
    root = root or exported_dir()
    files: list[Path] = []
    if not specs:
        found = list_exported(root)
        if not found:
            raise ModelError(
                f"no exported models in {root} (each is exported/<name>/model.<precision>.onnx, "
                "written by `cifarkit export`); pass MODEL as an .onnx file, a folder or "
                "NAME[:precision]"
            )
        files = [root / name / f"model.{p}.onnx" for name, ps in found.items() for p in ps]
    else:
        for spec in specs:
            path = Path(spec)
            name, sep, _ = spec.partition(":")
            if (spec == "default" or spec.endswith(f":{AUTO}")) and not path.exists():
                files.append(choose_model(None if spec == "default" else spec, provider,
                                          root).path)
            elif path.is_dir():
                hits = sorted(path.glob("model.*.onnx")) or sorted(path.glob("*.onnx"))
                if not hits:
                    raise ModelError(f"{path}: no .onnx file in this folder")
                files += hits
            elif path.is_file():
                files.append(path)
            elif not sep and (root / name).is_dir() and not spec.endswith(".onnx"):
                hits = [root / name / f"model.{p}.onnx" for p in PRECISION_ORDER]
                hits = [h for h in hits if h.is_file()]
                if not hits:
                    raise ModelError(f"{root / name}: no model.<precision>.onnx files")
                files += hits
            elif sep and not spec.endswith(".onnx") and os.sep not in name:
                precision = spec.partition(":")[2]
                if precision not in PRECISIONS:
                    raise ModelError(f"unknown precision {precision!r} in {spec!r}; choose "
                                     f"{', '.join(PRECISIONS)}")
                candidate = root / name / f"model.{precision}.onnx"
                if not candidate.is_file():
                    raise ModelError(
                        f"no model {spec!r}: {candidate} does not exist ({_describe(root)})"
                    )
                files.append(candidate)
            elif spec.endswith(".onnx") or os.sep in spec:
                raise ModelError(f"model file {spec} does not exist")
            else:
                raise ModelError(f"no model {spec!r} in {root} ({_describe(root)})")
    out: list[ModelFile] = []
    seen: set[Path] = set()
    for f in files:
        key = f.resolve()
        if key in seen:
            continue
        seen.add(key)
        mf = ModelFile(_name_of(f), _precision_of(f), f, size_bytes=f.stat().st_size)
        if precisions and mf.precision not in precisions:
            continue
        out.append(mf)
    if not out:
        wanted = ", ".join(precisions or ())
        raise ModelError(
            f"none of the models has the precision(s) asked for ({wanted}); found "
            + ", ".join(sorted({f"{_name_of(f)}:{_precision_of(f)}" for f in files}))
        )
    order = {p: i for i, p in enumerate(PRECISION_ORDER)}
    out.sort(key=lambda m: (m.name, order.get(m.precision, 99), os.fspath(m.path)))
    return out


# --- providers ------------------------------------------------------------------------------


def default_providers() -> list[str]:
    """``cpu`` and ``cuda`` always (cuda is then reported as unavailable where it can't run),
    plus ``openvino`` when this onnxruntime build contains it."""
    from cifarkit.backends import available_providers

    out = ["cpu", "cuda"]
    if "openvino" in available_providers():
        out.append("openvino")
    return out


def _unavailable_reason(provider: str, exc: Exception) -> str:
    from cifarkit.backends import provider_problem

    try:
        why = provider_problem(provider) if provider != "auto" else None
    except Exception:
        why = None
    return why or str(exc)


def _open(path: Path, provider: str, threads: int | None, io_binding: bool = False) -> Any:
    from cifarkit.backends import Classifier

    return Classifier(path, provider, threads=threads, io_binding=io_binding)


def check_providers(
    first_model: Path, providers: Sequence[str] | None, threads: int | None
) -> tuple[list[str], dict[str, str]]:
    """(active providers, {unavailable provider: reason}). Explicit providers that are not
    active raise ``ProviderError``; the default sweep records them instead."""
    explicit = providers is not None
    wanted = list(dict.fromkeys(providers)) if explicit else default_providers()
    if explicit and not wanted:
        raise UsageError("--provider: empty list")
    active: list[str] = []
    unavailable: dict[str, str] = {}
    for provider in wanted:
        try:
            clf = _open(first_model, provider, threads)
        except ProviderError as exc:
            if explicit:
                raise
            unavailable[provider] = _unavailable_reason(provider, exc)
            continue
        name = clf.provider  # "auto" resolves to the provider that became active
        clf.close()
        if name not in active:
            active.append(name)
    if not active:  # pragma: no cover - the CPU provider is in every onnxruntime build
        raise ProviderError("no execution provider became active: " + "; ".join(
            f"{p}: {r}" for p, r in unavailable.items()))
    return active, unavailable


# --- runtimes -------------------------------------------------------------------------------


def check_runtimes(runtimes: Sequence[str] | None) -> tuple[list[str], dict[str, str]]:
    """(runtimes to benchmark, {unavailable runtime: reason}). An explicitly named runtime
    that is not installed raises ``RuntimeUnavailableError``; ``all`` records it."""
    from cifarkit.backends import get_runtime, resolve_runtimes

    if runtimes is not None and not list(runtimes):
        raise UsageError("--runtime: empty list")
    names = resolve_runtimes(list(runtimes) if runtimes else None)
    every = bool(runtimes) and "all" in runtimes
    active: list[str] = []
    unavailable: dict[str, str] = {}
    for name in names:
        rt = get_runtime(name)
        why = rt.problem()
        if why is None:
            active.append(name)
        elif every:
            unavailable[name] = why
        else:
            rt.require()  # raises, with the pip command
    return active, unavailable


# --- the sweep ------------------------------------------------------------------------------


def _check_batch_sizes(sizes: Sequence[int]) -> list[int]:
    out = list(dict.fromkeys(int(s) for s in sizes))
    if not out:
        raise UsageError("--batch-sizes: empty list")
    if any(s < 1 for s in out):
        raise UsageError(f"--batch-sizes must be >= 1, got {out}")
    return out


def _load_images(config: BenchConfig, progress: Progress | None) -> tuple[Any, ...]:
    from cifarkit.data import load_dataset

    if config.split not in SPLITS:
        raise UsageError(f"--split must be one of {', '.join(SPLITS)}, got {config.split!r}")

    def data_progress(done: int, total: int, what: str = "loading images") -> None:
        if progress is not None:
            progress(done, total, what)

    # Keras's download is the last resort (it imports Keras, once, on a machine with no data).
    ds = load_dataset(config.data, limit=config.limit, seed=config.seed, progress=data_progress,
                      splits=(config.split,))
    x, y = (ds.x_test, ds.y_test) if config.split == "test" else (ds.x_train, ds.y_train)
    return x, y, tuple(ds.classes), f"{ds.source} ({ds.kind})", list(ds.notes)


def run_bench(
    config: BenchConfig,
    *,
    images: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    classes: Sequence[str] | None = None,
    data_source: str | None = None,
    progress: Progress | None = None,
) -> BenchResult:
    """Run the benchmark. ``images``/``labels`` (uint8 NHWC, int labels) replace the data
    source when given. ``progress(done, total, what)`` is called as the sweep advances."""
    start = time.perf_counter()
    iterations, duration = check_budget(config.iterations, config.duration)
    batch_sizes = _check_batch_sizes(config.batch_sizes)
    if config.warmup < 0:
        raise UsageError(f"--warmup must be >= 0, got {config.warmup}")
    if config.threads is not None and config.threads < 1:
        raise UsageError(f"--threads must be >= 1, got {config.threads}")
    if config.limit is not None and config.limit < 1:
        raise UsageError(f"--limit must be >= 1, got {config.limit}")

    models = resolve_models(config.models, config.precisions, config.exported,
                            provider=(config.providers or ["cpu"])[0])
    runtimes, runtime_unavailable = check_runtimes(config.runtimes)
    if "onnxruntime" in runtimes:
        providers, unavailable = check_providers(models[0].path, config.providers,
                                                 config.threads)
    elif config.providers is not None:
        raise UsageError("--provider chooses onnxruntime's execution providers; add "
                         "onnxruntime to --runtime to use it")
    else:
        providers, unavailable = [], {}
    keras_sources = _keras_sources(config, models)  # before the long part: fail early

    environment = collect_environment(config.argv)
    notes: list[str] = []
    data_notes: list[str] = []
    if images is None:
        images, labels, data_classes, source, data_notes = _load_images(config, progress)
    else:
        if labels is None:
            raise UsageError("images given without labels")
        images = np.asarray(images)
        labels = np.asarray(labels, dtype=np.int64)
        data_classes = tuple(classes) if classes is not None else None
        source = data_source or "images passed in"
    if len(images) == 0:
        raise UsageError("no images to benchmark on")

    result = BenchResult(
        config=config, environment=environment, models=models, classes=(),
        images=images, labels=labels, data_source=source, split=config.split,
        providers=providers, unavailable=unavailable, notes=notes, data_notes=data_notes,
        runtimes=runtimes, runtime_unavailable=runtime_unavailable,
    )
    from cifarkit.backends import get_runtime

    result.runtime_versions = {n: get_runtime(n).version()
                               for n in [*runtimes, *runtime_unavailable]}
    others = [r for r in runtimes if r != "onnxruntime"]

    variants = {p: ([False, True] if p in ("cuda", "tensorrt") else [False]) for p in providers}
    sweep = _Sweep(result, progress, 0, data_classes, batch_sizes, iterations, duration)
    if config.quick:
        sweep.focus = quick_focus(models, config.exported, notes)
        sweep.light = stratified_light(labels, config.seed)
    sweep.total = sum(1 + len(variants[p]) * len(sweep.sizes_for(mf))
                      for p in providers for mf in models)
    sweep.total += len(others) * sum(1 + len(sweep.sizes_for(mf)) for mf in models)
    for mf in models:
        try:
            mf.macs = count_macs(mf.path)
        except ModelError as exc:
            notes.append(f"{mf.label}: MACs not counted: {exc}")
        for provider in providers:
            sweep.run(mf, provider, variants[provider])
        for provider, reason in unavailable.items():
            result.latency.append(LatencyRow(
                mf.name, mf.precision, provider, False, config.threads, None,
                status="unavailable", reason=reason,
            ))
        for name in others:
            sweep.run_runtime(mf, name)
        for name, reason in runtime_unavailable.items():
            result.latency.append(LatencyRow(
                mf.name, mf.precision, "cpu", False, config.threads, None,
                status="unavailable", reason=reason, runtime=name,
            ))

    if keras_sources:
        result.keras = _run_keras(
            result, keras_sources, batch_sizes, config, iterations, duration, progress
        )
    environment["load_average_after"] = load_average()
    result.seconds = time.perf_counter() - start
    return result


class _Sweep:
    """One model file on one provider: accuracy, then latency per batch size (per I/O
    binding variant). Keeps the progress count."""

    def __init__(self, result: BenchResult, progress: Progress | None, total: int,
                 data_classes: tuple[str, ...] | None, batch_sizes: list[int],
                 iterations: int | None, duration: float | None) -> None:
        self.result, self.progress, self.total = result, progress, total
        self.data_classes, self.batch_sizes = data_classes, batch_sizes
        self.iterations, self.duration = iterations, duration
        self.done = 0
        self._references: dict[Path, np.ndarray] = {}
        self.focus: str | None = None  # quick: the model that gets the whole sweep
        self.light: np.ndarray | None = None  # quick: image indices for the other models

    def _is_light(self, mf: ModelFile) -> bool:
        return self.result.config.quick and mf.name != self.focus

    def sizes_for(self, mf: ModelFile) -> list[int]:
        if not self._is_light(mf):
            return self.batch_sizes
        return [b for b in self.batch_sizes if b in QUICK_BATCH_SIZES] or self.batch_sizes[:1]

    def _report(self, what: str, advance: bool = True) -> None:
        self.done += int(advance)
        if self.progress is not None:
            self.progress(self.done, self.total, what)

    def run(self, mf: ModelFile, provider: str, variants: list[bool]) -> None:
        result, config = self.result, self.result.config
        images, labels = result.images, result.labels
        batch_sizes, duration = self.batch_sizes, self.duration
        if self._is_light(mf):
            if self.light is not None:
                images, labels = images[self.light], labels[self.light]
            batch_sizes = self.sizes_for(mf)
            if self.iterations is None:
                duration = min(duration or QUICK_DURATION, QUICK_DURATION)
        clf = _open(mf.path, provider, config.threads)
        try:
            mf.architecture = mf.architecture or clf.metadata.get("architecture")
            mf.input_kind = clf.input_kind
            model_classes = tuple(clf.classes)
            _check_classes(mf, model_classes, self.data_classes, labels)
            result.classes = result.classes or model_classes
            self._report(f"{mf.label} on {provider}: accuracy", advance=False)
            t0 = time.perf_counter()
            probs = clf.predict_proba(images)
            seconds = time.perf_counter() - t0
            report = evaluate(probs, labels, model_classes, n_confusions=config.n_confusions)
            # The first onnxruntime pass of a file is the reference the others compare with.
            first = not any(a.runtime == "onnxruntime" and (a.model, a.precision) ==
                            (mf.name, mf.precision) for a in result.accuracy)
            indices = self.light if self._is_light(mf) else None
            agree = (1.0, 0.0) if first else self._agreement(mf, probs, indices)
            result.accuracy.append(
                AccuracyResult(mf.name, mf.precision, provider, report, probs, seconds,
                               indices=indices, agreement=agree[0], max_abs_diff=agree[1])
            )
            self._report(f"{mf.label} on {provider}: accuracy")
            for io_binding in variants:
                if io_binding:
                    clf.close()
                    clf = _open(mf.path, provider, config.threads, io_binding=True)
                what = f"{mf.label} on {provider}" + (" (I/O binding)" if io_binding else "")
                self._report(f"{what}: latency", advance=False)
                for stats in time_batches(
                    clf.run_batch, images, batch_sizes, warmup=config.warmup,
                    iterations=self.iterations, duration=duration,
                    on_done=lambda bs, _s, w=what: self._report(f"{w}: batch {bs} done"),
                ):
                    result.latency.append(_latency_row(result, mf, clf, io_binding, stats))
        finally:
            clf.close()

    def reference(self, mf: ModelFile) -> np.ndarray:
        """onnxruntime's probabilities for ``mf``: its first onnxruntime accuracy row (the
        first provider, cpu first), or a cpu pass made for the comparison alone."""
        for a in self.result.accuracy:
            if a.runtime == "onnxruntime" and (a.model, a.precision) == (mf.name, mf.precision):
                return a.probs
        key = mf.path.resolve()
        if key not in self._references:
            with _open(mf.path, "cpu", self.result.config.threads) as clf:
                self._references[key] = clf.predict_proba(self.result.images)
        return self._references[key]

    def _agreement(self, mf: ModelFile, probs: np.ndarray,
                   indices: np.ndarray | None = None) -> tuple[float, float]:
        from cifarkit.backends import agreement

        reference = self.reference(mf)
        if indices is not None and len(reference) != len(probs):  # --quick's subset
            reference = reference[indices]
        return agreement(probs, reference)

    def run_runtime(self, mf: ModelFile, name: str) -> None:
        """``mf`` on a runtime other than onnxruntime (on the CPU): accuracy, agreement with
        onnxruntime, latency per batch size. A runtime that cannot run the file is recorded
        in ``result.failures`` (and a latency row ``status="failed"``), and the sweep goes
        on."""
        from cifarkit.backends import get_runtime
        from cifarkit.errors import CifarkitError

        result, config = self.result, self.result.config
        what = f"{mf.label} on {name}"
        self._report(f"{what}: opening", advance=False)
        rows_before, done_before = len(result.latency), self.done
        model = None
        try:
            model = get_runtime(name).open(mf.path, threads=config.threads)
            _check_classes(mf, tuple(model.classes), self.data_classes, result.labels)
            self._report(f"{what}: accuracy", advance=False)
            t0 = time.perf_counter()
            probs = model.predict_proba(result.images)
            seconds = time.perf_counter() - t0
            report = evaluate(probs, result.labels, tuple(model.classes),
                              n_confusions=config.n_confusions)
            agree = self._agreement(mf, probs)
            result.classes = result.classes or tuple(model.classes)
            result.accuracy.append(AccuracyResult(
                mf.name, mf.precision, "cpu", report, probs, seconds, runtime=name,
                agreement=agree[0], max_abs_diff=agree[1],
            ))
            self._report(f"{what}: accuracy")
            for stats in time_batches(
                model.run_batch, result.images, self.batch_sizes, warmup=config.warmup,
                iterations=self.iterations, duration=self.duration,
                on_done=lambda bs, _s: self._report(f"{what}: batch {bs} done"),
            ):
                result.latency.append(_latency_row(result, mf, _RuntimeView(model), False,
                                                   stats))
        except CifarkitError as exc:
            result.accuracy = [a for a in result.accuracy
                               if (a.model, a.precision, a.runtime) != (mf.name, mf.precision,
                                                                        name)]
            del result.latency[rows_before:]
            reason = str(exc)
            result.failures.append(RuntimeFailure(mf.name, mf.precision, name, reason))
            result.latency.append(LatencyRow(
                mf.name, mf.precision, "cpu", False, config.threads, None, status="failed",
                reason=reason, runtime=name,
            ))
            self.done = done_before + 1 + len(self.batch_sizes)  # the steps it skips
        finally:
            if model is not None:
                model.close()


class _RuntimeView:
    """What ``_latency_row`` reads from a classifier, for a ``RuntimeModel``."""

    def __init__(self, model: Any) -> None:
        self.provider = "cpu"
        self.threads = model.threads
        self.active_providers = [model.name]
        self.runtime = model.name


def quick_focus(models: list[ModelFile], exported: Path | None, notes: list[str]) -> str | None:
    """The name of the default model (named by ``exported/default``) among ``models``, or
    None: every model then gets the lighter sweep, and a note says why."""
    from cifarkit.backends.catalog import DEFAULT_FILE, exported_dir

    pointer = (exported or exported_dir()) / DEFAULT_FILE
    try:
        ref = pointer.read_text(encoding="utf-8").strip()
    except OSError:
        ref = ""
    if not ref:
        notes.append(f"quick: no default model ({pointer} is missing or empty); every model "
                     "got the lighter sweep")
        return None
    as_path = Path(ref) if Path(ref).is_absolute() else pointer.parent / ref
    for mf in models:
        if (as_path.exists() and mf.path.resolve() == as_path.resolve()) or (
                mf.name == ref.partition(":")[0]):
            return mf.name
    notes.append(f"quick: the default model {ref!r} ({pointer}) is not among those "
                 "benchmarked; every model got the lighter sweep")
    return None


def stratified_light(labels: np.ndarray, seed: int) -> np.ndarray | None:
    """The quick sweep's image subset for the models other than the default (None: all)."""
    from cifarkit.data.splits import stratified_subset

    if len(labels) <= QUICK_IMAGES:
        return None
    return stratified_subset(labels, QUICK_IMAGES, seed=seed)


def _check_classes(
    mf: ModelFile, model_classes: tuple[str, ...], data_classes: tuple[str, ...] | None,
    labels: np.ndarray,
) -> None:
    if data_classes is not None and tuple(data_classes) != model_classes:
        raise ModelError(
            f"{mf.path}: the model's classes {list(model_classes)} differ from the data's "
            f"{list(data_classes)}; accuracy would compare different label indices"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= len(model_classes)):
        raise ModelError(
            f"{mf.path}: labels go up to {int(labels.max())} but the model has "
            f"{len(model_classes)} classes"
        )


def _latency_row(
    result: BenchResult, mf: ModelFile, clf: Any, io_binding: bool, stats: LatencyStats
) -> LatencyRow:
    macs = mf.macs.macs_per_image if mf.macs and not mf.macs.uncounted else None
    gflops = achieved_gflops(macs, stats.images_per_s)
    share, peak = None, None
    runtime = getattr(clf, "runtime", "onnxruntime")
    # The CPU provider's own arithmetic is known (flops.row_peak); OpenVINO picks its own
    # kernels, so only its fp32 rows have a peak to show.
    if gflops is not None and (clf.provider == "cpu" or
                               (clf.provider == "openvino" and mf.precision == "fp32")):
        cores = min(clf.threads, result.environment["cpu"]["physical_cores"] or clf.threads)
        # Which MACs run as int8 is read from onnxruntime's optimised graph; another runtime
        # (LiteRT's full-integer file, OpenVINO's own fusions) may run more of them as int8,
        # so its int8 rows are shown against the all-int8 peak, an upper bound.
        ort = runtime == "onnxruntime"
        key = (cores, mf.precision,
               (os.fspath(mf.path) if ort else "all int8") if mf.precision == "int8" else "")
        if key not in result.cpu_peaks:
            int8_share = None
            if mf.precision == "int8":
                int8_share = runtime_int8_share(mf.path) if ort else 1.0
            result.cpu_peaks[key] = row_peak(mf.precision, cores, int8_share=int8_share)
        peak = result.cpu_peaks[key]
        share = gflops / peak.gflops if peak else None
    return LatencyRow(
        mf.name, mf.precision, clf.provider, io_binding, clf.threads, stats.batch_size, stats,
        active_providers=",".join(clf.active_providers), macs_per_image=macs, gflops=gflops,
        peak_share=share, peak=peak.arithmetic if peak else None,
        runtime=runtime,
    )


# --- Keras ----------------------------------------------------------------------------------


def _keras_sources(config: BenchConfig, models: list[ModelFile]) -> dict[str, Path]:
    """{model name: .keras path} for the baseline (empty when none was asked for)."""
    from cifarkit.bench.keras_baseline import find_keras_source

    if config.keras is None:
        return {}
    names = list(dict.fromkeys(m.name for m in models))
    if os.fspath(config.keras) == "auto":
        found = {}
        for name in names:
            first = next(m for m in models if m.name == name)
            src = find_keras_source(first.path, name, config.runs)
            if src is not None:
                found[name] = src
        if not found:
            raise UsageError(
                "--keras auto: no .keras source found for "
                + ", ".join(names)
                + " (looked at card.json's source.file beside each model and "
                "runs/<name>/model.keras); pass --keras PATH"
            )
        return found
    path = Path(config.keras)
    if not path.is_file():
        raise UsageError(f"--keras {path}: no such file")
    if len(names) == 1:
        return {names[0]: path}
    matched = [
        n for n in names
        if (src := find_keras_source(next(m for m in models if m.name == n).path, n, config.runs))
        and src.resolve() == path.resolve()
    ]
    if len(matched) == 1:
        return {matched[0]: path}
    raise UsageError(
        f"--keras {path}: {len(names)} models are benchmarked ({', '.join(names)}) and it is "
        "not clear which one it belongs to; benchmark one MODEL with --keras, or use --keras auto"
    )


def _run_keras(
    result: BenchResult, sources: dict[str, Path], batch_sizes: list[int], config: BenchConfig,
    iterations: int | None, duration: float | None, progress: Progress | None,
) -> list[KerasResult]:
    from cifarkit.bench.keras_baseline import compare_with_keras, keras_device, load_keras

    out = []
    total = len(sources) * len(batch_sizes)
    done = 0
    for name, src in sources.items():
        files = [m for m in result.models if m.name == name]
        ref = next((m for m in files if m.precision == "fp32"), files[0])
        if progress is not None:
            progress(done, total, f"Keras baseline: loading {src}")
        model = load_keras(src)
        device = keras_device()
        provider = "cuda" if device == "gpu" and "cuda" in result.providers else "cpu"
        if provider == "cpu" and "cpu" not in result.providers:
            result.notes.append("Keras baseline compared with the ONNX model on cpu (not in "
                                "--provider, opened for the baseline only)")
        clf = _open(ref.path, provider, config.threads)
        try:
            def on_done(bs: int, _item: KerasComparison, _name: str = name) -> None:
                nonlocal done
                done += 1
                if progress is not None:
                    progress(done, total, f"Keras baseline {_name}: batch {bs}")

            comparisons = compare_with_keras(
                clf, model, result.images, batch_sizes, warmup=config.warmup,
                iterations=iterations, duration=duration, on_done=on_done,
            )
            from cifarkit.measure.latency import make_batch

            batch = make_batch(result.images, max(batch_sizes))
            onnx_p = clf.run_batch(batch)
            keras_p = np.asarray(model(batch.astype(np.float32), training=False))
        finally:
            clf.close()
        agree = float(np.mean(onnx_p.argmax(1) == keras_p.argmax(1)))
        diff = float(np.max(np.abs(onnx_p.astype(np.float64) - keras_p)))
        if agree < 0.99:
            result.notes.append(
                f"Keras baseline {src} agrees with {ref.path} on only {agree:.1%} of "
                f"{len(batch)} images: is it the model this ONNX file was exported from?"
            )
        out.append(KerasResult(name, ref.precision, provider, src, device, comparisons, agree,
                               diff, clf.batch_size))
    return out
