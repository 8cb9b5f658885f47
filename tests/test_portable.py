"""Portable exports: graphs other runtimes run (OpenCV DNN, tract), ONNX files as sources,
LiteRT (.tflite fp32 + full-integer int8) and ORT format.

Models are tiny and untrained; each runtime is run for real on the same images as
onnxruntime. Images: 64 real CIFAR-10 test images when ``$CIFARKIT_DATA`` is set, else
class-coloured synthetic ones (the comparisons are between runtimes, so both are meaningful).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from cifarkit.data import Dataset
from cifarkit.errors import ExportError, ModelError, UsageError

keras = pytest.importorskip("keras")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxslim")

from cifarkit.export import (  # noqa: E402
    FP32_MAX_ABS_DIFF,
    check_portable,
    export_model,
    keras_to_onnx,
    make_portable,
    read_metadata,
)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> np.ndarray:
    """uint8 [64, 32, 32, 3]: real test images if available, else synthetic."""
    path = os.environ.get("CIFARKIT_DATA")
    if path and Path(path).is_dir():
        from cifarkit.data import load_dataset
        from tests.conftest import isolated

        with isolated(tmp_path_factory):  # no test writes the user's cache
            return load_dataset(path, limit=640, splits=("test",)).x_test[:64]
    from tests.conftest import synthetic_images

    return synthetic_images(64, seed=3)[0]


@pytest.fixture(scope="module")
def data(images) -> Dataset:
    from tests.conftest import synthetic_images

    x_train, y_train = synthetic_images(120, seed=1)
    # Calibration must span the raw pixel range 0–255 for the uint8 (scale 1) LiteRT input.
    x_train[0], x_train[1] = 0, 255
    return Dataset(x_train, y_train, images, np.arange(len(images)) % 10, source="fixture",
                   kind="fixture")


def tiny_tta_model(flip: str = "FlipBatch"):
    """Rescale → flip TTA → conv/GELU/BN → pool → Flatten → Dense → merge → softmax: the ops
    the shipped models have (the flip, GELU, a Flatten's Reshape)."""
    from cifarkit.models.layers import FlipBatch, MeanHalves, ReverseChannels

    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3), name="images")
    x = keras.layers.Rescaling(1 / 64, offset=-2.0)(inputs)
    x = ReverseChannels()(x) if flip == "ReverseChannels" else x  # keras.ops.flip
    x = FlipBatch(name="tta_flip")(x)
    x = keras.layers.Conv2D(8, 3, strides=2, name="conv")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Activation("gelu")(x)
    x = keras.layers.MaxPooling2D(3)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(10, name="logits")(x)
    x = MeanHalves(name="tta_mean")(x)
    return keras.Model(inputs, keras.layers.Softmax(name="predictions")(x), name="tiny-tta")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    model = tiny_tta_model()
    path = tmp_path_factory.mktemp("src") / "tiny.keras"
    model.save(path)
    return path, model


@pytest.fixture(scope="module")
def edge_export(tiny, data, tmp_path_factory):
    """fp32/fp16/int8 ONNX + fp32/int8 LiteRT + ORT format of the tiny TTA model."""
    path, _ = tiny
    out = tmp_path_factory.mktemp("exported") / "tiny"
    return export_model(path, out, formats=["onnx", "tflite", "ort"], data=data,
                        calibration_images=120, parity_images=64, benchmark=False,
                        runtimes=["all"])


def ops(path) -> set[str]:
    return {n.op_type for n in onnx.load(os.fspath(path)).graph.node}


def onnxruntime_probs(path, x) -> np.ndarray:
    sess = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    return sess.run(["probabilities"], {"images": x})[0]


# --- the graph -------------------------------------------------------------------------------


def test_flip_lowers_to_slice_at_the_source(tiny):
    _, model = tiny
    graph = keras_to_onnx(model).graph
    assert "ReverseSequence" not in {n.op_type for n in graph.node}
    steps = [onnx.numpy_helper.to_array(i).tolist() for i in graph.initializer
             if any(n.op_type == "Slice" and len(n.input) > 4 and n.input[4] == i.name
                    for n in graph.node)]
    assert any(-1 in s for s in steps)  # tf2onnx: steps [1, 1, -1, 1] (mirror W)


def test_reverse_sequence_is_rewritten_and_parity_holds(images):
    """``keras.ops.flip`` (here ReverseChannels, as in the VGG models) still lowers to
    ReverseSequence under tf2onnx: the ONNX pass replaces it with Slice(step −1)."""
    model = tiny_tta_model("ReverseChannels")
    raw = keras_to_onnx(model)
    assert "ReverseSequence" in {n.op_type for n in raw.graph.node}
    with pytest.raises(ExportError, match="ReverseSequence"):
        check_portable(raw)
    portable, report = make_portable(raw)
    assert report.reverse_sequence_to_slice == 1 and "ReverseSequence" not in report.ops_after
    check_portable(portable)
    ref = np.asarray(model(images.astype(np.float32), training=False))
    sess = ort.InferenceSession(portable.SerializeToString(), providers=["CPUExecutionProvider"])
    assert np.abs(sess.run(None, {"images": images})[0] - ref).max() <= FP32_MAX_ABS_DIFF


def test_every_onnx_file_is_portable_with_constant_reshape_and_dynamic_batch(edge_export):
    out = edge_export.out_dir
    assert edge_export.portability.constant_reshapes >= 1
    for p in ("fp32", "fp16", "int8"):
        proto = onnx.load(os.fspath(out / f"model.{p}.onnx"))
        check_portable(proto)  # no ReverseSequence, every Reshape shape a constant
        graph = proto.graph
        inits = {t.name: t for t in graph.initializer}
        for node in (n for n in graph.node if n.op_type == "Reshape"):
            shape = onnx.numpy_helper.to_array(inits[node.input[1]])
            assert shape[0] == -1 and (shape[1:] > 0).all()
        dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
        assert dims == ["batch", 32, 32, 3]
        assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
        meta = read_metadata(out / f"model.{p}.onnx")
        assert meta["precision"] == p and len(meta["class_names"]) == 10
    meta = read_metadata(out / "model.fp32.onnx")
    assert meta["portability"]["simplifier"].startswith("onnxslim")


def test_opencv_and_tract_run_the_files_like_onnxruntime(edge_export, images):
    """fp32 in both, fp16 in OpenCV, int8 (QDQ) in tract. OpenCV DNN 5.1 refuses some QDQ
    graphs (cnn-batchnorm's: ``bufidx >= 0`` in ``argTensor``); tract 0.23 cannot infer the
    flip-TTA merge's Split shapes in the fp16 graph ("Impossible to unify … batch")."""
    cv2 = pytest.importorskip("cv2")
    tract = pytest.importorskip("tract")
    for p, tol in (("fp32", 1e-4), ("fp16", 1e-2), ("int8", 0.05)):
        path = edge_export.out_dir / f"model.{p}.onnx"
        ref = onnxruntime_probs(path, images)
        got = {}
        if p != "fp16":
            runnable = tract.onnx().load(os.fspath(path)).into_model().into_runnable()
            got["tract"] = np.concatenate([runnable.run([images[i:i + 16]])[0].to_numpy()
                                           for i in range(0, len(images), 16)])
        if p != "int8":
            net = cv2.dnn.readNetFromONNX(os.fspath(path))
            for n in (1, len(images)):  # dynamic batch
                net.setInput(images[:n])
                got[f"opencv {n}"] = net.forward()
        for name, probs in got.items():
            n = len(probs)
            assert probs.shape == (n, 10), name
            assert np.abs(probs - ref[:n]).max() <= tol, (p, name)
            if p == "fp32":
                assert (probs.argmax(1) == ref[:n].argmax(1)).all(), (p, name)


# --- LiteRT and ORT format -------------------------------------------------------------------


def test_tflite_fp32_and_full_integer_int8(edge_export, tiny, images):
    from cifarkit.export.litert import interpreter, predict_tflite

    out = edge_export.out_dir
    fp32, int8 = edge_export.file("fp32", "tflite"), edge_export.file("int8", "tflite")
    assert fp32.parity.max_abs_diff <= FP32_MAX_ABS_DIFF and fp32.parity.top1_agreement == 1
    assert int8.parity.images == 64 and int8.size_bytes < fp32.size_bytes
    assert edge_export.tflite_engine.startswith("onnx2tf")
    _, model = tiny
    ref = np.asarray(model(images.astype(np.float32), training=False))
    blob = (out / "model.fp32.tflite").read_bytes()
    assert np.abs(predict_tflite(blob, images, batch_size=5) - ref).max() <= FP32_MAX_ABS_DIFF
    it = interpreter((out / "model.int8.tflite").read_bytes())
    inp = it.get_input_details()[0]
    assert inp["dtype"] == np.uint8 and inp["quantization"] == (1.0, 0)
    assert list(inp["shape_signature"]) == [-1, 32, 32, 3]
    assert it.get_output_details()[0]["dtype"] == np.float32
    kinds = {d["dtype"] for d in it.get_tensor_details() if len(d["shape"]) == 4
             and d["name"] != inp["name"]}
    assert np.int8 in kinds and np.float32 not in kinds  # integer activations throughout
    probs = predict_tflite((out / "model.int8.tflite").read_bytes(), images[:7])
    # Full-integer: the softmax too is int8 (steps of 1/256), so rows sum to 1 within 2%.
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=0.02)
    assert np.abs(probs - ref[:7]).max() < 0.1


def test_ort_format_loads_and_matches(edge_export, images):
    from cifarkit.backends.onnxruntime import cpu_session as ort_session

    for p in ("fp32", "fp16", "int8"):
        path = edge_export.out_dir / f"model.{p}.ort"
        assert path.read_bytes()[4:8] == b"ORTM"  # the flatbuffer's file identifier
        sess = ort_session(path.read_bytes())
        got = sess.run(["probabilities"], {"images": images})[0]
        ref = onnxruntime_probs(edge_export.out_dir / f"model.{p}.onnx", images)
        assert np.abs(got - ref).max() <= 1e-5, p
    assert edge_export.file("fp32", "ort").parity.top1_agreement == 1.0


def test_card_lists_every_file_and_the_portability(edge_export):
    card = json.loads(edge_export.card_path.read_text())
    names = sorted(f["file"] for f in card["files"])
    assert names == sorted(p.name for p in edge_export.out_dir.glob("model.*"))
    assert {f["format"] for f in card["files"]} == {"onnx", "tflite", "ort"}
    assert card["formats"] == ["onnx", "tflite", "ort"]
    assert "--format onnx,tflite,ort" in card["reproduce"]
    readme = edge_export.readme_path.read_text()
    assert "## Portable graph" in readme and "`model.int8.tflite`" in readme
    assert "ReverseSequence" not in json.dumps(card["portability"]["ops_after"])


# --- an ONNX file as the source --------------------------------------------------------------


def test_reexport_from_the_fp32_onnx_file(edge_export, data, tmp_path):
    src = tmp_path / "shipped" / "tiny"
    src.mkdir(parents=True)
    for name in ("model.fp32.onnx", "card.json"):
        (src / name).write_bytes((edge_export.out_dir / name).read_bytes())
    result = export_model(src / "model.fp32.onnx", src, precisions=["fp32", "int8"],
                          data=data, calibration_images=60, parity_images=64,
                          benchmark=False)
    assert result.name == "tiny"
    assert result.parity.max_abs_diff <= FP32_MAX_ABS_DIFF
    assert result.parity.top1_agreement == 1.0
    card = result.card
    assert card["source"]["kind"] == "onnx"
    assert card["parity_reference"] == "the source model.fp32.onnx"
    assert card["params"] == edge_export.card["params"]  # carried from the matching card
    assert card["reproduce"].startswith(f"cifarkit export {src / 'model.fp32.onnx'} ")
    meta = read_metadata(src / "model.fp32.onnx")
    assert meta["derived_from"]["keras_file"] == "tiny.keras"
    assert meta["parity_reference"] == "the source model.fp32.onnx"
    again = onnxruntime_probs(src / "model.fp32.onnx", data.x_test)
    first = onnxruntime_probs(edge_export.out_dir / "model.fp32.onnx", data.x_test)
    assert np.abs(again - first).max() <= FP32_MAX_ABS_DIFF
    with pytest.raises(ModelError, match="export from the fp32 file"):
        export_model(edge_export.out_dir / "model.int8.onnx", tmp_path / "x", data=data)
    with pytest.raises(UsageError, match="--tta needs a Keras source"):
        export_model(src / "model.fp32.onnx", tmp_path / "y", data=data, tta=0)


# --- the shipped files -----------------------------------------------------------------------

SHIPPED = sorted((Path(__file__).resolve().parents[1] / "exported").glob("*/model.*.onnx"))


@pytest.mark.parametrize("path", SHIPPED, ids=[f"{p.parent.name}/{p.name}" for p in SHIPPED])
def test_shipped_files_are_portable_and_run_in_opencv_and_tract(path, images):
    """Every shipped file: no ReverseSequence, constant shapes, and it runs like onnxruntime
    (top-1; fp32 also the probabilities) in OpenCV DNN (fp32, fp16: see above for int8) and
    tract (fp32, int8: see above for fp16)."""
    cv2 = pytest.importorskip("cv2")
    tract = pytest.importorskip("tract")
    check_portable(onnx.load(os.fspath(path)))
    x = images[:16]
    ref = onnxruntime_probs(path, x)
    got = {}
    if ".int8." not in path.name:
        net = cv2.dnn.readNetFromONNX(os.fspath(path))
        net.setInput(x)
        got["opencv"] = net.forward()
    if ".fp16." not in path.name:
        runnable = tract.onnx().load(os.fspath(path)).into_model().into_runnable()
        got["tract"] = runnable.run([x])[0].to_numpy()
    for name, probs in got.items():
        assert probs.shape == (16, 10), name
        if ".fp32." in path.name:
            assert np.abs(probs - ref).max() <= 1e-4, name
        assert np.mean(probs.argmax(1) == ref.argmax(1)) >= 0.9, name


def test_card_runs_in_table_from_every_runtime(edge_export):
    """The card's "runs in" table: each ONNX file run in all five runtimes on the test images
    (litert on the .tflite sibling), a failure kept with the runtime's own reason."""
    card = edge_export.card
    runs = card["runs_in"]
    assert set(runs) == {"fp32", "fp16", "int8"}
    n = card["evaluation"]["test_images"]
    fp32 = {r["runtime"]: r for r in runs["fp32"]}
    assert list(fp32) == ["onnxruntime", "openvino", "opencv", "tract", "litert"]
    for name, r in fp32.items():
        assert r["status"] == "ok", r
        assert r["n_images"] == n and r["agreement"] >= 0.95 and r["p50_ms_batch1"] > 0
        assert r["file"] == ("model.fp32.tflite" if name == "litert" else "model.fp32.onnx")
    assert fp32["onnxruntime"]["agreement"] == 1.0 and fp32["tract"]["max_abs_diff"] < 1e-4
    tract16 = {r["runtime"]: r for r in runs["fp16"]}["tract"]
    assert tract16["status"] == "failed" and tract16["reason"] and "/tmp" not in \
        tract16["reason"]
    assert f"{n:,} CIFAR-10 test images" in card["runs_in_setup"]
    readme = (edge_export.out_dir / "README.md").read_text()
    assert "## Runs in" in readme and "| tract |" in readme
    assert "--runs-in all " in card["reproduce"] + " "  # calibration's flags may follow
