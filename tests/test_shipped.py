"""The models shipped in exported/: intact, on contract, and as accurate as their cards say."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from cifarkit.backends import Classifier, resolve_model
from cifarkit.data import CLASSES, load_dataset
from tests.conftest import isolated

EXPORTED = Path(__file__).resolve().parents[1] / "exported"
CARDS = sorted(EXPORTED.glob("*/card.json"))
FILES = [
    (card, entry)
    for card in CARDS
    for entry in json.loads(card.read_text())["files"]
]


def _id(item: tuple[Path, dict]) -> str:
    return f"{item[0].parent.name}/{item[1]['file']}"


def test_something_is_shipped_and_the_default_resolves():
    assert CARDS, "exported/ ships no model"
    pointer = (EXPORTED / "default").read_text().strip()
    path = resolve_model(pointer)
    assert path.is_file() and path.parent.parent == EXPORTED


def test_shipped_models_fit_the_size_budget():
    total = sum(p.stat().st_size for p in EXPORTED.rglob("*") if p.is_file())
    assert total <= 25_000_000, f"exported/ holds {total / 1e6:.1f} MB (budget 25 MB)"


@pytest.mark.parametrize("item", FILES, ids=[_id(i) for i in FILES])
def test_file_matches_card_and_contract(item):
    card_path, entry = item
    path = card_path.parent / entry["file"]
    data = path.read_bytes()
    assert len(data) == entry["size_bytes"]
    assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    assert (card_path.parent / "README.md").is_file()
    with Classifier(path, threads=1) as clf:
        assert clf.input_kind == "uint8"
        assert tuple(clf.classes) == CLASSES
        assert clf.metadata["precision"] == entry["precision"]
        x = np.random.default_rng(0).integers(0, 256, (37, 32, 32, 3), dtype=np.uint8)
        probs = clf.run_batch(x)
        assert probs.shape == (37, 10) and probs.dtype == np.float32
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-3)


@pytest.fixture(scope="module")
def test_split(tmp_path_factory):
    import os

    data = os.environ.get("CIFARKIT_DATA")
    if not data or not Path(data).is_dir():
        pytest.skip("CIFARKIT_DATA (the real CIFAR-10 images) is not set")
    with isolated(tmp_path_factory):  # decodes into no user cache, as a clean CI would
        ds = load_dataset(data, splits=("test",))
    return ds.x_test, ds.y_test


@pytest.mark.realdata
@pytest.mark.parametrize("item", FILES, ids=[_id(i) for i in FILES])
def test_accuracy_matches_card(item, test_split):
    card_path, entry = item
    card = json.loads(card_path.read_text())
    x, y = test_split
    assert card["evaluation"]["test_images"] == len(y) == 10_000
    with Classifier(card_path.parent / entry["file"]) as clf:
        probs, score = clf.predict_scored(x)
        rule = clf.info.unknown
    acc = float(np.mean(probs.argmax(axis=1) == y))
    assert abs(acc - entry["accuracy"]) <= 0.003, (acc, entry["accuracy"])
    calibrated = ((card.get("calibration") or {}).get("precisions") or {}).get(entry["precision"])
    if calibrated:  # the shipped file gives the calibration and acceptance its card records
        from cifarkit.measure.calibration import ece

        test = calibrated["test"]
        assert abs(ece(probs, y) - test["ece_after"]) <= 0.002
        blocks = (card["calibration"].get("block_score") or {}).get(entry["precision"])
        assert rule is not None
        if blocks:  # the rule scores with the graph's own `score` output
            assert rule.score == "score" and rule.threshold == pytest.approx(blocks["threshold"])
            accepted, expected = float(np.mean(score >= rule.threshold)), blocks["test_accepted"]
        else:
            assert rule.score == "msp" and rule.threshold == pytest.approx(calibrated["threshold"])
            accepted = float(np.mean(probs.max(axis=1) >= rule.threshold))
            expected = test["accepted"]
        assert abs(accepted - expected) <= 0.002
