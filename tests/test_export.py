"""``cifarkit.export``: Keras → ONNX that honours the contract, with parity, fp16, int8,
metadata, a model card, atomic writes and clear errors.

Models are untrained (random init; VGG16 with ``weights=None``), data is synthetic unless a
test says otherwise, so nothing here downloads anything. Real-data tests are marked
``realdata`` and skip without ``$CIFARKIT_DATA``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from cifarkit.data import CLASSES, Dataset
from cifarkit.errors import ExportError, ModelError, UsageError

keras = pytest.importorskip("keras")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from cifarkit.export import (  # noqa: E402
    FP32_MAX_ABS_DIFF,
    export_model,
    find_stale_runs,
    max_opset,
    read_metadata,
    resolve_source,
    synthetic_dataset,
)
from cifarkit.measure.machine import cpu_has_vnni  # noqa: E402

RUN_INFO = {
    "arch": "cnn-batchnorm", "recipe": "default", "epochs": 3, "seed": 0,
    "data_source": "/data/cifar10", "test_accuracy": 0.7123, "test_loss": 0.85,
    "val_split": 0.1, "hyperparameters": {"lr": 0.001, "batch_size": 64},
    "versions": {"tensorflow": "2.21.0"}, "status": "complete",
    "command": "cifarkit train cnn-batchnorm --epochs 3 --data /data/cifar10",
    "train_seconds": 5432.1, "epoch_seconds": [1810.0, 1811.0, 1811.1], "device": "CPU",
    "data": {"kind": "folders", "train": 45000, "val": 5000, "test": 10000},
    "finished_utc": "2026-01-02T03:04:05+00:00", "params": 892842,
}


# --- helpers -------------------------------------------------------------------------------


def build(arch: str, **kwargs):
    from cifarkit.models import create_model, get_model_info

    if get_model_info(arch).pretrained:
        kwargs.setdefault("weights", None)
    return create_model(arch, **kwargs)


def make_run(folder: Path, model, run_info: dict | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / "model.keras")
    if run_info is not None:
        (folder / "run.json").write_text(json.dumps(run_info))
    return folder


def session(path: Path):
    return ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])


def io_signature(path: Path) -> tuple:
    """(input name, elem type, dims), (output name, elem type, dims) of an ONNX file."""
    graph = onnx.load(os.fspath(path)).graph
    init = {t.name for t in graph.initializer}
    ins = [i for i in graph.input if i.name not in init]

    def dims(v):
        return [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]

    return (
        [(i.name, i.type.tensor_type.elem_type, dims(i)) for i in ins],
        [(o.name, o.type.tensor_type.elem_type, dims(o)) for o in graph.output],
    )


def assert_contract(path: Path, keras_model=None, atol: float = FP32_MAX_ABS_DIFF) -> None:
    """The contract, checked from the file itself: names, dtypes, dynamic batch 1 and 37."""
    ins, outs = io_signature(path)
    assert ins == [("images", onnx.TensorProto.UINT8, ["batch", 32, 32, 3])]
    assert outs == [("probabilities", onnx.TensorProto.FLOAT, ["batch", 10])]
    ops = {n.op_type for n in onnx.load(os.fspath(path)).graph.node}
    assert not ops & {"Dropout", "RandomUniform", "RandomNormal", "RandomUniformLike"}
    sess = session(path)
    x = np.random.default_rng(7).integers(0, 256, (37, 32, 32, 3), dtype=np.uint8)
    for n in (1, 37):
        probs = sess.run(["probabilities"], {"images": x[:n]})[0]
        assert probs.shape == (n, 10) and probs.dtype == np.float32
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-3)
        assert probs.min() >= 0
    if keras_model is not None:
        ref = np.asarray(keras_model(x.astype(np.float32), training=False))
        got = sess.run(["probabilities"], {"images": x})[0]
        assert np.abs(ref - got).max() <= atol
        assert (ref.argmax(1) == got.argmax(1)).all()


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory) -> tuple[Path, object]:
    """An untrained cnn-batchnorm run folder (model.keras + run.json)."""
    # Seeded: untrained weights depend on the global RNG, i.e. on which tests ran before, and
    # some draws leave near-tied probabilities whose argmax fp32 rounding can flip.
    keras.utils.set_random_seed(0)
    model = build("cnn-batchnorm")
    run = make_run(tmp_path_factory.mktemp("runs") / "cnn-batchnorm", model, RUN_INFO)
    return run, model


@pytest.fixture(scope="module")
def data() -> Dataset:
    return synthetic_dataset(n_train=200, n_test=300, seed=1)


@pytest.fixture(scope="module")
def full_export(cnn_run, data, tmp_path_factory):
    """fp32 + fp16 + int8 of the cnn-batchnorm run, on synthetic data."""
    run, _ = cnn_run
    out = tmp_path_factory.mktemp("exported") / "cnn-batchnorm"
    result = export_model(run, out, data=data, calibration_images=64, parity_images=300,
                          bench_rounds=2, latency_batch_sizes=(1, 8, 32), latency_seconds=0.02)
    return result


# --- every architecture --------------------------------------------------------------------

ARCHS = [
    "dense", "cnn", "cnn-dropout", "cnn-batchnorm",
    # vgg16-finetune builds the very same inference graph (models.vgg._vgg16); its 25 s went
    # to the suite's 15-minute budget.
    pytest.param("vgg16-transfer", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("arch", ARCHS)
def test_every_architecture_exports_to_the_contract(arch, tmp_path, data):
    model = build(arch)
    kind = type(model).__name__
    assert kind == ("Sequential" if not arch.startswith("vgg") else "Functional")
    keras_file = tmp_path / f"{arch}.keras"
    model.save(keras_file)
    result = export_model(keras_file, tmp_path / "out", precisions=["fp32"], data=data,
                          parity_images=64, benchmark=False)
    assert result.architecture == arch
    assert [f.path.name for f in result.files] == ["model.fp32.onnx"]
    assert result.parity.max_abs_diff <= FP32_MAX_ABS_DIFF
    assert result.parity.top1_agreement == 1.0
    assert_contract(tmp_path / "out" / "model.fp32.onnx", model)


# --- fp32, fp16, int8 ------------------------------------------------------------------------


def test_full_export_writes_three_models_and_a_card(full_export):
    out = full_export.out_dir
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md", "card.json", "model.fp16.onnx", "model.fp32.onnx", "model.int8.onnx"]
    for precision in ("fp32", "fp16", "int8"):
        assert_contract(out / f"model.{precision}.onnx")


def test_fp32_parity_recomputed_independently(full_export, cnn_run, data):
    _, model = cnn_run
    par = full_export.parity
    assert par.images == 300 and par.synthetic
    assert par.max_abs_diff <= FP32_MAX_ABS_DIFF and par.top1_agreement == 1.0
    ref = np.asarray(model(data.x_test.astype(np.float32), training=False))
    got = session(full_export.out_dir / "model.fp32.onnx").run(
        ["probabilities"], {"images": data.x_test})[0]
    assert np.abs(ref - got).max() <= FP32_MAX_ABS_DIFF
    assert np.abs(ref - got).max() == pytest.approx(par.max_abs_diff, abs=1e-6)


def test_fp16_halves_the_weights_and_keeps_io_types(full_export):
    out = full_export.out_dir
    graph = onnx.load(os.fspath(out / "model.fp16.onnx")).graph
    big = [t for t in graph.initializer if np.prod(t.dims) > 1000]
    assert big and all(t.data_type == onnx.TensorProto.FLOAT16 for t in big)
    fp16, fp32 = full_export.file("fp16"), full_export.file("fp32")
    assert fp16.size_bytes < 0.55 * fp32.size_bytes
    assert fp16.parity.top1_agreement >= 0.98 and fp16.parity.max_abs_diff < 1e-2


def test_int8_is_static_qdq_per_channel_and_keeps_float_softmax(full_export):
    out = full_export.out_dir
    graph = onnx.load(os.fspath(out / "model.int8.onnx")).graph
    ops = [n.op_type for n in graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    inits = {t.name: t for t in graph.initializer}
    # Conv weights: int8 with one scale per output channel (per-channel, axis 0).
    conv_w = [n.input[1] for n in graph.node if n.op_type == "Conv"]
    weight_dq = [n for n in graph.node if n.op_type == "DequantizeLinear"
                 and n.output[0] in conv_w]
    assert len(weight_dq) == len(conv_w) == 4
    for dq in weight_dq:
        w, scale = inits[dq.input[0]], inits[dq.input[1]]
        assert w.data_type == onnx.TensorProto.INT8
        assert list(scale.dims) == [w.dims[0]] and w.dims[0] in (32, 64)
    # The output comes straight from a float Softmax: probabilities are not quantized.
    producer = next(n for n in graph.node if "probabilities" in n.output)
    assert producer.op_type == "Softmax"
    q = full_export.quantization
    assert (q.format, q.activation_type, q.weight_type, q.per_channel) == (
        "QDQ", "QInt8", "QInt8", True)
    assert q.calibration_images == 64 and q.calibration_method == "minmax"
    assert q.reduce_range == (not cpu_has_vnni())
    int8 = full_export.file("int8")
    assert int8.size_bytes < 0.35 * full_export.file("fp32").size_bytes
    assert int8.parity.top1_agreement >= 0.9


def _bn_graph(tmp_path, gamma_sign: float = 1.0):
    """cnn-batchnorm with trained-looking batch-norm statistics, pre-processed for int8."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from cifarkit.export import keras_to_onnx

    model = build("cnn-batchnorm")
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            var = rng.uniform(0.01, 1.0, c)
            var[: c // 8] = 1e-7  # "dead" channels: scale 1/sqrt(eps) ≈ 31
            gamma = rng.uniform(0.5, 2.0, c)
            gamma[0] *= gamma_sign
            layer.set_weights([gamma, rng.normal(0, 0.5, c), rng.uniform(0, 1, c), var])
    proto = keras_to_onnx(model)
    onnx.save(proto, tmp_path / "raw.onnx")
    quant_pre_process(tmp_path / "raw.onnx", tmp_path / "pre.onnx", skip_symbolic_shape=True)
    return onnx.load(tmp_path / "pre.onnx")


def _run(proto, x):
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(["probabilities"], {"images": x})[0]


def test_fold_post_relu_batchnorm_is_exact(tmp_path):
    from collections import Counter

    from cifarkit.export.fold import fold_post_activation_affine

    pre = _bn_graph(tmp_path)
    before = Counter(n.op_type for n in pre.graph.node)
    assert before["Mul"] == 4 and before["Add"] == 3  # input rescale + 3 × (scale, shift)
    folded, count = fold_post_activation_affine(pre)
    after = Counter(n.op_type for n in folded.graph.node)
    assert count == 6 and after["Mul"] == 1 and after["Conv"] == 4
    producers = {o: n.op_type for n in folded.graph.node for o in n.output}
    # The Adds left are biases the fold gave bias-free MatMuls, not post-ReLU shifts.
    assert all(producers[n.input[0]] == "MatMul" for n in folded.graph.node
               if n.op_type == "Add")
    onnx.checker.check_model(folded, full_check=True)
    x = np.random.default_rng(1).integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    # Exact algebra, but float32: on these random-weight graphs (a new init each run) the
    # reassociated sums move probabilities by up to 4.3e-4 (seen). Same labels, and 1e-3.
    got, want = _run(folded, x), _run(pre, x)
    assert np.array_equal(got.argmax(axis=1), want.argmax(axis=1))
    np.testing.assert_allclose(got, want, atol=1e-3)


def test_int8_of_trained_looking_batchnorm_is_a_clean_int8_chain(tmp_path):
    from collections import Counter

    from cifarkit.export import quantize_int8

    _bn_graph(tmp_path)
    raw = onnx.load(tmp_path / "raw.onnx")
    calib = np.random.default_rng(3).integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    q, info = quantize_int8(raw, calib)
    assert info.folded_affine == 6
    ops = Counter(n.op_type for n in q.graph.node)
    # Every Conv/Gemm reads and writes int8 (Q/DQ around it); no float Mul/Add islands left
    # but the x/255 input scaling.
    assert ops["Mul"] == 1 and ops["Add"] == 0 and ops["Gemm"] == 2 and ops["Conv"] == 4
    onnx.save(q, tmp_path / "q.onnx")
    assert_contract(tmp_path / "q.onnx")


def test_fold_leaves_negative_scales_alone(tmp_path):
    """Relu(z)·s = Relu(z·s) only for s > 0: a negative gamma keeps that Mul (and its Add)."""
    from cifarkit.export.fold import fold_post_activation_affine

    pre = _bn_graph(tmp_path, gamma_sign=-1.0)
    folded, count = fold_post_activation_affine(pre)
    assert count == 0
    x = np.random.default_rng(2).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    np.testing.assert_allclose(_run(folded, x), _run(pre, x), atol=1e-6)


def test_int8_folds_batchnorm_before_quantizing(full_export):
    assert full_export.quantization.folded_affine == 3  # untrained: shifts are zero
    graph = onnx.load(os.fspath(full_export.out_dir / "model.int8.onnx")).graph
    muls = [n.name for n in graph.node if n.op_type == "Mul"]
    assert len(muls) == 1 and "rescale" in muls[0]  # only the x/255 input scaling is left
    ops = [n.op_type for n in graph.node]
    assert "Add" not in ops and ops.count("Gemm") + ops.count("MatMul") == 2


def test_speed_is_measured_against_fp32(full_export):
    t = full_export.throughput
    assert t.batch == 32 and t.rounds == 2
    assert t.ratio_vs_fp32["fp32"] == 1.0
    for f in full_export.files:
        assert f.images_per_s > 0 and f.speed_vs_fp32 == t.ratio_vs_fp32[f.precision]


# --- metadata and card ---------------------------------------------------------------------


def test_metadata_round_trip(full_export, cnn_run):
    run, _ = cnn_run
    sha = hashlib.sha256((run / "model.keras").read_bytes()).hexdigest()
    for precision in ("fp32", "fp16", "int8"):
        path = full_export.out_dir / f"model.{precision}.onnx"
        meta = read_metadata(path)
        assert meta["class_names"] == list(CLASSES)
        assert meta["architecture"] == "cnn-batchnorm"
        assert meta["precision"] == precision
        assert "uint8" in meta["input_description"] and "0-255" in meta["input_description"]
        assert meta["source_sha256"] == sha and meta["source_file"] == "model.keras"
        assert {"tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime"} <= set(meta["versions"])
        assert meta["versions"]["onnx"] == onnx.__version__
        when = datetime.fromisoformat(meta["exported_at"].replace("Z", "+00:00"))
        assert when.utcoffset().total_seconds() == 0
        assert meta["training"]["recipe"] == "default" and meta["training"]["epochs"] == 3
        assert meta["opset"] == "17"
        assert meta["parity"]["synthetic"] is True
        assert "accuracy" not in meta  # synthetic data: no accuracy claimed
        assert ("quantization" in meta) == (precision == "int8")
        # What onnxruntime (and so cifarkit.backends) sees: the same strings.
        custom = session(path).get_modelmeta().custom_metadata_map
        assert json.loads(custom["class_names"]) == list(CLASSES)


def test_metadata_says_image_size_and_preprocessing(full_export):
    """A bare .onnx file is self-describing: ``cifarkit.contract`` reads S and the
    preprocessing policy from it, and they agree with the graph."""
    from cifarkit.contract import DEFAULT_PREPROCESS, read_onnx

    for precision in ("fp32", "fp16", "int8"):
        path = full_export.out_dir / f"model.{precision}.onnx"
        meta = read_metadata(path)
        assert meta["image_size"] == "32" and meta["preprocess"] == DEFAULT_PREPROCESS
        info = read_onnx(path)
        assert (info.image_size, info.preprocess, info.classes) == (32, DEFAULT_PREPROCESS,
                                                                    tuple(CLASSES))


def test_reproduce_command_is_rendered_from_the_options():
    from cifarkit.export import ExportOptions, reproduce_command

    opts = ExportOptions(precisions=["int8", "fp32"], formats="tflite", limit=500,
                         reduce_range=False, check=False, bench_threads=0,
                         runtimes=["all"], data="/data/my images", seed=3,
                         corruptions=200).validated()
    assert reproduce_command(Path("runs/x"), Path("out"), opts) == (
        "cifarkit export runs/x --out out --precision fp32,int8 --opset 17 "
        "--data '/data/my images' --limit 500 --calibration-images 500 "
        "--calibration-method minmax --no-reduce-range --format onnx,tflite --no-check "
        "--bench-threads 0 --runs-in all --held-out auto --unknown-acceptance 0.95 "
        "--corruptions 200")
    assert opts.unreproducible() == ["seed"]
    plain = ExportOptions(precisions=["fp32"], benchmark=False, latency_seconds=1.0,
                          held_out="none")
    assert reproduce_command("m.keras", Path("o"), plain.validated()) == (
        "cifarkit export m.keras --out o --precision fp32 --opset 17 --parity-images 1000 "
        "--no-bench --runs-in none --held-out none")
    assert plain.validated().unreproducible() == []  # latency timing without benchmarking
    with pytest.raises(UsageError, match="unknown runtime"):
        ExportOptions(runtimes=["tensorflow"]).validated()


def _colour_proto(tmp_path, name="m.onnx", **kwargs):
    from tests import onnx_fixtures as F

    return onnx.load(os.fspath(F.color_model(tmp_path / name, **kwargs)))


def test_check_contract_takes_any_size_and_classes_the_metadata_names(tmp_path):
    from cifarkit.contract import DEFAULT_PREPROCESS
    from cifarkit.export import check_contract

    names = json.dumps(["cat", "dog", "fox", "owl", "yak"])
    info = check_contract(_colour_proto(tmp_path, n_classes=5, image_size=48,
                                        metadata={"class_names": names, "image_size": "48"}))
    assert (info.classes, info.image_size, info.preprocess) == (
        ("cat", "dog", "fox", "owl", "yak"), 48, DEFAULT_PREPROCESS)
    assert check_contract(_colour_proto(tmp_path)).classes == tuple(CLASSES)  # 10: CIFAR-10
    unnamed = _colour_proto(tmp_path, n_classes=5, metadata={})
    with pytest.raises(ExportError, match="5 outputs and no class_names"):
        check_contract(unnamed)
    assert check_contract(unnamed, classes=list("abcde")).n_classes == 5
    for metadata, message in (
        ({"class_names": json.dumps(["a", "b", "c", "d"])}, "class_names lists 4"),
        ({"class_names": names, "image_size": "32"}, "image_size 32 but the input is 48"),
    ):
        proto = _colour_proto(tmp_path, n_classes=5, image_size=48, metadata=metadata)
        with pytest.raises(ExportError, match=f"breaks the ONNX contract: .*{message}"):
            check_contract(proto, "x.onnx")
    with pytest.raises(ExportError, match=r"expected \['batch', n_classes ≥ 2\]"):
        check_contract(_colour_proto(tmp_path, n_classes=1, metadata={}))
    with pytest.raises(ExportError, match="outside 16–512"):
        check_contract(_colour_proto(tmp_path, image_size=8))


def test_onnx_source_with_its_own_classes_and_size(tmp_path):
    """An fp32 ONNX source with 5 named classes and 48×48 input, on data of that shape: every
    file names the classes and S, backends run the ORT files, the card lists the classes."""
    from cifarkit.backends import Classifier
    from cifarkit.contract import read_onnx
    from cifarkit.errors import DataError
    from tests import onnx_fixtures as F

    names = ["cat", "dog", "fox", "owl", "yak"]
    src = F.color_model(tmp_path / "src" / "model.fp32.onnx", n_classes=5, image_size=48,
                        metadata={"class_names": json.dumps(names), "architecture": "colour"})
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (120, 48, 48, 3), dtype=np.uint8)
    y = np.arange(120) % 5
    ds = Dataset(x, y, x[:60], y[:60], source="fixture", kind="fixture", classes=tuple(names),
                 image_size=48)
    result = export_model(src, tmp_path / "out", precisions=["fp32", "int8"],
                          formats=["onnx", "ort"], data=ds, calibration_images=40,
                          parity_images=30, benchmark=False)
    assert result.parity.top1_agreement == 1.0 and result.test_images == 60
    assert result.card["classes"] == names and "[batch, 48, 48, 3]" in \
        result.card["contract"]["input"]
    for f in result.files:
        assert f.parity.images == 30 and f.accuracy is not None
        if f.format == "onnx":
            info = read_onnx(f.path)
            assert info.classes == tuple(names) and info.image_size == 48
        with Classifier(f.path) as clf:
            assert tuple(clf.classes) == tuple(names) and clf.image_size == 48
            assert clf.predict_proba(x[:4]).shape == (4, 5)
    assert "its 5 classes: cat, dog" in result.readme_path.read_text()
    small = Dataset(x[:, :32, :32], y, x[:60, :32, :32], y[:60], source="small",
                    kind="fixture", classes=tuple(names))
    with pytest.raises(DataError, match="32×32 but the model takes 48×48"):
        export_model(src, tmp_path / "bad", data=small, benchmark=False)
    assert not (tmp_path / "bad").exists()


def test_card_json_matches_the_files_on_disk(full_export):
    out = full_export.out_dir
    card = json.loads((out / "card.json").read_text())
    assert card["architecture"] == "cnn-batchnorm" and card["name"] == "cnn-batchnorm"
    assert card["evaluation"]["synthetic"] is True
    assert card["training"]["test_accuracy"] == RUN_INFO["test_accuracy"]
    for entry in card["files"]:
        blob = (out / entry["file"]).read_bytes()
        assert entry["size_bytes"] == len(blob)
        assert entry["sha256"] == hashlib.sha256(blob).hexdigest()
    assert [e["precision"] for e in card["files"]] == ["fp32", "fp16", "int8"]
    readme = (out / "README.md").read_text()
    for name in ("model.fp32.onnx", "model.fp16.onnx", "model.int8.onnx", "cnn-batchnorm",
                 "synthetic", "recipe: default"):
        assert name in readme


def _keras_macs(model) -> int:
    """MACs per image from the Keras layers (Conv2D and Dense), independent of the ONNX graph."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, h, w, c_out = layer.output.shape
            kh, kw, c_in, _ = layer.kernel.shape
            total += h * w * c_out * kh * kw * c_in
        elif isinstance(layer, keras.layers.Dense):
            total += int(np.prod(layer.kernel.shape))
    return total


def test_card_has_params_macs_latency_training_and_checksums(full_export, cnn_run):
    from cifarkit.measure.machine import cpu_name

    run, model = cnn_run
    out = full_export.out_dir
    card = json.loads((out / "card.json").read_text())
    assert card["params"] == model.count_params() > 0
    assert card["macs_per_image"] == _keras_macs(model) > 0
    assert card["macs"]["uncounted"] == []
    training = card["training"]
    for key in ("command", "epochs", "seed", "train_seconds", "data_source", "data", "device",
                "finished_utc"):
        assert training[key] == RUN_INFO[key]
    assert card["reproduce"].startswith(f"cifarkit export {run} --out {out} ")
    assert "--precision fp32,fp16,int8" in card["reproduce"]
    # The int8 range defaults by CPU: the command names the one used.
    used = card["quantization"]["reduce_range"]
    assert ("--reduce-range" if used else "--no-reduce-range") in card["reproduce"].split()
    setup = card["latency"]
    assert setup["provider"] == "CPUExecutionProvider" and setup["cpu"] == cpu_name()
    assert 1 <= setup["threads"] <= setup["logical_cpus"]
    assert setup["batch_sizes"] == [1, 8, 32]
    for entry in card["files"]:
        assert entry["evaluation"] is None  # synthetic data: no accuracy claimed
        lat = entry["latency"]
        points = {p["batch_size"]: p for p in lat["points"]}
        assert sorted(points) == [1, 8, 32] and lat["skipped_batch_sizes"] == []
        for bs, p in points.items():
            assert p["p50_ms"] > 0 and p["iterations"] >= 3
            assert p["p50_ms_per_image"] == pytest.approx(p["p50_ms"] / bs)
        best = max(points.values(), key=lambda p: p["images_per_s"])
        assert lat["best"]["batch_size"] == best["batch_size"]
        assert lat["best"]["images_per_s"] == best["images_per_s"]
    readme = (out / "README.md").read_text()
    for text in ("## Size and compute", f"parameters: {model.count_params():,}",
                 f"{card['macs_per_image']:,}", "## Latency on the export machine",
                 f"{setup['threads']} intra-op threads", setup["cpu"], "batch 32 p50",
                 "## Reproduce", card["reproduce"], RUN_INFO["command"],
                 "training time: 1 h 30 min", "45,000 train"):
        assert text in readme, text
    for entry in card["files"]:  # full hashes, in `sha256sum -c` format
        assert f"{entry['sha256']}  {entry['file']}" in readme
    assert "## Per-class accuracy" not in readme and "## Top confusions" not in readme


def test_latency_sweep_always_times_batch_1_and_32_and_skips_over_budget(full_export, data):
    from cifarkit.export.measure import latency_sweep

    lat, threads = latency_sweep(full_export.out_dir / "model.fp32.onnx", data.x_test,
                                 batch_sizes=(1, 8, 64), seconds=0.01, budget_s=0.0)
    assert [p["batch_size"] for p in lat["points"]] == [1, 32]
    assert lat["skipped_batch_sizes"] == [8, 64] and threads >= 1
    assert lat["best"]["batch_size"] in (1, 32)


def test_card_evaluation_is_per_class_and_latency_only_when_benchmarking(cnn_run, tmp_path):
    """Labels = the Keras predictions with every 10th moved to the next class: fp32 top-1 is
    exactly 90 %, and the per-class rows and confusions are checked against a recount."""
    run, model = cnn_run
    base = synthetic_dataset(n_train=100, n_test=200, seed=5)
    pred = np.asarray(model(base.x_test.astype(np.float32), training=False)).argmax(1)
    y = pred.copy()
    y[::10] = (y[::10] + 1) % 10
    labelled = Dataset(base.x_train, base.y_train, base.x_test, y, source="fixture",
                       kind="fixture")
    result = export_model(run, tmp_path / "out", precisions=["fp32", "fp16"], data=labelled,
                          parity_images=50, benchmark=False)
    card = json.loads((tmp_path / "out" / "card.json").read_text())
    assert card["latency"] is None and card["benchmark"] is None
    assert "--no-bench" in card["reproduce"]
    fp32 = card["files"][0]["evaluation"]
    assert card["files"][0]["latency"] is None and result.file("fp32").latency is None
    assert fp32["top1"] == result.file("fp32").accuracy == pytest.approx(0.9)
    assert 0.9 <= fp32["top3"] <= 1.0 and 0.0 <= fp32["macro_f1"] <= 1.0
    cm = np.zeros((10, 10), int)
    np.add.at(cm, (y, pred), 1)
    assert fp32["confusion_matrix"] == cm.tolist()
    for i, row in enumerate(fp32["per_class"]):
        assert row["class"] == CLASSES[i] and row["support"] == int((y == i).sum())
        assert row["recall"] == pytest.approx(cm[i, i] / cm[i].sum() if cm[i].sum() else 0.0)
    off = sorted(((cm[t, p], t, p) for t in range(10) for p in range(10) if t != p and cm[t, p]),
                 key=lambda c: (-c[0], c[1], c[2]))[:5]
    assert [(c["true"], c["predicted"], c["count"]) for c in fp32["top_confusions"]] == [
        (CLASSES[t], CLASSES[p], int(n)) for n, t, p in off]
    assert card["files"][1]["evaluation"]["top1"] == result.file("fp16").accuracy
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "## Per-class accuracy" in readme and "## Top confusions" in readme
    assert "fp32 recall | fp32 precision | fp16 recall | fp16 precision" in readme
    assert all(f"| {name} | {int((y == i).sum()):,} |" in readme
               for i, name in enumerate(CLASSES))
    t, p = fp32["top_confusions"][0]["true"], fp32["top_confusions"][0]["predicted"]
    assert f"| {t} → {p} | {fp32['top_confusions'][0]['count']:,} (" in readme
    assert "## Latency" not in readme


def test_macs_count_in_graph_flip_tta_per_input_image(tmp_path, data):
    """FlipBatch doubles the batch inside the graph: the same layers cost 2× per image."""
    from cifarkit.models.layers import FlipBatch, MeanHalves

    def tiny(tta: bool):
        inputs = keras.Input((32, 32, 3), name="images")
        x = keras.layers.Rescaling(1 / 255, name="rescale")(inputs)
        if tta:
            x = FlipBatch(name="tta_flip")(x)
        x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv")(x)
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
        x = keras.layers.Dense(10, name="logits")(x)
        if tta:
            x = MeanHalves(name="tta_mean")(x)
        outputs = keras.layers.Softmax(name="predictions")(x)
        return keras.Model(inputs, outputs, name="tiny-tta" if tta else "tiny")

    cards = {}
    for tta in (False, True):
        model = tiny(tta)
        model.save(tmp_path / f"{model.name}.keras")
        result = export_model(tmp_path / f"{model.name}.keras", tmp_path / model.name,
                              precisions=["fp32"], data=data, parity_images=32,
                              benchmark=False)
        cards[tta] = result.card
    plain = 32 * 32 * 8 * 3 * 3 * 3 + 8 * 10  # conv + dense
    assert cards[False]["macs_per_image"] == plain
    assert cards[True]["macs_per_image"] == 2 * plain
    assert cards[True]["params"] == cards[False]["params"] == 8 * 27 + 8 + 8 * 10 + 10


def test_accuracy_is_measured_on_labelled_data(cnn_run, tmp_path):
    """Labels = the Keras model's own predictions, so fp32 accuracy must be exactly 100 %."""
    run, model = cnn_run
    base = synthetic_dataset(n_train=100, n_test=200, seed=3)
    y = np.asarray(model(base.x_test.astype(np.float32), training=False)).argmax(1)
    labelled = Dataset(base.x_train, base.y_train, base.x_test, y, source="fixture",
                       kind="fixture")
    result = export_model(run, tmp_path / "out", precisions=["fp32", "fp16"], data=labelled,
                          parity_images=200, benchmark=False)
    fp32, fp16 = result.file("fp32"), result.file("fp16")
    assert fp32.accuracy == 1.0 and result.test_images == 200
    assert fp16.accuracy == pytest.approx(fp16.parity.top1_agreement)
    assert fp16.accuracy_delta_vs_fp32 == pytest.approx(fp16.accuracy - 1.0)
    meta = read_metadata(tmp_path / "out" / "model.fp32.onnx")
    assert meta["accuracy"] == 1.0 and meta["accuracy_images"] == "200"


def test_limit_and_parity_images_select_stratified_subsets(cnn_run, tmp_path):
    run, model = cnn_run
    base = synthetic_dataset(n_train=50, n_test=500, seed=4)
    labelled = Dataset(base.x_train, base.y_train, base.x_test, np.arange(500) % 10,
                       source="fixture", kind="fixture")
    result = export_model(run, tmp_path / "out", precisions=["fp32"], data=labelled,
                          limit=100, parity_images=40, benchmark=False)
    assert result.test_images == 100 and result.parity.images == 40


# --- atomic writes -------------------------------------------------------------------------


def test_failure_mid_export_leaves_previous_files_intact(full_export, cnn_run, data, tmp_path,
                                                         monkeypatch):
    run, _ = cnn_run
    out = tmp_path / "cnn-batchnorm"
    shutil.copytree(full_export.out_dir, out)
    before = snapshot(out)

    import cifarkit.export.pipeline as pipeline

    def explode(*args, **kwargs):
        raise ExportError("quantizer exploded")

    monkeypatch.setattr(pipeline, "quantize_int8", explode)
    with pytest.raises(ExportError, match="quantizer exploded"):
        export_model(run, out, data=data, calibration_images=16, parity_images=50,
                     benchmark=False)
    assert snapshot(out) == before  # same names (no temp files left), same bytes


def test_interrupt_while_writing_leaves_previous_files_intact(full_export, cnn_run, data,
                                                              tmp_path, monkeypatch):
    run, _ = cnn_run
    out = tmp_path / "cnn-batchnorm"
    shutil.copytree(full_export.out_dir, out)
    before = snapshot(out)

    import cifarkit.export.pipeline as pipeline

    real_write = pipeline._write_file
    calls = []

    def write_then_interrupt(tmp, blob):
        calls.append(tmp)
        if len(calls) == 3:  # two temp files are complete, the third is being written
            tmp.write_bytes(blob[: len(blob) // 2])
            raise KeyboardInterrupt
        real_write(tmp, blob)

    monkeypatch.setattr(pipeline, "_write_file", write_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        export_model(run, out, precisions=["fp32"], data=data, parity_images=50,
                     benchmark=False)
    assert len(calls) == 3
    assert snapshot(out) == before
    assert not any(p.exists() for p in calls)


def test_reexport_replaces_files_and_drops_other_precisions(full_export, cnn_run, data,
                                                            tmp_path):
    run, _ = cnn_run
    out = tmp_path / "cnn-batchnorm"
    shutil.copytree(full_export.out_dir, out)
    old_fp32 = (out / "model.fp32.onnx").read_bytes()
    result = export_model(run, out, precisions=["fp32"], data=data, parity_images=50,
                          benchmark=False)
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "card.json", "model.fp32.onnx"]
    assert any("model.int8.onnx" in n for n in result.notes)
    # Same weights, new metadata (parity on 50 images now): the file really was rewritten.
    assert (out / "model.fp32.onnx").read_bytes() != old_fp32
    assert read_metadata(out / "model.fp32.onnx")["parity"]["images"] == 50


def test_int8_only_keeps_fp32_as_an_unwritten_baseline(cnn_run, data, tmp_path):
    run, _ = cnn_run
    result = export_model(run, tmp_path / "out", precisions=["int8"], data=data,
                          calibration_images=20, parity_images=50, bench_rounds=1,
                          latency_batch_sizes=(1, 32), latency_seconds=0.02)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "README.md", "card.json", "model.int8.onnx"]
    assert [(f.precision, f.written) for f in result.files] == [("fp32", False), ("int8", True)]
    card = json.loads((tmp_path / "out" / "card.json").read_text())
    assert [e["file"] for e in card["files"]] == ["model.int8.onnx"]
    assert card["baseline_fp32"]["precision"] == "fp32"


# --- options and sources -------------------------------------------------------------------


@pytest.mark.parametrize("opset", [13, 18])
def test_other_opsets_export(opset, tmp_path, data):
    model = build("cnn")
    model.save(tmp_path / "cnn.keras")
    export_model(tmp_path / "cnn.keras", tmp_path / "out", precisions=["fp32"], opset=opset,
                 data=data, parity_images=32, benchmark=False)
    proto = onnx.load(os.fspath(tmp_path / "out" / "model.fp32.onnx"))
    assert {o.domain: o.version for o in proto.opset_import}[""] == opset
    assert read_metadata(proto)["opset"] == str(opset)


@pytest.mark.parametrize("opset", [11, 12, 0])
def test_unsupported_opset_is_a_usage_error(opset, cnn_run, tmp_path):
    run, _ = cnn_run
    with pytest.raises(UsageError, match=r"unsupported opset .*use 13–"):
        export_model(run, tmp_path / "out", opset=opset)
    with pytest.raises(UsageError, match="unsupported opset"):
        export_model(run, tmp_path / "out", opset=max_opset() + 1)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_other_calibration_methods(method, cnn_run, data, tmp_path):
    run, _ = cnn_run
    result = export_model(run, tmp_path / "out", precisions=["int8"], data=data,
                          calibration_images=20, calibration_method=method, parity_images=50,
                          benchmark=False)
    assert result.quantization.calibration_method == method
    assert_contract(tmp_path / "out" / "model.int8.onnx")


def test_bad_options_are_usage_errors(cnn_run, tmp_path):
    run, _ = cnn_run
    for kwargs, message in (
        ({"precisions": ["fp8"]}, "unknown fp8"),
        ({"precisions": []}, "at least one"),
        ({"calibration_method": "median"}, "calibration-method"),
        ({"calibration_images": 0}, "calibration-images"),
        ({"parity_images": 0}, "parity-images"),
    ):
        with pytest.raises(UsageError, match=message):
            export_model(run, tmp_path / "out", **kwargs)


def test_run_folder_and_bare_keras_names(cnn_run, tmp_path):
    run, model = cnn_run
    src = resolve_source(run)
    assert src.name == "cnn-batchnorm" and src.arch == "cnn-batchnorm"
    assert src.run_info["epochs"] == 3
    same = resolve_source(run / "model.keras")
    assert same.name == "cnn-batchnorm" and same.run_dir == run
    shutil.copy(run / "model.keras", tmp_path / "my-model.keras")
    bare = resolve_source(tmp_path / "my-model.keras")
    assert bare.name == "my-model" and bare.run_dir is None and bare.run_info == {}
    (tmp_path / "x").mkdir()
    shutil.copy(run / "model.keras", tmp_path / "x" / "model.keras")
    assert resolve_source(tmp_path / "x" / "model.keras").name == "x"


def test_default_output_folder_is_exported_name(cnn_run, data, tmp_path, monkeypatch):
    run, _ = cnn_run
    monkeypatch.chdir(tmp_path)
    result = export_model(run, precisions=["fp32"], data=data, parity_images=32,
                          benchmark=False)
    assert result.out_dir == Path("exported") / "cnn-batchnorm"
    assert (tmp_path / "exported" / "cnn-batchnorm" / "card.json").is_file()


def test_no_data_falls_back_to_synthetic_and_says_so(cnn_run, tmp_path, monkeypatch):
    run, _ = cnn_run
    monkeypatch.delenv("CIFARKIT_DATA", raising=False)  # KERAS_HOME is empty (conftest)
    result = export_model(run, tmp_path / "out", precisions=["fp32"], parity_images=100,
                          benchmark=False)
    assert result.synthetic and result.parity.synthetic and result.parity.images == 100
    assert any("synthetic" in n for n in result.notes)
    assert "synthetic" in (tmp_path / "out" / "README.md").read_text()


def test_mixed_precision_model_exports_in_float32(tmp_path, data):
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = build("cnn")
    finally:
        keras.config.set_dtype_policy("float32")
    model.save(tmp_path / "mp.keras")
    result = export_model(tmp_path / "mp.keras", tmp_path / "out", precisions=["fp32"],
                          data=data, parity_images=64, benchmark=False)
    assert any("mixed precision" in n for n in result.notes)
    assert result.parity.max_abs_diff <= FP32_MAX_ABS_DIFF
    assert_contract(tmp_path / "out" / "model.fp32.onnx")
    graph = onnx.load(os.fspath(tmp_path / "out" / "model.fp32.onnx")).graph
    assert all(t.data_type == onnx.TensorProto.FLOAT for t in graph.initializer
               if t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16))


# --- bad input -----------------------------------------------------------------------------


def test_missing_file_and_folder_without_model(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        export_model(tmp_path / "nope.keras", tmp_path / "out")
    (tmp_path / "empty-run").mkdir()
    with pytest.raises(ModelError, match="no model.keras"):
        export_model(tmp_path / "empty-run", tmp_path / "out")


def test_not_a_keras_model(tmp_path):
    (tmp_path / "fake.keras").write_text("not a zip")
    with pytest.raises(ModelError, match="not a Keras model"):
        export_model(tmp_path / "fake.keras", tmp_path / "out")
    (tmp_path / "weights.h5").write_bytes(b"\x89HDF\r\n")
    with pytest.raises(ModelError, match=r"\.keras file.*h5"):
        export_model(tmp_path / "weights.h5", tmp_path / "out")
    import zipfile

    with zipfile.ZipFile(tmp_path / "zip.keras", "w") as zf:
        zf.writestr("hello.txt", "hi")
    with pytest.raises(ModelError, match="no config.json"):
        export_model(tmp_path / "zip.keras", tmp_path / "out")


def _sequential(input_shape, outputs, *extra):
    layers = keras.layers
    return keras.Sequential([keras.Input(input_shape), *extra, layers.Flatten(),
                             layers.Dense(outputs, activation="softmax")])


@pytest.mark.parametrize(("shape", "classes", "message"), [
    ((28, 28, 1), 10, r"input shape is \[None, 28, 28, 1\].*\[batch, S, S, 3\]"),
    ((3, 32, 32), 10, r"input shape is \[None, 3, 32, 32\]"),
    ((32, 32, 3), 1, r"output shape is \[None, 1\].*at least 2"),
])
def test_model_breaking_the_contract(shape, classes, message, tmp_path):
    _sequential(shape, classes).save(tmp_path / "m.keras")
    with pytest.raises(ModelError, match=message):
        export_model(tmp_path / "m.keras", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_lambda_layer_is_refused_in_safe_mode(tmp_path):
    model = _sequential((32, 32, 3), 10, keras.layers.Lambda(lambda x: x / 255.0))
    model.save(tmp_path / "lambda.keras")
    with pytest.raises(ModelError, match="safe mode"):
        export_model(tmp_path / "lambda.keras", tmp_path / "out")


@pytest.mark.parametrize(("modules", "precisions", "package"), [
    (("tf2onnx", "tf2onnx.constants"), ["fp32"], "tf2onnx"),
    (("onnxconverter_common", "onnxconverter_common.float16"), ["fp16"],
     "onnxconverter-common"),
])
def test_missing_converter_package(modules, precisions, package, cnn_run, data, tmp_path,
                                   monkeypatch):
    run, _ = cnn_run
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)  # `import module` now fails
    with pytest.raises(ExportError, match=f"pip install {package}"):
        export_model(run, tmp_path / "out", precisions=precisions, data=data,
                     parity_images=32, benchmark=False)
    assert not (tmp_path / "out").exists()


def test_fp32_parity_failure_refuses_the_export(cnn_run, data, tmp_path, monkeypatch):
    """A converter that changes the numbers must not produce files."""
    import cifarkit.export.pipeline as pipeline

    run, _ = cnn_run
    real = pipeline.keras_to_onnx

    def skewed(model, opset):
        proto = real(model, opset)
        softmax = next(n for n in proto.graph.node if n.op_type == "Softmax")
        # Temperature 2 before the softmax: still a valid contract graph, different numbers.
        scale = onnx.numpy_helper.from_array(np.array(0.5, np.float32), "skew_scale")
        proto.graph.initializer.append(scale)
        mul = onnx.helper.make_node("Mul", [softmax.input[0], "skew_scale"], ["skewed_logits"])
        softmax.input[0] = "skewed_logits"
        proto.graph.node.insert(list(proto.graph.node).index(softmax), mul)
        return proto

    monkeypatch.setattr(pipeline, "keras_to_onnx", skewed)
    with pytest.raises(ExportError, match=r"does not match the Keras model: max \|Δprob\|"):
        export_model(run, tmp_path / "out", precisions=["fp32"], data=data, parity_images=64,
                     benchmark=False)
    assert not (tmp_path / "out").exists()


# --- bare `cifarkit export`: which runs are stale ------------------------------------------


def test_find_stale_runs(tmp_path):
    runs, exported = tmp_path / "runs", tmp_path / "exported"
    for name in ("fresh", "old", "never", "broken", "interrupted"):
        (runs / name).mkdir(parents=True)
    for name in ("fresh", "old", "never", "interrupted"):
        (runs / name / "model.keras").write_bytes(b"x")
    (runs / "interrupted" / "run.json").write_text(json.dumps({"status": "interrupted"}))
    for name, age in (("fresh", +100), ("old", -100)):
        card = exported / name / "card.json"
        card.parent.mkdir(parents=True)
        card.write_text("{}")
        t = (runs / name / "model.keras").stat().st_mtime + age
        os.utime(card, (t, t))
    stale, skipped = find_stale_runs(runs, exported)
    assert [p.name for p in stale] == ["never", "old"]
    reasons = {p.name: why for p, why in skipped}
    assert reasons["fresh"].startswith("up to date")
    assert "no model.keras" in reasons["broken"] and "interrupted" in reasons["interrupted"]
    with pytest.raises(UsageError, match="no .*runs"):
        find_stale_runs(tmp_path / "nothing", exported)


# --- the command ---------------------------------------------------------------------------


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CIFARKIT_DATA"}  # synthetic data
    env.update(COLUMNS="200", TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "cifarkit", "export", *args], cwd=cwd,
                          capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.slow
def test_cli_bare_export_exports_only_stale_runs(cnn_run, tmp_path):
    run, _ = cnn_run
    shutil.copytree(run, tmp_path / "runs" / "a")
    shutil.copytree(run, tmp_path / "runs" / "b")
    card = tmp_path / "exported" / "b" / "card.json"
    card.parent.mkdir(parents=True)
    card.write_text("{}")  # newer than b's model: up to date
    r = run_cli("--precision", "fp32,int8", "--calibration-images", "20", "--parity-images",
                "50", "--no-reduce-range", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "skip runs/b: up to date" in r.stdout
    for text in ("model.fp32.onnx", "model.int8.onnx", "1.00×", "100.00% top-1"):
        assert text in r.stdout
    assert sorted(p.name for p in (tmp_path / "exported" / "a").iterdir()) == [
        "README.md", "card.json", "model.fp32.onnx", "model.int8.onnx"]
    assert card.read_text() == "{}"
    card_a = json.loads((tmp_path / "exported" / "a" / "card.json").read_text())
    assert card_a["command"].startswith("cifarkit export --precision fp32,int8")
    # Asked for explicitly, whatever this CPU's default, and spelled out for reproduction.
    assert card_a["quantization"]["reduce_range"] is False
    assert "--no-reduce-range" in card_a["reproduce"]
    again = run_cli(cwd=tmp_path)  # now everything is up to date
    assert again.returncode == 0 and "nothing to export" in again.stdout


@pytest.mark.parametrize(("args", "code", "message"), [
    (("missing.keras",), 4, "missing.keras does not exist"),
    (("notes.txt",), 4, "not a Keras model file"),
    (("run", "--opset", "12"), 2, "unsupported opset 12"),
    (("run", "--precision", "int4"), 2, "unknown int4"),
    (("run", "run", "--out", "x"), 2, "--out needs exactly one"),
])
def test_cli_errors_are_one_line_and_exit_nonzero(args, code, message, cnn_run, tmp_path):
    run, _ = cnn_run
    shutil.copytree(run, tmp_path / "run")
    (tmp_path / "notes.txt").write_text("hello")
    r = run_cli(*args, cwd=tmp_path)
    assert r.returncode == code, (r.stdout, r.stderr)
    assert "error:" in r.stderr and message in " ".join(r.stderr.split())
    assert "Traceback" not in r.stderr + r.stdout


# --- real CIFAR-10 -------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.realdata
def test_real_data_trained_cnn_export(real_data, tmp_path):
    """A briefly trained cnn on real images: parity on 1,000 real test images, fp16 within
    0.5 points and int8 within 2 points of fp32 accuracy, accuracy in the metadata.

    (``cnn``, not ``cnn-batchnorm``: two short epochs leave batch-norm's moving statistics
    far from the data, so that model is still at chance level and would prove nothing.)
    """
    from cifarkit.data import load_dataset

    ds = load_dataset(real_data, limit=2500)
    keras.utils.set_random_seed(0)
    model = build("cnn")
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(ds.x_train.astype(np.float32), ds.y_train, epochs=2, batch_size=32, verbose=0)
    run = make_run(tmp_path / "runs" / "cnn", model, {"arch": "cnn", "epochs": 2})
    result = export_model(run, tmp_path / "out", data=ds, calibration_images=200,
                          bench_rounds=3)
    assert not result.synthetic and result.parity.images == 1000
    assert result.test_images == 2500
    assert result.parity.max_abs_diff <= FP32_MAX_ABS_DIFF and result.parity.top1_agreement == 1
    fp32, fp16, int8 = (result.file(p) for p in ("fp32", "fp16", "int8"))
    assert fp32.accuracy > 0.2  # learned something: the checks below are meaningful
    assert abs(fp16.accuracy_delta_vs_fp32) <= 0.005
    assert abs(int8.accuracy_delta_vs_fp32) <= 0.02
    meta = read_metadata(tmp_path / "out" / "model.int8.onnx")
    assert meta["accuracy"] == pytest.approx(int8.accuracy, abs=1e-4)
    assert meta["accuracy_images"] == "2500"
    assert "stratified training images" in meta["quantization"]["calibration_data"]
