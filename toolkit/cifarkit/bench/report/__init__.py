"""Benchmark reports, all rendered from one JSON report (``data.to_dict``, schema
``cifarkit.bench/1`` in ``data``'s docstring): Markdown (``markdown``), rich tables for the
terminal (``terminal``), PNG figures (``figures``)."""

from cifarkit.bench.report._format import keras_summary, reference_accuracy
from cifarkit.bench.report.data import SCHEMA, to_dict, write_json
from cifarkit.bench.report.figures import accuracy_vs_throughput_points, write_figures
from cifarkit.bench.report.markdown import to_markdown, write_markdown
from cifarkit.bench.report.terminal import heatmap_text, rich_report

__all__ = [
    "SCHEMA",
    "accuracy_vs_throughput_points",
    "heatmap_text",
    "keras_summary",
    "reference_accuracy",
    "rich_report",
    "to_dict",
    "to_markdown",
    "write_figures",
    "write_json",
    "write_markdown",
]
