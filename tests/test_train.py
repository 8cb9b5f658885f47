"""cifarkit train: recipes, run artifacts, interrupt and resume, a real-data run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cifarkit.errors import UsageError
from cifarkit.train import RECIPES, get_recipe, train
from cifarkit.train.augment import flip_translate
from tests.conftest import write_folders


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    # Read-only for every test: written once (400 PNGs) for the module.
    return write_folders(tmp_path_factory.mktemp("small") / "data", train_per_class=30,
                         test_per_class=10)


def test_seed_recipe_is_the_notebook():
    r = RECIPES["seed"]
    assert (r.epochs, r.batch_size, r.lr, r.momentum, r.val_split) == (10, 32, 0.01, 0.0, 0.25)
    assert not (r.flip or r.translate or r.label_smoothing or r.weight_decay)
    assert r.schedule == "constant"


def test_recipe_overrides_and_checks():
    r = get_recipe("default", epochs=3, lr=None)
    assert r.epochs == 3 and r.lr == RECIPES["default"].lr
    with pytest.raises(UsageError, match="unknown recipe"):
        get_recipe("fancy")
    with pytest.raises(UsageError, match="--epochs"):
        get_recipe("seed", epochs=0)
    with pytest.raises(UsageError, match="--val-split"):
        get_recipe("seed", val_split=1.0)
    r = get_recipe("default", weight_decay=5e-4, label_smoothing=0.0)
    assert (r.weight_decay, r.label_smoothing) == (5e-4, 0.0)
    with pytest.raises(UsageError, match="--weight-decay"):
        get_recipe("default", weight_decay=-1.0)
    with pytest.raises(UsageError, match="--label-smoothing"):
        get_recipe("default", label_smoothing=1.0)


def test_augmentation_flips_and_translates():
    rng = np.random.default_rng(0)
    x = np.zeros((64, 32, 32, 3), np.uint8)
    x[:, :, :4] = 255  # a bright band on the left edge
    out = flip_translate(x, rng, flip=True, translate=4)
    assert out.shape == x.shape and out.dtype == np.uint8
    left = out[:, :, :2].mean(axis=(1, 2, 3))
    right = out[:, :, -2:].mean(axis=(1, 2, 3))
    assert (right > left).any() and (left > right).any()  # some flipped, some not
    assert not np.array_equal(out, x)
    unchanged = flip_translate(x, rng, flip=False, translate=0)
    assert np.array_equal(unchanged, x)


def test_cutout_fills_one_square_per_image_with_the_mean_pixel():
    from cifarkit.train.augment import AugmentedBatches, cutout

    rng = np.random.default_rng(0)
    x = rng.integers(0, 200, (300, 32, 32, 3), dtype=np.uint8)  # never 255
    fill = np.array([255, 255, 255], np.uint8)
    out = cutout(x, rng, 12, fill)
    assert out.dtype == np.uint8 and out.shape == x.shape
    changed = (out != x).any(axis=-1)  # (n, h, w)
    assert np.all(changed.sum(axis=(1, 2)) == 144)  # exactly one 12×12 square each
    ys, xs = np.nonzero(changed[0])
    assert (np.ptp(ys), np.ptp(xs)) == (11, 11)  # contiguous, wholly inside
    assert np.all(out[changed] == 255)
    # Every offset that keeps the square inside is drawn, the extremes included.
    top = changed.any(axis=2).argmax(axis=1)
    left = changed.any(axis=1).argmax(axis=1)
    assert (top.min(), top.max(), left.min(), left.max()) == (0, 20, 0, 20)
    np.testing.assert_array_equal(out[~changed], x[~changed])

    # In the batches: the dataset's mean pixel, on top of the other augmentations, and off
    # unless asked for.
    y = np.eye(300, dtype=np.float32)
    with_cutout = AugmentedBatches(x, y, 300, flip=False, translate=0, seed=1, cutout=8)
    np.testing.assert_array_equal(with_cutout.fill, np.round(x.mean(axis=(0, 1, 2))))
    xb, yb = with_cutout[0]
    order = np.argmax(yb, axis=1)
    diff = (xb != x[order]).any(axis=-1).sum(axis=(1, 2))
    assert np.all((diff <= 64) & (diff >= 60))  # 64, less any pixel already at the mean
    plain = AugmentedBatches(x, y, 300, flip=False, translate=0, seed=1)
    xp, yp = plain[0]
    np.testing.assert_array_equal(xp, x[np.argmax(yp, axis=1)])
    assert get_recipe("fast").cutout == 0 and get_recipe("fast", cutout=12).cutout == 12
    with pytest.raises(UsageError, match="--cutout"):
        get_recipe("fast", cutout=33)


@pytest.mark.parametrize("kind", ["images", "cached-features"])
def test_a_resumed_run_draws_the_uninterrupted_runs_batches(kind):
    """Each epoch's shuffle and augmentation depend on (seed, epoch) only: resuming after
    epoch 2 continues the stream, it does not replay epoch 1's batches."""
    from cifarkit.train.augment import AugmentedBatches
    from cifarkit.train.transfer import CachedFeatureBatches

    rng = np.random.default_rng(0)
    n = 50
    x = rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
    y = np.eye(n, dtype=np.float32)

    def make(start_epoch):
        if kind == "images":
            return AugmentedBatches(x, y, 16, flip=True, translate=2, seed=5,
                                    alternate_flip=True, start_epoch=start_epoch)
        feats = x.reshape(n, -1).astype(np.float32)
        return CachedFeatureBatches(feats, feats[:, ::-1].copy(), y, 16, seed=5,
                                    start_epoch=start_epoch)

    def epoch(ds):
        batches = [ds[i] for i in range(len(ds))]
        ds.on_epoch_end()
        return np.concatenate([b[0].reshape(len(b[0]), -1) for b in batches]), \
            np.concatenate([b[1] for b in batches])

    uninterrupted = make(0)
    stream = [epoch(uninterrupted) for _ in range(4)]
    resumed = make(2)
    for expected in stream[2:]:
        got = epoch(resumed)
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])
    assert not np.array_equal(stream[0][1], stream[2][1])  # epochs differ from each other


def test_train_writes_a_complete_run(small_data, tmp_path):
    events = []
    result = train("cnn", "seed", data=small_data, epochs=2, out=tmp_path / "run",
                   progress=lambda e, i: events.append(e))
    run = tmp_path / "run"
    for name in ("model.keras", "history.json", "history.csv", "curves.png", "run.json"):
        assert (run / name).is_file(), name
    assert not (run / ".backup").exists()
    meta = json.loads((run / "run.json").read_text())
    assert meta["status"] == "complete" and meta["arch"] == "cnn" and meta["recipe"] == "seed"
    assert meta["hyperparameters"]["batch_size"] == 32 and meta["epochs"] == 2
    # Called as a library (as benchmarks/seed_study.py does): the command is rebuilt from the
    # arguments, not taken from this process's argv (pytest's).
    assert meta["command"] == (f"cifarkit train cnn --recipe seed --epochs 2 --data "
                               f"{small_data} --out {tmp_path / 'run'}")
    assert meta["data"] == {"kind": "folders", "train": 225, "val": 75, "test": 100,
                            "limit": None, "val_split": 0.25,
                            "val_from": "0.25 of each training class, seed 0",
                            "layout": "splits", "skipped": [], "evaluated_on": "test"}
    assert len(meta["epoch_seconds"]) == 2 and "tensorflow" in meta["versions"]
    assert 0.0 <= meta["test_accuracy"] <= 1.0 and meta["test_accuracy"] == result.test_accuracy
    hist = json.loads((run / "history.json").read_text())
    assert len(hist["loss"]) == 2 and len(hist["val_accuracy"]) == 2
    assert (run / "history.csv").read_text().splitlines()[0].startswith("epoch,")
    assert events[0] == "data" and events[-1] == "done" and events.count("epoch_end") == 2
    # The saved model loads in Keras's safe mode and reproduces the test accuracy.
    import keras

    model = keras.saving.load_model(run / "model.keras", safe_mode=True)
    assert model.count_params() == 890_410


def test_default_recipe_learns_synthetic_classes(small_data, tmp_path):
    # (BatchNorm's moving averages need hundreds of steps, more than a unit test runs, so
    # the recipe is checked on the BatchNorm-free CNN here and on cnn-batchnorm with real data.)
    # Batch 16 on 300 images: the recipe's peak learning rate, made for batch 128, is scaled down.
    result = train("cnn-dropout", "default", data=small_data, epochs=5, batch_size=16, lr=0.01,
                   out=tmp_path / "run")
    # Classes differ by colour: far above chance (10 %) after a few epochs.
    assert result.test_accuracy > 0.6
    assert result.best_epoch is not None and 1 <= result.best_epoch <= 5
    assert result.val_accuracy == max(result.history["val_accuracy"])


def test_interrupt_then_resume(small_data, tmp_path):
    out = tmp_path / "run"

    def stop_in_epoch_2(event, info):
        if event == "epoch_begin" and info["epoch"] == 2:
            raise KeyboardInterrupt

    first = train("cnn", "seed", data=small_data, epochs=3, out=out, progress=stop_in_epoch_2)
    assert first.interrupted and len(first.epoch_seconds) == 1
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
    assert not (out / "model.keras").exists()
    with pytest.raises(UsageError, match="--resume"):
        train("cnn", "seed", data=small_data, epochs=3, out=out)
    with pytest.raises(UsageError, match="same options"):
        train("cnn", "seed", data=small_data, epochs=5, out=out, resume=True)
    with pytest.raises(UsageError, match="--seed 0 \\(given 1\\)"):
        train("cnn", data=small_data, out=out, resume=True, seed=1)
    # Nothing given again: the interrupted run's recipe (3 epochs, not seed's 10) goes on.
    second = train("cnn", data=small_data, out=out, resume=True)
    assert not second.interrupted
    assert len(second.epoch_seconds) == 3 and len(second.history["loss"]) == 3
    meta = json.loads((out / "run.json").read_text())
    assert meta["epochs"] == 3 and meta["recipe"] == "seed"
    assert meta["command"].startswith("cifarkit train cnn --recipe seed --epochs 3 ")


def test_resume_a_run_saved_before_a_recipe_field_existed(small_data, tmp_path):
    out = tmp_path / "run"

    def stop_in_epoch_2(event, info):
        if event == "epoch_begin" and info["epoch"] == 2:
            raise KeyboardInterrupt

    train("cnn-batchnorm", "default", data=small_data, epochs=2, out=out,
          progress=stop_in_epoch_2)
    config_path = out / ".backup" / "run-config.json"
    config = json.loads(config_path.read_text())
    assert config["recipe"]["bn_recalibration"] == 5000
    # As an older cifarkit wrote it: no bn_recalibration field, no limit.
    del config["recipe"]["bn_recalibration"], config["limit"]
    config_path.write_text(json.dumps(config))
    result = train("cnn-batchnorm", data=small_data, out=out, resume=True)
    assert not result.interrupted
    meta = json.loads((out / "run.json").read_text())
    assert meta["hyperparameters"]["bn_recalibration"] == 0  # the run it was, not today's default
    assert meta["hyperparameters"]["epochs"] == 2


def test_bad_arguments(small_data, tmp_path):
    with pytest.raises(UsageError, match="Did you mean"):
        train("cnn-dropuot", data=small_data, out=tmp_path / "x")
    with pytest.raises(UsageError, match="nothing to resume"):
        train("cnn", data=small_data, out=tmp_path / "y", resume=True)
    with pytest.raises(UsageError, match="no pretrained weights"):
        train("cnn", data=small_data, out=tmp_path / "z", weights="imagenet", epochs=1)


@pytest.mark.slow
@pytest.mark.realdata
def test_real_data_short_training_beats_chance(real_data, tmp_path):
    # The default recipe's machinery (augmentation, warm-up + cosine, smoothing, best-epoch
    # restore) on 2,000 real images. The BatchNorm-free CNN: BatchNorm's moving averages
    # need more steps than a test can afford before inference-mode accuracy means anything.
    result = train("cnn", "default", data=real_data, limit=2000, epochs=4, batch_size=32,
                   lr=0.02, out=tmp_path / "real")
    assert result.test_accuracy > 0.25, result.test_accuracy  # chance is 0.10


def test_recipe_from_dict_round_trips_and_rejects_unknown_fields():
    from cifarkit.train import RECIPES, recipe_from_dict

    for rec in RECIPES.values():
        assert recipe_from_dict(rec.to_dict()) == rec
    with pytest.raises(UsageError, match="unknown field.*'warp_speed'"):
        recipe_from_dict({**RECIPES["seed"].to_dict(), "warp_speed": 9})


def test_a_kill_stops_training_like_ctrl_c(small_data, tmp_path):
    """SIGTERM (how a `nohup … &` job is stopped) leaves a resumable, recorded run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cifarkit", "train", "cnn", "--recipe", "seed", "--epochs", "500",
         "--batch-size", "8", "--data", str(small_data), "--out", str(out)],
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not (out / ".backup" / "history.json").is_file():  # an epoch has finished
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-2000:]
    meta = json.loads((out / "run.json").read_text())
    assert meta["status"] == "interrupted" and meta["epochs_completed"] >= 1
    assert "--resume" in meta["resume"]
