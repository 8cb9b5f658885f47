"""The terminal report: rich renderables (tables, a confusion heatmap, notes) the CLI prints,
rendered from the JSON report's tables."""

from __future__ import annotations

from typing import Any

from cifarkit.bench.config import AccuracyResult, BenchResult
from cifarkit.bench.report._format import (
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

MAX_CLASS_ROWS = 15  # per-class rows shown when there are more classes (worst recall first)
MAX_HEATMAP_CLASSES = 15  # five characters a column: wider does not fit 80 columns
_SHADES = (255, 253, 251, 249, 247, 245, 243, 241, 239, 237, 235)  # light → dark greys


def rich_report(result: BenchResult) -> list[Any]:
    """Renderables for the terminal: accuracy, per-class + heatmap + confusions per model,
    latency, the runtimes, the Keras comparison, unavailable providers, peaks and notes."""
    from rich.text import Text

    data = to_dict(result)
    multi = result.multi_runtime
    out: list[Any] = [_accuracy(result, data, multi)]
    for ref in reference_accuracy(result):
        out += _per_class(result, ref)
    out.append(_latency(data, multi))
    out += [Text(f"{u['provider']}: unavailable: {u['reason']}", style="yellow")
            for u in data["unavailable"]]
    if multi:
        out += _runtimes(data)
    if data["keras"]:
        out.append(_keras(data))
        out += [Text(keras_summary(kr)) for kr in result.keras]
    if data["corruptions"]:
        out.append(_corruptions(data))
    if data["ood"]:
        out.append(_ood(data, multi))
    out += [Text(f"{peak_title(peak)}: {peak['derivation']}", style="dim")
            for peak in data["cpu_peak"]]
    out += [Text(f"note: {note}", style="yellow") for note in result.notes]
    return out


def _corruptions(data: dict[str, Any]) -> Any:
    t = _table(f"accuracy % under {len(data['corruptions'][0]['accuracy'])} corruptions "
               "(CIFAR-10-C; s1–s5: severities)")
    for col in ("model", "clean", "mean", "drop", "s1", "s2", "s3", "s4", "s5"):
        t.add_column(col, justify="left" if col == "model" else "right", no_wrap=True,
                     style="cyan" if col == "model" else None)
    for r in data["corruptions"]:
        t.add_row(f"{r['model']}:{r['precision']}",
                  *(f"{100 * v:.1f}" for v in (r["clean"], r["mean"], r["drop"],
                                               *r["mean_by_severity"])))
    return t


def _ood(data: dict[str, Any], multi: bool) -> Any:
    ood, split = data["settings"]["ood"], data["settings"]["split"]
    t = _table(f"unknown inputs: {ood['n_images']:,} images of other subjects vs the {split} "
               "split; rejected shares (rej.) at the model's threshold, else at 95 % of the "
               "split accepted (from: model | split)")
    where = multi or len({(r["provider"], r["runtime"]) for r in data["ood"]}) > 1
    for col in ("model", *(["on"] if where else []), "score", "AUROC", "FPR95", "thresh",
                "from", "rej. in", "rej. out"):
        t.add_column(col, justify="left" if col in ("model", "on", "score", "from") else "right",
                     no_wrap=True, style="cyan" if col == "model" else None)
    for r in data["ood"]:
        on = [f"{r['runtime']}:{r['provider']}"] if where else []
        t.add_row(f"{r['model']}:{r['precision']}", *on, r["score"], f"{r['auroc']:.3f}",
                  pct(r["fpr_at_95_tpr"]), f"{r['threshold']:.4g}", r["threshold_source"],
                  pct(r["rejected_in"]), pct(r["rejected_out"]))
    return t


def _table(title: str, **kwargs: Any) -> Any:
    from rich import box
    from rich.table import Table

    return Table(title=title, box=box.SIMPLE_HEAD, **kwargs)


def _accuracy(result: BenchResult, data: dict[str, Any], multi: bool) -> Any:
    sizes = sorted({a.report.n_images for a in result.accuracy}, reverse=True)
    title = f"accuracy on {len(result.labels):,} {result.split} images"
    if len(sizes) > 1:  # --quick: the models other than the default on a subset
        title += " (" + ", ".join(
            f"{', '.join(sorted({a.model for a in result.accuracy if a.report.n_images == n}))}"
            f": {n:,}" for n in sizes) + ")"
    acc = _table(title)
    for col in ("model", "precision", "provider", *(["runtime"] if multi else [])):
        acc.add_column(col, style="cyan" if col == "model" else None)
    for col in ("top-1", "top-3", "macro P", "macro R", "macro F1"):
        acc.add_column(col, justify="right")
    for a in data["accuracy"]:
        acc.add_row(a["model"], a["precision"], a["provider"],
                    *([a["runtime"]] if multi else []), f"[bold]{pct(a['top1'], 2)}",
                    pct(a["top3"], 2), pct(a["macro_precision"]), pct(a["macro_recall"]),
                    pct(a["macro_f1"]))
    return acc


def _per_class(result: BenchResult, ref: AccuracyResult) -> list[Any]:
    """The per-class table of ``ref`` (recall of its other precisions beside), its heatmap
    and its most common confusions."""
    from rich.text import Text

    r = ref.report
    others = other_precisions(result, ref)
    t = _table(f"per class: {ref.model} {ref.precision} on {ref.provider}")
    t.add_column("class", style="cyan")
    for col in ("support", "precision", "recall", "F1", *(f"recall {o.precision}"
                                                       for o in others)):
        t.add_column(col, justify="right")
    order = list(range(len(r.per_class)))
    worst = min(order, key=lambda i: r.per_class[i]["recall"])
    many = len(order) > MAX_CLASS_ROWS
    if many:  # worst first, so the rows shown are the ones to act on
        order = sorted(order, key=lambda i: r.per_class[i]["recall"])[:MAX_CLASS_ROWS]
    for i in order:
        row = r.per_class[i]
        style = "red" if i == worst else None
        t.add_row(row["class"], f"{row['support']:,}", pct(row["precision"]),
                  Text(pct(row["recall"]), style=style or ""), pct(row["f1"]),
                  *(pct(o.report.per_class[i]["recall"]) for o in others))
    if many:
        t.caption = (f"the {MAX_CLASS_ROWS} classes with the lowest recall of "
                     f"{len(r.per_class)}; every class is in --json and --markdown")
    out = [t, heatmap_text(ref) if len(r.classes) <= MAX_HEATMAP_CLASSES else Text(
        f"confusion heatmap: {len(r.classes)} classes are too many for a terminal; see the "
        "confusion figure (--figures)", style="dim")]
    if r.top_confusions:
        out.append(Text("most common confusions: " + "; ".join(
            format_confusion(c) for c in r.top_confusions[:6])))
    return out


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


def _latency(data: dict[str, Any], multi: bool) -> Any:
    from rich.text import Text

    lat = _table("latency (ms; one session.run per batch, warm-up excluded)",
                 padding=(0, 0), pad_edge=False)
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
                    str(r["batch_size"]), fmt_ms(r["p50_ms"]), fmt_ms(r["p90_ms"]),
                    fmt_ms(r["p99_ms"]), fmt_ms(r["p50_ms_per_image"]),
                    f"[bold]{fmt_rate(r['images_per_s'])}",
                    "—" if r["gflops"] is None else f"{r['gflops']:.1f}",
                    "" if r["peak_share"] is None else pct(r["peak_share"]).replace(" ", ""))
    for u in data["unavailable"]:
        lat.add_row("(all)", "all", u["provider"], *([""] if multi else []),
                    *([""] if any_binding else []), "—",
                    Text("n/a", style="yellow"), "", "", "", "", "", "")
    return lat


def _runtimes(data: dict[str, Any]) -> list[Any]:
    """The runtime matrix table, then one line per unavailable runtime and failed file."""
    from rich.text import Text

    t = _table("runtimes: top-1, agreement with onnxruntime, latency (ms)",
               padding=(0, 1, 0, 0), pad_edge=False)
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
            cells = [pct(m["top1"], 1).replace(" ", ""),
                     pct(m["agreement_top1"], 2).replace(" ", ""),
                     "—" if m["max_abs_diff"] is None else f"{m['max_abs_diff']:.0e}",
                     fmt_ms(m["batch1_p50_ms"]),
                     f"{fmt_ms(m['best_p50_ms'])}({m['best_batch_size']})",
                     f"[bold]{fmt_rate(m['best_images_per_s'])}"]
        t.add_row(f"{m['model']}:{m['precision']}", m["runtime"],
                  *([m["provider"]] if providers else []), str(m["threads"] or ""), *cells)
    unavailable = [r for r in data["runtimes"] if r["status"] == "unavailable"]
    for r in unavailable:
        t.add_row("(all)", r["runtime"], *([""] if providers else []), "",
                  Text("n/a", style="yellow"), "", "", "", "", "")
    out: list[Any] = [t]
    out += [Text(f"{r['runtime']}: unavailable: {r['reason']}", style="yellow")
            for r in unavailable]
    out += [Text(f"{f['runtime']} on {f['model']}:{f['precision']}: {f['reason']}",
                 style="red") for f in data["runtime_failures"]]
    return out


def _keras(data: dict[str, Any]) -> Any:
    k = _table("ONNX vs Keras: images/s and ratios, same run", padding=(0, 0), pad_edge=False)
    for col in ("model", "batch", "ONNX run", "chunked", "model(x)", "predict",
                "run÷model(x)", "chunked÷model(x)", "run÷predict"):
        k.add_column(col, justify="left" if col == "model" else "right", no_wrap=True)
    for row in data["keras"]:
        k.add_row(row["model"], str(row["batch_size"]), fmt_rate(row["onnx_images_per_s"]),
                  fmt_rate(row["onnx_predict_proba_images_per_s"]),
                  fmt_rate(row["keras_call_images_per_s"]),
                  fmt_rate(row["keras_predict_images_per_s"]),
                  f"[bold]{row['speedup_vs_call']:.2f}×",
                  f"{row['speedup_predict_proba_vs_call']:.2f}×",
                  f"{row['speedup_vs_predict']:.2f}×")
    return k
