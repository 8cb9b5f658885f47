"""``engines.decoding``: what a decoder process runs, and that it imports only what decoding
needs (its start is what a short ``predict`` waits for)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from PIL import Image

from cifarkit.engines.decoding import decode_chunk
from cifarkit.engines.rows import DECODER_CRASH


def test_a_decoder_process_imports_only_what_decoding_needs():
    code = ("import sys, cifarkit.engines.decoding as d; d.worker_init(); "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith(('cifarkit', "
            "'onnxruntime', 'typer', 'rich', 'pandas', 'pyarrow')))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout.split()
    assert "cifarkit.data.images" in out and "cifarkit.engines.decoding" in out
    heavy = [m for m in out if m.startswith(("onnxruntime", "typer", "rich", "pandas",
                                             "pyarrow", "cifarkit.engines.base",
                                             "cifarkit.data.folders", "cifarkit.data.sources",
                                             "cifarkit.backends"))]
    assert heavy == []


def test_the_lazy_package_names_all_resolve():
    import cifarkit.data
    import cifarkit.engines

    for package in (cifarkit.data, cifarkit.engines):
        for name in package.__all__:
            assert getattr(package, name) is not None, f"{package.__name__}.{name}"


def test_decode_chunk_stacks_the_good_files_and_reports_each_bad_one(tmp_path):
    good = tmp_path / "good.png"
    Image.new("RGB", (40, 40), (255, 0, 0)).save(good)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot a png")
    images, results = decode_chunk([str(good), str(bad), str(good)], size=32)
    assert images.shape == (2, 32, 32, 3) and images.dtype == np.uint8
    assert images[0, 16, 16].tolist() == [255, 0, 0]
    assert [r.error is None for r in results] == [True, False, True]
    assert results[1].reason not in (None, DECODER_CRASH) and "bad.png" in results[1].error
