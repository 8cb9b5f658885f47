"""The JSON report: ``to_dict`` (the one source every other report renders), ``write_json``.

JSON schema ``cifarkit.bench/1`` (the keys below are stable; new keys may be added, none
renamed or removed without bumping the version). Every list is a table: a list of flat
objects of scalars with the same keys, so ``pandas.DataFrame(report["latency"])`` loads it
as is. Join tables on ``model, precision, provider``. ``precision`` is always the model's
numeric precision (fp32/int8/fp16); the per-class metric columns are ``class_precision``,
``class_recall``, ``class_f1``. Times in ms (``*_ms``) or s (``*_s``), rates per second,
shares and accuracies as fractions 0–1.

- ``schema``, ``generated_by``: ``"cifarkit.bench/1"``, ``"cifarkit <version>"``.
- ``environment`` (object): ``timestamp`` (UTC ISO 8601), ``command``, ``cwd``,
  ``platform``, ``cpu`` {``model``, ``vendor``, ``family``, ``model_number``,
  ``physical_cores``, ``logical_cpus``, ``usable_cpus``, ``mhz``, ``flags`` {flag: bool},
  ``vnni``, ``hypervisor``, ``l2_cache``, ``l3_cache``}, ``memory_gib``, ``gpus`` [{``name``,
  ``driver``, ``memory``, ``compute_capability``}], ``libraries`` {name: version|null},
  ``onnxruntime_providers_in_build``, ``load_average_before``, ``load_average_after``.
- ``settings`` (object): ``data_source``, ``split``, ``n_images``, ``limit``,
  ``providers_requested`` (null = the default sweep), ``providers_active``, ``precisions``,
  ``batch_sizes``, ``warmup``, ``iterations``, ``duration_s``, ``threads``, ``keras``,
  ``seconds`` (wall time of the whole run), ``data_notes`` (what the data loader said).
- ``cpu_peak``: [{``cores``, ``gflops`` (GOP/s for int8), ``ghz``, ``ghz_source``,
  ``fma_units``, ``simd_lanes``, ``isa``, ``flops_per_cycle_per_core``, ``derivation``,
  ``arithmetic``}] (one per distinct peak: thread count × arithmetic; see
  ``cifarkit.measure.flops.row_peak``).
- ``models``: [{``model``, ``precision``, ``path``, ``architecture``, ``input_kind``,
  ``size_bytes``, ``macs_per_image``, ``flops_per_image``, ``macs_conv``, ``macs_matmul``,
  ``macs_uncounted_nodes``}].
- ``accuracy``: [{``model``, ``precision``, ``provider``, ``n_images``, ``top1``, ``top3``,
  ``macro_precision``, ``macro_recall``, ``macro_f1``, ``ece``, ``nll``, ``brier``,
  ``seconds``}].
- ``corruptions`` (``--corruptions N``): [{``model``, ``precision``, ``clean``, ``mean``,
  ``drop``, ``mean_by_severity`` [5], ``accuracy`` {corruption: [5 severities]}}].
- ``ood`` (``--ood DIR``): [{``model``, ``precision``, ``provider``, ``runtime``, ``score``
  (the score used: "msp", the top probability, or the model's rule's, e.g. "score": its
  ``score`` output on both image sets), ``threshold_source`` ("model":
  the model's recorded ``unknown`` rule; "split": the threshold accepting 95 % of this run's
  split, set on the images it is judged on), ``n_in``, ``n_out``, ``auroc``,
  ``fpr_at_95_tpr``, ``threshold``, ``rejected_in``, ``rejected_out``}]; ``settings.ood``:
  {``source``, ``n_images``, ``skipped`` [files that could not be decoded]} (null without it).
- ``per_class``: [{``model``, ``precision``, ``provider``, ``label``, ``class``,
  ``class_precision``, ``class_recall``, ``class_f1``, ``support``, ``predicted``}].
- ``confusion``: [{``model``, ``precision``, ``provider``, ``true_label``, ``true``,
  ``predicted_label``, ``predicted``, ``count``, ``row_fraction``}] (every cell, long form:
  ``df.pivot(index="true", columns="predicted", values="count")`` gives the matrix).
- ``top_confusions``: [{``model``, ``precision``, ``provider``, ``rank``, ``true``,
  ``predicted``, ``count``, ``share_of_true``}].
- ``latency``: [{``model``, ``precision``, ``provider``, ``io_binding``, ``threads``,
  ``batch_size``, ``status`` ("ok" | "unavailable"), ``reason``, ``active_providers``,
  ``warmup``, ``iterations``, ``total_s``, ``mean_ms``, ``min_ms``, ``max_ms``, ``p50_ms``,
  ``p90_ms``, ``p99_ms``, ``p50_ms_per_image``, ``p90_ms_per_image``, ``p99_ms_per_image``,
  ``images_per_s``, ``macs_per_image``, ``gflops``, ``peak_share`` (achieved ÷ the peak of
  the arithmetic the row runs; null where there is no honest peak), ``peak`` (that
  arithmetic: "fp32", "int8" or "int8 64 % + fp32 36 %")}]; an unavailable
  provider has one row per model file with ``status="unavailable"``, its ``reason`` and
  null timings.
- ``keras``: [{``model``, ``precision``, ``provider``, ``keras_path``, ``keras_device``,
  ``batch_size``, ``onnx_images_per_s`` (one ``session.run``),
  ``onnx_predict_proba_images_per_s`` (the runtime's batching, chunks of ``onnx_chunk``),
  ``keras_call_images_per_s``, ``keras_predict_images_per_s``, ``speedup_vs_call``,
  ``speedup_vs_predict``, ``speedup_predict_proba_vs_call``, ``onnx_chunk``,
  ``onnx_p50_ms``, ``keras_call_p50_ms``, ``keras_predict_p50_ms``, ``top1_agreement``,
  ``max_abs_diff``}].
- ``unavailable``: [{``provider``, ``reason``}].
- ``notes``: [str].

Runtimes (``--backend``, alias ``--runtime``): ``accuracy``, ``per_class``, ``confusion``,
``top_confusions`` and ``latency`` rows carry ``runtime`` (``onnxruntime`` unless asked
otherwise; join on ``model, precision, provider, runtime``); other runtimes run on the CPU
(``provider`` ``"cpu"``).
``accuracy`` rows also carry ``agreement_top1`` and ``max_abs_diff`` (against onnxruntime's
probabilities for the same file, first provider), and for a model with a ``score`` output
``score_max_abs_diff`` (max |Δscore| against onnxruntime's) and ``score_agrees`` (every image
within ``backends.SCORE_RTOL`` × (1 + |score|)); both null without one. ``latency`` rows
have ``status`` ``"failed"`` (with the runtime's ``reason``) for a file a runtime cannot run.
``settings``: ``runtimes_requested`` (null = onnxruntime only; ``onnxruntime:PROVIDER`` is
recorded as ``onnxruntime`` plus PROVIDER in ``providers_requested``), ``runtimes``
(benchmarked).
- ``runtimes``: [{``runtime``, ``version``, ``package``, ``status`` ("ok" | "unavailable"),
  ``reason``}].
- ``runtime_failures``: [{``model``, ``precision``, ``runtime``, ``reason``}].
- ``runtime_matrix``: [{``model``, ``precision``, ``runtime``, ``provider``, ``version``,
  ``status`` ("ok" | "unavailable" | "failed"), ``reason``, ``threads``, ``top1``,
  ``agreement_top1``, ``max_abs_diff``, ``score_max_abs_diff``, ``batch1_p50_ms``,
  ``best_batch_size``,
  ``best_p50_ms``, ``best_images_per_s``}]: one row per file × runtime (× provider).
"""

from __future__ import annotations

import os
from typing import Any

from cifarkit.bench.config import PRECISION_ORDER, BenchResult

SCHEMA = "cifarkit.bench/1"
_LATENCY_KEYS = (
    "warmup", "iterations", "total_s", "mean_ms", "min_ms", "max_ms", "p50_ms", "p90_ms",
    "p99_ms", "p50_ms_per_image", "p90_ms_per_image", "p99_ms_per_image", "images_per_s",
)


def to_dict(result: BenchResult) -> dict[str, Any]:
    """The JSON report (see the module docstring for the schema)."""
    from cifarkit import __version__

    out: dict[str, Any] = {
        "schema": SCHEMA,
        "generated_by": f"cifarkit {__version__}",
        "environment": result.environment,
        "settings": _settings(result),
        "cpu_peak": _distinct_peaks(result),
        "models": [_model_row(m) for m in result.models],
        "accuracy": [],
        "per_class": [],
        "confusion": [],
        "top_confusions": [],
        "latency": [_latency_row(row) for row in result.latency],
        "keras": _keras_rows(result),
        "unavailable": [{"provider": p, "reason": r} for p, r in result.unavailable.items()],
        "runtimes": _runtimes_table(result),
        "runtime_failures": [
            {"model": f.model, "precision": f.precision, "runtime": f.runtime,
             "reason": f.reason} for f in result.failures
        ],
        "runtime_matrix": [],
        "corruptions": [row.to_dict() for row in result.corruptions],
        "ood": [row.to_dict() for row in result.ood],
        "notes": list(result.notes),
    }
    _add_accuracy(result, out)
    out["runtime_matrix"] = _runtime_matrix(result, out)
    return out


def write_json(result: BenchResult, path: str | os.PathLike[str]) -> dict[str, Any]:
    from cifarkit._io import write_json as _write

    data = to_dict(result)
    _write(path, data)
    return data


def _settings(result: BenchResult) -> dict[str, Any]:
    from cifarkit.measure.latency import DEFAULT_DURATION

    cfg = result.config
    duration = cfg.duration if cfg.iterations is None else None
    if cfg.iterations is None and duration is None:
        duration = DEFAULT_DURATION
    return {
        "data_source": result.data_source,
        "split": result.split,
        "n_images": int(len(result.labels)),
        "limit": cfg.limit,
        "providers_requested": list(cfg.providers) if cfg.providers is not None else None,
        "providers_active": list(result.providers),
        "runtimes_requested": list(cfg.runtimes) if cfg.runtimes is not None else None,
        "runtimes": list(result.runtimes),
        "precisions": sorted({m.precision for m in result.models},
                             key=lambda p: (PRECISION_ORDER + (p,)).index(p)),
        "batch_sizes": [int(b) for b in cfg.batch_sizes],
        "warmup": cfg.warmup,
        "iterations": cfg.iterations,
        "duration_s": duration,
        "threads": cfg.threads,
        "keras": os.fspath(cfg.keras) if cfg.keras is not None else None,
        "seconds": round(result.seconds, 3),
        "data_notes": list(result.data_notes),
        "quick": _quick_settings(result),
        "ood": _ood_settings(result),
    }


def _ood_settings(result: BenchResult) -> dict[str, Any] | None:
    ood = result.ood_images
    if ood is None:
        return None
    return {"source": ood.source, "n_images": int(len(ood.images)), "skipped": list(ood.skipped)}


def _quick_settings(result: BenchResult) -> dict[str, Any] | None:
    """What ``--quick`` left out (None: the full sweep)."""
    if not result.config.quick:
        return None
    from cifarkit.bench.config import QUICK_BATCH_SIZES, QUICK_DURATION, QUICK_IMAGES

    full = sorted({a.model for a in result.accuracy if a.report.n_images == len(result.labels)})
    return {"full_sweep_models": full, "other_models_images": min(QUICK_IMAGES,
            len(result.labels)), "other_models_batch_sizes": list(QUICK_BATCH_SIZES),
            "other_models_duration_s": QUICK_DURATION}


def _distinct_peaks(result: BenchResult) -> list[dict[str, Any]]:
    """Each peak the rows were measured against, once (fp32 and fp16 share one)."""
    seen: dict[str, dict[str, Any]] = {}
    for p in result.cpu_peaks.values():
        if p is not None:
            seen.setdefault(p.derivation, p.to_dict())
    return list(seen.values())


def _model_row(m: Any) -> dict[str, Any]:
    macs = m.macs
    return {
        "model": m.name, "precision": m.precision, "path": os.fspath(m.path),
        "architecture": m.architecture, "input_kind": m.input_kind,
        "size_bytes": m.size_bytes,
        "macs_per_image": macs.macs_per_image if macs else None,
        "flops_per_image": macs.flops_per_image if macs else None,
        "macs_conv": sum(v for k, v in macs.by_op.items() if "Conv" in k) if macs else None,
        "macs_matmul": (
            sum(v for k, v in macs.by_op.items() if "Conv" not in k) if macs else None
        ),
        "macs_uncounted_nodes": ",".join(macs.uncounted) if macs else None,
    }


def _add_accuracy(result: BenchResult, out: dict[str, Any]) -> None:
    """The accuracy, per-class, confusion and top-confusion tables."""
    for a in result.accuracy:
        key = {"model": a.model, "precision": a.precision, "provider": a.provider,
               "runtime": a.runtime}
        r = a.report
        out["accuracy"].append({**key, **r.summary(), "seconds": round(a.seconds, 4),
                                "agreement_top1": a.agreement, "max_abs_diff": a.max_abs_diff,
                                "score_max_abs_diff": a.score_max_abs_diff,
                                "score_agrees": a.score_agrees})
        for row in r.per_class:
            out["per_class"].append({
                **key, "label": row["label"], "class": row["class"],
                "class_precision": row["precision"], "class_recall": row["recall"],
                "class_f1": row["f1"], "support": row["support"], "predicted": row["predicted"],
            })
        for t, true_name in enumerate(r.classes):
            for p, pred_name in enumerate(r.classes):
                out["confusion"].append({
                    **key, "true_label": t, "true": true_name, "predicted_label": p,
                    "predicted": pred_name, "count": int(r.confusion[t, p]),
                    "row_fraction": float(r.confusion_normalized[t, p]),
                })
        for rank, c in enumerate(r.top_confusions, start=1):
            out["top_confusions"].append({**key, "rank": rank, **c})


def _latency_row(row: Any) -> dict[str, Any]:
    stats = row.stats.to_dict() if row.stats is not None else {}
    return {
        "model": row.model, "precision": row.precision, "provider": row.provider,
        "runtime": row.runtime, "io_binding": row.io_binding, "threads": row.threads,
        "batch_size": row.batch_size,
        "status": row.status, "reason": row.reason, "active_providers": row.active_providers,
        **{k: stats.get(k) for k in _LATENCY_KEYS},
        "macs_per_image": row.macs_per_image, "gflops": row.gflops,
        "peak_share": row.peak_share, "peak": row.peak,
    }


def _keras_rows(result: BenchResult) -> list[dict[str, Any]]:
    return [{
        "model": k.model, "precision": k.precision, "provider": k.provider,
        "keras_path": os.fspath(k.keras_path), "keras_device": k.keras_device,
        "batch_size": c.batch_size,
        "onnx_images_per_s": c.onnx.images_per_s,
        "onnx_predict_proba_images_per_s": c.onnx_predict_proba.images_per_s,
        "keras_call_images_per_s": c.keras_call.images_per_s,
        "keras_predict_images_per_s": c.keras_predict.images_per_s,
        "speedup_vs_call": c.speedup_vs_call,
        "speedup_vs_predict": c.speedup_vs_predict,
        "speedup_predict_proba_vs_call": c.speedup_predict_proba_vs_call,
        "onnx_chunk": k.chunk,
        "onnx_p50_ms": c.onnx.p50_ms, "keras_call_p50_ms": c.keras_call.p50_ms,
        "keras_predict_p50_ms": c.keras_predict.p50_ms,
        "top1_agreement": k.top1_agreement, "max_abs_diff": k.max_abs_diff,
    } for k in result.keras for c in k.comparisons]


def _runtimes_table(result: BenchResult) -> list[dict[str, Any]]:
    from cifarkit.backends import get_runtime

    rows = []
    for name in [*result.runtimes, *result.runtime_unavailable]:
        reason = result.runtime_unavailable.get(name)
        rows.append({"runtime": name, "version": result.runtime_versions.get(name),
                     "package": get_runtime(name).package,
                     "status": "unavailable" if reason else "ok", "reason": reason})
    return rows


def _runtime_matrix(result: BenchResult, data: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per model file × runtime (× onnxruntime provider): top-1, agreement with
    onnxruntime, batch-1 p50 and the best batch (highest images/s, no I/O binding)."""
    rows: list[dict[str, Any]] = []
    index: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for lat in data["latency"]:
        if lat["io_binding"]:
            continue
        key = (lat["model"], lat["precision"], lat["runtime"], lat["provider"])
        if key not in index:
            row = {
                "model": key[0], "precision": key[1], "runtime": key[2], "provider": key[3],
                "version": result.runtime_versions.get(key[2]), "status": lat["status"],
                "reason": lat["reason"], "threads": lat["threads"], "top1": None,
                "agreement_top1": None, "max_abs_diff": None, "score_max_abs_diff": None,
                "batch1_p50_ms": None,
                "best_batch_size": None, "best_p50_ms": None, "best_images_per_s": None,
            }
            index[key] = row
            rows.append(row)
        row = index[key]
        if lat["status"] != "ok":
            continue
        if lat["batch_size"] == 1:
            row["batch1_p50_ms"] = lat["p50_ms"]
        if row["best_images_per_s"] is None or lat["images_per_s"] > row["best_images_per_s"]:
            row["best_batch_size"], row["best_p50_ms"] = lat["batch_size"], lat["p50_ms"]
            row["best_images_per_s"] = lat["images_per_s"]
    for a in data["accuracy"]:
        row = index.get((a["model"], a["precision"], a["runtime"], a["provider"]))
        if row is not None:
            row.update(top1=a["top1"], agreement_top1=a["agreement_top1"],
                       max_abs_diff=a["max_abs_diff"],
                       score_max_abs_diff=a["score_max_abs_diff"])
    return rows
