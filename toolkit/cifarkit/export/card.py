"""The model card: ``card.json`` (machine-readable) and ``README.md`` (for people)."""

from __future__ import annotations

from typing import Any

CARD_VERSION = 1


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x:.2%}"


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def render_readme(card: dict[str, Any]) -> str:
    """A human model card from ``card.json``'s content."""
    name, arch = card["name"], card["architecture"]
    data = card["evaluation"]
    training = card.get("training") or {}
    lines = [f"# {name} — CIFAR-10 classifier (ONNX)", ""]
    desc = card.get("description")
    lines += [
        f"**Architecture:** `{arch}`" + (f" — {desc}" if desc else ""),
        "",
        "Exported by `cifarkit export` from "
        f"`{card['source']['file']}` (sha256 `{card['source']['sha256'][:16]}…`) "
        f"on {card['exported_at']} with opset {card['opset']}.",
        "",
        "## What it does",
        "",
        "Classifies a 32×32 RGB image into one of the ten CIFAR-10 classes: "
        + ", ".join(card["classes"]) + ".",
        "",
        f"- input {card['contract']['input']}",
        f"- output {card['contract']['output']}",
        "",
        "Every preprocessing step is inside the graph: feed raw pixels.",
        "",
        "## How it was trained",
        "",
    ]
    if training:
        hp = training.get("hyperparameters") or {}
        items = [
            ("recipe", training.get("recipe")), ("epochs", training.get("epochs")),
            ("seed", training.get("seed")), ("data", training.get("data_source")),
            ("validation split", training.get("val_split")),
            ("device", training.get("device")),
            ("Keras test accuracy", _pct(training.get("test_accuracy"))
             if training.get("test_accuracy") is not None else None),
        ]
        lines += [f"- {k}: {v}" for k, v in items if v is not None]
        if hp:
            lines.append("- hyper-parameters: " + ", ".join(f"{k}={v}" for k, v in hp.items()))
    else:
        lines.append("No `run.json` came with the model, so the training details are unknown.")
    lines += ["", "## Files and accuracy", ""]
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
        "| file | precision | size | accuracy | Δ vs fp32 | agreement with Keras | "
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
    parity = card.get("parity")
    lines += ["", "## Parity with the Keras model", ""]
    if parity:
        what = "random (synthetic) images" if parity["synthetic"] else "test images"
        lines.append(
            f"fp32 vs Keras on {parity['images']:,} {what}: max |Δprob| "
            f"{parity['max_abs_diff']:.2e}, top-1 agreement {parity['top1_agreement']:.2%} "
            "(gate: ≤ 1e-4 and 100%)."
        )
    else:
        lines.append("Not checked (`--no-check`).")
    q = card.get("quantization")
    if q:
        lines += [
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
        if q.get("excluded_nodes"):
            lines.append(f"Kept in float: {', '.join(q['excluded_nodes'])} (the output softmax).")
    notes = card.get("notes") or []
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
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
        'image = np.asarray(Image.open("cat.png").convert("RGB").resize((32, 32)), np.uint8)',
        'probs = session.run(["probabilities"], {"images": image[None]})[0][0]',
        "print(classes[int(probs.argmax())], float(probs.max()))",
        "```",
        "",
        f"or `cifarkit predict --model {first} IMAGES…`.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in card["versions"].items()) + ".",
        "",
    ]
    return "\n".join(lines)
