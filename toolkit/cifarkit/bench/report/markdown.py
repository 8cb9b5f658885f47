"""The Markdown report (``benchmarks/RESULTS.md``), rendered from the JSON report's tables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from cifarkit.bench.config import BenchResult
from cifarkit.bench.report._format import (
    fmt_count,
    fmt_ms,
    fmt_rate,
    keras_summary,
    other_precisions,
    pct,
    peak_title,
    reference_accuracy,
)
from cifarkit.bench.report.data import to_dict
from cifarkit.measure.metrics import format_confusion


def to_markdown(
    result: BenchResult, figures: Mapping[str, Path] | None = None,
    relative_to: Path | None = None,
) -> str:
    """The Markdown report (``benchmarks/RESULTS.md``). ``figures``: name → PNG path, linked
    relative to ``relative_to`` (the Markdown file's folder)."""
    data = to_dict(result)
    multi = result.multi_runtime
    L = ["# cifarkit bench — results", "", *_header(data)]
    if data["unavailable"]:
        L += ["## Providers not available", ""]
        L += [f"- **{u['provider']}**: unavailable: {u['reason']}" for u in data["unavailable"]]
        L.append("")
    if multi:
        L += _runtimes(data)
    L += _accuracy(data, multi) + _latency(data, multi) + _keras(result, data)
    L += _per_class(result) + _corruptions(data) + _ood(data)
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


def _table(header: list[str], rows: list[list[str]], align: str | None = None) -> list[str]:
    align = align or "l" + "r" * (len(header) - 1)
    sep = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


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


def _header(data: dict[str, Any]) -> list[str]:
    """The run's command, machine, data and timing, as a list."""
    env, settings = data["environment"], data["settings"]
    libs = env.get("libraries") or {}
    L = [
        "Measured by `cifarkit bench` with the ONNX models themselves (onnxruntime), on real "
        "labelled images. Regenerate with the command below; figures from another machine "
        "are not comparable.",
        "",
        f"- **Command:** `{env['command']}`",
        f"- **When:** {env['timestamp']}; whole run {settings['seconds']:.0f} s",
        f"- **CPU:** {_cpu_line(env)}",
        f"- **GPU:** {_gpu_line(env)}",
        f"- **Memory:** {env.get('memory_gib')} GiB; **platform:** {env.get('platform')}",
        f"- **Libraries:** {', '.join(f'{k} {v}' for k, v in libs.items() if v)}",
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
        L.append(f"- **{peak_title(peak)}:** {peak['derivation']}")
    L.append("")
    return L


def _matrix_cells(m: dict[str, Any]) -> list[str]:
    """top-1, agreement (max |Δp|), batch-1 p50, best batch p50 (batch), images/s."""
    if m["status"] != "ok":
        return [f"{m['status']}: {m['reason']}", "", "", "", ""]
    agree = ("—" if m["agreement_top1"] is None
             else f"{pct(m['agreement_top1'], 2)} ({m['max_abs_diff']:.2g})")
    best = ("—" if m["best_p50_ms"] is None
            else f"{fmt_ms(m['best_p50_ms'])} ({m['best_batch_size']})")
    return [pct(m["top1"], 2), agree, fmt_ms(m["batch1_p50_ms"]), best,
            fmt_rate(m["best_images_per_s"])]


def _runtimes(data: dict[str, Any]) -> list[str]:
    """The runtime matrix section (``--backend``)."""
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
    L += _table(["model", "precision", "runtime", "provider", "threads", "top-1",
                 "agreement with onnxruntime (max \\|Δp\\|)", "batch 1 p50 ms",
                 "best p50 ms (batch)", "images/s (best)"], rows, "lllllrrrrr")
    L.append("")
    return L


def _accuracy(data: dict[str, Any], multi: bool) -> list[str]:
    rows = [[a["model"], a["precision"], a["provider"], *([a["runtime"]] if multi else []),
             f"{a['n_images']:,}", pct(a["top1"], 2),
             pct(a["top3"], 2), pct(a["macro_precision"]), pct(a["macro_recall"]),
             pct(a["macro_f1"]), _num(a.get("ece")), _num(a.get("nll"))]
            for a in data["accuracy"]]
    return ["## Accuracy", "", *_table(
        ["model", "precision", "provider", *(["runtime"] if multi else []), "images",
         "top-1", "top-3", "macro precision", "macro recall", "macro F1", "ECE", "NLL"], rows,
        "lll" + "l" * multi + "rrrrrrrr"), "",
        "ECE: expected calibration error (15 equal-width confidence bins, top label; 0 is "
        "perfectly calibrated); NLL: mean negative log-likelihood of the true class.", ""]


def _corruptions(data: dict[str, Any]) -> list[str]:
    rows = data["corruptions"]
    if not rows:
        return []
    names = list(rows[0]["accuracy"])
    body = [[f"{r['model']} {r['precision']}", pct(r["clean"]), pct(r["mean"]),
             pct(r["drop"]), *(pct(a) for a in r["mean_by_severity"])] for r in rows]
    per = [[name, *(pct(float(np.mean(r["accuracy"][name]))) for r in rows)] for name in names]
    return ["## Accuracy under corruption", "",
            "CIFAR-10-C's 15 corruptions at severities 1–5 (`cifarkit.data.corruptions`, "
            "seeded: the same images for every model).", "",
            *_table(["model", "clean", "mean", "drop", "s1", "s2", "s3", "s4", "s5"], body,
                    "lrrrrrrrr"), "",
            *_table(["corruption (mean of 5 severities)",
                     *(f"{r['model']} {r['precision']}" for r in rows)], per,
                    "l" + "r" * len(rows)), ""]


def _ood(data: dict[str, Any]) -> list[str]:
    rows = data["ood"]
    if not rows:
        return []
    ood = data["settings"]["ood"]
    body = [[r["model"], r["precision"], r["provider"], r["runtime"], r["score"],
             f"{r['auroc']:.3f}",
             pct(r["fpr_at_95_tpr"]), f"{r['threshold']:.4g}", r["threshold_source"],
             pct(r["rejected_in"]), pct(r["rejected_out"])] for r in rows]
    skipped = f" ({len(ood['skipped'])} files could not be decoded)" if ood["skipped"] else ""
    return ["## Unknown inputs (--ood)", "",
            f"{ood['n_images']:,} images of other subjects from `{ood['source']}`{skipped} "
            f"against the {data['settings']['split']} split; score: the top probability "
            "(`msp`) unless the model's rule names another (`score`: the model's score "
            "output). FPR@95: share of the other images "
            "accepted when 95 % of the split's are. Rejected shares at the threshold: the "
            "model's recorded rule (source `model`), else the one accepting 95 % of the split "
            "(source `split`: set on the very images it is judged on, so 5 % of them are "
            "rejected by construction).", "",
            *_table(["model", "precision", "provider", "runtime", "score", "AUROC", "FPR@95",
                     "threshold", "source", "rejected (split)", "rejected (other)"], body,
                    "lllllrrrlrr"), ""]


def _num(x: float | None) -> str:
    return "" if x is None else f"{x:.3f}"


_LATENCY_INTRO = (
    "ms per batch (p50 / p90 / p99), ms per image at p50, images/s (mean rate), "
    "achieved GFLOP/s (2 × MACs per image × images/s; GOP/s for int8) and its share of "
    "the CPU's peak for the arithmetic the row runs (CPU rows): fp32 and fp16 rows (the "
    "CPU provider computes fp16 in fp32) against the FP32 FMA peak, int8 rows against "
    "the int8 peak of the ISA (VNNI: 4×, without VNNI 2× the FP32 MACs per cycle), "
    "weighted by the share of MACs onnxruntime really runs as int8; each peak's "
    "derivation is under Machine. Empty: no honest peak. The clock is the one the "
    "system reports: cores that boost above it can show more than 100 %."
)


def _latency(data: dict[str, Any], multi: bool) -> list[str]:
    L = ["## Latency and throughput", "", _LATENCY_INTRO, ""]
    macs = {(m["model"], m["precision"]): m["macs_per_image"] for m in data["models"]}
    if any(macs.values()):
        L.append("MACs per image (from the graph): " + ", ".join(
            f"{k[0]}:{k[1]} {fmt_count(v)}" for k, v in macs.items() if v) + ".")
        L.append("")
    rows = [[
        r["model"], r["precision"], r["provider"], *([r["runtime"]] if multi else []),
        "yes" if r["io_binding"] else "no", str(r["batch_size"]), fmt_ms(r["p50_ms"]),
        f"{fmt_ms(r['p90_ms'])} / {fmt_ms(r['p99_ms'])}", fmt_ms(r["p50_ms_per_image"]),
        fmt_rate(r["images_per_s"]),
        "—" if r["gflops"] is None else f"{r['gflops']:.1f}",
        "" if r["peak_share"] is None else pct(r["peak_share"]), r["peak"] or "",
    ] for r in data["latency"] if r["status"] == "ok"]
    for u in data["unavailable"]:  # one row per provider, for every model
        rows.append(["all models", "all", u["provider"], *([""] if multi else []), "", "", "",
                     f"unavailable: {u['reason']}", "", "", "", "", ""])
    L += _table(["model", "precision", "provider", *(["runtime"] if multi else []),
                 "I/O binding", "batch", "p50 ms", "p90 / p99 ms", "ms/image", "images/s",
                 "GFLOP/s", "% of peak", "peak of"], rows, "llll" + "l" * multi + "rrrrrrrl")
    L.append("")
    return L


def _keras(result: BenchResult, data: dict[str, Any]) -> list[str]:
    if not data["keras"]:
        return []
    L = ["## ONNX vs Keras (same run, same images)", "",
         "ONNX run = one `session.run` on the whole batch (uint8); ONNX chunked = "
         "`Classifier.predict_proba` (the runtime cuts a request into chunks of its "
         "preferred size); Keras `model(x)` = `model(x, training=False)` on a preloaded "
         "float32 tensor; Keras `predict` = `model.predict(x, batch_size=n)`. Ratios = "
         "ONNX images/s ÷ Keras images/s at the same batch size; the four are timed in "
         "interleaved rounds.", ""]
    rows = [[k["model"], k["precision"], k["provider"], str(k["batch_size"]),
             fmt_rate(k["onnx_images_per_s"]),
             fmt_rate(k["onnx_predict_proba_images_per_s"]),
             fmt_rate(k["keras_call_images_per_s"]),
             fmt_rate(k["keras_predict_images_per_s"]), f"{k['speedup_vs_call']:.2f}×",
             f"{k['speedup_predict_proba_vs_call']:.2f}×",
             f"{k['speedup_vs_predict']:.2f}×"] for k in data["keras"]]
    L += _table(["model", "ONNX precision", "provider", "batch", "ONNX run img/s",
                 "ONNX chunked img/s", "Keras model(x) img/s", "Keras predict img/s",
                 "run ÷ model(x)", "chunked ÷ model(x)", "run ÷ predict"],
                rows, "lllrrrrrrrr")
    L.append("")
    L += [f"- {keras_summary(k)}" for k in result.keras]
    L.append("")
    return L


def _per_class(result: BenchResult) -> list[str]:
    L: list[str] = []
    for ref in reference_accuracy(result):
        r = ref.report
        others = other_precisions(result, ref)
        L += [f"## Per class: {ref.model} {ref.precision} on {ref.provider}", ""]
        header = ["class", "support", "precision", "recall (accuracy)", "F1"]
        header += [f"recall {o.precision}" for o in others]
        rows = [[row["class"], f"{row['support']:,}", pct(row["precision"]),
                 pct(row["recall"]), pct(row["f1"])]
                + [pct(o.report.per_class[i]["recall"]) for o in others]
                for i, row in enumerate(r.per_class)]
        rows.append(["**macro average**", f"{r.n_images:,}", pct(r.macro_precision),
                     pct(r.macro_recall), pct(r.macro_f1)]
                    + [pct(o.report.macro_recall) for o in others])
        L += _table(header, rows)
        L += ["", "Most common confusions (true → predicted: images):", ""]
        L += [f"{i}. {format_confusion(c)} ({c['share_of_true']:.1%} of {c['true']} images)"
              for i, c in enumerate(r.top_confusions, start=1)] or ["none"]
        L.append("")
    return L
