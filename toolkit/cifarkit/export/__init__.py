"""Keras → ONNX export: conversion, portability, checks, parity, fp16, int8, LiteRT, ORT
format, metadata, model card; ``ExportOptions`` holds the settings, ``run_export`` runs the
steps (``pipeline``), ``export_model`` is the same with keywords.

TensorFlow, tf2onnx and onnxruntime are imported inside the functions that need them, so
importing this package is cheap. ``read_metadata`` needs only ``onnx``.
"""

from cifarkit.export.check import check_contract, check_onnx, check_runtime
from cifarkit.export.convert import (
    DEFAULT_OPSET,
    INPUT_NAME,
    MIN_OPSET,
    OUTPUT_NAME,
    check_opset,
    keras_to_onnx,
    max_opset,
)
from cifarkit.export.data import resolve_data, synthetic_dataset
from cifarkit.export.measure import Throughput, throughput
from cifarkit.export.metadata import read_metadata
from cifarkit.export.options import (
    FORMATS,
    PRECISIONS,
    ExportOptions,
    reproduce_command,
    validate_formats,
    validate_options,
)
from cifarkit.export.parity import (
    DEFAULT_PARITY_IMAGES,
    FP32_MAX_ABS_DIFF,
    ParityReport,
    compare,
    predict_keras,
)
from cifarkit.export.pipeline import export_model, run_export
from cifarkit.export.portable import PortabilityReport, check_portable, make_portable
from cifarkit.export.quantize import (
    CALIBRATION_METHODS,
    DEFAULT_CALIBRATION_IMAGES,
    QuantizationInfo,
    quantize_int8,
    to_float16,
)
from cifarkit.export.result import ExportedFile, ExportResult, model_filename
from cifarkit.export.source import (
    ExportSource,
    check_keras_contract,
    find_stale_runs,
    load_keras_model,
    resolve_source,
)

__all__ = [
    "CALIBRATION_METHODS",
    "DEFAULT_CALIBRATION_IMAGES",
    "DEFAULT_OPSET",
    "DEFAULT_PARITY_IMAGES",
    "FORMATS",
    "FP32_MAX_ABS_DIFF",
    "INPUT_NAME",
    "MIN_OPSET",
    "OUTPUT_NAME",
    "PRECISIONS",
    "ExportOptions",
    "ExportResult",
    "ExportSource",
    "ExportedFile",
    "ParityReport",
    "PortabilityReport",
    "QuantizationInfo",
    "Throughput",
    "check_contract",
    "check_keras_contract",
    "check_onnx",
    "check_opset",
    "check_portable",
    "check_runtime",
    "compare",
    "export_model",
    "find_stale_runs",
    "keras_to_onnx",
    "load_keras_model",
    "make_portable",
    "max_opset",
    "model_filename",
    "predict_keras",
    "quantize_int8",
    "read_metadata",
    "reproduce_command",
    "resolve_data",
    "resolve_source",
    "run_export",
    "synthetic_dataset",
    "throughput",
    "to_float16",
    "validate_formats",
    "validate_options",
]
