"""What the Markdown, terminal and figure renderers share: number formats, the reference
accuracy row of each model, its sibling rows, and the Keras summary line."""

from __future__ import annotations

from typing import Any

from cifarkit.bench.config import PRECISION_ORDER, AccuracyResult, BenchResult


def reference_accuracy(result: BenchResult) -> list[AccuracyResult]:
    """One accuracy result per model: its first runtime (onnxruntime first), first provider
    (cpu first) and best-kept precision (fp32, then int8, then fp16)."""
    out = []
    order = [*result.runtimes, *result.runtime_unavailable]
    for name in dict.fromkeys(a.model for a in result.accuracy):
        rows = [a for a in result.accuracy if a.model == name]
        rows.sort(key=lambda a: (
            order.index(a.runtime) if a.runtime in order else 99,
            result.providers.index(a.provider) if a.provider in result.providers else 99,
            PRECISION_ORDER.index(a.precision) if a.precision in PRECISION_ORDER else 99,
        ))
        out.append(rows[0])
    return out


def other_precisions(result: BenchResult, ref: AccuracyResult) -> list[AccuracyResult]:
    """The model's other accuracy rows on ``ref``'s runtime and provider (its other
    precisions), for the per-class tables' extra recall columns."""
    return [a for a in result.accuracy
            if a.model == ref.model and a.provider == ref.provider
            and a.runtime == ref.runtime and a is not ref]


def peak_title(peak: dict[str, Any]) -> str:
    arithmetic = peak.get("arithmetic", "fp32")
    what = {"fp32": "FP32 peak (fp32 and fp16 rows)", "int8": "int8 peak"}.get(arithmetic)
    return what or f"peak of {arithmetic}"


def fmt_ms(x: float | None) -> str:
    if x is None:
        return "—"
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    if x >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"


def fmt_rate(x: float | None) -> str:
    return "—" if x is None else f"{x:,.0f}"


def fmt_count(n: int) -> str:
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:.2f} {unit}"
    return str(n)


def pct(x: float | None, digits: int = 1) -> str:
    return "—" if x is None else f"{100 * x:.{digits}f} %"


def keras_summary(k: Any) -> str:
    """One line: the ratios at batch 1, at 32, and best vs best (issue 5's three goals)."""
    by_bs = {c.batch_size: c for c in k.comparisons}
    parts = []
    for bs, goal in ((1, 30), (32, 4)):
        if bs in by_bs:
            parts.append(f"batch {bs}: {by_bs[bs].speedup_vs_call:.1f}× (goal ≥ {goal}×)")
    onnx_best = max(max(c.onnx.images_per_s, c.onnx_predict_proba.images_per_s)
                    for c in k.comparisons)
    keras_best = max(c.keras_call.images_per_s for c in k.comparisons)
    parts.append(f"best vs best: {onnx_best:,.0f} ÷ {keras_best:,.0f} img/s = "
                 f"{onnx_best / keras_best:.2f}× (goal ≥ 2×)")
    return (
        f"{k.model} vs Keras `model(x)` — " + "; ".join(parts)
        + f". Keras ran on the {k.keras_device}; it and ONNX agree on {k.top1_agreement:.1%} "
        f"of top-1 labels (max |Δp| {k.max_abs_diff:.2g}); Keras file `{k.keras_path}`."
    )
