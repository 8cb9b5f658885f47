"""The model card: ``card.json`` (machine-readable) and ``README.md`` (for people)."""

from __future__ import annotations

import re
from typing import Any

from cifarkit.contract import CIFAR10_CLASSES, DEFAULT_IMAGE_SIZE

#: 2: per-file evaluation and latency, params, MACs, the equivalent command (`reproduce`).
#: 3: file formats (onnx/tflite/ort), portability, parity reference, ONNX sources.
#: 4: calibration (temperature per precision, ECE/NLL before → after, the unknown rule).
#: 5: robustness (accuracy under the CIFAR-10-C corruptions, with ``--corruptions``).
CARD_VERSION = 5


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x:.2%}"


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _count(n: int | None) -> str:
    """``1.23 M`` / ``45.6 k``: params and MACs at a glance (exact values are in card.json)."""
    if n is None:
        return "—"
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return str(n)


def _duration(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {s:02d} s" if m else f"{seconds:.1f} s"


def _ms(x: float) -> str:
    return f"{x:.2f} ms" if x < 10 else f"{x:.1f} ms"


def _training_lines(training: dict[str, Any]) -> list[str]:
    hp = training.get("hyperparameters") or {}
    data = training.get("data_source")
    split = training.get("data") or {}
    if data and split.get("train") is not None:
        data = (f"{data} ({split.get('kind', '?')}; {split['train']:,} train / "
                f"{split.get('val', 0):,} validation / {split.get('test', 0):,} test images)")
    seconds = training.get("train_seconds")
    items = [
        ("recipe", training.get("recipe")), ("epochs", training.get("epochs")),
        ("seed", training.get("seed")), ("data", data),
        ("validation split", training.get("val_split")),
        ("pretrained weights", training.get("weights")),
        ("mixed precision", training.get("mixed_precision") or None),
        ("device", training.get("device")),
        ("training time", None if seconds is None else
         f"{_duration(seconds)} ({seconds:.0f} s, sum of the epochs)"),
        ("finished", training.get("finished_utc")),
        ("Keras test accuracy", _pct(training.get("test_accuracy"))
         if training.get("test_accuracy") is not None else None),
    ]
    lines = [f"- {k}: {v}" for k, v in items if v is not None]
    if hp:
        lines.append("- hyper-parameters: " + ", ".join(f"{k}={v}" for k, v in hp.items()))
    if training.get("command"):
        lines += ["", "Trained with:", "", "```sh", training["command"], "```"]
    return lines


def _evaluation_lines(files: list[dict[str, Any]]) -> list[str]:
    """Per-class table (recall / precision of every file side by side) and top confusions."""
    # ONNX files only: a LiteRT/ORT file's per-class numbers are in card.json.
    evals = [(f["precision"], f["evaluation"]) for f in files
             if f.get("evaluation") and f.get("format", "onnx") == "onnx"]
    if not evals:
        return []
    lines = ["", "## Per-class accuracy", "",
             "Recall is the share of a class's test images classified as that class; precision "
             "the share of predictions of that class that are right.", ""]
    lines += ["| file | top-1 | top-3 | macro F1 |", "|---|---:|---:|---:|"]
    lines += [f"| {p} | {_pct(e['top1'])} | {_pct(e['top3'])} | {e['macro_f1']:.3f} |"
              for p, e in evals]
    lines.append("")
    head = "| class | images | " + " | ".join(f"{p} recall | {p} precision" for p, _ in evals)
    lines += [head + " |", "|---|---:|" + "---:|---:|" * len(evals)]
    first = evals[0][1]["per_class"]
    for i, row in enumerate(first):
        cells = " | ".join(f"{_pct(e['per_class'][i]['recall'])} | "
                           f"{_pct(e['per_class'][i]['precision'])}" for _, e in evals)
        lines.append(f"| {row['class']} | {row['support']:,} | {cells} |")
    # Rows: every file's top confusions, in the first file's order; counts from each matrix.
    classes = [r["class"] for r in first]
    pairs: list[tuple[str, str]] = []
    for _, e in evals:
        for c in e["top_confusions"]:
            if (c["true"], c["predicted"]) not in pairs:
                pairs.append((c["true"], c["predicted"]))
    if not pairs:
        return lines
    support = {r["class"]: r["support"] for r in first}
    ref = evals[0][1]["confusion_matrix"]
    pairs.sort(key=lambda tp: -ref[classes.index(tp[0])][classes.index(tp[1])])
    lines += ["", "## Top confusions", "",
              "Test images of the true class predicted as another (count, and share of that "
              "class's images).", "",
              "| true → predicted | " + " | ".join(p for p, _ in evals) + " |",
              "|---|" + "---:|" * len(evals)]
    for t, p in pairs:
        cells = []
        for _, e in evals:
            n = e["confusion_matrix"][classes.index(t)][classes.index(p)]
            share = n / support[t] if support[t] else 0.0
            cells.append(f"{n:,} ({share:.1%})")
        lines.append(f"| {t} → {p} | " + " | ".join(cells) + " |")
    return lines


def _latency_lines(card: dict[str, Any]) -> list[str]:
    setup = card.get("latency")
    rows = [(f["precision"], f["latency"]) for f in card["files"] if f.get("latency")]
    if not setup or not rows:
        return []
    load = setup.get("load_average_before")
    lines = [
        "", "## Latency on the export machine", "",
        f"onnxruntime {card['versions'].get('onnxruntime', '')} {setup['provider']} through "
        f"`cifarkit.backends.Classifier` (as `cifarkit predict` runs it) with "
        f"{setup['threads']} intra-op threads (the physical cores) on {setup['cpu']} "
        f"({setup['physical_cores']} physical cores, {setup['logical_cpus']} logical CPUs"
        + (f", load average {load[0]:.2f} before timing" if load else "") + "). "
        f"One `session.run` per call on a preloaded uint8 batch; median (p50) of at least "
        f"{setup['min_iterations']} calls over about {setup['seconds_per_batch_size']} s per "
        f"batch size after {setup['warmup']} warm-up calls; images/s = images / timed "
        f"seconds over all calls (the mean rate). Best = the highest images/s of "
        f"the batch sizes timed ({', '.join(map(str, setup['batch_sizes']))}; a larger batch "
        f"is skipped when it would take over {setup['budget_s_per_file']:.0f} s per file).",
        "",
        "| file | batch 1 p50 | batch 1 images/s | batch 32 p50 | batch 32 images/s | "
        "best images/s (batch) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    skipped = []
    for p, lat in rows:
        by = {pt["batch_size"]: pt for pt in lat["points"]}
        one, b32, best = by[1], by[32], lat["best"]
        lines.append(
            f"| {p} | {_ms(one['p50_ms'])} | {one['images_per_s']:,.0f} | "
            f"{_ms(b32['p50_ms'])} | {b32['images_per_s']:,.0f} | "
            f"{best['images_per_s']:,.0f} ({best['batch_size']}) |"
        )
        if lat.get("skipped_batch_sizes"):
            skipped.append(f"{p}: {', '.join(map(str, lat['skipped_batch_sizes']))}")
    if skipped:
        lines += ["", "Not timed (over the time budget): " + "; ".join(skipped) + "."]
    lines += ["", "Every point of the sweep (p50, p90, images/s) is in `card.json`."]
    return lines


def _derived(card: dict[str, Any]) -> str:
    d = (card.get("source") or {}).get("derived_from")
    if not d or not d.get("keras_file"):
        return ""
    return (f", itself exported on {d.get('exported_at') or '?'} from `{d['keras_file']}`, "
            f"sha256 `{(d.get('keras_sha256') or '?')[:16]}…`")


def _reference(card: dict[str, Any]) -> str:
    ref = card.get("parity_reference") or "the Keras model"
    return "Keras" if ref == "the Keras model" else ref.removeprefix("the ")


def _portability_lines(card: dict[str, Any]) -> list[str]:
    port = card.get("portability")
    if not port:
        return []
    done = []
    if port.get("reverse_sequence_to_slice"):
        done.append(f"{port['reverse_sequence_to_slice']} ReverseSequence (the flip) → Slice "
                    "with step −1")
    if port.get("constant_reshapes"):
        done.append(f"{port['constant_reshapes']} Reshape shape(s) computed from the batch → "
                    "constants")
    return ["", "## Portable graph", "",
            "Only standard ops that OpenCV DNN, tract, OpenVINO and LiteRT's converters "
            "implement, constant shapes but for the dynamic batch"
            + (f" ({'; '.join(done)})" if done else "")
            + f"; simplified with {port['simplifier']} ({port['nodes_before']} → "
            f"{port['nodes_after']} nodes). Ops: "
            + ", ".join(f"{op} {n}" for op, n in port.get("ops_after", {}).items()) + "."]


def _runs_in_lines(card: dict[str, Any]) -> list[str]:
    """The "runs in" table: ``card["runs_in"]`` = {precision: rows of
    ``cifarkit.backends.matrix``, as dicts}, plus ``runs_in_setup`` (a sentence: images,
    machine)."""
    from cifarkit.backends import runs_in_markdown

    runs = card.get("runs_in")
    if not runs:
        return []
    lines = ["", "## Runs in", ""]
    if card.get("runs_in_setup"):
        lines += [card["runs_in_setup"], ""]
    for precision, rows in runs.items():
        lines += [f"**{precision}**", "", *runs_in_markdown(rows), ""]
    return lines[:-1]


def _block_score_lines(c: dict[str, Any]) -> list[str]:
    """The unknown rule when it is the block score (``export.blockscore``)."""
    records = c["block_score"]
    first = next(iter(records.values()))
    lines = ["", "Unknown: each file has a second output `score` (higher = more like the "
             f"training classes): {first['method']}; class means and covariances from "
             f"{first['learnt_images']:,} training images the model learnt from. A row whose "
             f"score is under its file's threshold is \"none of these classes\" (the "
             "`unknown below` column above is the top-probability threshold, kept for "
             "reference; metadata `unknown`, `cifarkit predict --reject auto`, apply this one).",
             "", "| precision | score threshold | held-out accepted | test images accepted | "
             "blocks | constants | graph vs numpy |", "|---|---:|---:|---:|---:|---:|---:|"]
    for p, r in records.items():
        lines.append(f"| {p} | {r['threshold']:.4f} | {_pct(r['held_out_accepted'])} | "
                     f"{_pct(r.get('test_accepted'))} | {len(r['blocks'])} | "
                     f"{r['constants']:,} | {r['graph_vs_numpy']:.1e} |")
    return lines


def _calibration_lines(card: dict[str, Any]) -> list[str]:
    """T per precision, ECE/NLL before → after (held-out and test), the unknown rule."""
    c = card.get("calibration")
    lines = ["", "## Calibrated probabilities and the unknown answer", ""]
    if not c:
        return lines + ["Not calibrated: the probabilities are the model's own and there is "
                        "no unknown threshold (the notes say why)."]
    lines += [
        f"Each precision's temperature T was fitted (minimum NLL) on {c['fitted_on']}, on that "
        "precision's own output, and folded into the graph before the output Softmax "
        "(probabilities = softmax(logits / T); the top-1 class is unchanged). ECE: 15 "
        "equal-width bins of the top probability; NLL in nats.",
        "",
        "| precision | T | held-out ECE | held-out NLL | test ECE | test NLL | unknown below | "
        "test images accepted |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p, r in c["precisions"].items():
        h, t = r["held_out"], r.get("test") or {}

        def arrow(d: dict[str, Any], key: str) -> str:
            if f"{key}_before" not in d:
                return "—"
            return f"{d[f'{key}_before']:.4f} → {d[f'{key}_after']:.4f}"

        lines.append(f"| {p} | {r['temperature']:.4f} | {arrow(h, 'ece')} | {arrow(h, 'nll')} | "
                     f"{arrow(t, 'ece')} | {arrow(t, 'nll')} | {r['threshold']:.4f} | "
                     f"{_pct(t.get('accepted'))} |")
    if c.get("block_score"):
        lines += _block_score_lines(c)
    else:
        lines += ["", f"Unknown: a row whose top probability is under its file's threshold is "
                  f"\"none of these classes\"; the threshold accepts {c['acceptance']:.0%} of "
                  "the held-out images (metadata `unknown`, `cifarkit predict --reject auto`)."]
    lite = c.get("tflite_int8")
    if lite:
        lines += ["", "`model.int8.tflite` is quantized by LiteRT's own converter from the "
                  f"calibrated fp32 graph and applies fp32's T={lite['temperature']:.4f} (its "
                  "int8 probabilities come in steps of 1/256, too coarse to re-fit T on): "
                  f"held-out ECE {lite['ece_held_out']:.4f}, NLL {lite['nll_held_out']:.4f}; "
                  f"the top-probability threshold accepting {c['acceptance']:.0%} of the "
                  f"held-out images is {lite['threshold']:.4f} for it (backends read "
                  "`model.int8.onnx`'s)."]
    others = [f for f in card["files"] if f.get("format", "onnx") != "onnx"
              and (f.get("evaluation") or {}).get("ece") is not None]
    if others:
        lines += ["", "LiteRT/ORT files are made from the calibrated graphs; their test ECE: "
                  + ", ".join(f"`{f['file']}` {f['evaluation']['ece']:.4f}" for f in others)
                  + "."]
    return lines


def _image_size(card: dict[str, Any]) -> int:
    """S, from the contract's input description ("images: uint8 [batch, S, S, 3], …")."""
    found = re.search(r"\[batch, (\d+),", (card.get("contract") or {}).get("input", ""))
    return int(found.group(1)) if found else DEFAULT_IMAGE_SIZE


def _header_lines(card: dict[str, Any], size: int) -> list[str]:
    """Title, architecture, provenance, what it does, and the training."""
    training = card.get("training") or {}
    kinds = "ONNX" + "".join(f", {k}" for k, fmt in (("LiteRT", "tflite"), ("ORT", "ort"))
                             if fmt in (card.get("formats") or []))
    cifar = tuple(card["classes"]) == CIFAR10_CLASSES
    lines = [f"# {card['name']} — {'CIFAR-10 ' if cifar else 'image '}classifier ({kinds})", ""]
    desc = card.get("description")
    lines += [
        f"**Architecture:** `{card['architecture']}`" + (f" — {desc}" if desc else ""),
        "",
        "Exported by `cifarkit export` from "
        f"`{card['source']['file']}` (sha256 `{card['source']['sha256'][:16]}…`"
        + _derived(card) + f") on {card['exported_at']} with opset {card['opset']}.",
        "",
        "## What it does",
        "",
        f"Classifies a {size}×{size} RGB image into one of "
        + ("the ten CIFAR-10 classes: " if cifar else f"its {len(card['classes'])} classes: ")
        + ", ".join(card["classes"]) + ".",
        "",
        f"- input {card['contract']['input']}",
        f"- output {card['contract']['output']}",
        "",
        "Every preprocessing step is inside the graph: feed raw pixels.",
        "",
    ]
    tta = card.get("tta")
    if tta:
        lines += [f"Test-time augmentation is inside the graph too (level {tta['level']}, "
                  f"{tta['views']} views per image): {tta['description']}.", ""]
    lines += [
        "## How it was trained",
        "",
    ]
    if training:
        lines += _training_lines(training)
    else:
        lines.append("No `run.json` came with the model, so the training details are unknown.")
    return lines


def _size_lines(card: dict[str, Any]) -> list[str]:
    """Parameters and multiply-accumulates."""
    macs = card.get("macs") or {}
    lines = ["", "## Size and compute", ""]
    if card.get("params") is not None:
        lines.append(f"- parameters: {card['params']:,} ({_count(card['params'])})")
    if card.get("macs_per_image") is not None:
        lines.append(
            f"- multiply-accumulates per image: {card['macs_per_image']:,} "
            f"({_count(card['macs_per_image'])}MAC, {_count(2 * card['macs_per_image'])}FLOP)"
            + (" — a lower bound: some shapes were unknown" if macs.get("uncounted") else "")
        )
        lines.append("  (Conv and MatMul/Gemm of the fp32 graph at batch 1, so work the graph "
                     "adds itself, such as test-time flips, counts)")
    return lines


def _files_lines(card: dict[str, Any]) -> list[str]:
    """The files with their accuracy, parity and speed; the formats; the checksums."""
    data = card["evaluation"]
    lines = ["", "## Files and accuracy", ""]
    if data["synthetic"]:
        lines += [
            "No CIFAR-10 data was available when this was exported: parity was checked on "
            "random (synthetic) pixels and accuracy was not measured.",
            "",
        ]
    else:
        lines.append(
            f"Accuracy: top-1 on {data['test_images']:,} test images of `{data['source']}`."
        )
    bench = card.get("benchmark")
    if bench:
        threads = "default threads" if bench["threads"] == 0 else f"{bench['threads']} thread(s)"
        lines += [
            f"Speed: batch {bench['batch']}, onnxruntime CPU provider with {threads} on "
            f"{bench['cpu']} ({bench['cpu_count']} cores); the ratio to fp32 is the median of "
            f"{bench['rounds']} interleaved rounds on the same images, measured in one run.",
        ]
    if not data["synthetic"] or bench:
        lines.append("")
    lines += [
        f"| file | precision | size | accuracy | Δ vs fp32 | agreement with {_reference(card)} | "
        "max abs Δprob | speed vs fp32 |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for f in card["files"]:
        par = f.get("parity") or {}
        delta = f.get("accuracy_delta_vs_fp32")
        lines.append(
            f"| `{f['file']}` | {f['precision']} | {_size(f['size_bytes'])} | "
            f"{_pct(f.get('accuracy'))} | "
            f"{'—' if delta is None else f'{delta * 100:+.2f} pt'} | "
            f"{_pct(par.get('top1_agreement'))} | "
            f"{'—' if not par else format(par['max_abs_diff'], '.1e')} | "
            f"{'—' if f.get('speed_vs_fp32') is None else format(f['speed_vs_fp32'], '.2f') + '×'}"
            " |"
        )
    return lines + _format_lines(card) + _checksum_lines(card)


def _format_lines(card: dict[str, Any]) -> list[str]:
    """How the LiteRT and ORT files were made and measured."""
    lines = []
    engine = card.get("tflite_engine")
    if any(f.get("format") == "tflite" for f in card["files"]):
        lines += ["", "`.tflite`: LiteRT, converted from the fp32 ONNX graph by "
                  f"{engine or 'onnx2tf'} and TensorFlow's TFLiteConverter; int8 is "
                  "full-integer (int8 kernels), uint8 input with scale 1 and zero "
                  "point 0 (raw pixels, as the ONNX files), float32 probabilities out. "
                  "Accuracy and agreement measured with `ai_edge_litert`'s interpreter."]
    if any(f.get("format") == "ort" for f in card["files"]):
        lines += ["", "`.ort`: onnxruntime's ORT format (for ORT Mobile / minimal builds), "
                  "converted by `onnxruntime.tools.convert_onnx_models_to_ort` (fixed "
                  "optimizations, no x86-only layouts); measured with onnxruntime."]
    return lines


def _checksum_lines(card: dict[str, Any]) -> list[str]:
    lines = ["", "SHA-256 (check with `sha256sum -c`):", "", "```"]
    lines += [f"{f['sha256']}  {f['file']}" for f in card["files"]]
    lines.append("```")
    return lines


def _robustness_lines(card: dict[str, Any]) -> list[str]:
    """Accuracy under the CIFAR-10-C corruptions (``export --corruptions``), per precision."""
    r = card.get("robustness")
    if not r:
        return []
    lines = ["", "## Accuracy under corruptions", "",
             f"Top-1 on {r['n_images']:,} stratified test images, clean and under the "
             f"{len(r['corruptions'])} CIFAR-10-C corruptions at severities 1–5 "
             f"({r['library']}, {r['preset']} severities, seed {r['seed']}; each file in "
             "onnxruntime on the CPU). Mean: over the "
             f"{len(r['corruptions']) * len(r['severities'])} corrupted sets; worst and best: "
             "the corruptions with the lowest and highest mean over the severities (each "
             "one's accuracies are in `card.json`).", "",
             "| precision | clean | mean corrupted | drop | "
             + " | ".join(f"sev {s}" for s in r["severities"]) + " | worst | best |",
             "|---|---:|---:|---:|" + "---:|" * len(r["severities"]) + "---|---|"]
    for p, row in r["precisions"].items():
        means = {c: sum(a) / len(a) for c, a in row["accuracy"].items()}
        worst, best = min(means, key=means.__getitem__), max(means, key=means.__getitem__)
        lines.append(f"| {p} | {_pct(row['clean'])} | {_pct(row['mean'])} | "
                     f"{row['drop'] * 100:.1f} pt | "
                     + " | ".join(_pct(m) for m in row["mean_by_severity"])
                     + f" | {worst} {_pct(means[worst])} | {best} {_pct(means[best])} |")
    return lines


def _parity_lines(card: dict[str, Any]) -> list[str]:
    parity = card.get("parity")
    lines = ["", f"## Parity with {card.get('parity_reference') or 'the Keras model'}", ""]
    if parity:
        what = "random (synthetic) images" if parity["synthetic"] else "test images"
        lines.append(
            f"fp32 vs {_reference(card)} on {parity['images']:,} {what}: max |Δprob| "
            f"{parity['max_abs_diff']:.2e}, top-1 agreement {parity['top1_agreement']:.2%} "
            "(gate: ≤ 1e-4 and 100%)."
        )
        if card.get("calibration"):
            lines.append("Compared before the temperature was folded; each folded file is "
                         "checked against the temperature-scaled probabilities (above), and "
                         "LiteRT/ORT files against the calibrated fp32 ONNX file.")
    else:
        lines.append("Not checked (`--no-check`).")
    return lines


def _quantization_lines(card: dict[str, Any]) -> list[str]:
    q = card.get("quantization")
    if not q:
        return []
    lines = [
        "",
        "## INT8 quantization",
        "",
        f"onnxruntime static quantization, {q['format']}, activations {q['activation_type']}"
        f", weights {q['weight_type']} {'per channel' if q['per_channel'] else 'per tensor'}"
        f", reduce_range={q['reduce_range']} (CPU VNNI: {q['cpu_vnni']}), "
        f"{q['calibration_method']} calibration on {q['calibration_images']} "
        f"{q['calibration_data']}.",
    ]
    if q.get("folded_affine"):
        lines.append(
            f"Before quantizing, {q['folded_affine']} batch-norm Mul/Add ops that follow a "
            "ReLU were folded into the neighbouring Conv/Gemm layers (exact algebra; it "
            "keeps int8 from rounding their per-channel scales)."
        )
    if q.get("op_types"):
        lines.append(
            f"Quantized op types: {', '.join(q['op_types'])} (the graph has GELU: its "
            "elementwise Erf/Mul/Add stay float between the int8 convolutions)."
        )
    if q.get("excluded_nodes"):
        lines.append(f"Kept in float: {', '.join(q['excluded_nodes'])} (the output softmax).")
    return lines


def _footer_lines(card: dict[str, Any], size: int) -> list[str]:
    """Notes, the reproduce command, how to run it, the versions."""
    training = card.get("training") or {}
    notes = card.get("notes") or []
    lines = []
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    lines += ["", "## Reproduce", "",
              "Every number in this card comes from this export; to measure them again:", "",
              "```sh", card.get("reproduce") or card.get("command") or "cifarkit export", "```"]
    if card.get("command") and card["command"] != card.get("reproduce"):
        lines += ["", f"(invoked as `{card['command']}`)"]
    if training.get("command"):
        lines += ["", f"The model itself came from `{training['command']}`."]
    first = card["files"][0]["file"] if card["files"] else "model.fp32.onnx"
    lines += [
        "",
        "## How to run it",
        "",
        "```python",
        "import json, numpy as np, onnxruntime as ort",
        "from PIL import Image",
        "",
        f'session = ort.InferenceSession("{first}", providers=["CPUExecutionProvider"])',
        "classes = json.loads(session.get_modelmeta().custom_metadata_map['class_names'])",
        'image = np.asarray(Image.open("cat.png").convert("RGB").resize('
        f'({size}, {size})), np.uint8)',
        'probs = session.run(["probabilities"], {"images": image[None]})[0][0]',
        "print(classes[int(probs.argmax())], float(probs.max()))",
        "```",
        "",
        f"or `cifarkit predict --model {first} IMAGES…`.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in card["versions"].items()) + ".",
        "",
    ]
    return lines


def render_readme(card: dict[str, Any]) -> str:
    """A human model card from ``card.json``'s content."""
    size = _image_size(card)
    lines = [*_header_lines(card, size), *_size_lines(card), *_files_lines(card),
             *_evaluation_lines(card["files"]), *_calibration_lines(card),
             *_robustness_lines(card), *_latency_lines(card), *_runs_in_lines(card),
             *_parity_lines(card), *_portability_lines(card), *_quantization_lines(card),
             *_footer_lines(card, size)]
    return "\n".join(lines)
