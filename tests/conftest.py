"""Shared fixtures: small CIFAR-shaped data sources made on the fly, and the real data."""

from __future__ import annotations

import importlib.util
import os
import pickle
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

from cifarkit.data import CLASSES

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def benchmark_module(name: str) -> Iterator[ModuleType]:
    """``benchmarks/<name>.py`` imported as module ``name`` for as long as the generator is
    open (``yield from`` it in a fixture); the scripts are not a package."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(name, None)


def isolate_caches(mp: pytest.MonkeyPatch, root: Path) -> None:
    """Point cifarkit's and Keras's caches under ``root`` and forbid downloads."""
    mp.setenv("CIFARKIT_CACHE", str(root / "cifarkit-cache"))
    mp.setenv("KERAS_HOME", str(root / "keras"))
    mp.setenv("CIFARKIT_NO_DOWNLOAD", "1")


@contextmanager
def isolated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The isolation below for a module or session fixture (those start before it)."""
    with pytest.MonkeyPatch.context() as mp:
        isolate_caches(mp, tmp_path_factory.mktemp("home"))
        yield


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """No test reads or writes the user's caches, and none may download anything."""
    isolate_caches(monkeypatch, tmp_path_factory.mktemp("home"))


def synthetic_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Class-dependent images (a per-class colour + noise) that a small model can learn."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 10
    # One palette for every split (fixed seed): the class signal is the same in train and test.
    palette = np.random.default_rng(1234).integers(0, 256, (10, 3))
    x = palette[y][:, None, None, :] + rng.normal(0, 20, (n, 32, 32, 3))
    return np.clip(x, 0, 255).astype(np.uint8), y.astype(np.int64)


def write_batches(folder: Path, per_batch: int = 20, seed: int = 0) -> tuple[np.ndarray, ...]:
    """A ``cifar-10-batches-py`` folder in the original layout (rows are C×H×W)."""
    folder.mkdir(parents=True, exist_ok=True)
    xs, ys = [], []
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        x, y = synthetic_images(per_batch, seed + i)
        rows = x.transpose(0, 3, 1, 2).reshape(per_batch, 3072)
        obj = {b"batch_label": name.encode(), b"labels": [int(v) for v in y], b"data": rows,
               b"filenames": [f"{name}_{j}.png".encode() for j in range(per_batch)]}
        (folder / name).write_bytes(pickle.dumps(obj, protocol=2))
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs[:5]), np.concatenate(ys[:5]), xs[5], ys[5]


def write_folders(root: Path, train_per_class: int = 6, test_per_class: int = 3) -> Path:
    """An image-folder tree ``train/<class>/*.png`` + ``test/<class>/*.png`` (lossless)."""
    for split, per in (("train", train_per_class), ("test", test_per_class)):
        x, y = synthetic_images(per * 10, seed=1 if split == "train" else 2)
        for i, (img, label) in enumerate(zip(x, y, strict=True)):
            d = root / split / CLASSES[label]
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(d / f"{i:04d}.png")
    return root


@pytest.fixture
def batches_dir(tmp_path: Path) -> tuple[Path, tuple[np.ndarray, ...]]:
    arrays = write_batches(tmp_path / "cifar-10-batches-py")
    return tmp_path / "cifar-10-batches-py", arrays


@pytest.fixture
def folders(tmp_path: Path) -> Path:
    return write_folders(tmp_path / "cifar10")


@pytest.fixture
def real_data() -> Path:
    """The real CIFAR-10 images (``$CIFARKIT_DATA``); tests using it skip without them."""
    path = os.environ.get("CIFARKIT_DATA")
    if not path or not Path(path).is_dir():
        pytest.skip("CIFARKIT_DATA (the real CIFAR-10 images) is not set")
    return Path(path)


def write_digits(root: Path, per_class: int | None = None, classes: int = 10) -> Path:
    """scikit-learn's 8×8 handwritten digits (1,797 real scans, shipped inside the package) as
    ``train/<name>/`` and ``test/<name>/`` PNG folders, 20 % of each class for test. The
    class folders are named ``zero`` … ``nine``: names that are not CIFAR-10's."""
    from sklearn.datasets import load_digits

    names = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
    digits = load_digits()
    images = (digits.images * (255 / 16)).round().astype(np.uint8)  # 0–16 grey levels
    for c in range(classes):
        idx = np.flatnonzero(digits.target == c)[:per_class]
        n_test = max(1, len(idx) // 5)
        for split, part in (("test", idx[:n_test]), ("train", idx[n_test:])):
            d = root / split / names[c]
            d.mkdir(parents=True, exist_ok=True)
            for i in part:
                Image.fromarray(images[i], "L").save(d / f"{i:04d}.png")
    return root


@pytest.fixture(scope="session")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_digits(tmp_path_factory.mktemp("digits") / "digits")


@dataclass(frozen=True)
class OpenSet:
    """scikit-learn's digits split open-set: ``known`` (train/ and test/ class folders of 0–5),
    ``unknown`` (the 6–9 images, in their own class folders), and softmax regressions trained
    on the known train split at 16×16: ``model`` without an unknown rule, ``ruled`` with one
    (the top probability's threshold accepting 95 % of held-out known training images)."""

    known: Path
    unknown: Path
    model: Path
    ruled: Path
    threshold: float


@pytest.fixture(scope="session")
def open_set(tmp_path_factory: pytest.TempPathFactory) -> OpenSet:
    import json

    from sklearn.linear_model import LogisticRegression

    from cifarkit.data import load_dataset
    from cifarkit.data.splits import stratified_split
    from cifarkit.measure.ood import msp_score, threshold_for
    from tests import onnx_fixtures as F

    root = tmp_path_factory.mktemp("open-set")
    every = write_digits(root / "all")
    known = root / "known"
    unknown = root / "unknown"
    for split in ("train", "test"):
        for d in sorted((every / split).iterdir()):
            target = known if d.name in ("zero", "one", "two", "three", "four", "five") else unknown
            shutil.copytree(d, target / split / d.name)
    with isolated(tmp_path_factory):  # session fixtures start before _isolated_caches
        ds = load_dataset(known, splits=("train",), image_size=16)
    fit, held = stratified_split(ds.y_train, 0.25, 0)
    x = F.grey_features(ds.x_train)
    lr = LogisticRegression(max_iter=2000).fit(x[fit], ds.y_train[fit])
    weight, bias = lr.coef_.T, lr.intercept_
    model = F.linear_model(root / "digits06.onnx", weight, bias, ds.classes, 16)
    threshold = threshold_for(msp_score(lr.predict_proba(x[held])), 0.95)
    rule = {"score": "msp", "threshold": threshold, "acceptance": 0.95,
            "fitted_on": f"{len(held)} held-out training images"}
    ruled = F.linear_model(root / "digits06-ruled.onnx", weight, bias, ds.classes, 16,
                           metadata={"unknown": json.dumps(rule)})
    return OpenSet(known, unknown, model, ruled, threshold)


@pytest.fixture(scope="session")
def digits_run(digits: Path, tmp_path_factory: pytest.TempPathFactory):
    """One cnn-batchnorm run on the digits at 16×16 (4 epochs, batch 64), trained once for
    the session: test_train_own_data checks the run, test_own_data_e2e exports it.
    ``(run folder, TrainResult)``."""
    from cifarkit.train import train

    root = tmp_path_factory.mktemp("digits-run")
    with isolated(tmp_path_factory):
        result = train("cnn-batchnorm", data=digits, image_size=16, epochs=4, batch_size=64,
                       out=root / "run")
    return root / "run", result
