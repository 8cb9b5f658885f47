"""A restricted unpickler for CIFAR-10 python batches, which are untrusted input.

``pickle.load`` on a crafted file runs arbitrary code. The real batches contain only a dict
of bytes keys, lists of ints/bytes and one uint8 numpy array, so the unpickler admits only
the numpy functions that rebuild an array and refuses every other global.
"""

from __future__ import annotations

import pickle
from typing import IO, Any

import numpy as np

from cifarkit.errors import DataError

# (module, name) pairs numpy uses to pickle an ndarray, across numpy 1.x and 2.x.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    # Protocol-2 pickles written by Python 3 encode bytes through _codecs.encode.
    ("_codecs", "encode"),
}


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed in a CIFAR batch")


def load_batch(fileobj: IO[bytes], name: str) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 batch: ``(images uint8 [N,32,32,3], labels int64 [N])``."""
    try:
        obj = RestrictedUnpickler(fileobj, encoding="bytes").load()
    except pickle.UnpicklingError as exc:
        raise DataError(f"{name}: refused to unpickle: {exc}") from None
    except Exception as exc:  # truncated or garbage files raise many kinds of errors
        raise DataError(f"{name}: not a CIFAR-10 batch ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{name}: not a CIFAR-10 batch (top level is {type(obj).__name__})")
    obj = {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}
    if "data" not in obj or "labels" not in obj:
        raise DataError(f"{name}: not a CIFAR-10 batch (no 'data'/'labels'; keys: {list(obj)})")
    data = np.asarray(obj["data"])
    labels = np.asarray(obj["labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(
            f"{name}: data has shape {data.shape} {data.dtype}, expected [N, 3072] uint8"
        )
    if len(labels) != len(data):
        raise DataError(f"{name}: {len(data)} images but {len(labels)} labels")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{name}: labels outside 0-9")
    # Stored channel-first (3×32×32 per row); the toolkit uses NHWC.
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), labels
