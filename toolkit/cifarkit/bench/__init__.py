"""``cifarkit bench``: accuracy, per-class errors and latency of ONNX models, and reports.

Imports neither TensorFlow nor onnxruntime at import time; TensorFlow only for a Keras
baseline (``BenchConfig(keras=...)``).

    from cifarkit.bench import BenchConfig, run_bench, write_json, write_markdown
    result = run_bench(BenchConfig(models=["cnn-batchnorm"], limit=2000, batch_sizes=[1, 32]))
    write_json(result, "bench.json")      # schema: see cifarkit.bench.report
    write_markdown(result, "benchmarks/RESULTS.md")

Every model runs through ``cifarkit.backends``: ``BenchConfig(runtimes=["openvino",
"onnxruntime:cuda"])`` (backend names, ``["all"]``: every runtime). Modules: ``config`` (the
settings and result rows), ``models`` (which files), ``plan`` (which backends), ``sweep``
(one file on one backend), ``runner`` (``run_bench``), ``keras_baseline``, ``report``
(JSON, Markdown, terminal, figures). Measuring pieces usable alone live in
``cifarkit.measure``: ``metrics.evaluate`` (top-k, per-class P/R/F1, confusion),
``latency.measure`` (percentiles of any callable), ``flops.count_macs`` /
``flops.cpu_fp32_peak``, ``machine.collect_environment``.
"""

from cifarkit.bench.config import (
    DEFAULT_BATCH_SIZES,
    AccuracyResult,
    Backend,
    BenchConfig,
    BenchResult,
    KerasResult,
    LatencyRow,
    ModelFile,
    RuntimeFailure,
)
from cifarkit.bench.keras_baseline import KerasComparison, compare_with_keras, find_keras_source
from cifarkit.bench.models import resolve_models
from cifarkit.bench.plan import check_providers, check_runtimes, default_providers
from cifarkit.bench.report import (
    SCHEMA,
    rich_report,
    to_dict,
    to_markdown,
    write_figures,
    write_json,
    write_markdown,
)
from cifarkit.bench.runner import run_bench
from cifarkit.measure.flops import CpuPeak, MacCount, achieved_gflops, count_macs, cpu_fp32_peak
from cifarkit.measure.latency import LatencyStats, make_batch, measure, stats_from_samples
from cifarkit.measure.machine import collect_environment
from cifarkit.measure.metrics import (
    AccuracyReport,
    confusion_matrix,
    evaluate,
    format_confusion,
    per_class_metrics,
    row_normalize,
    top_confusions,
    topk_accuracy,
)

__all__ = [
    "DEFAULT_BATCH_SIZES",
    "SCHEMA",
    "AccuracyReport",
    "AccuracyResult",
    "Backend",
    "BenchConfig",
    "BenchResult",
    "CpuPeak",
    "KerasComparison",
    "KerasResult",
    "LatencyRow",
    "LatencyStats",
    "MacCount",
    "ModelFile",
    "RuntimeFailure",
    "achieved_gflops",
    "check_providers",
    "check_runtimes",
    "collect_environment",
    "compare_with_keras",
    "confusion_matrix",
    "count_macs",
    "cpu_fp32_peak",
    "default_providers",
    "evaluate",
    "find_keras_source",
    "format_confusion",
    "make_batch",
    "measure",
    "per_class_metrics",
    "resolve_models",
    "rich_report",
    "row_normalize",
    "run_bench",
    "stats_from_samples",
    "to_dict",
    "to_markdown",
    "top_confusions",
    "topk_accuracy",
    "write_figures",
    "write_json",
    "write_markdown",
]
