"""fastnet: the airbench94-style architecture, its whitening stem, in-graph TTA, the fast
recipe (triangle schedule, lookahead) and its export (exact GELU → ONNX Erf)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cifarkit.errors import UsageError
from cifarkit.models import create_model, get_model_info
from cifarkit.models.fastnet import init_whitening
from cifarkit.train import get_recipe, train
from cifarkit.train.augment import AugmentedBatches
from cifarkit.train.schedules import BiasScaledSGD, Triangle, lookahead_decay
from tests.conftest import isolated, synthetic_images, write_folders


def test_fastnet_shape_and_parameters():
    model = create_model("fastnet")
    # whiten 288 (frozen) + bias 24; blocks 64/256/256 (3×3, no bias) with scale-free BN
    # (beta + moving mean/variance); bias-free 256×10 head: the count airbench94 has.
    assert model.count_params() == 1_973_944
    assert model.input_shape == (None, 32, 32, 3)
    assert model.output_shape == (None, 10)
    assert not model.get_layer("whiten").trainable
    small = create_model("fastnet-s")
    assert small.count_params() < model.count_params() / 3
    assert get_model_info("fastnet").train_defaults["recipe"] == "fast"


def test_fastnet_l_is_airbench95s_width_and_recipe():
    model = create_model("fastnet-l")
    # Same count rule as fastnet: 3×3 bias-free convs, BN offset + moving mean/variance.
    convs = [(24, 128), (128, 128), (128, 384), (384, 384), (384, 384), (384, 384)]
    expected = 288 + 24 + sum(9 * i * o + 3 * o for i, o in convs) + 384 * 10
    assert model.count_params() == expected == 4_608_312
    assert [model.get_layer(f"block{i}_conv1").filters for i in (1, 2, 3)] == [128, 384, 384]
    assert get_model_info("fastnet-l").train_defaults["recipe"] == "fast-l"
    fast, wide = get_recipe("fast"), get_recipe("fast-l")
    assert (wide.epochs, wide.lr) == (15, pytest.approx(fast.lr * 0.87))
    # Everything else is airbench94's recipe unchanged.
    assert {**vars(wide), "name": 0, "epochs": 0, "lr": 0} == {
        **vars(fast), "name": 0, "epochs": 0, "lr": 0}


def test_tta_averages_an_image_and_its_mirror():
    x, _ = synthetic_images(6)
    x = x.astype(np.float32)
    mirrored = x[:, :, ::-1]
    with_tta = create_model("fastnet-s", tta=True)
    a = np.asarray(with_tta(x, training=False))
    b = np.asarray(with_tta(mirrored, training=False))
    np.testing.assert_allclose(a, b, atol=1e-5)  # flip-invariant by construction
    np.testing.assert_allclose(a.sum(axis=1), 1.0, atol=1e-5)
    plain = create_model("fastnet-s", tta=False)
    plain.set_weights(with_tta.get_weights())
    p, q = np.asarray(plain(x, training=False)), np.asarray(plain(mirrored, training=False))
    assert np.abs(p - q).max() > 1e-4
    # TTA's output is the softmax of the mean of the two logit sets.
    np.testing.assert_allclose(np.log(a) - np.log(a).mean(1, keepdims=True),
                               (np.log(p) - np.log(p).mean(1, keepdims=True)
                                + np.log(q) - np.log(q).mean(1, keepdims=True)) / 2, atol=1e-4)
    # Training sees single images (no doubled batch). Last: it moves BatchNorm's statistics.
    assert np.asarray(with_tta(x, training=True)).shape == (6, 10)


def test_whitening_stem_decorrelates_patches():
    rng = np.random.default_rng(0)
    # Correlated pixels: smooth images (neighbouring pixels and channels alike).
    base = rng.normal(0, 1, (200, 16, 16, 1))
    x = np.repeat(np.repeat(base, 2, axis=1), 2, axis=2) + 0.3 * rng.normal(0, 1, (200, 32, 32, 3))
    x = np.clip(128 + 40 * x, 0, 255).astype(np.uint8)
    model = create_model("fastnet-s")
    init_whitening(model, x, n=200, eps=5e-4)
    kernel = model.get_layer("whiten").get_weights()[0]  # (2, 2, 3, 24)
    w = kernel.reshape(12, 24)[:, :12]
    np.testing.assert_allclose(kernel.reshape(12, 24)[:, 12:], -w)
    norm = model.get_layer("normalize")
    xf = x.astype(np.float32) * np.asarray(norm.scale) + np.asarray(norm.offset)
    patches = np.stack([xf[:, dy:dy + 31, dx:dx + 31] for dy in (0, 1) for dx in (0, 1)], axis=3)
    flat = patches.reshape(-1, 12).astype(np.float64)
    cov = flat.T @ flat / len(flat)
    white = w.T @ cov @ w
    # Whitened: uncorrelated outputs with unit variance (less a touch for eps).
    np.testing.assert_allclose(white, np.diag(np.diag(white)), atol=1e-3)
    assert np.all(np.diag(white) > 0.5) and np.all(np.diag(white) <= 1.0 + 1e-6)


def test_triangle_schedule_and_lookahead_strength():
    sched = Triangle(1.5, total_steps=100, warmup_steps=23, start_factor=0.2, end_factor=0.07)
    at = {s: float(np.asarray(sched(s))) for s in (0, 23, 100, 150)}
    assert at[0] == pytest.approx(0.3)
    assert at[23] == pytest.approx(1.5)
    assert at[100] == pytest.approx(1.5 * 0.07)
    assert at[150] == pytest.approx(1.5 * 0.07)
    assert float(np.asarray(sched(61))) == pytest.approx(1.5 * (1 + (0.07 - 1) * 38 / 77), rel=1e-5)
    assert Triangle(**sched.get_config()).get_config() == sched.get_config()
    assert lookahead_decay(0, 100) == 0.0
    assert lookahead_decay(100, 100) == pytest.approx(0.95**5)
    assert lookahead_decay(50, 100) == pytest.approx(0.95**5 / 8)
    fast = get_recipe("fast")
    assert (fast.schedule, fast.lookahead, fast.batch_size, fast.translate) == (
        "triangle", True, 1024, 2)
    assert (fast.norm_bias_lr_scale, fast.decay_biases, fast.alternate_flip) == (64.0, True, True)


@pytest.mark.parametrize("momentum", [0.0, 0.85])
def test_bias_scaled_sgd_speeds_up_batchnorm_offsets_only(momentum):
    """Through the backend's own training step: BatchNorm's beta moves 64× as far, the
    kernel exactly as far as with plain SGD, and the optimizer survives a save/load."""
    import keras

    def model(optimizer):
        keras.utils.set_random_seed(3)
        inputs = keras.Input((5,))
        x = keras.layers.Dense(4, use_bias=False, name="dense")(inputs)
        x = keras.layers.BatchNormalization(scale=False, name="bn")(x)
        m = keras.Model(inputs, keras.layers.Dense(2, use_bias=False, name="head")(x))
        m.compile(optimizer=optimizer, loss="mse")
        return m

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 5)), rng.normal(size=(16, 2))
    kw = {"learning_rate": 0.01, "momentum": momentum, "nesterov": bool(momentum)}
    plain, scaled = model(keras.optimizers.SGD(**kw)), model(BiasScaledSGD(bias_lr_scale=64, **kw))
    before = {n: plain.get_layer(n).get_weights()[0].copy() for n in ("dense", "bn")}
    for m in (plain, scaled):
        m.train_on_batch(x, y)
    moved = {id(m): {n: m.get_layer(n).get_weights()[0] - before[n] for n in before}
             for m in (plain, scaled)}
    p, s = moved[id(plain)], moved[id(scaled)]
    assert np.abs(p["bn"]).max() > 0
    np.testing.assert_allclose(s["bn"], 64 * p["bn"], rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(s["dense"], p["dense"], rtol=1e-5, atol=1e-9)
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(scaled.optimizer))
    assert isinstance(restored, BiasScaledSGD) and restored.bias_lr_scale == 64.0


def test_alternate_flip_shows_every_image_both_ways_in_two_epochs():
    n = 40
    x = np.zeros((n, 2, 2, 1), dtype=np.uint8)
    x[:, 0, 0, 0] = np.arange(1, n + 1)  # the image's id (+1: 0 would not show a flip)
    ids = np.arange(n, dtype=np.float32)[:, None]
    batches = AugmentedBatches(x, ids, 16, flip=True, translate=0, seed=1, alternate_flip=True)
    flipped = []
    for _ in range(4):
        seen = np.zeros(n, dtype=bool)
        for i in range(len(batches)):
            xb, yb = batches[i]
            seen[yb[:, 0].astype(int)] = xb[:, 0, 0, 0] != yb[:, 0] + 1  # id moved: flipped
        flipped.append(seen)
        batches.on_epoch_end()
    assert 10 < flipped[0].sum() < 30  # a random half, not all or none
    np.testing.assert_array_equal(flipped[1], ~flipped[0])
    np.testing.assert_array_equal(flipped[2], flipped[0])  # the same half each even epoch


def test_fastnet_trains_with_its_own_recipe(tmp_path):
    data = write_folders(tmp_path / "data", train_per_class=12, test_per_class=4)
    result = train("fastnet-s", data=data, epochs=2, batch_size=30, lr=0.2, val_split=0.1,
                   out=tmp_path / "run")
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["recipe"] == "fast" and run["hyperparameters"]["lookahead"] is True
    assert result.epoch_seconds and len(result.epoch_seconds) == 2
    assert np.isfinite(result.test_loss)
    from cifarkit.export.source import load_keras_model

    model = load_keras_model(tmp_path / "run" / "model.keras")
    kernel = model.get_layer("whiten").get_weights()[0]
    # The stem came from the data (± eigenvector pairs), not a random initialiser.
    np.testing.assert_allclose(kernel.reshape(12, 24)[:, 12:], -kernel.reshape(12, 24)[:, :12])


@pytest.fixture(scope="module")
def fastnet_s_exports(tmp_path_factory):
    """An untrained fastnet-s with a data-initialised stem, saved, exported (fp32, no bench)
    as trained (``None``: level 1) and with ``--tta 2``, on a tiny image tree: one export
    per level, shared by the GELU and TTA tests. ``(model, {level: ExportResult}, root)``."""
    import keras

    from cifarkit.export import export_model

    keras.utils.set_random_seed(6)
    root = tmp_path_factory.mktemp("fastnet-s")
    model = create_model("fastnet-s")
    x, _ = synthetic_images(300)
    init_whitening(model, x, n=300)
    path = root / "fastnet-s.keras"
    model.save(path)
    data = write_folders(root / "data", train_per_class=4, test_per_class=4)
    with isolated(tmp_path_factory):
        results = {level: export_model(path, root / f"out-{level}", precisions=["fp32"],
                                       data=data, parity_images=32, benchmark=False, tta=level)
                   for level in (None, 2)}
    return model, results, root


@pytest.mark.slow
def test_fastnet_exports_with_exact_gelu(fastnet_s_exports):
    """Keras's exact GELU becomes TF Erfc, which tf2onnx lacks; export rewrites it to Erf."""
    import onnx

    from tests.test_export import FP32_MAX_ABS_DIFF, assert_contract

    model, results, root = fastnet_s_exports
    result = results[None]
    assert result.parity.max_abs_diff <= FP32_MAX_ABS_DIFF
    assert result.parity.top1_agreement == 1.0
    onnx_file = root / "out-None" / "model.fp32.onnx"
    assert_contract(onnx_file, model)
    ops = {n.op_type for n in onnx.load(onnx_file).graph.node}
    assert "Erf" in ops and "Erfc" not in ops


def test_tta_views_match_airbench_level_2_by_hand():
    """Level 2 = the image, its up-left and down-right one-pixel translations (reflection
    padded) and their mirrors, logits weighted 1/4, 1/8, 1/8 (×2 with the mirrors)."""
    import keras

    from cifarkit.models.fastnet import with_tta

    keras.utils.set_random_seed(5)
    model = create_model("fastnet-s")
    x, _ = synthetic_images(40)
    init_whitening(model, x, n=40)
    x = x[:6].astype(np.float32)
    plain = with_tta(model, 0)
    logits_of = keras.Model(plain.input, plain.get_layer("head_scale").output)

    def logits(images):
        return np.asarray(logits_of(images, training=False))

    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    views = [x, padded[:, :32, :32], padded[:, 2:, 2:]]
    merged = sum(w * (logits(v) + logits(v[:, :, ::-1]))
                 for w, v in zip((0.25, 0.125, 0.125), views, strict=True))
    expected = np.exp(merged - merged.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    np.testing.assert_allclose(np.asarray(with_tta(model, 2)(x, training=False)), expected,
                               atol=1e-5)
    # Level 1 through with_tta is the trained model's own layers, same weights.
    np.testing.assert_allclose(np.asarray(with_tta(model, 1)(x, training=False)),
                               np.asarray(model(x, training=False)), atol=1e-6)
    with pytest.raises(UsageError, match="fastnet"):
        with_tta(create_model("cnn"), 2)


@pytest.mark.slow
def test_export_sets_tta_level_and_records_it(fastnet_s_exports):
    """``export --tta 2``: ONNX matches the re-levelled Keras model, the card says level 2 and 6
    views, MACs are 3× level 1's, and the reproduce command carries --tta 2."""
    from tests.test_export import FP32_MAX_ABS_DIFF

    _, results, root = fastnet_s_exports
    for result in results.values():
        assert result.parity.max_abs_diff <= FP32_MAX_ABS_DIFF
    cards = {level: result.card for level, result in results.items()}
    assert cards[None]["tta"]["level"] == 1 and "--tta" not in cards[None]["reproduce"]
    assert cards[2]["tta"]["level"] == 2 and cards[2]["tta"]["views"] == 6
    assert "--tta 2" in cards[2]["reproduce"]
    assert cards[2]["macs_per_image"] == 3 * cards[None]["macs_per_image"]
    assert any("level 2 set at export" in n for n in cards[2]["notes"])
    readme = (root / "out-2" / "README.md").read_text()
    assert "level 2, 6 views per image" in readme
