"""``ExportOptions``: every setting of one export, in one object.

``cifarkit export`` fills it from its command line, ``export_model`` from its keywords. Each
field that the command line has carries its ``Flag`` (how the option is spelled there and
when it matters), so the card's reproduce command is rendered from the options themselves
(``reproduce_command``) and cannot drift from them.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Sequence
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from cifarkit.errors import UsageError
from cifarkit.export.calibrate import check_held_out_choice
from cifarkit.export.convert import DEFAULT_OPSET
from cifarkit.export.measure import LATENCY_BATCH_SIZES, LATENCY_BUDGET_S, LATENCY_SECONDS
from cifarkit.export.parity import DEFAULT_PARITY_IMAGES
from cifarkit.export.quantize import CALIBRATION_METHODS, DEFAULT_CALIBRATION_IMAGES
from cifarkit.measure.ood import ACCEPTANCE

PRECISIONS = ("fp32", "fp16", "int8")
#: ``--unknown-score``: the top probability, or the block score in the graph.
UNKNOWN_SCORES = ("msp", "blocks")
#: ``--format``: onnx (always built: every other format is made from, or checked against, it),
#: tflite (LiteRT fp32 + full-integer int8), ort (onnxruntime's ORT format, one per precision).
FORMATS = ("onnx", "tflite", "ort")
#: The precisions a LiteRT export writes (fp16 LiteRT files are not made: fp16 is a GPU
#: delegate setting there, not a file format).
TFLITE_PRECISIONS = ("fp32", "int8")


def _always(_: Any) -> bool:
    return True


def _int8(opts: Any) -> bool:
    return "int8" in opts.precisions


@dataclass(frozen=True)
class Flag:
    """How an option is spelled on the ``cifarkit export`` command line.

    ``name`` is written with the value (a sequence joined by commas), or alone for a true
    bool; ``off`` alone for a false bool. ``None`` is written as ``empty`` when given, else
    left out, as are the values in ``skip`` (CLI defaults that need no flag). Nothing is
    written unless ``when`` holds of the options (e.g. calibration only for int8)."""

    name: str | None
    off: str | None = None
    when: Callable[[Any], bool] = _always
    empty: str | None = None
    skip: tuple[Any, ...] = ()

    def render(self, opts: Any, value: Any) -> list[str]:
        if not self.when(opts):
            return []
        if isinstance(value, bool):
            flag = self.name if value else self.off
            return [flag] if flag else []
        if value is None:
            return [self.name, self.empty] if self.name and self.empty else []
        if value in self.skip or self.name is None:
            return []
        if isinstance(value, (tuple, list)):
            return [self.name, ",".join(map(str, value))]
        return [self.name, os.fspath(value) if isinstance(value, os.PathLike) else str(value)]


def _cli(flag: Flag, default: Any = MISSING, **kwargs: Any) -> Any:
    return field(default=default, metadata={"flag": flag}, **kwargs)


def _library(default: Any, when: Callable[[Any], bool] = _always) -> Any:
    """An option the command line does not have: `reproduce` runs its default."""
    return field(default=default, metadata={"library": when})


def _calibrated(opts: Any) -> bool:
    return opts.held_out != "none"


def _benchmark(opts: Any) -> bool:
    return bool(opts.benchmark)


@dataclass(frozen=True)
class ExportOptions:
    """The settings of one export (``export_model`` documents each).

    Field order is the order of the reproduce command's flags."""

    precisions: tuple[str, ...] = _cli(Flag("--precision"), PRECISIONS)
    opset: int = _cli(Flag("--opset"), DEFAULT_OPSET)
    #: A ``Dataset``, a data folder, or None; rendered only as a folder path.
    data: Any = _cli(Flag("--data"), None)
    limit: int | None = _cli(Flag("--limit"), None)
    calibration_images: int = _cli(Flag("--calibration-images", when=_int8),
                                   DEFAULT_CALIBRATION_IMAGES)
    calibration_method: str = _cli(Flag("--calibration-method", when=_int8), "minmax")
    reduce_range: bool | None = _cli(Flag("--reduce-range", "--no-reduce-range", when=_int8),
                                     None)
    tta: int | None = _cli(Flag("--tta"), None)
    formats: tuple[str, ...] = _cli(Flag("--format", skip=(("onnx",),)), ("onnx",))
    check: bool = _cli(Flag(None, "--no-check"), True)
    parity_images: int = _cli(Flag("--parity-images", when=lambda o: o.check),
                              DEFAULT_PARITY_IMAGES)
    benchmark: bool = _cli(Flag(None, "--no-bench"), True)
    bench_threads: int = _cli(Flag("--bench-threads", when=_benchmark), 1)
    runtimes: tuple[str, ...] | None = _cli(Flag("--runs-in", empty="none"), None)
    #: Where the temperature and the unknown threshold are fitted (``export.calibrate``).
    held_out: str | os.PathLike[str] = _cli(Flag("--held-out"), "auto")
    unknown_acceptance: float = _cli(Flag("--unknown-acceptance", when=_calibrated), ACCEPTANCE)
    #: The unknown rule's score: ``msp`` (top probability) or ``blocks`` (``export.blockscore``).
    unknown_score: str = _cli(Flag("--unknown-score", when=_calibrated, skip=("msp",)), "msp")
    #: Accuracy under the CIFAR-10-C corruptions on this many test images (0: not measured).
    corruptions: int = _cli(Flag("--corruptions", skip=(0,)), 0)
    # The library's own: timing details and the seed of the stratified subsets.
    bench_rounds: int = 15
    latency_batch_sizes: tuple[int, ...] = _library(LATENCY_BATCH_SIZES, _benchmark)
    latency_seconds: float = _library(LATENCY_SECONDS, _benchmark)
    latency_budget_s: float = _library(LATENCY_BUDGET_S, _benchmark)
    seed: int = _library(0)
    exported_dir: str | os.PathLike[str] = "exported"
    #: The command line to record (the card also records ``reproduce_command``).
    command: str | None = None

    def validated(self) -> ExportOptions:
        """Checked (``UsageError``) and normalised: precisions fp32 first, onnx first."""
        from cifarkit.backends import resolve_runtimes

        precisions = validate_options(self.precisions, self.calibration_images,
                                      self.calibration_method, self.parity_images, self.limit)
        formats = validate_formats(self.formats)
        runtimes = None if self.runtimes is None else tuple(
            [self.runtimes] if isinstance(self.runtimes, str) else self.runtimes)
        if runtimes:
            resolve_runtimes(list(runtimes))  # names only: "all" stays "all" in `reproduce`
        if not 0 < self.unknown_acceptance < 1:
            raise UsageError("--unknown-acceptance is the share of held-out images to accept, "
                             f"in (0, 1), got {self.unknown_acceptance}")
        if self.unknown_score not in UNKNOWN_SCORES:
            raise UsageError(f"--unknown-score: one of {', '.join(UNKNOWN_SCORES)}, got "
                             f"{self.unknown_score!r}")
        if self.corruptions < 0:
            raise UsageError(f"--corruptions is a number of test images (0: off), got "
                             f"{self.corruptions}")
        return replace(self, precisions=precisions, formats=formats, runtimes=runtimes or None,
                       held_out=check_held_out_choice(self.held_out),
                       latency_batch_sizes=tuple(self.latency_batch_sizes))

    def unreproducible(self) -> list[str]:
        """The library-only options set away from their defaults (where they matter)."""
        return [f.name for f in fields(self) if "library" in f.metadata
                and f.metadata["library"](self) and getattr(self, f.name) != f.default]


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


def reproduce_command(source: str | os.PathLike[str], out_dir: Path,
                      opts: ExportOptions) -> str:
    """A ``cifarkit export`` command that redoes this export (and so every number in its
    card), whatever way it was started (bare ``cifarkit export``, or from Python).

    ``opts`` as used: ``data`` the data folder (None when there was none, or the images
    were given in memory), ``reduce_range`` the int8 setting spelled out (its default
    depends on the CPU)."""
    args = ["cifarkit", "export", os.fspath(source), "--out", os.fspath(out_dir)]
    for f in fields(opts):
        if "flag" in f.metadata:
            args += f.metadata["flag"].render(opts, getattr(opts, f.name))
    return shlex.join(args)
