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
``cifarkit.measure`` (not re-exported here): ``metrics.evaluate`` (top-k, per-class P/R/F1,
confusion), ``latency.measure`` (percentiles of any callable), ``flops.count_macs`` /
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

__all__ = [
    "DEFAULT_BATCH_SIZES",
    "SCHEMA",
    "AccuracyResult",
    "Backend",
    "BenchConfig",
    "BenchResult",
    "KerasComparison",
    "KerasResult",
    "LatencyRow",
    "ModelFile",
    "RuntimeFailure",
    "check_providers",
    "check_runtimes",
    "compare_with_keras",
    "default_providers",
    "find_keras_source",
    "resolve_models",
    "rich_report",
    "run_bench",
    "to_dict",
    "to_markdown",
    "write_figures",
    "write_json",
    "write_markdown",
]
