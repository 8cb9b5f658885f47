"""Runtimes other than onnxruntime (``cifarkit.backends``), each run for real on small real
models: a tiny portable contract model built here (Cast → Slice flip → Conv/Relu/MaxPool →
Reshape[-1, N] → Gemm → Softmax, dynamic batch; its head fitted by least squares) in fp32
and int8 (QDQ, made by cifarkit's own int8 path), and a tiny Keras model converted by
TensorFlow's own TFLite converter (fp32, and full-integer with uint8 input) for LiteRT.
Images: the real CIFAR-10 test images when ``CIFARKIT_DATA`` is set, else class-coloured
synthetic ones (what is checked is agreement between runtimes, not accuracy). Then the
bench CLI with ``--runtime``: rows, an unavailable runtime, explicit-but-absent and
explicit-but-unable exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from cifarkit.backends import (
    RUNTIMES,
    agreement,
    get_runtime,
    matrix,
    resolve_runtimes,
    runs_in_markdown,
)
from cifarkit.errors import RuntimeModelError, RuntimeUnavailableError
from tests.conftest import synthetic_images
from tests.onnx_fixtures import _metadata, _opset, _save, default_metadata

N_IMAGES = 240  # the first half fits the head / calibrates int8, the second is compared
ONNX_RUNTIMES = ("openvino", "opencv", "tract")  # the non-reference runtimes reading ONNX


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, np.ndarray]:
    path = os.environ.get("CIFARKIT_DATA")
    if path and Path(path).is_dir():
        from cifarkit.data import load_dataset

        with pytest.MonkeyPatch.context() as mp:  # no test writes the user's cache
            mp.setenv("CIFARKIT_CACHE", str(tmp_path_factory.mktemp("cache")))
            ds = load_dataset(path, limit=N_IMAGES, seed=0, splits=("test",))
        order = np.random.default_rng(0).permutation(N_IMAGES)  # both halves hold all classes
        return ds.x_test[order], ds.y_test[order]
    return synthetic_images(N_IMAGES, seed=3)


def _node(op: str, inputs: list[str], outputs: list[str], **attrs) -> onnx.NodeProto:
    # Named nodes: int8 quantization excludes the output Softmax by node name.
    return helper.make_node(op, inputs, outputs, name=f"{op.lower()}_{outputs[0]}", **attrs)


def portable_model(path: Path, fit_x: np.ndarray, fit_y: np.ndarray, *, seed: int = 0,
                   variable_reshape: bool = False, reverse_sequence: bool = False) -> Path:
    """The contract (uint8 [batch,32,32,3] → probabilities [batch,10]) with only ops the
    edge runtimes implement: the flip TTA as ``Slice`` with step −1, ``Reshape`` to a
    constant ``[-1, 512]``. Random conv features; the Gemm head is the least-squares fit of
    one-hot labels on ``fit_x``, so the predictions spread over the classes.
    ``variable_reshape`` / ``reverse_sequence``: the two constructs the shipped files had
    (the flatten shape computed from the batch; the flip as ``ReverseSequence``)."""
    import onnxruntime as ort

    rng = np.random.default_rng(seed)
    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
    inits = [
        numpy_helper.from_array(f32(1 / 255), "scale"),
        numpy_helper.from_array(f32(rng.normal(0, 0.5, (8, 3, 3, 3))), "conv_w"),
        numpy_helper.from_array(f32(rng.normal(0, 0.1, 8)), "conv_b"),
        numpy_helper.from_array(f32(0.5), "half"),
    ]
    nodes = [
        _node("Cast", ["images"], ["x_f"], to=TensorProto.FLOAT),
        _node("Mul", ["x_f", "scale"], ["x01"]),
    ]
    if reverse_sequence:  # tf2onnx's ReverseV2: W to the front, one sequence per image
        inits += [numpy_helper.from_array(np.full(1, 32, np.int64), "seq_32"),
                  numpy_helper.from_array(np.array([0], np.int64), "axis0")]
        nodes += [
            _node("Shape", ["x01"], ["shape_in"]),
            _node("Gather", ["shape_in", "axis0"], ["batch_n"], axis=0),
            _node("Expand", ["seq_32", "batch_n"], ["seq_lens"]),
            _node("Transpose", ["x01"], ["wnhc"], perm=[2, 0, 1, 3]),
            _node("ReverseSequence", ["wnhc", "seq_lens"], ["rev"], batch_axis=1, time_axis=0),
            _node("Transpose", ["rev"], ["flipped"], perm=[1, 3, 2, 0]),  # → N, C, H, W
            _node("Transpose", ["x01"], ["nchw"], perm=[0, 3, 1, 2]),
        ]
    else:
        inits += [numpy_helper.from_array(np.array([v], np.int64), n) for n, v in (
            ("flip_start", -1), ("flip_end", -(2**63)), ("flip_axis", 3), ("flip_step", -1))]
        nodes += [
            _node("Transpose", ["x01"], ["nchw"], perm=[0, 3, 1, 2]),
            _node("Slice", ["nchw", "flip_start", "flip_end", "flip_axis", "flip_step"],
                  ["flipped"]),
        ]
    for tag, src in (("a", "nchw"), ("b", "flipped")):
        nodes += [
            _node("Conv", [src, "conv_w", "conv_b"], [f"c_{tag}"], kernel_shape=[3, 3],
                  pads=[1, 1, 1, 1]),
            _node("Relu", [f"c_{tag}"], [f"r_{tag}"]),
            _node("MaxPool", [f"r_{tag}"], [f"p_{tag}"], kernel_shape=[4, 4], strides=[4, 4]),
        ]
    nodes += [_node("Add", ["p_a", "p_b"], ["sum"]), _node("Mul", ["sum", "half"], ["avg"])]
    if variable_reshape:  # Flatten as tf2onnx wrote it in the shipped cnn-batchnorm
        inits += [numpy_helper.from_array(np.array([v], np.int64), n)
                  for n, v in (("zero", 0), ("one", 1))]
        inits.append(numpy_helper.from_array(np.array([512], np.int32), "flat_n"))
        nodes += [_node("Shape", ["avg"], ["avg_shape"]),
                  _node("Cast", ["avg_shape"], ["avg_shape32"], to=TensorProto.INT32),
                  _node("Slice", ["avg_shape32", "zero", "one", "zero"], ["avg_n"]),
                  _node("Concat", ["avg_n", "flat_n"], ["flat_shape32"], axis=0),
                  _node("Cast", ["flat_shape32"], ["flat_shape"], to=TensorProto.INT64)]
    else:
        inits.append(numpy_helper.from_array(np.array([-1, 512], np.int64), "flat_shape"))
    nodes.append(_node("Reshape", ["avg", "flat_shape"], ["flat"]))

    def graph(out_nodes, outputs, extra_inits=()):
        g = helper.make_graph(
            nodes + out_nodes, "portable",
            [helper.make_tensor_value_info("images", TensorProto.UINT8, ["batch", 32, 32, 3])],
            outputs, initializer=inits + list(extra_inits))
        m = helper.make_model(g, opset_imports=_opset(), producer_name="cifarkit-tests")
        m.ir_version = 8
        return m

    features = graph([], [helper.make_tensor_value_info("flat", TensorProto.FLOAT,
                                                        ["batch", 512])])
    sess = ort.InferenceSession(features.SerializeToString(), providers=["CPUExecutionProvider"])
    feats = sess.run(None, {"images": fit_x})[0].astype(np.float64)
    design = np.hstack([feats, np.ones((len(feats), 1))])
    target = 8.0 * (np.eye(10)[fit_y] - 0.1)  # logits a few units apart
    coef = np.linalg.solve(design.T @ design + 1e-1 * np.eye(design.shape[1]),
                           design.T @ target)
    head = [numpy_helper.from_array(f32(coef[:-1]), "fc_w"),
            numpy_helper.from_array(f32(coef[-1]), "fc_b")]
    model = graph(
        [_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"]),
         _node("Softmax", ["logits"], ["probabilities"], axis=-1)],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 10])],
        head,
    )
    _metadata(model, default_metadata(architecture="portable-test"))
    return _save(model, path)


@pytest.fixture(scope="module")
def portable(tmp_path_factory, images) -> Path:
    """A folder with the portable model.fp32.onnx and its int8 (QDQ, S8S8, per channel:
    ``cifarkit.export.quantize.quantize_int8``, as the shipped int8 files are made).

    ``reduce_range=True`` (7-bit weights, as the shipped default is exported), not the
    exporter's per-machine default, so the file is the same on every CPU: with 8-bit weights
    onnxruntime's (and OpenVINO's) ``vpmaddubsw`` kernels saturate on CPUs without VNNI
    (real images, AMD EPYC Zen 3: 0.79 top-1 agreement with fp32, tract's exact int32
    arithmetic 0.95 on the same file), and every runtime would be compared with a
    saturated reference."""
    from cifarkit.export.quantize import quantize_int8

    x, y = images
    half = N_IMAGES // 2
    root = tmp_path_factory.mktemp("portable")
    fp32 = portable_model(root / "model.fp32.onnx", x[:half], y[:half])
    q, info = quantize_int8(onnx.load(fp32), x[:half], reduce_range=True)
    assert info.reduce_range
    q.ir_version = 8
    del q.metadata_props[:]
    _metadata(q, default_metadata("int8", architecture="portable-test"))
    _save(q, root / "model.int8.onnx")
    assert any(n.op_type == "QuantizeLinear" for n in q.graph.node)
    return root


def _reference(path: Path, x: np.ndarray) -> np.ndarray:
    with get_runtime("onnxruntime").open(path, threads=1) as m:
        return m.predict_proba(x)


# --- the registry ---------------------------------------------------------------------------


def test_registry_and_no_optional_import_until_a_model_is_opened():
    assert RUNTIMES == ("onnxruntime", "openvino", "opencv", "tract", "litert")
    assert resolve_runtimes(None) == ["onnxruntime"]
    assert resolve_runtimes(["all"]) == list(RUNTIMES)
    assert resolve_runtimes(["tract", "opencv", "tract"]) == ["tract", "opencv"]
    with pytest.raises(Exception, match="unknown runtime 'mnn'"):
        resolve_runtimes(["mnn"])
    for name in RUNTIMES:
        rt = get_runtime(name)
        assert rt.name == name and rt.package and "pip install" in rt.install_hint
        assert rt.problem() is None and rt.version(), name  # the runtimes extra is installed
    code = ("import sys, cifarkit.backends, cifarkit.cli.bench_cmd\n"
            "for n in cifarkit.backends.RUNTIMES:\n    cifarkit.backends.get_runtime(n)\n"
            "print([m for m in ('cv2', 'openvino', 'tract', 'ai_edge_litert', 'onnxruntime',"
            " 'tensorflow') if m in sys.modules])")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert res.stdout.strip() == "[]", res.stdout + res.stderr


def test_backend_names_with_execution_providers(portable):
    from cifarkit.backends import BACKENDS, open_backend, parse_backend
    from cifarkit.errors import UsageError

    assert parse_backend("onnxruntime:cuda") == ("onnxruntime", "cuda")
    assert parse_backend("onnxruntime:openvino") == ("onnxruntime", "openvino")
    assert parse_backend("openvino") == ("openvino", None)  # OpenVINO's own runtime
    assert parse_backend("onnxruntime") == ("onnxruntime", None)
    assert "onnxruntime:tensorrt" in BACKENDS and "litert" in BACKENDS
    for bad, why in (("onnxruntime:tpu", "unknown provider 'tpu'"),
                     ("openvino:cuda", "openvino takes no execution provider"),
                     ("mnn", "unknown backend")):
        with pytest.raises(UsageError, match=why) as err:
            parse_backend(bad)
        assert "choose from onnxruntime, onnxruntime:cpu, onnxruntime:cuda" in str(err.value)
    with open_backend("onnxruntime:cpu", portable / "model.fp32.onnx", threads=1) as m:
        assert (m.name, m.provider, m.active_providers) == ("onnxruntime", "cpu", ["cpu"])
        assert m.classifier.provider == "cpu" and m.image_size == 32
    with open_backend("tract", portable / "model.fp32.onnx") as m:
        assert (m.name, m.provider, m.active_providers) == ("tract", "cpu", ["tract"])
    with pytest.raises(UsageError, match="I/O binding is onnxruntime's"):
        open_backend("tract", portable / "model.fp32.onnx", io_binding=True)


# --- every ONNX runtime against onnxruntime, on real images ----------------------------------


@pytest.mark.parametrize("precision", ["fp32", "int8"])
@pytest.mark.parametrize("name", ONNX_RUNTIMES)
def test_runtime_agrees_with_onnxruntime(portable, images, name, precision):
    x = images[0][N_IMAGES // 2:]
    path = portable / f"model.{precision}.onnx"
    ref = _reference(path, x)
    assert len(set(ref.argmax(1).tolist())) >= 4  # a model whose predictions vary
    if name == "opencv" and precision == "int8":
        # OpenCV DNN 5.1 does not take QDQ graphs: it must say so in one line, not crash
        with pytest.raises(RuntimeModelError, match="opencv cannot run this model: OpenCV"
                                                    r"\(5.*Assertion failed") as err:
            get_runtime(name).open(path)
        assert "\n" not in str(err.value)
        return
    with get_runtime(name).open(path, threads=2) as model:
        probs = model.predict_proba(x, chunk=50)
        # dynamic batch: one call per batch size, each the same as the chunked pass
        for n in (1, 7, 64):
            np.testing.assert_allclose(model.run_batch(x[:n]), probs[:n], atol=1e-5)
        assert model.threads == (1 if name == "tract" else 2)  # tract: no thread pool
        assert model.classes[0] == "airplane" and model.input_kind == "uint8"
    agree, diff = agreement(probs, ref)
    if precision == "fp32":
        assert agree == 1.0 and diff < 1e-4, (name, agree, diff)
    else:
        # QDQ: every runtime quantizes the same scales, but rounds/fuses in its own way
        assert agree >= 0.95 and diff < 0.1, (name, agree, diff)
        # Against fp32: the head is a least-squares fit that interpolates its 120 images, so
        # held-out logits are large cancelling sums that 7-bit weights move (real images:
        # 0.86 agreement, every flip where fp32's top-2 margin is under 0.23; synthetic:
        # 1.0). A saturating kernel flips confident images too (8-bit weights in
        # onnxruntime without VNNI: 0.79, margins up to 0.54).
        fp32 = _reference(portable / "model.fp32.onnx", x)
        assert agreement(probs, fp32)[0] >= 0.8, (name, agreement(probs, fp32))
        top2 = np.sort(fp32, axis=1)[:, -2:]
        sure = top2[:, 1] - top2[:, 0] > 0.25
        assert sure.mean() > 0.4
        assert agreement(probs[sure], fp32[sure])[0] == 1.0, name


@pytest.mark.parametrize("name", ["opencv", "tract"])
def test_refusals_carry_the_runtimes_own_reason_in_one_line(tmp_path, images, name):
    """The two constructs of the old shipped graphs: OpenCV and tract refuse
    ``ReverseSequence``, tract the Reshape whose shape is computed from the batch."""
    x, y = images
    rev = portable_model(tmp_path / "rev.onnx", x[:50], y[:50], reverse_sequence=True)
    assert (_reference(rev, x[:8]).argmax(1) == _reference(
        portable_model(tmp_path / "ok.onnx", x[:50], y[:50]), x[:8]).argmax(1)).all()
    with pytest.raises(RuntimeModelError) as err:
        get_runtime(name).open(rev)
    msg = str(err.value)
    assert "\n" not in msg and "ReverseSequence" in msg and f"{name} cannot run" in msg
    assert err.value.exit_code == 4
    if name == "tract":
        var = portable_model(tmp_path / "var.onnx", x[:50], y[:50], variable_reshape=True)
        with pytest.raises(RuntimeModelError, match="shape input is variable") as err:
            get_runtime("tract").open(var)
        assert "\n" not in str(err.value) and "Reshape" in str(err.value)
        with get_runtime("openvino").open(var) as m:  # OpenVINO takes it
            assert m.run_batch(x[:3]).shape == (3, 10)


def test_absent_package_is_reported_with_the_pip_command(monkeypatch, portable):
    # The import fails as it does when the package is not installed (None in sys.modules
    # makes `import tract` raise ImportError): this tests our reporting, not tract.
    monkeypatch.setitem(sys.modules, "tract", None)
    rt = get_runtime("tract")
    assert not rt.available and "pip install tract" in rt.problem()
    with pytest.raises(RuntimeUnavailableError, match="unavailable: .*pip install tract") as err:
        rt.open(portable / "model.fp32.onnx")
    assert err.value.exit_code == 6


def test_onnxruntime_adapter_runs_ort_format_files(tmp_path, portable, images):
    import onnxruntime as ort

    x = images[0][:32]
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "model.fp32.ort")
    so.add_session_config_entry("session.save_model_format", "ORT")
    ort.InferenceSession(str(portable / "model.fp32.onnx"), so,
                         providers=["CPUExecutionProvider"])
    assert (tmp_path / "model.fp32.ort").read_bytes()[4:8] == b"ORTM"  # the ORT format
    with get_runtime("onnxruntime").open(tmp_path / "model.fp32.ort", threads=1) as m:
        probs = m.predict_proba(x)
        assert m.provider == "cpu" and m.active_providers == ["cpu"]
    np.testing.assert_allclose(probs, _reference(portable / "model.fp32.onnx", x), atol=1e-5)


def test_matrix_rows_for_the_model_card(monkeypatch, portable, images):
    x, y = images
    monkeypatch.setitem(sys.modules, "cv2", None)  # simulated absence, as above
    rows = {r.runtime: r for r in matrix(portable / "model.fp32.onnx", x[:64], y[:64],
                                         threads=1, warmup=1, duration=0.05)}
    assert list(rows) == list(RUNTIMES)
    assert rows["onnxruntime"].agreement == 1.0 and rows["onnxruntime"].max_abs_diff == 0.0
    for name in ("openvino", "tract"):
        r = rows[name]
        assert r.status == "ok" and r.agreement == 1.0 and r.p50_ms_batch1 > 0, r
        assert r.top1 == rows["onnxruntime"].top1 and r.version
    assert rows["opencv"].status == "unavailable" and "opencv-python-headless" in \
        rows["opencv"].reason
    assert rows["litert"].status == "failed"
    assert "cifarkit export --format tflite" in rows["litert"].reason
    md = runs_in_markdown(list(rows.values()))
    assert md[0].startswith("| runtime | version | top-1 |") and len(md) == 2 + len(RUNTIMES)
    assert "| openvino | " in md[3] and "100.00 %" in md[3]


# --- the second output, score ---------------------------------------------------------------


@pytest.fixture(scope="module")
def scored(tmp_path_factory) -> Path:
    """``onnx_fixtures.scored_model`` (probabilities and score) and, beside it, the same two
    outputs as a hand-written .tflite file (score ``[batch, 1]``, listed first)."""
    from tests.onnx_fixtures import scored_model, scored_tflite

    root = tmp_path_factory.mktemp("scored")
    scored_tflite(root / "model.fp32.tflite")
    return scored_model(root / "model.fp32.onnx")


@pytest.mark.parametrize("name", RUNTIMES)
def test_every_runtime_returns_the_score_output(scored, images, name):
    from tests.onnx_fixtures import expected_score

    x = images[0][:60]
    expected = expected_score(x)
    with get_runtime(name).open(scored, threads=1) as m:
        assert m.has_score
        probs, score = m.predict_scored(x, chunk=25)
        assert score.dtype == np.float32 and score.shape == (60,)
        np.testing.assert_allclose(score, expected, atol=1e-3 * (1 + np.abs(expected).max()))
        np.testing.assert_allclose(probs, _reference(scored, x), atol=1e-4)
        p7, s7 = m.run_outputs(x[:7])
        np.testing.assert_allclose(s7, score[:7], atol=1e-4)
        np.testing.assert_allclose(m.run_batch(x[:7]), p7, atol=1e-6)


def test_runtimes_without_a_score_output_and_refused_ones(tmp_path, portable, images):
    from cifarkit.errors import ModelError
    from tests.onnx_fixtures import scored_model, scored_tflite

    x = images[0][:3]
    for name in ONNX_RUNTIMES:
        with get_runtime(name).open(portable / "model.fp32.onnx") as m:
            assert not m.has_score and m.run_outputs(x)[1] is None
        bad = scored_model(tmp_path / "rank2.onnx", score_rank=2)  # [batch, 1]: not in ONNX
        with pytest.raises(ModelError, match=r"rank2\.onnx: output 'score' is float32 \[\?, 1\]"):
            get_runtime(name).open(bad)
    scored_model(tmp_path / "model.fp32.onnx")
    with get_runtime("litert").open(scored_tflite(tmp_path / "model.fp32.tflite",
                                                  score_rank=1)) as m:  # [batch] too
        assert m.has_score and m.run_outputs(x)[1].shape == (3,)
    with pytest.raises(ModelError, match=r"int\.tflite: output 'score' is int32 \[1, 1\]"):
        get_runtime("litert").open(scored_tflite(tmp_path / "int.tflite", score_type="int32"))


def test_matrix_compares_the_score_output(scored, images):
    from cifarkit.backends import score_agreement

    x, y = images
    rows = {r.runtime: r for r in matrix(scored, x[:40], y[:40], threads=1, warmup=0,
                                         duration=0.02)}
    assert rows["onnxruntime"].score_max_abs_diff == 0.0
    for name in RUNTIMES:
        r = rows[name]
        assert r.status == "ok" and r.score_agrees and r.score_max_abs_diff < 1e-3, r
    md = runs_in_markdown(list(rows.values()))
    assert "; score " in md[2] and "(differs)" not in "".join(md)
    ref = np.array([0.0, 100.0])
    assert score_agreement(ref + [0.009, 1.0], ref) == pytest.approx((1.0, True))
    assert score_agreement(ref + [0.02, 0.0], ref)[1] is False  # 1e-2 × (1 + 0)
    rows["tract"].score_agrees = False
    assert "(differs)" in runs_in_markdown([rows["tract"]])[2]


# --- LiteRT: TensorFlow's own converter -------------------------------------------------------


@pytest.fixture(scope="module")
def keras_tflite(tmp_path_factory, images):
    """A tiny Keras model (raw 0–255 input, scaling inside, as cifarkit's models), its
    probabilities, and a folder with model.fp32.onnx (cifarkit's tf2onnx export),
    model.fp32.tflite and model.int8.tflite (full integer, uint8 in and out), both from
    ``tf.lite.TFLiteConverter.from_keras_model``."""
    with pytest.MonkeyPatch.context() as mp:  # Keras reads/writes no user config
        mp.setenv("KERAS_HOME", str(tmp_path_factory.mktemp("keras")))
        return _keras_tflite(tmp_path_factory, images)


def _keras_tflite(tmp_path_factory, images):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf

    from cifarkit.export import keras_to_onnx

    x, y = images
    half = N_IMAGES // 2
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((32, 32, 3), name="images"), keras.layers.Rescaling(1 / 255),
        keras.layers.Conv2D(8, 3, activation="relu"), keras.layers.MaxPooling2D(4),
        keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax"),
    ])
    # Trained to confident (overfitted) outputs, so int8's rounding meets few near-ties.
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    model.fit(x[:half].astype(np.float32), y[:half], epochs=30, batch_size=40, verbose=0)
    root = tmp_path_factory.mktemp("tflite")
    proto = keras_to_onnx(model)
    _metadata(proto, default_metadata(architecture="keras-tiny"))
    _save(proto, root / "model.fp32.onnx")
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    (root / "model.fp32.tflite").write_bytes(conv.convert())

    # Every training image, as cifarkit's own exporter calibrates (every 10th was one
    # class of the synthetic images, whose labels are i % 10).
    def representative():
        for i in range(half):
            yield [x[i:i + 1].astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.uint8
    conv.inference_output_type = tf.uint8
    (root / "model.int8.tflite").write_bytes(conv.convert())
    probs = np.asarray(model(x[half:].astype(np.float32), training=False))
    return root, probs


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_litert_runs_tflite_files_like_keras(keras_tflite, images, precision):
    root, keras_probs = keras_tflite
    x = images[0][N_IMAGES // 2:]
    with get_runtime("litert").open(root / f"model.{precision}.tflite", threads=2) as m:
        assert m.input_kind == ("float32" if precision == "fp32" else "uint8")
        probs = m.predict_proba(x, chunk=50)
        np.testing.assert_allclose(m.run_batch(x[:5]), probs[:5], atol=1e-6)
        assert m.classes[0] == "airplane"  # from the sibling ONNX file's metadata
    agree, diff = agreement(probs, keras_probs)
    if precision == "fp32":
        assert agree == 1.0 and diff < 1e-4, (agree, diff)
    else:  # dequantized uint8 output (scale 1/256), int8 weights and activations
        # Mean, not max, |Δp|: the max over 1,200 outputs is the one worst image (0.008 to
        # 0.23 over 8 training seeds of this model on real images, each file keeping every
        # sure image); the mean is 0.0012–0.0035 over 8 seeds of real and of synthetic
        # images, under one output step (1/256), and 0.051 for a file calibrated on one class.
        mean_diff = float(np.abs(probs - keras_probs).mean())
        assert agree >= 0.9 and mean_diff < 0.01, (agree, diff, mean_diff)
        # flips only where Keras itself hesitates (top-2 margin under 0.05)
        top2 = np.sort(keras_probs, axis=1)[:, -2:]
        sure = top2[:, 1] - top2[:, 0] > 0.05
        assert sure.mean() > 0.5
        assert agreement(probs[sure], keras_probs[sure])[0] >= 0.98


def test_litert_finds_the_sibling_tflite_of_an_onnx_file(keras_tflite, portable):
    root, _ = keras_tflite
    with get_runtime("litert").open(root / "model.fp32.onnx") as m:
        assert m.path == root / "model.fp32.tflite"
    with pytest.raises(RuntimeModelError, match="no model.int8.tflite beside it.*cifarkit "
                                                "export --format tflite"):
        get_runtime("litert").open(portable / "model.int8.onnx")


# --- the bench CLI ----------------------------------------------------------------------------


def _cli(*args: str, cwd: Path, pre: str = "") -> subprocess.CompletedProcess:
    """``cifarkit`` in a child process; ``pre``: Python run first (to hide a package)."""
    code = (f"{pre}\nimport sys\nfrom cifarkit.cli import main\n"
            f"sys.argv = ['cifarkit', *{list(args)!r}]\nmain()\n")
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


def _write_data(root: Path, images) -> Path:
    from PIL import Image

    from cifarkit.data import CLASSES

    x, y = images
    half = N_IMAGES // 2
    for c, name in enumerate(CLASSES):  # 4 held-out images of every class (lossless PNG)
        d = root / "test" / name
        d.mkdir(parents=True)
        for i in half + np.flatnonzero(y[half:] == c)[:4]:
            Image.fromarray(x[i]).save(d / f"{i}.png")
    return root


def test_cli_bench_runtime_all(keras_tflite, images, tmp_path):
    """Every runtime on one file (ONNX from cifarkit's tf2onnx export + LiteRT's sibling
    .tflite), with OpenCV hidden: its row says unavailable. tract refuses tf2onnx's Flatten
    (a Reshape shape computed from the batch): its row says so, the others are measured,
    the reports are written and the exit code is 4."""
    root, _ = keras_tflite
    data = _write_data(tmp_path / "data", images)
    out = tmp_path / "out"
    res = _cli("bench", str(root / "model.fp32.onnx"), "--runtime", "all", "--data", str(data),
               "-b", "1,8", "--iterations", "3", "--warmup", "1", "-p", "cpu",
               "--json", str(out / "b.json"), "--markdown", str(out / "RESULTS.md"),
               cwd=tmp_path, pre="import sys; sys.modules['cv2'] = None")
    assert res.returncode == 4, res.stdout + res.stderr
    last = "error: " + " ".join(res.stderr.rsplit("error: ", 1)[1].split())
    assert last.startswith("error: model.fp32.onnx: tract cannot run this model: "), last
    report = json.loads((out / "b.json").read_text())
    status = {r["runtime"]: r["status"] for r in report["runtimes"]}
    assert status == {"onnxruntime": "ok", "openvino": "ok", "tract": "ok", "litert": "ok",
                      "opencv": "unavailable"}
    cv = next(r for r in report["runtimes"] if r["runtime"] == "opencv")
    assert "pip install opencv-python-headless" in cv["reason"]
    [failed] = report["runtime_failures"]
    assert failed["runtime"] == "tract" and "shape input is variable" in failed["reason"]
    acc = {a["runtime"]: a for a in report["accuracy"]}
    assert set(acc) == {"onnxruntime", "openvino", "litert"}
    for a in acc.values():
        assert a["agreement_top1"] == 1.0 and a["max_abs_diff"] < 1e-4, a
        assert a["top1"] == acc["onnxruntime"]["top1"]
    lat = {(r["runtime"], r["batch_size"]) for r in report["latency"] if r["status"] == "ok"}
    assert lat == {(rt, bs) for rt in acc for bs in (1, 8)}
    matrix_status = {r["runtime"]: r["status"] for r in report["runtime_matrix"]}
    assert matrix_status == {**status, "tract": "failed"}
    md = (out / "RESULTS.md").read_text()
    assert "## Runtimes" in md and "| litert | cpu | 2 | " in md
    assert "unavailable: cv2 does not import" in md and "![runtimes](figures/runtimes.png)" in md
    assert (out / "figures" / "runtimes.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| tract | cpu |  | failed: model.fp32.onnx: tract cannot run" in md
    assert "runtimes: top-1, agreement with onnxruntime" in res.stdout
    assert "opencv: unavailable: cv2 does not import" in res.stdout


def test_cli_bench_explicit_runtime_absent_or_unable(portable, images, tmp_path):
    data = _write_data(tmp_path / "data", images)
    # explicit and absent: exit 6 with the pip command, before any work
    res = _cli("bench", str(portable / "model.fp32.onnx"), "--runtime", "tract",
               "--data", str(data), cwd=tmp_path, pre="import sys; sys.modules['tract'] = None")
    assert res.returncode == 6, res.stdout + res.stderr
    assert "runtime tract: unavailable" in res.stderr and "pip install tract" in res.stderr
    assert res.stdout == "" and "Traceback" not in res.stderr
    # explicit and unable: the sweep runs, the reports are written, exit 4 with the reason
    res = _cli("bench", str(portable / "model.int8.onnx"), "--runtime", "onnxruntime,litert",
               "--data", str(data), "-b", "1", "--iterations", "2", "--warmup", "0", "-p",
               "cpu", "-q", "--json", str(tmp_path / "b.json"), cwd=tmp_path)
    assert res.returncode == 4, res.stdout + res.stderr
    # the last message (rich wraps it to the terminal's width; the message is one line)
    last = "error: " + " ".join(res.stderr.rsplit("error: ", 1)[1].split())
    assert last.startswith("error: model.int8.onnx: litert runs .tflite files"), last
    assert "cifarkit export --format tflite" in last
    report = json.loads((tmp_path / "b.json").read_text())
    assert report["runtime_failures"][0]["runtime"] == "litert"
    assert [a["runtime"] for a in report["accuracy"]] == ["onnxruntime"]


def test_model_card_runs_in_section(portable, images):
    from cifarkit.export.card import _runs_in_lines

    x, y = images
    rows = matrix(portable / "model.fp32.onnx", x[:32], y[:32], ["onnxruntime", "tract"],
                  threads=1, warmup=0, duration=0.02)
    card = {"runs_in": {"fp32": [r.to_dict() for r in rows]},
            "runs_in_setup": "32 CIFAR-10 test images, this CPU."}
    text = "\n".join(_runs_in_lines(json.loads(json.dumps(card))))
    assert text.startswith("\n## Runs in\n\n32 CIFAR-10 test images")
    assert "| onnxruntime | " in text and "| tract | 0.23" in text
    assert _runs_in_lines({}) == []
