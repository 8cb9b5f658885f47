"""``cifarkit.export.calibrate``: a temperature per precision fitted on held-out images, folded
before the output Softmax of every file, and the MSP "unknown" threshold.

The model is the colour-prototype classifier of ``tests/onnx_fixtures.py`` (no TensorFlow); its
images are noisy solid colours, hard enough (about 60 % right) that it is over-confident and
the temperature is far from 1. Its logits are known exactly (the same graph without its
Softmax), so the folded files are checked against ``softmax(logits / T)`` itself.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from cifarkit.data import Dataset, stratified_split
from cifarkit.errors import DataError, ExportError, UsageError

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from cifarkit.contract import read_onnx  # noqa: E402
from cifarkit.export import export_model, read_metadata  # noqa: E402
from cifarkit.export.calibrate import (  # noqa: E402
    check_fold,
    fold_temperature,
    held_out_images,
    unfold_temperature,
)
from cifarkit.measure import calibration as cal  # noqa: E402
from cifarkit.measure.ood import msp_score  # noqa: E402
from tests import onnx_fixtures as F  # noqa: E402


def noisy_colours(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Solid class colours shifted by a large random colour and pixel noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    base = np.array([F.PROTOTYPES[F.CLASSES[k]] for k in y], np.float32)[:, None, None, :]
    x = base + rng.normal(0, 110, (n, 1, 1, 3)) + rng.normal(0, 30, (n, 32, 32, 3))
    return np.clip(x, 0, 255).astype(np.uint8), y.astype(np.int64)


def run(path, x: np.ndarray, output: str = "probabilities") -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run([output], {"images": x})[0].astype(np.float64)


@pytest.fixture(scope="module")
def colours(tmp_path_factory):
    """The colour model (probabilities and bare logits), and train / val / test images."""
    root = tmp_path_factory.mktemp("colour")
    src = F.color_model(root / "src" / "model.fp32.onnx")
    logits = F.color_model(root / "logits.onnx", softmax=False)
    (xt, yt), (xv, yv), (xs, ys) = (noisy_colours(n, s) for n, s in ((400, 0), (300, 1),
                                                                    (300, 2)))
    ds = Dataset(xt, yt, xs, ys, source="noisy colours", kind="fixture", x_val=xv, y_val=yv)
    return src, logits, ds


@pytest.fixture(scope="module")
def calibrated(colours, tmp_path_factory):
    src, _, ds = colours
    out = tmp_path_factory.mktemp("calibrated") / "colour"
    return export_model(src, out, precisions=["fp32", "fp16", "int8"], formats=["onnx", "ort"],
                        data=ds, calibration_images=100, parity_images=100, benchmark=False)


# --- folding ------------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [0.5, 3.0])
def test_fold_is_softmax_of_logits_over_t(colours, temperature, tmp_path):
    src, logits_file, ds = colours
    proto = onnx.load(str(src))
    assert fold_temperature(proto, temperature) == pytest.approx(temperature, rel=1e-6)
    onnx.save(proto, str(tmp_path / "folded.onnx"))
    x = ds.x_test[:50]
    expected = cal.softmax(run(logits_file, x), temperature)
    got = run(tmp_path / "folded.onnx", x)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert (got.argmax(1) == run(src, x).argmax(1)).all()


def test_fold_in_fp16_graph_goes_through_the_output_cast(colours, tmp_path):
    from cifarkit.export.quantize import to_float16

    src, logits_file, ds = colours
    proto = to_float16(onnx.load(str(src)))
    folded = fold_temperature(proto, 3.0)
    scale = next(i for i in proto.graph.initializer if i.name.endswith("inv_temperature"))
    assert scale.data_type == onnx.TensorProto.FLOAT16
    assert folded == pytest.approx(3.0, rel=1e-3) and folded != 3.0  # 1/T rounded to fp16
    onnx.save(proto, str(tmp_path / "fp16.onnx"))
    x = ds.x_test[:50]
    np.testing.assert_allclose(run(tmp_path / "fp16.onnx", x),
                               cal.softmax(run(logits_file, x), folded), atol=5e-3)


def test_a_graph_without_an_output_softmax_is_refused(colours):
    _, logits_file, _ = colours
    with pytest.raises(ExportError, match="made by a Add, not a Softmax.*--held-out none"):
        fold_temperature(onnx.load(str(logits_file)), 2.0)


def test_check_fold_catches_a_wrong_temperature(colours):
    src, _, ds = colours
    before = run(src, ds.x_test)
    assert check_fold(before, cal.apply_temperature(before, 2.0), 2.0, "fp32", "x") < 1e-6
    with pytest.raises(ExportError, match="differs from temperature-scaled"):
        check_fold(before, cal.apply_temperature(before, 2.2), 2.0, "fp32", "x")


# --- the export -------------------------------------------------------------------------------


def test_every_file_gives_temperature_scaled_probabilities(calibrated, colours):
    src, logits_file, ds = colours
    card = calibrated.card["calibration"]
    assert card["fitted_on"] == "the val/ split of noisy colours (300 images)"
    logits = run(logits_file, ds.x_test)
    for f in calibrated.files:
        c = card["precisions"][f.precision]
        got = run(f.path, ds.x_test) if f.format == "onnx" else None
        if f.format != "onnx":
            from cifarkit.backends import Classifier

            with Classifier(f.path) as clf:
                got = clf.predict_proba(ds.x_test).astype(np.float64)
        agree = (got.argmax(1) == logits.argmax(1)).mean()
        assert agree == 1.0 if f.precision == "fp32" else agree >= 0.97  # int8 moves a few
        if f.precision == "fp32":
            np.testing.assert_allclose(got, cal.softmax(logits, c["temperature"]), atol=1e-5)
    t = {p: c["temperature"] for p, c in card["precisions"].items()}
    assert 3 < t["fp32"] < 8  # over-confident: the fit flattens
    assert t["fp16"] == pytest.approx(t["fp32"], rel=2e-3) and t["int8"] != t["fp32"]


def test_calibration_lowers_ece_and_nll_on_the_test_split(calibrated):
    for p, c in calibrated.card["calibration"]["precisions"].items():
        test = c["test"]
        assert test["ece_after"] < test["ece_before"] / 2, p
        assert test["nll_after"] < test["nll_before"], p
        assert c["held_out"]["nll_after"] <= c["held_out"]["nll_before"]
        assert test["images"] == 300 and not c["at_bound"]
        ev = calibrated.file(p).evaluation
        assert ev["ece"] == pytest.approx(test["ece_after"]) and ev["nll"] == pytest.approx(
            test["nll_after"])


def test_unknown_threshold_accepts_95_percent_of_held_out(calibrated, colours):
    _, _, ds = colours
    for f in calibrated.files:
        if f.format != "onnx":
            continue
        meta = read_metadata(f.path)
        info = read_onnx(f.path)
        c = calibrated.card["calibration"]["precisions"][f.precision]
        assert meta["calibration"]["temperature"] == info.temperature == c["temperature"]
        assert info.unknown.score == "msp" and info.unknown.acceptance == 0.95
        assert info.unknown.threshold == c["threshold"]
        accepted = np.mean(msp_score(run(f.path, ds.x_val)) >= info.unknown.threshold)
        assert 0.95 <= accepted < 0.95 + 2 / len(ds.y_val)


def test_card_readme_and_reproduce_say_how(calibrated):
    readme = calibrated.readme_path.read_text()
    assert "## Calibrated probabilities and the unknown answer" in readme
    t = calibrated.card["calibration"]["precisions"]["int8"]["temperature"]
    assert f"| int8 | {t:.4f} |" in readme
    assert "--held-out auto --unknown-acceptance 0.95" in calibrated.card["reproduce"]
    on_disk = json.loads(calibrated.card_path.read_text())
    assert on_disk["card_version"] == 5 and on_disk["calibration"]["acceptance"] == 0.95


def test_held_out_none_and_missing_val(colours, tmp_path):
    src, _, ds = colours
    result = export_model(src, tmp_path / "none", precisions=["fp32"], data=ds,
                          held_out="none", parity_images=50, benchmark=False)
    assert result.card["calibration"] is None
    assert "calibration" not in read_metadata(result.file("fp32").path)
    assert any("not calibrated (--held-out none)" in n for n in result.notes)
    no_val = Dataset(ds.x_train, ds.y_train, ds.x_test, ds.y_test, source="no val",
                     kind="fixture")
    with pytest.raises(UsageError, match="no val/ split"):
        export_model(src, tmp_path / "val", precisions=["fp32"], data=no_val,
                     held_out="val", benchmark=False)
    result = export_model(src, tmp_path / "auto", precisions=["fp32"], data=no_val,
                          parity_images=50, benchmark=False)
    assert result.card["calibration"] is None
    assert any("not calibrated: no held-out images" in n for n in result.notes)
    with pytest.raises(UsageError, match="--held-out: nowhere"):
        export_model(src, tmp_path / "x", data=ds, held_out="nowhere")
    with pytest.raises(UsageError, match="--unknown-acceptance"):
        export_model(src, tmp_path / "x", data=ds, unknown_acceptance=1.0)


# --- which images --------------------------------------------------------------------------

TRAINING = {"seed": 3, "val_split": 0.2, "val_accuracy": 0.6,
            "data": {"kind": "fixture", "train": 320, "val": 80, "val_split": 0.2}}


def test_training_split_is_redrawn_exactly(colours):
    _, _, ds = colours
    no_val = Dataset(ds.x_train, ds.y_train, ds.x_test, ds.y_test, source="s", kind="fixture")
    held = held_out_images("auto", no_val, F.CLASSES, 32, TRAINING, [])
    _, expected = stratified_split(ds.y_train, 0.2, seed=3)
    np.testing.assert_array_equal(held.x, ds.x_train[expected])
    np.testing.assert_array_equal(held.y, ds.y_train[expected])
    assert held.recorded_accuracy == 0.6 and "seed 3 (80 images)" in held.description
    other = {**TRAINING, "data": {**TRAINING["data"], "train": 300}}
    with pytest.raises(DataError, match="300 train / 80 validation.*gives 320 / 80: not the"):
        held_out_images("training-split", no_val, F.CLASSES, 32, other, [])
    notes: list[str] = []
    assert held_out_images("auto", no_val, F.CLASSES, 32, other, notes) is None
    assert "not the data it was trained on" in notes[0]
    trained_on_all = {**TRAINING, "val_split": 0.0, "data": {**TRAINING["data"], "val_split": 0}}
    with pytest.raises(DataError, match="training-split: the training record names no "
                       "validation split.*--held-out DIR"):
        held_out_images("training-split", no_val, F.CLASSES, 32, trained_on_all, [])
    kind = {**TRAINING, "data": {**TRAINING["data"], "kind": "batches"}}
    with pytest.raises(DataError, match="read batches data"):
        held_out_images("training-split", no_val, F.CLASSES, 32, kind, [])


def test_onnx_source_with_a_training_record_uses_its_split(colours, tmp_path):
    src, _, ds = colours
    meta = F.default_metadata(training=json.dumps(TRAINING))
    model = F.color_model(tmp_path / "src" / "model.fp32.onnx", metadata=meta)
    no_val = Dataset(ds.x_train, ds.y_train, ds.x_test, ds.y_test, source="s", kind="fixture")
    result = export_model(model, tmp_path / "out", precisions=["fp32"], data=no_val,
                          held_out="training-split", parity_images=50, benchmark=False)
    c = result.card["calibration"]
    assert c["images"] == 80 and c["recorded_val_accuracy"] == 0.6
    acc = c["precisions"]["fp32"]["held_out"]["accuracy"]
    assert any(f"fp32 top-1 {acc:.2%} on them" in n for n in result.notes)


def test_re_exporting_a_calibrated_file_fits_afresh_instead_of_stacking(calibrated, colours,
                                                                        tmp_path):
    _, logits_file, ds = colours
    fp32 = next(f.path for f in calibrated.files if f.precision == "fp32" and f.format == "onnx")
    proto = onnx.load(str(fp32))
    assert unfold_temperature(proto) == pytest.approx(
        calibrated.card["calibration"]["precisions"]["fp32"]["temperature"], rel=1e-6)
    assert unfold_temperature(proto) is None  # nothing left to take out
    assert not any(i.name.endswith("inv_temperature") for i in proto.graph.initializer)
    again = export_model(fp32, tmp_path / "again", precisions=["fp32"], data=ds,
                         parity_images=100, benchmark=False)
    t0 = calibrated.card["calibration"]["precisions"]["fp32"]["temperature"]
    t1 = again.card["calibration"]["precisions"]["fp32"]["temperature"]
    assert t1 == pytest.approx(t0, rel=1e-3)  # the same fit, not T0 * T1
    assert any("folded temperature" in n and "taken out" in n for n in again.notes)
    out = next(f.path for f in again.files if f.precision == "fp32")
    np.testing.assert_allclose(run(out, ds.x_test), cal.softmax(run(logits_file, ds.x_test), t1),
                               atol=1e-5)


def test_held_out_folder_maps_class_names(colours, tmp_path):
    from PIL import Image

    _, _, ds = colours
    for i in range(40):
        label = F.CLASSES[int(ds.y_test[i])]
        (tmp_path / "held" / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(ds.x_test[i]).save(tmp_path / "held" / label / f"{i}.png")
    held = held_out_images(tmp_path / "held", ds, F.CLASSES, 32, None, [])
    assert len(held.y) == 40 and sorted(held.y.tolist()) == sorted(ds.y_test[:40].tolist())
    (tmp_path / "held" / "zebra").mkdir()
    Image.fromarray(ds.x_test[0]).save(tmp_path / "held" / "zebra" / "z.png")
    with pytest.raises(DataError, match=r"folders \['zebra'\] are not classes"):
        held_out_images(tmp_path / "held", ds, F.CLASSES, 32, None, [])


@pytest.mark.parametrize("runtime", ["openvino", "opencv", "tract"])
def test_every_runtime_gives_the_calibrated_probabilities(calibrated, colours, runtime):
    from cifarkit.backends import get_runtime

    _, logits_file, ds = colours
    rt = get_runtime(runtime)
    if (why := rt.problem()) is not None:
        pytest.skip(why)
    t = calibrated.card["calibration"]["precisions"]["fp32"]["temperature"]
    with rt.open(calibrated.file("fp32").path) as model:
        got = model.predict_proba(ds.x_test[:64]).astype(np.float64)
    np.testing.assert_allclose(got, cal.softmax(run(logits_file, ds.x_test[:64]), t), atol=1e-4)


@pytest.mark.slow
def test_litert_files_are_made_from_the_calibrated_graph(colours, tmp_path):
    """LiteRT fp32 applies fp32's T exactly; int8 (int8 probabilities, 1/256 steps) carries it
    and its own held-out figures and threshold are in the card."""
    pytest.importorskip("onnx2tf")
    from cifarkit.backends import get_runtime

    src, logits_file, ds = colours
    result = export_model(src, tmp_path / "out", precisions=["fp32", "int8"],
                          formats=["onnx", "tflite"], data=ds, calibration_images=100,
                          parity_images=100, benchmark=False)
    c = result.card["calibration"]
    t = c["precisions"]["fp32"]["temperature"]
    with get_runtime("litert").open(result.file("fp32", "tflite").path) as model:
        got = model.predict_proba(ds.x_test).astype(np.float64)
    np.testing.assert_allclose(got, cal.softmax(run(logits_file, ds.x_test), t), atol=1e-5)
    lite = c["tflite_int8"]
    assert lite["temperature"] == t and 0 < lite["ece_held_out"] < 0.2
    assert (lite["threshold"] * 256) == pytest.approx(round(lite["threshold"] * 256))
    assert "`model.int8.tflite` is quantized by LiteRT" in result.readme_path.read_text()
