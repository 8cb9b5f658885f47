"""Benchmark reports: JSON (stable keys), Markdown, rich tables, figures.

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
  ``macro_precision``, ``macro_recall``, ``macro_f1``, ``seconds``}].
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

Runtimes (``--runtime``): ``accuracy``, ``per_class``, ``confusion``, ``top_confusions`` and
``latency`` rows carry ``runtime`` (``onnxruntime`` unless asked otherwise; join on ``model,
precision, provider, runtime``); other runtimes run on the CPU (``provider`` ``"cpu"``).
``accuracy`` rows also carry ``agreement_top1`` and ``max_abs_diff`` (against onnxruntime's
probabilities for the same file, first provider). ``latency`` rows have ``status``
``"failed"`` (with the runtime's ``reason``) for a file a runtime cannot run. ``settings``:
``runtimes_requested`` (null = onnxruntime only), ``runtimes`` (benchmarked).
- ``runtimes``: [{``runtime``, ``version``, ``package``, ``status`` ("ok" | "unavailable"),
  ``reason``}].
- ``runtime_failures``: [{``model``, ``precision``, ``runtime``, ``reason``}].
- ``runtime_matrix``: [{``model``, ``precision``, ``runtime``, ``provider``, ``version``,
  ``status`` ("ok" | "unavailable" | "failed"), ``reason``, ``threads``, ``top1``,
  ``agreement_top1``, ``max_abs_diff``, ``batch1_p50_ms``, ``best_batch_size``,
  ``best_p50_ms``, ``best_images_per_s``}]: one row per file × runtime (× provider).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from cifarkit.bench.config import PRECISION_ORDER, AccuracyResult, BenchResult
from cifarkit.measure.metrics import format_confusion

SCHEMA = "cifarkit.bench/1"
_LATENCY_KEYS = (
    "warmup", "iterations", "total_s", "mean_ms", "min_ms", "max_ms", "p50_ms", "p90_ms",
    "p99_ms", "p50_ms_per_image", "p90_ms_per_image", "p99_ms_per_image", "images_per_s",
)

# --- JSON -----------------------------------------------------------------------------------


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


def _peak_title(peak: dict[str, Any]) -> str:
    arithmetic = peak.get("arithmetic", "fp32")
    what = {"fp32": "FP32 peak (fp32 and fp16 rows)", "int8": "int8 peak"}.get(arithmetic)
    return what or f"peak of {arithmetic}"


def to_dict(result: BenchResult) -> dict[str, Any]:
    """The JSON report (see the module docstring for the schema)."""
    from cifarkit import __version__

    cfg = result.config
    out: dict[str, Any] = {
        "schema": SCHEMA,
        "generated_by": f"cifarkit {__version__}",
        "environment": result.environment,
        "settings": {
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
            "duration_s": cfg.duration if cfg.iterations is None else None,
            "threads": cfg.threads,
            "keras": os.fspath(cfg.keras) if cfg.keras is not None else None,
            "seconds": round(result.seconds, 3),
            "data_notes": list(result.data_notes),
            "quick": _quick_settings(result),
        },
        "cpu_peak": _distinct_peaks(result),
        "models": [],
        "accuracy": [],
        "per_class": [],
        "confusion": [],
        "top_confusions": [],
        "latency": [],
        "keras": [],
        "unavailable": [{"provider": p, "reason": r} for p, r in result.unavailable.items()],
        "runtimes": _runtimes_table(result),
        "runtime_failures": [
            {"model": f.model, "precision": f.precision, "runtime": f.runtime,
             "reason": f.reason} for f in result.failures
        ],
        "runtime_matrix": [],
        "notes": list(result.notes),
    }
    if out["settings"]["iterations"] is None and out["settings"]["duration_s"] is None:
        from cifarkit.measure.latency import DEFAULT_DURATION

        out["settings"]["duration_s"] = DEFAULT_DURATION
    for m in result.models:
        macs = m.macs
        out["models"].append({
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
        })
    for a in result.accuracy:
        key = {"model": a.model, "precision": a.precision, "provider": a.provider,
               "runtime": a.runtime}
        r = a.report
        out["accuracy"].append({**key, **r.summary(), "seconds": round(a.seconds, 4),
                                "agreement_top1": a.agreement, "max_abs_diff": a.max_abs_diff})
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
    for row in result.latency:
        stats = row.stats.to_dict() if row.stats is not None else {}
        out["latency"].append({
            "model": row.model, "precision": row.precision, "provider": row.provider,
            "runtime": row.runtime, "io_binding": row.io_binding, "threads": row.threads,
            "batch_size": row.batch_size,
            "status": row.status, "reason": row.reason, "active_providers": row.active_providers,
            **{k: stats.get(k) for k in _LATENCY_KEYS},
            "macs_per_image": row.macs_per_image, "gflops": row.gflops,
            "peak_share": row.peak_share, "peak": row.peak,
        })
    for k in result.keras:
        for c in k.comparisons:
            out["keras"].append({
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
            })
    out["runtime_matrix"] = _runtime_matrix(result, out)
    return out


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
                "agreement_top1": None, "max_abs_diff": None, "batch1_p50_ms": None,
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
                       max_abs_diff=a["max_abs_diff"])
    return rows


def write_json(result: BenchResult, path: str | os.PathLike[str]) -> dict[str, Any]:
    from cifarkit._io import write_json as _write

    data = to_dict(result)
    _write(path, data)
    return data


# --- choices shared by the renderers --------------------------------------------------------


def reference_accuracy(result: BenchResult) -> list[AccuracyResult]:
    """One accuracy result per model: its first provider (cpu first) and its best-kept
    precision (fp32, then int8, then fp16)."""
    out = []
    order = [*result.runtimes, *result.runtime_unavailable]
    for name in dict.fromkeys(a.model for a in result.accuracy):
        rows = [a for a in result.accuracy if a.model == name]
        rows.sort(key=lambda a: (
            order.index(a.runtime) if a.runtime in order else 99,  # onnxruntime first
            result.providers.index(a.provider) if a.provider in result.providers else 99,
            PRECISION_ORDER.index(a.precision) if a.precision in PRECISION_ORDER else 99,
        ))
        out.append(rows[0])
    return out


def _fmt_ms(x: float | None) -> str:
    if x is None:
        return "—"
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    if x >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"


def _fmt_rate(x: float | None) -> str:
    return "—" if x is None else f"{x:,.0f}"


def _fmt_count(n: int) -> str:
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:.2f} {unit}"
    return str(n)


def _pct(x: float | None, digits: int = 1) -> str:
    return "—" if x is None else f"{100 * x:.{digits}f} %"


def _cpu_line(env: Mapping[str, Any]) -> str:
    cpu = env.get("cpu", {})
    flags = cpu.get("flags") or {}
    have = [f for f in ("avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
            if flags.get(f)]
    lacking = [f for f in ("avx512f", "avx512_vnni", "avx_vnni") if f in flags and not flags[f]]
    text = (
        f"{cpu.get('model')} — {cpu.get('physical_cores')} physical cores "
        f"({cpu.get('usable_cpus')} usable CPUs)"
    )
    if cpu.get("mhz"):
        text += f", {cpu['mhz'] / 1000:.2f} GHz reported"
    if have:
        text += f"; flags: {', '.join(have)}"
    if lacking:
        text += f"; no {', no '.join(lacking)}"
    if cpu.get("hypervisor"):
        text += "; virtual machine"
    return text


def _gpu_line(env: Mapping[str, Any]) -> str:
    gpus = env.get("gpus") or []
    if not gpus:
        return "none (nvidia-smi found no NVIDIA GPU)"
    return "; ".join(
        f"{g['name']} ({g.get('memory')}, driver {g.get('driver')})" for g in gpus
    )


def _libs_line(env: Mapping[str, Any]) -> str:
    libs = env.get("libraries") or {}
    return ", ".join(f"{k} {v}" for k, v in libs.items() if v)


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


# --- Markdown -------------------------------------------------------------------------------


def _md_table(header: list[str], rows: list[list[str]], align: str | None = None) -> list[str]:
    align = align or "l" + "r" * (len(header) - 1)
    sep = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def _matrix_cells(m: dict[str, Any]) -> list[str]:
    """top-1, agreement (max |Δp|), batch-1 p50, best batch p50 (batch), images/s."""
    if m["status"] != "ok":
        return [f"{m['status']}: {m['reason']}", "", "", "", ""]
    agree = ("—" if m["agreement_top1"] is None
             else f"{_pct(m['agreement_top1'], 2)} ({m['max_abs_diff']:.2g})")
    best = ("—" if m["best_p50_ms"] is None
            else f"{_fmt_ms(m['best_p50_ms'])} ({m['best_batch_size']})")
    return [_pct(m["top1"], 2), agree, _fmt_ms(m["batch1_p50_ms"]), best,
            _fmt_rate(m["best_images_per_s"])]


def _md_runtimes(data: dict[str, Any]) -> list[str]:
    """The runtime matrix section (``--runtime``)."""
    L = ["## Runtimes", "",
         "Each file in each runtime, on the CPU unless the provider says otherwise, same "
         "images and batches. Agreement = share of images whose top-1 class equals "
         "onnxruntime's for the same file (max |Δp| = the largest probability difference). "
         "Latency = p50 of one call per batch; best = the batch with the most images/s. tract "
         "runs on one thread (its Python bindings set no thread pool).", ""]
    L.append("Versions: " + ", ".join(
        f"{r['runtime']} {r['version'] or '(not installed)'}" for r in data["runtimes"]) + ".")
    L.append("")
    rows = [[m["model"], m["precision"], m["runtime"], m["provider"], str(m["threads"] or ""),
             *_matrix_cells(m)] for m in data["runtime_matrix"] if m["status"] != "unavailable"]
    rows += [["all models", "all", r["runtime"], "", "", f"unavailable: {r['reason']}", "", "",
              "", ""] for r in data["runtimes"] if r["status"] == "unavailable"]
    rows = [[c.replace("|", "\\|") for c in row] for row in rows]  # reasons may hold pipes
    L += _md_table(["model", "precision", "runtime", "provider", "threads", "top-1",
                    "agreement with onnxruntime (max \\|Δp\\|)", "batch 1 p50 ms",
                    "best p50 ms (batch)", "images/s (best)"], rows, "lllllrrrrr")
    L.append("")
    return L


def to_markdown(
    result: BenchResult, figures: Mapping[str, Path] | None = None,
    relative_to: Path | None = None,
) -> str:
    """The Markdown report (``benchmarks/RESULTS.md``). ``figures``: name → PNG path, linked
    relative to ``relative_to`` (the Markdown file's folder)."""
    data = to_dict(result)
    env, settings = data["environment"], data["settings"]
    L: list[str] = ["# cifarkit bench — results", ""]
    L += [
        "Measured by `cifarkit bench` with the ONNX models themselves (onnxruntime), on real "
        "labelled images. Regenerate with the command below; figures from another machine "
        "are not comparable.",
        "",
        f"- **Command:** `{env['command']}`",
        f"- **When:** {env['timestamp']}; whole run {settings['seconds']:.0f} s",
        f"- **CPU:** {_cpu_line(env)}",
        f"- **GPU:** {_gpu_line(env)}",
        f"- **Memory:** {env.get('memory_gib')} GiB; **platform:** {env.get('platform')}",
        f"- **Libraries:** {_libs_line(env)}",
        f"- **Providers in this onnxruntime build:** "
        f"{', '.join(env.get('onnxruntime_providers_in_build') or [])}; benchmarked: "
        f"{', '.join(settings['providers_active'])}",
        f"- **Load average** (1/5/15 min) before: {env.get('load_average_before')}, after: "
        f"{env.get('load_average_after')}",
        f"- **Data:** {settings['n_images']:,} {settings['split']} images from "
        f"{settings['data_source']}",
        "- **Timing:** one `session.run` per batch, inputs preloaded, "
        f"{settings['warmup']} warm-up runs excluded, "
        + (f"{settings['iterations']} timed runs" if settings["iterations"] else
           f"timed runs for {settings['duration_s']} s (at least 5)")
        + " per batch size; onnxruntime threads: "
        + (str(settings["threads"]) if settings["threads"] else "one per physical core"),
    ]
    quick = settings.get("quick")
    if quick:
        L.append(
            f"- **Quick sweep** (`--quick`): {', '.join(quick['full_sweep_models']) or 'no model'}"
            f" on every image and batch size; the other models on a stratified "
            f"{quick['other_models_images']:,} images, batch sizes "
            f"{', '.join(map(str, quick['other_models_batch_sizes']))}, "
            f"{quick['other_models_duration_s']} s of timed runs each")
    for peak in data["cpu_peak"]:
        L.append(f"- **{_peak_title(peak)}:** {peak['derivation']}")
    L.append("")

    if data["unavailable"]:
        L += ["## Providers not available", ""]
        L += [f"- **{u['provider']}**: unavailable: {u['reason']}" for u in data["unavailable"]]
        L.append("")

    multi = result.multi_runtime
    if multi:
        L += _md_runtimes(data)

    L += ["## Accuracy", ""]
    rows = [[a["model"], a["precision"], a["provider"], *([a["runtime"]] if multi else []),
             f"{a['n_images']:,}", _pct(a["top1"], 2),
             _pct(a["top3"], 2), _pct(a["macro_precision"]), _pct(a["macro_recall"]),
             _pct(a["macro_f1"])] for a in data["accuracy"]]
    L += _md_table(["model", "precision", "provider", *(["runtime"] if multi else []), "images",
                    "top-1", "top-3", "macro precision", "macro recall", "macro F1"], rows,
                   "lll" + "l" * multi + "rrrrrr")
    L.append("")

    L += ["## Latency and throughput", "",
          "ms per batch (p50 / p90 / p99), ms per image at p50, images/s (mean rate), "
          "achieved GFLOP/s (2 × MACs per image × images/s; GOP/s for int8) and its share of "
          "the CPU's peak for the arithmetic the row runs (CPU rows): fp32 and fp16 rows (the "
          "CPU provider computes fp16 in fp32) against the FP32 FMA peak, int8 rows against "
          "the int8 peak of the ISA (VNNI: 4×, without VNNI 2× the FP32 MACs per cycle), "
          "weighted by the share of MACs onnxruntime really runs as int8; each peak's "
          "derivation is under Machine. Empty: no honest peak. The clock is the one the "
          "system reports: cores that boost above it can show more than 100 %.", ""]
    macs = {(m["model"], m["precision"]): m["macs_per_image"] for m in data["models"]}
    if any(macs.values()):
        L.append("MACs per image (from the graph): " + ", ".join(
            f"{k[0]}:{k[1]} {_fmt_count(v)}" for k, v in macs.items() if v) + ".")
        L.append("")
    rows = []
    for r in data["latency"]:
        if r["status"] != "ok":
            continue
        rows.append([
            r["model"], r["precision"], r["provider"], *([r["runtime"]] if multi else []),
            "yes" if r["io_binding"] else "no", str(r["batch_size"]), _fmt_ms(r["p50_ms"]),
            f"{_fmt_ms(r['p90_ms'])} / {_fmt_ms(r['p99_ms'])}", _fmt_ms(r["p50_ms_per_image"]),
            _fmt_rate(r["images_per_s"]),
            "—" if r["gflops"] is None else f"{r['gflops']:.1f}",
            "" if r["peak_share"] is None else _pct(r["peak_share"]), r["peak"] or "",
        ])
    for u in data["unavailable"]:  # one row per provider, for every model
        rows.append(["all models", "all", u["provider"], *([""] if multi else []), "", "", "",
                     f"unavailable: {u['reason']}", "", "", "", "", ""])
    L += _md_table(["model", "precision", "provider", *(["runtime"] if multi else []),
                    "I/O binding", "batch", "p50 ms", "p90 / p99 ms", "ms/image", "images/s",
                    "GFLOP/s", "% of peak", "peak of"], rows,
                   "llll" + "l" * multi + "rrrrrrrl")
    L.append("")

    if data["keras"]:
        L += ["## ONNX vs Keras (same run, same images)", "",
              "ONNX run = one `session.run` on the whole batch (uint8); ONNX chunked = "
              "`Classifier.predict_proba` (the runtime cuts a request into chunks of its "
              "preferred size); Keras `model(x)` = `model(x, training=False)` on a preloaded "
              "float32 tensor; Keras `predict` = `model.predict(x, batch_size=n)`. Ratios = "
              "ONNX images/s ÷ Keras images/s at the same batch size; the four are timed in "
              "interleaved rounds.", ""]
        rows = [[k["model"], k["precision"], k["provider"], str(k["batch_size"]),
                 _fmt_rate(k["onnx_images_per_s"]),
                 _fmt_rate(k["onnx_predict_proba_images_per_s"]),
                 _fmt_rate(k["keras_call_images_per_s"]),
                 _fmt_rate(k["keras_predict_images_per_s"]), f"{k['speedup_vs_call']:.2f}×",
                 f"{k['speedup_predict_proba_vs_call']:.2f}×",
                 f"{k['speedup_vs_predict']:.2f}×"] for k in data["keras"]]
        L += _md_table(["model", "ONNX precision", "provider", "batch", "ONNX run img/s",
                        "ONNX chunked img/s", "Keras model(x) img/s", "Keras predict img/s",
                        "run ÷ model(x)", "chunked ÷ model(x)", "run ÷ predict"],
                       rows, "lllrrrrrrrr")
        L.append("")
        for k in result.keras:
            L.append(f"- {keras_summary(k)}")
        L.append("")

    for ref in reference_accuracy(result):
        r = ref.report
        others = [a for a in result.accuracy
                  if a.model == ref.model and a.provider == ref.provider
                  and a.runtime == ref.runtime and a is not ref]
        L += [f"## Per class: {ref.model} {ref.precision} on {ref.provider}", ""]
        header = ["class", "support", "precision", "recall (accuracy)", "F1"]
        header += [f"recall {o.precision}" for o in others]
        rows = []
        for i, row in enumerate(r.per_class):
            rows.append([row["class"], f"{row['support']:,}", _pct(row["precision"]),
                         _pct(row["recall"]), _pct(row["f1"])]
                        + [_pct(o.report.per_class[i]["recall"]) for o in others])
        rows.append(["**macro average**", f"{r.n_images:,}", _pct(r.macro_precision),
                     _pct(r.macro_recall), _pct(r.macro_f1)]
                    + [_pct(o.report.macro_recall) for o in others])
        L += _md_table(header, rows)
        L += ["", "Most common confusions (true → predicted: images):", ""]
        L += [f"{i}. {format_confusion(c)} ({c['share_of_true']:.1%} of {c['true']} images)"
              for i, c in enumerate(r.top_confusions, start=1)] or ["none"]
        L.append("")

    if figures:
        L += ["## Figures", ""]
        for name, path in figures.items():
            link = Path(os.path.relpath(path, relative_to)) if relative_to else path
            L.append(f"![{name}]({link.as_posix()})")
            L.append("")
    if data["notes"]:
        L += ["## Notes", ""] + [f"- {n}" for n in data["notes"]] + [""]
    return "\n".join(L).rstrip() + "\n"


def write_markdown(result: BenchResult, path: str | os.PathLike[str],
                   figures: Mapping[str, Path] | None = None) -> str:
    from cifarkit._io import write_text

    text = to_markdown(result, figures, Path(path).resolve().parent)
    write_text(path, text)
    return text


# --- figures --------------------------------------------------------------------------------


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text)


def write_figures(result: BenchResult, folder: str | os.PathLike[str], *,
                  n_predictions: int = 10, n_misclassified: int = 24) -> dict[str, Path]:
    """All PNGs into ``folder``: per model (reference precision/provider) the confusion
    heatmap, per-class accuracy bars (every precision), predictions and misclassified
    examples; one throughput-vs-batch chart; one accuracy-vs-throughput chart (a point per
    model × precision × provider). Returns {title: path}."""
    from cifarkit import plots

    folder = Path(folder)
    classes = result.classes
    x, y = result.images, result.labels
    out: dict[str, Path] = {}
    for ref in reference_accuracy(result):
        tag = f"{ref.model} {ref.precision} on {ref.provider}"
        # a model of the quick sweep's lighter part was run on a subset of the images
        x, y = ((result.images, result.labels) if ref.indices is None else
                (result.images[ref.indices], result.labels[ref.indices]))
        base = _slug(f"{ref.model}-{ref.precision}-{ref.provider}")
        r = ref.report
        p = folder / f"{base}-confusion.png"
        plots.confusion_heatmap(
            r.confusion, classes, p,
            title=f"Confusion matrix: {tag} (top-1 {r.top1:.1%}, {r.n_images:,} images)",
        )
        out[f"confusion matrix, {tag}"] = p

        series = {
            f"{a.precision} on {a.provider} (top-1 {a.report.top1:.1%})":
                [row["recall"] for row in a.report.per_class]
            for a in result.accuracy if a.model == ref.model
        }
        p = folder / f"{_slug(ref.model)}-per-class-accuracy.png"
        plots.per_class_accuracy_bars(series, classes, p,
                                      title=f"Per-class accuracy: {ref.model}")
        out[f"per-class accuracy, {ref.model}"] = p

        pick = []
        for c in range(len(classes)):  # the first image of each class, for a fixed figure
            idx = np.flatnonzero(y == c)
            if len(idx):
                pick.append(int(idx[0]))
        pick = pick[:n_predictions]
        p = folder / f"{base}-predictions.png"
        plots.prediction_figure(
            x[pick], ref.probs[pick], classes, p, y_true=y[pick],
            title=f"Predictions of {tag}: the first test image of each class",
        )
        out[f"predictions, {tag}"] = p

        pred = ref.probs.argmax(axis=1)
        conf = ref.probs.max(axis=1)
        wrong = np.flatnonzero(pred != y)
        wrong = wrong[np.argsort(-conf[wrong], kind="stable")][:n_misclassified]
        p = folder / f"{base}-misclassified.png"
        plots.misclassified_grid(
            x[wrong], y[wrong], pred[wrong], conf[wrong], classes, p,
            title=f"Most confident mistakes of {tag}: true → predicted (confidence)",
        )
        out[f"misclassified, {tag}"] = p

    series: dict[str, tuple[list[int], list[float]]] = {}
    for row in result.latency:
        if row.stats is None:
            continue
        label = f"{row.model} {row.precision} {row.provider}" + (" +iobind" if row.io_binding
                                                                  else "")
        if row.runtime != "onnxruntime":
            label = f"{row.model} {row.precision} {row.runtime}"
        sizes, rates = series.setdefault(label, ([], []))
        sizes.append(row.stats.batch_size)
        rates.append(row.stats.images_per_s)
    if series:
        cpu = result.environment.get("cpu", {})
        p = folder / "throughput-vs-batch.png"
        plots.throughput_vs_batch(
            series, p, title=f"Throughput vs batch size ({cpu.get('model')}, "
            f"{cpu.get('physical_cores')} cores" + (
                f"; {result.environment['gpus'][0]['name']}" if result.environment.get("gpus")
                else "") + ")",
        )
        out["throughput vs batch size"] = p
    if result.multi_runtime:
        matrix = [m for m in to_dict(result)["runtime_matrix"] if m["status"] == "ok"]
        if matrix:
            cpu = result.environment.get("cpu", {})
            p = folder / "runtimes.png"
            plots.runtime_matrix(
                matrix, p, title=f"Runtimes on {cpu.get('model')} "
                f"({cpu.get('physical_cores')} cores): agreement with onnxruntime, latency, "
                "throughput",
            )
            out["runtimes"] = p
    points = accuracy_vs_throughput_points(result)
    if points:
        cpu = result.environment.get("cpu", {})
        p = folder / "accuracy-vs-throughput.png"
        plots.accuracy_vs_throughput(
            points, p, title=f"Accuracy vs throughput ({cpu.get('model')}, "
            f"{cpu.get('physical_cores')} cores)",
        )
        out["accuracy vs throughput"] = p
    return out


def accuracy_vs_throughput_points(result: BenchResult) -> list[tuple[str, str, str, float,
                                                                      float]]:
    """(model, precision, provider, best images/s over the batch sizes timed, top-1): one
    point per model × precision × provider of onnxruntime that has both an accuracy and a
    timing (other runtimes are compared in the runtimes figure; mixing their rates into one
    point would credit onnxruntime with another runtime's speed)."""
    best: dict[tuple[str, str, str], float] = {}
    for row in result.latency:
        if row.stats is not None and row.runtime == "onnxruntime":
            key = (row.model, row.precision, row.provider)
            best[key] = max(best.get(key, 0.0), row.stats.images_per_s)
    return [(a.model, a.precision, a.provider, best[key], a.report.top1)
            for a in result.accuracy
            if a.runtime == "onnxruntime" and (key := (a.model, a.precision, a.provider)) in best]


# --- terminal (rich) ------------------------------------------------------------------------

_SHADES = (255, 253, 251, 249, 247, 245, 243, 241, 239, 237, 235)  # light → dark greys


def heatmap_text(result_row: AccuracyResult) -> Any:
    """A compact terminal heatmap of the row-normalised confusion matrix: one cell per
    (true, predicted) pair, the share in % on a background that darkens with it."""
    from rich.text import Text

    r = result_row.report
    names = [c[:4] for c in r.classes]
    width = max(len(c) for c in r.classes)
    t = Text()
    t.append(" " * (width + 1) + "predicted →\n", style="dim")
    t.append(" " * (width + 1) + "".join(f"{n:>5}" for n in names) + "\n", style="bold")
    for i, name in enumerate(r.classes):
        t.append(f"{name:>{width}} ", style="bold")
        for j in range(len(r.classes)):
            v = float(r.confusion_normalized[i, j])
            if r.confusion[i, j] == 0:
                cell, style = "    ·", "dim"
            else:
                shade = _SHADES[min(len(_SHADES) - 1, int(round(v * 10)))]
                fg = "black" if v < 0.5 else "white"
                if i == j:
                    fg = "bold green" if v >= 0.5 else "bold red"
                cell, style = f"{100 * v:5.0f}", f"{fg} on color({shade})"
            t.append(cell, style=style)
        t.append("\n")
    t.append(" " * (width + 1) + "rows: true class; cells: % of that class", style="dim")
    return t


def _rich_runtimes(data: dict[str, Any]) -> list[Any]:
    """The runtime matrix table, then one line per unavailable runtime and failed file."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    t = Table(title="runtimes: top-1, agreement with onnxruntime, latency (ms)",
              box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), pad_edge=False)
    providers = any(m["provider"] != "cpu" for m in data["runtime_matrix"]
                    if m["status"] != "unavailable")
    cols = ["file", "runtime", *(["prov"] if providers else []), "thr", "top-1", "agree",
            "max|Δp|", "b1 p50", "best(b)", "img/s"]
    for col in cols:
        t.add_column(col, justify="left" if col in ("file", "runtime", "prov") else "right",
                     no_wrap=True, style="cyan" if col == "file" else None)
    for m in data["runtime_matrix"]:
        if m["status"] == "unavailable":
            continue
        if m["status"] != "ok":
            cells: list[Any] = [Text(m["status"], style="red"), "", "", "", "", ""]
        else:
            cells = [_pct(m["top1"], 1).replace(" ", ""),
                     _pct(m["agreement_top1"], 2).replace(" ", ""),
                     "—" if m["max_abs_diff"] is None else f"{m['max_abs_diff']:.0e}",
                     _fmt_ms(m["batch1_p50_ms"]),
                     f"{_fmt_ms(m['best_p50_ms'])}({m['best_batch_size']})",
                     f"[bold]{_fmt_rate(m['best_images_per_s'])}"]
        t.add_row(f"{m['model']}:{m['precision']}", m["runtime"],
                  *([m["provider"]] if providers else []), str(m["threads"] or ""), *cells)
    for r in data["runtimes"]:
        if r["status"] == "unavailable":
            t.add_row("(all)", r["runtime"], *([""] if providers else []), "",
                      Text("n/a", style="yellow"), "", "", "", "", "")
    out: list[Any] = [t]
    for r in data["runtimes"]:
        if r["status"] == "unavailable":
            out.append(Text(f"{r['runtime']}: unavailable: {r['reason']}", style="yellow"))
    for f in data["runtime_failures"]:
        out.append(Text(f"{f['runtime']} on {f['model']}:{f['precision']}: {f['reason']}",
                        style="red"))
    return out


def rich_report(result: BenchResult) -> list[Any]:
    """Renderables for the terminal: accuracy, per-class + heatmap + confusions per model,
    latency, the Keras comparison, unavailable providers."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    data = to_dict(result)
    out: list[Any] = []
    multi = result.multi_runtime

    sizes = sorted({a.report.n_images for a in result.accuracy}, reverse=True)
    title = f"accuracy on {len(result.labels):,} {result.split} images"
    if len(sizes) > 1:  # --quick: the models other than the default on a subset
        title += " (" + ", ".join(
            f"{', '.join(sorted({a.model for a in result.accuracy if a.report.n_images == n}))}"
            f": {n:,}" for n in sizes) + ")"
    acc = Table(title=title, box=box.SIMPLE_HEAD)
    for col in ("model", "precision", "provider", *(["runtime"] if multi else [])):
        acc.add_column(col, style="cyan" if col == "model" else None)
    for col in ("top-1", "top-3", "macro P", "macro R", "macro F1"):
        acc.add_column(col, justify="right")
    for a in data["accuracy"]:
        acc.add_row(a["model"], a["precision"], a["provider"],
                    *([a["runtime"]] if multi else []), f"[bold]{_pct(a['top1'], 2)}",
                    _pct(a["top3"], 2), _pct(a["macro_precision"]), _pct(a["macro_recall"]),
                    _pct(a["macro_f1"]))
    out.append(acc)

    for ref in reference_accuracy(result):
        r = ref.report
        others = [a for a in result.accuracy
                  if a.model == ref.model and a.provider == ref.provider
                  and a.runtime == ref.runtime and a is not ref]
        t = Table(title=f"per class: {ref.model} {ref.precision} on {ref.provider}",
                  box=box.SIMPLE_HEAD)
        t.add_column("class", style="cyan")
        for col in ("support", "precision", "recall", "F1", *(f"recall {o.precision}"
                                                           for o in others)):
            t.add_column(col, justify="right")
        worst = min(range(len(r.per_class)), key=lambda i: r.per_class[i]["recall"])
        for i, row in enumerate(r.per_class):
            style = "red" if i == worst else None
            t.add_row(row["class"], f"{row['support']:,}", _pct(row["precision"]),
                      Text(_pct(row["recall"]), style=style or ""), _pct(row["f1"]),
                      *(_pct(o.report.per_class[i]["recall"]) for o in others))
        out.append(t)
        out.append(heatmap_text(ref))
        if r.top_confusions:
            out.append(Text("most common confusions: " + "; ".join(
                format_confusion(c) for c in r.top_confusions[:6])))

    lat = Table(title="latency (ms; one session.run per batch, warm-up excluded)",
                box=box.SIMPLE_HEAD, padding=(0, 0), pad_edge=False)
    any_binding = any(r["io_binding"] for r in data["latency"])
    lat.add_column("model", style="cyan", no_wrap=True, overflow="ellipsis", max_width=24)
    lat.add_column("prec", no_wrap=True)
    lat.add_column("prov", no_wrap=True)
    if multi:
        lat.add_column("runtime", no_wrap=True)
    if any_binding:
        lat.add_column("iobind", no_wrap=True)
    for col in ("batch", "p50", "p90", "p99", "ms/img", "img/s", "GF/s", "%peak"):
        lat.add_column(col, justify="right", no_wrap=True)
    for r in data["latency"]:
        if r["status"] != "ok":
            continue
        lat.add_row(r["model"], r["precision"], r["provider"],
                    *([r["runtime"]] if multi else []),
                    *(["yes" if r["io_binding"] else ""] if any_binding else []),
                    str(r["batch_size"]), _fmt_ms(r["p50_ms"]), _fmt_ms(r["p90_ms"]),
                    _fmt_ms(r["p99_ms"]), _fmt_ms(r["p50_ms_per_image"]),
                    f"[bold]{_fmt_rate(r['images_per_s'])}",
                    "—" if r["gflops"] is None else f"{r['gflops']:.1f}",
                    "" if r["peak_share"] is None else _pct(r["peak_share"]).replace(" ", ""))
    for u in data["unavailable"]:
        lat.add_row("(all)", "all", u["provider"], *([""] if multi else []),
                    *([""] if any_binding else []), "—",
                    Text("n/a", style="yellow"), "", "", "", "", "", "")
    out.append(lat)
    for u in data["unavailable"]:
        out.append(Text(f"{u['provider']}: unavailable: {u['reason']}", style="yellow"))
    if multi:
        out += _rich_runtimes(data)

    if data["keras"]:
        k = Table(title="ONNX vs Keras: images/s and ratios, same run",
                  box=box.SIMPLE_HEAD, padding=(0, 0), pad_edge=False)
        for col in ("model", "batch", "ONNX run", "chunked", "model(x)", "predict",
                    "run÷model(x)", "chunked÷model(x)", "run÷predict"):
            k.add_column(col, justify="left" if col == "model" else "right", no_wrap=True)
        for row in data["keras"]:
            k.add_row(row["model"], str(row["batch_size"]), _fmt_rate(row["onnx_images_per_s"]),
                      _fmt_rate(row["onnx_predict_proba_images_per_s"]),
                      _fmt_rate(row["keras_call_images_per_s"]),
                      _fmt_rate(row["keras_predict_images_per_s"]),
                      f"[bold]{row['speedup_vs_call']:.2f}×",
                      f"{row['speedup_predict_proba_vs_call']:.2f}×",
                      f"{row['speedup_vs_predict']:.2f}×")
        out.append(k)
        for kr in result.keras:
            out.append(Text(keras_summary(kr)))
    for peak in data["cpu_peak"]:
        out.append(Text(f"{_peak_title(peak)}: {peak['derivation']}", style="dim"))
    for note in result.notes:
        out.append(Text(f"note: {note}", style="yellow"))
    return out
