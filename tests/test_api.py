"""The package's public API: one name per stage, and a cheap import."""

from __future__ import annotations

import subprocess
import sys

import pytest

import cifarkit


def test_import_is_cheap():
    # A fresh interpreter: importing cifarkit (and touching a runtime name) loads no
    # TensorFlow, Keras, tf2onnx or matplotlib.
    code = (
        "import sys, cifarkit; cifarkit.Classifier; cifarkit.load_data; "
        "print(sorted(m for m in ('tensorflow', 'keras', 'tf2onnx', 'matplotlib') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_public_names_resolve():
    for name in cifarkit.__all__:
        assert getattr(cifarkit, name) is not None, name
    assert cifarkit.CLASSES[3] == "cat"
    with pytest.raises(AttributeError):
        cifarkit.no_such_thing  # noqa: B018
