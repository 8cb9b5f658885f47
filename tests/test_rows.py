"""``engines/rows.py``: the one prediction row and its encodings, and the convention for file
names that are not valid UTF-8 (``path`` escaped as text, ``path_bytes`` the exact bytes)."""

from __future__ import annotations

import base64
import json
import os

import numpy as np
import pytest

from cifarkit.engines.rows import (
    Prediction,
    columns,
    decode_name,
    encode_name,
    make_predictions,
    predictions_from_table,
    predictions_to_table,
    safe_text,
)

RAW = b"/data/caf\xe9/non\xffutf8.png"  # Latin-1 é and a stray 0xFF: not UTF-8
NAME = os.fsdecode(RAW)  # what os.scandir gives Python for it (lone surrogates)


def test_a_non_utf8_name_is_escaped_text_plus_its_exact_bytes():
    path, raw = encode_name(NAME)
    assert path == "/data/caf\\xe9/non\\xffutf8.png"
    path.encode("utf-8")  # valid text: no surrogates left
    assert base64.b64decode(raw) == RAW
    assert decode_name(path, raw) == NAME and os.fsencode(decode_name(path, raw)) == RAW
    # Valid names are left alone and get no bytes, whatever characters they hold.
    for name in ("ünïcødé 日本.png", "back\\xffslash.png", 'comma, "quoted".png'):
        assert encode_name(name) == (name, None) and decode_name(name, None) == name
    assert safe_text(f"{NAME}: cannot decode") == "/data/caf\\xe9/non\\xffutf8.png: cannot decode"


def test_a_surrogate_that_no_os_gave_still_encodes():
    # A lone surrogate outside surrogateescape's range (e.g. from a JSON listing on stdin).
    path, raw = encode_name("odd\ud800.png")
    path.encode("utf-8")
    assert raw is not None and base64.b64decode(raw) == "odd\ud800.png".encode(
        "utf-8", "surrogatepass")


def _rows() -> list[Prediction]:
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], np.float32)
    preds = make_predictions([NAME, "b/cat/x.png", "c/bad.png"],
                             [None, None, f"c/bad.png: corrupt {NAME}"], probs,
                             ("cat", "dog", "fox"), 2, [None, "fox", None], "onnxruntime", "cpu")
    return list(preds)


def test_every_encoding_has_the_same_columns_and_values():
    preds = _rows()
    assert preds[0].label == "cat" and preds[0].top_k == [("cat", pytest.approx(0.7)),
                                                          ("dog", pytest.approx(0.2))]
    assert (preds[1].backend, preds[1].provider) == ("onnxruntime", "cpu")
    bad = preds[2]
    assert bad.error == f"corrupt {NAME}"  # the path prefix goes: the row has the path
    assert (bad.backend, bad.provider) == (None, None)  # nothing ran on it
    table = predictions_to_table(preds, labels=True)
    assert tuple(table.schema.names) == columns(True)
    assert [p.as_dict()["path"] for p in preds] == table.column("path").to_pylist()
    for pred in preds:
        record = pred.as_dict()
        cells = dict(zip(columns(True), pred.csv_row(True), strict=True))
        assert set(record) <= set(columns(True)) and cells["path"] == record["path"]
        assert cells["path_bytes"] == (record.get("path_bytes") or "")
        assert cells["error"] == (record["error"] or "")
        json.dumps(record, ensure_ascii=False).encode("utf-8")  # valid UTF-8
    assert preds[0].as_dict()["path_bytes"] == base64.b64encode(RAW).decode()
    assert "path_bytes" not in preds[1].as_dict()
    assert bad.as_dict()["error"] == "corrupt /data/caf\\xe9/non\\xffutf8.png"
    # Arrow round trip: the same rows, the original name back.
    back = list(predictions_from_table(table))
    assert [p.path for p in back] == [p.path for p in preds]
    assert back[0].path == NAME and back[1].correct is True and back[2].error == bad.as_dict()[
        "error"]
    assert [(p.backend, p.provider) for p in back] == [(p.backend, p.provider) for p in preds]
