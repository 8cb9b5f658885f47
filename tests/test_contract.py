"""cifarkit.contract: the calibration and unknown entries a model's metadata may carry."""

from __future__ import annotations

import json

import pytest

from cifarkit import contract
from cifarkit.errors import ModelError

DIMS = [None, 32, 32, 3]


def _info(**entries: object) -> contract.ModelInfo:
    meta = {k: json.dumps(v) for k, v in entries.items()}
    return contract.describe(meta, DIMS, 10, True, "m.onnx")


def test_uncalibrated_model_has_no_temperature_or_rule() -> None:
    info = _info()
    assert info.temperature is None and info.unknown is None


def test_calibration_and_unknown_entries_are_read() -> None:
    info = _info(calibration={"temperature": 0.61, "fitted_on": "val"},
                 unknown={"score": "msp", "threshold": 0.42, "acceptance": 0.9,
                          "fitted_on": "val, 5,000 images"})
    assert info.temperature == pytest.approx(0.61)
    assert info.unknown == contract.UnknownRule("msp", 0.42, 0.9, "val, 5,000 images")


@pytest.mark.parametrize("entries, message", [
    ({"calibration": {"temperature": 0}}, "temperature must be a number > 0"),
    ({"calibration": [1.0]}, "calibration must be a JSON object"),
    ({"unknown": {"score": "energy", "threshold": 1}}, "unknown.score must be one of"),
    ({"unknown": {"score": "msp", "threshold": "high"}}, "unknown.threshold must be a number"),
    ({"unknown": {"score": "msp", "threshold": 0.5, "acceptance": 1.5}}, "acceptance"),
])
def test_bad_entries_are_model_errors(entries: dict[str, object], message: str) -> None:
    with pytest.raises(ModelError, match=message):
        _info(**entries)


def test_unparseable_json_names_the_key() -> None:
    meta = {"unknown": "{not json"}
    with pytest.raises(ModelError, match="metadata unknown must be a JSON object"):
        contract.describe(meta, DIMS, 10, True, "m.onnx")
