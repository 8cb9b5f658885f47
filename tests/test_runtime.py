"""cifarkit.backends.onnxruntime: the Classifier contract, providers, batching, I/O binding,
model lookup.

Models are built with onnx.helper (tests/onnx_fixtures.py): no TensorFlow, no trained model.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from cifarkit.backends import (
    PREFERRED_BATCH,
    Classifier,
    available_providers,
    list_exported,
    provider_options,
    provider_problem,
    resolve_model,
)
from cifarkit.errors import ModelError, ProviderError, UsageError
from cifarkit.measure.machine import physical_cores
from tests import onnx_fixtures as F


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    out = {
        "color": F.color_model(root / "color.onnx"),
        "float01": F.color_model(root / "float01.onnx", input_kind="float01"),
        "cnn": F.cnn_model(root / "cnn.onnx"),
    }
    for kind in F.BROKEN_KINDS:
        out[kind] = F.broken_model(root / f"{kind}.onnx", kind)
    return out


def _solid_batch() -> np.ndarray:
    return np.stack([F.solid(F.PROTOTYPES[c]) for c in F.CLASSES])


def test_contract_metadata_and_labels(models):
    with Classifier(models["color"]) as clf:
        assert clf.classes == F.CLASSES
        assert clf.metadata["architecture"] == "color-prototype"
        assert json.loads(clf.metadata["class_names"]) == list(F.CLASSES)
        assert clf.input_kind == "uint8"
        assert clf.provider == "cpu" and clf.active_providers == ["cpu"]
        assert clf.threads == physical_cores()
        assert clf.batch_size == PREFERRED_BATCH["cpu"]
        probs = clf.predict_proba(_solid_batch())
    assert probs.dtype == np.float32 and probs.shape == (10, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-5)
    assert list(probs.argmax(axis=1)) == list(range(10))
    assert probs.max(axis=1).min() > 0.9


def test_float01_model_matches_uint8_model(models):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (37, 32, 32, 3), dtype=np.uint8)
    with Classifier(models["color"]) as a, Classifier(models["float01"]) as b:
        assert b.input_kind == "float01"
        np.testing.assert_allclose(a.predict_proba(images), b.predict_proba(images), atol=1e-5)


@pytest.mark.parametrize(
    "kind, message",
    [
        ("five_classes", "outputs 5 scores but class_names lists 10"),
        ("logits", "not probabilities"),
        ("bad_class_names", "class_names must be a JSON list"),
        ("nchw", "channels-first"),
        ("int64_input", "tensor(int64)"),
        ("two_inputs", "expected one input"),
        ("two_outputs", "none is called 'probabilities'"),
    ],
)
def test_broken_models_are_refused_with_the_reason(models, kind, message):
    import re

    with pytest.raises(ModelError, match=re.escape(message)), Classifier(models[kind]) as clf:
        clf.predict_proba(_solid_batch())


def test_not_a_model(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a protobuf at all")
    with pytest.raises(ModelError, match="cannot load this model"):
        Classifier(junk)
    with pytest.raises(ModelError, match="does not exist"):
        Classifier(tmp_path / "missing.onnx")


def test_chunking_gives_the_same_answer_at_every_size(models):
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (100, 32, 32, 3), dtype=np.uint8)
    with Classifier(models["cnn"], batch_size=100) as clf:
        reference = clf.run_batch(images)
    for bs in (1, 7, 32, 64):
        with Classifier(models["cnn"], batch_size=bs) as clf:
            assert clf.batch_size == bs
            np.testing.assert_allclose(clf.predict_proba(images), reference, atol=1e-5)
    with Classifier(models["cnn"]) as clf:
        assert clf.predict_proba(images[:0]).shape == (0, 10)
        assert clf.predict_proba(images[0]).shape == (1, 10)  # one image [32, 32, 3]


def test_chunk_size_is_tuned_online(models):
    from cifarkit.backends.onnxruntime import CHUNK_CANDIDATES, TUNING_SAMPLES

    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, (256, 32, 32, 3), dtype=np.uint8)
    with Classifier(models["cnn"], batch_size=256) as fixed:
        reference = fixed.predict_proba(images)
        assert not fixed.tuning and fixed.chunk_timings == {}
    with Classifier(models["cnn"]) as clf:
        assert clf.tuning
        candidates = CHUNK_CANDIDATES["cpu"]
        # Each candidate: 1 warm-up + TUNING_SAMPLES timed chunks.
        budget = sum(candidates) * (TUNING_SAMPLES + 1) // 256 + len(candidates) + 2
        for _ in range(budget):
            np.testing.assert_allclose(clf.predict_proba(images), reference, atol=1e-5)
            if not clf.tuning:
                break
        assert not clf.tuning
        assert set(clf.chunk_timings) == set(candidates)
        best = max(clf.chunk_timings, key=clf.chunk_timings.get)
        assert clf.batch_size == best
        clf.batch_size = 48  # an explicit size ends tuning
        assert clf.batch_size == 48 and clf.chunk_timings == {}
    with Classifier(models["cnn"]) as clf:  # requests smaller than every candidate
        for _ in range(3):
            clf.predict_proba(images[:10])
        assert clf.tuning and clf.chunk_timings == {}


def test_io_binding_matches_plain_run(models):
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (70, 32, 32, 3), dtype=np.uint8)
    with (
        Classifier(models["cnn"]) as plain,
        Classifier(models["cnn"], io_binding=True, batch_size=32) as bound,
    ):
        assert bound.io_binding
        expected = plain.predict_proba(images)
        np.testing.assert_allclose(bound.predict_proba(images), expected, atol=1e-6)
        # The GPU path (reused device OrtValues, bound output), run with device "cpu".
        bound._device_copy = True
        np.testing.assert_allclose(bound.predict_proba(images), expected, atol=1e-6)
        assert sorted(bound._device_buffers) == [6, 32]  # 70 = 32 + 32 + 6


def test_threads_and_bad_arguments(models):
    with Classifier(models["color"], threads=1, allow_spinning=False) as clf:
        assert clf.threads == 1
    with pytest.raises(UsageError, match="unknown provider"):
        Classifier(models["color"], provider="gpu")
    with pytest.raises(UsageError):
        Classifier(models["color"], threads=0)
    with Classifier(models["color"]) as clf:
        with pytest.raises(UsageError, match=r"uint8 images \[N, 32, 32, 3\]"):
            clf.predict_proba(np.zeros((2, 32, 32, 3), np.float32))
        with pytest.raises(UsageError):
            clf.predict_proba(np.zeros((2, 28, 28, 3), np.uint8))
    clf.close()
    with pytest.raises(UsageError, match="closed"):
        clf.run_batch(_solid_batch())


def test_fixed_batch_model_is_chunked_and_padded(tmp_path):
    import onnx

    path = F.color_model(tmp_path / "fixed.onnx")
    model = onnx.load(str(path))
    for value in (*model.graph.input, *model.graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        dim.ClearField("dim_param")
        dim.dim_value = 4
    onnx.save(model, str(path))
    with Classifier(path, batch_size=64) as clf:
        assert clf.fixed_batch == 4 and clf.batch_size == 4
        probs = clf.predict_proba(_solid_batch())  # 10 images: 4 + 4 + 2 (padded)
    assert list(probs.argmax(axis=1)) == list(range(10))


def test_auto_picks_an_active_provider(models):
    with Classifier(models["color"], provider="auto") as clf:
        assert clf.provider in ("cuda", "openvino", "cpu")
        assert clf.active_providers[0] == clf.provider


def _cuda_really_works(path) -> bool:
    try:
        Classifier(path, provider="cuda").close()
        return True
    except ProviderError:
        return False


def test_cuda_where_absent_is_an_error_not_a_cpu_fallback(models, capfd):
    if _cuda_really_works(models["color"]):
        pytest.skip("CUDA is really available here")
    capfd.readouterr()
    with pytest.raises(ProviderError) as info:
        Classifier(models["color"], provider="cuda")
    message = str(info.value)
    assert "'cuda'" in message and "not active" in message
    assert "providers in this onnxruntime build: cpu" in message
    assert "onnxruntime-gpu[cuda,cudnn]" in message  # what to install
    assert provider_problem("cuda")  # and why, as far as can be told
    # onnxruntime's own log lines are captured into the error, not printed.
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_missing_providers_are_explained(models):
    for name in ("openvino", "tensorrt"):
        if name in available_providers() and provider_problem(name) is None:
            continue  # really installed
        with pytest.raises(ProviderError, match="pip install"):
            Classifier(models["color"], provider=name)


def test_provider_options_merge_and_tensorrt_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("CIFARKIT_CACHE", str(tmp_path))
    opts = provider_options("cuda", {"cudnn_conv_algo_search": "HEURISTIC", "device_id": 1})
    assert opts["cudnn_conv_algo_search"] == "HEURISTIC"
    assert opts["device_id"] == "1" and opts["cudnn_conv_use_max_workspace"] == "1"
    trt = provider_options("tensorrt", max_batch=512)
    assert trt["trt_engine_cache_enable"] == "True"
    assert trt["trt_engine_cache_path"] == str(tmp_path / "tensorrt")
    assert trt["trt_profile_max_shapes"] == "images:512x32x32x3"


def test_runtime_imports_no_tensorflow():
    import subprocess

    code = (
        "import sys, cifarkit.backends, cifarkit.engines, cifarkit.cli.predict_cmd; "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules; "
        "assert 'onnxruntime' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- model lookup ---------------------------------------------------------------------------


def test_parse_spec_reads_name_and_precision_once():
    from cifarkit.backends import ModelSpec, parse_spec

    assert parse_spec("fastnet-relu") == ModelSpec("fastnet-relu", None)
    assert parse_spec("fastnet-relu:int8") == ModelSpec("fastnet-relu", "int8")
    assert str(parse_spec("fastnet-relu:auto")) == "fastnet-relu:auto"
    for path in ("runs/edge/model.onnx", "model.fp32.onnx", "exported/fastnet", ""):
        assert parse_spec(path) is None, path  # paths are not names
    with pytest.raises(ModelError, match=r"unknown precision 'int4' in 'x:int4'; choose fp32, "
                                         r"int8, fp16, auto"):
        parse_spec("x:int4")


def test_resolve_model_names_paths_and_default(tmp_path, monkeypatch, models):
    root = tmp_path / "exported"
    monkeypatch.setenv("CIFARKIT_EXPORTED", str(root))
    with pytest.raises(ModelError, match="no default model.*--model"):
        resolve_model(None)
    for precision in ("fp32", "int8"):
        F.color_model(root / "tiny" / f"model.{precision}.onnx")
    assert list_exported() == {"tiny": ["fp32", "int8"]}
    assert resolve_model("tiny") == root / "tiny" / "model.fp32.onnx"
    assert resolve_model("tiny:int8") == root / "tiny" / "model.int8.onnx"
    assert resolve_model(root / "tiny") == root / "tiny" / "model.fp32.onnx"
    assert resolve_model(str(models["color"])) == models["color"]
    with pytest.raises(ModelError, match=r"shipped models: tiny \(fp32/int8\)"):
        resolve_model("tiny:fp16")
    with pytest.raises(ModelError, match="unknown precision"):
        resolve_model("tiny:int4")
    with pytest.raises(ModelError, match="does not exist"):
        resolve_model(str(tmp_path / "nope.onnx"))
    (root / "default").write_text("tiny:int8\n")
    assert resolve_model(None) == root / "tiny" / "model.int8.onnx"
    (root / "default").write_text("gone\n")
    with pytest.raises(ModelError, match="the default model"):
        resolve_model(None)


# --- the second output, score (contract.SCORE_OUTPUT) -----------------------------------------


def test_score_output_in_one_run_on_every_path(tmp_path):
    """``score`` is fetched by name with the probabilities: plain runs, I/O binding (bound on
    the CPU, and the GPU path's reused device buffers), a fixed batch (padding cut off)."""
    import onnx

    path = F.scored_model(tmp_path / "scored.onnx")
    images = np.random.default_rng(4).integers(0, 256, (70, 32, 32, 3), dtype=np.uint8)
    expected = F.expected_score(images)
    with Classifier(path) as clf:
        assert clf.has_score and clf.info.has_score and clf.info.unknown.score == "score"
        probs, score = clf.predict_scored(images)
        assert score.dtype == np.float32 and score.shape == (70,)
        np.testing.assert_allclose(score, expected, atol=1e-3)
        np.testing.assert_array_equal(probs, clf.predict_proba(images))
        one = clf.run_outputs(images[:7])
        np.testing.assert_allclose(one[1], expected[:7], atol=1e-3)
        assert clf.run_batch(images[:7]).shape == (7, 10)  # probabilities alone
    with Classifier(path, io_binding=True, batch_size=32) as bound:
        np.testing.assert_allclose(bound.predict_scored(images)[1], score, atol=1e-6)
        bound._device_copy = True  # the GPU path, with device "cpu"
        p, s = bound.predict_scored(images)
        np.testing.assert_allclose(s, score, atol=1e-6)
        np.testing.assert_allclose(p, probs, atol=1e-6)
        assert set(bound._device_buffers[6][1]) == {"probabilities", "score"}
    model = onnx.load(str(path))
    for value in (*model.graph.input, *model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_value = 4
    onnx.save(model, str(tmp_path / "fixed.onnx"))
    with Classifier(tmp_path / "fixed.onnx") as clf:
        s = clf.predict_scored(images[:10])[1]  # 4 + 4 + 2 (padded)
    np.testing.assert_allclose(s, expected[:10], atol=1e-3)
    with Classifier(F.color_model(tmp_path / "plain.onnx")) as clf:
        assert not clf.has_score and clf.run_outputs(images[:3])[1] is None
        assert clf.predict_scored(images[:3])[1] is None


@pytest.mark.parametrize(("kw", "why"), [
    ({"score_rank": 2}, r"output 'score' is float32 \[\?, 1\]"),
    ({"score_type": 7}, r"output 'score' is int64 \[\?\]"),
])
def test_a_score_output_off_the_contract_is_refused(tmp_path, kw, why):
    path = F.scored_model(tmp_path / "bad.onnx", **kw)
    with pytest.raises(ModelError, match=rf"bad\.onnx: {why}; the contract's score is float32"):
        Classifier(path)


def test_a_float16_score_comes_back_as_float32(tmp_path):
    path = F.scored_model(tmp_path / "half.onnx", score_type=10)  # FLOAT16
    images = np.random.default_rng(5).integers(0, 256, (9, 32, 32, 3), dtype=np.uint8)
    with Classifier(path) as clf:
        score = clf.run_outputs(images)[1]
    assert score.dtype == np.float32
    np.testing.assert_allclose(score, F.expected_score(images), atol=0.1)  # half precision
