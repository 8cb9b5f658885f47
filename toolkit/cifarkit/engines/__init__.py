"""Predict engines: inputs (paths, globs, URIs) → one ``Prediction`` row per input → writers.

    from cifarkit.backends import resolve_model
    from cifarkit.engines import PredictRequest, get_engine, open_writer
    request = PredictRequest(sources=("photos/",), model=resolve_model("fastnet-relu:auto"))
    with open_writer("jsonl", target="preds.jsonl") as out:
        stats = get_engine("local").run(request, out.add)     # or get_engine("ray")

- ``base``: the seam — ``PredictRequest`` (every option, checked once), ``get_engine``,
  ``PredictStats``, and the model through ``cifarkit.backends`` (``open_model``);
- ``inputs``: the rules that turn arguments into a stream of inputs;
- ``rows``: the one ``Prediction`` row and its encodings (CSV, JSONL, Arrow/Parquet, table
  cells), including the convention for names that are not UTF-8;
- ``reject``: ``--reject auto|VALUE|off``, the rule under which rows answer ``unknown``;
- ``writers``: table/CSV/JSONL/Parquet writers, atomic;
- ``local``: decoder processes + one model in this process (``predict_files``), the
  processes running ``decoding`` (one file → pixels or its error row's cause);
- ``ray`` (the driver), ``ray_actor`` (the workers' actor), ``ray_cluster``: the same on
  Ray Data (a local Ray or a cluster), with
  ``listing`` (the driver plans units of listing, workers list them; ``globs``: a pattern
  expanded in parts) and ``parts`` (part files
  written by the workers, checked and committed once by the driver).

The names below load their module on first use (PEP 562): a decoder process imports
``engines.decoding`` and not the rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cifarkit._lazy import lazy_getattr

if TYPE_CHECKING:
    from cifarkit.engines.base import (
        DEFAULT_BATCH,
        ENGINES,
        Engine,
        PredictRequest,
        PredictStats,
        get_engine,
        open_model,
    )
    from cifarkit.engines.inputs import InputItem, count_inputs, iter_inputs
    from cifarkit.engines.local import default_workers, predict_files
    from cifarkit.engines.rows import Prediction, folder_label
    from cifarkit.engines.writers import FORMATS, open_writer

_LAZY = {
    **dict.fromkeys(["DEFAULT_BATCH", "ENGINES", "Engine", "PredictRequest", "PredictStats",
                     "get_engine", "open_model"], ".base"),
    **dict.fromkeys(["InputItem", "count_inputs", "iter_inputs"], ".inputs"),
    **dict.fromkeys(["default_workers", "predict_files"], ".local"),
    **dict.fromkeys(["Prediction", "folder_label"], ".rows"),
    **dict.fromkeys(["FORMATS", "open_writer"], ".writers"),
}


__getattr__ = lazy_getattr(__name__, _LAZY, globals())


__all__ = [
    "DEFAULT_BATCH",
    "ENGINES",
    "FORMATS",
    "Engine",
    "InputItem",
    "PredictRequest",
    "PredictStats",
    "Prediction",
    "count_inputs",
    "default_workers",
    "folder_label",
    "get_engine",
    "iter_inputs",
    "open_model",
    "open_writer",
    "predict_files",
]
