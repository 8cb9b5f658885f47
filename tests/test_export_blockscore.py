"""``cifarkit.export.blockscore``: ``--unknown-score blocks`` puts a score (Mahalanobis on the
stem block's features + the energy) into each exported graph as a second output ``score``,
with its rule.

The model is ``tests/onnx_fixtures.py``'s ``cnn_model`` (cnn-batchnorm's layers, random
weights, NCHW blocks) on noisy solid colours; the score in each file is checked against one
computed here independently: the stem tensor read from the source graph, fitted with
``measure.ood.Mahalanobis`` on the training images, the energy from the file's Softmax input,
both standardised on the held-out ones.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from cifarkit.data import Dataset
from cifarkit.errors import UsageError

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from cifarkit.export import export_model, read_metadata  # noqa: E402
from cifarkit.measure.ood import Mahalanobis, threshold_for  # noqa: E402
from tests import onnx_fixtures as F  # noqa: E402
from tests.test_export_calibrate import noisy_colours  # noqa: E402

STEM = "conv1_1"


def outputs(path, x: np.ndarray, names: list[str]) -> list[np.ndarray]:
    model = onnx.load(str(path))
    known = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in known)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(names, {"images": x})


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    root = tmp_path_factory.mktemp("blocks")
    src = F.cnn_model(root / "src" / "model.fp32.onnx")
    (xt, yt), (xv, yv), (xs, ys) = (noisy_colours(n, s) for n, s in ((400, 0), (300, 1),
                                                                    (200, 2)))
    ds = Dataset(xt, yt, xs, ys, source="noisy colours", kind="fixture", x_val=xv, y_val=yv)
    result = export_model(src, root / "out", precisions=["fp32", "fp16", "int8"], data=ds,
                          calibration_images=100, parity_images=100, benchmark=False,
                          unknown_score="blocks")
    return src, ds, result


def test_every_file_has_a_score_output_and_its_rule(scored):
    _, ds, result = scored
    card = json.loads((result.out_dir / "card.json").read_text())
    assert card["calibration"]["unknown_score"] == "score"
    for f in result.files:
        model = onnx.load(str(f.path))
        assert [o.name for o in model.graph.output] == ["probabilities", "score"]
        rule = read_metadata(f.path)["unknown"]
        assert rule["score"] == "score"
        score = outputs(f.path, ds.x_val, ["score"])[0]
        assert score.shape == (len(ds.y_val),) and score.dtype == np.float32
        # the threshold accepts 95 % of the held-out images, as threshold_for sets it
        assert rule["threshold"] == pytest.approx(threshold_for(score, 0.95), rel=1e-5)
        assert 0.94 <= np.mean(score >= rule["threshold"]) <= 0.96
        record = card["calibration"]["block_score"][f.precision]
        assert record["learnt_images"] == 400 and record["probabilities_moved"] <= 1e-6
    # int8 recomputes the stem in float from the input: its QLinearConv chain is untouched
    int8 = onnx.load(str(next(f.path for f in result.files if f.precision == "int8")))
    assert "unknown_score/stem/conv1_1" in {o for n in int8.graph.node for o in n.output}
    assert "second output `score`" in (result.out_dir / "README.md").read_text()


def test_fp32_score_equals_an_independent_fit(scored):
    src, ds, result = scored
    fp32 = next(f.path for f in result.files if f.precision == "fp32")

    def stem(x):
        return outputs(src, x, [STEM])[0].mean(axis=(2, 3))

    softmax = next(n for n in onnx.load(str(fp32)).graph.node if n.op_type == "Softmax")

    def energy(x):
        z = outputs(fp32, x, [softmax.input[0]])[0].astype(np.float64)
        return np.log(np.exp(z).sum(axis=1))

    m = Mahalanobis.fit(stem(ds.x_train), ds.y_train, n_classes=10, normalize=True)
    s_held, e_held = m.score(stem(ds.x_val)), energy(ds.x_val)
    total = ((m.score(stem(ds.x_test)) - s_held.mean()) / s_held.std()
             + (energy(ds.x_test) - e_held.mean()) / e_held.std())
    got = outputs(fp32, ds.x_test, ["score"])[0]
    np.testing.assert_allclose(got, total, rtol=2e-3, atol=2e-3)


def test_blocks_need_held_out_images(tmp_path):
    src = F.cnn_model(tmp_path / "src" / "model.fp32.onnx")
    x, y = noisy_colours(100, 0)
    ds = Dataset(x, y, x, y, source="s", kind="fixture")
    with pytest.raises(UsageError, match="--unknown-score blocks needs held-out images"):
        export_model(src, tmp_path / "out", precisions=["fp32"], data=ds, benchmark=False,
                     held_out="none", unknown_score="blocks")
    with pytest.raises(UsageError, match="--unknown-score"):
        export_model(src, tmp_path / "out", data=ds, unknown_score="energy")


def test_block_features_average_each_batch_views():
    """Flip TTA stacks each batch's ``[images; mirrors]``: the views are averaged per batch
    (here a graph stacking ``[x; 2x]``, read in batches of 3 of 5 images)."""
    from onnx import TensorProto, helper

    from cifarkit.export.blockscore import block_features, find_blocks

    nodes = [helper.make_node("Cast", ["images"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("Transpose", ["f"], ["nchw"], perm=[0, 3, 1, 2]),
             helper.make_node("Add", ["nchw", "nchw"], ["twice"]),
             helper.make_node("Concat", ["nchw", "twice"], ["views"], axis=0),
             helper.make_node("Relu", ["views"], ["stem"]),
             helper.make_node("ReduceMean", ["stem"], ["m"], axes=[1, 2, 3], keepdims=0),
             helper.make_node("Reshape", ["m", "shape"], ["m2"]),
             helper.make_node("Softmax", ["m2"], ["probabilities"])]
    graph = helper.make_graph(
        nodes, "views", [helper.make_tensor_value_info("images", TensorProto.UINT8,
                                                       ["batch", 16, 16, 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, None)],
        [onnx.numpy_helper.from_array(np.array([-1, 2], np.int64), "shape")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    x = np.random.default_rng(0).integers(0, 256, (5, 16, 16, 3), np.uint8)
    blocks = find_blocks(["stem"], ["stem"], model)
    assert blocks[0].views == 2 and blocks[0].channels == 3
    got = block_features(model, blocks, x, batch=3)[0]
    np.testing.assert_allclose(got, 1.5 * x.reshape(5, -1, 3).mean(axis=1), rtol=1e-5)


def test_litert_conversion_drops_the_score_branch(scored):
    """LiteRT files carry probabilities only: the graph handed to onnx2tf loses ``score``
    and every node only it needed, and keeps the classifier whole."""
    from cifarkit.contract import probabilities_only
    from cifarkit.export.litert import float_input_copy

    _, ds, result = scored
    fp32 = onnx.load(str(next(f.path for f in result.files if f.precision == "fp32")))
    graph = float_input_copy(fp32)
    probabilities_only(graph.graph)
    assert [o.name for o in graph.graph.output] == ["probabilities"]
    assert not [n.name for n in graph.graph.node if n.name.startswith("unknown_score")]
    sess = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    got = sess.run(["probabilities"], {"images": ds.x_test[:20].astype(np.float32)})[0]
    np.testing.assert_allclose(got, outputs(result.files[0].path, ds.x_test[:20],
                                            ["probabilities"])[0], atol=1e-6)


def test_a_scored_file_re_exports_with_a_fresh_score(scored, tmp_path):
    """The shipped files' reproduce command exports their own fp32 file, score and all."""
    _, ds, result = scored
    fp32 = next(f.path for f in result.files if f.precision == "fp32")
    again = export_model(fp32, tmp_path / "again", precisions=["fp32"], data=ds,
                         parity_images=100, benchmark=False, unknown_score="blocks")
    assert any("score output was taken out" in n for n in again.notes)
    first = read_metadata(fp32)["unknown"]["threshold"]
    assert read_metadata(again.files[0].path)["unknown"]["threshold"] == pytest.approx(first,
                                                                                     rel=1e-4)
