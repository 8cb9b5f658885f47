"""Data: any image-folder dataset or CIFAR-10, safe unpickling, the one image decoder, splits.

Imports no TensorFlow or Keras (Keras only for the download fallback, lazily). The names
below load their module on first use (PEP 562): a decoder process that needs only
``data.images`` does not pay for the rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cifarkit._lazy import lazy_getattr

if TYPE_CHECKING:
    from cifarkit.data.folders import cross_split_duplicates, decode_images
    from cifarkit.data.images import is_image_path, load_image
    from cifarkit.data.sources import (
        CLASSES,
        Dataset,
        cache_dir,
        keras_cache_path,
        load_data,
        load_dataset,
    )
    from cifarkit.data.splits import stratified_split, stratified_subset

_LAZY = {
    "cross_split_duplicates": ".folders", "decode_images": ".folders",
    "is_image_path": ".images", "load_image": ".images",
    "CLASSES": ".sources", "Dataset": ".sources", "cache_dir": ".sources",
    "keras_cache_path": ".sources", "load_data": ".sources", "load_dataset": ".sources",
    "stratified_split": ".splits", "stratified_subset": ".splits",
}


__getattr__ = lazy_getattr(__name__, _LAZY, globals())


__all__ = [
    "CLASSES",
    "Dataset",
    "cache_dir",
    "cross_split_duplicates",
    "decode_images",
    "is_image_path",
    "keras_cache_path",
    "load_data",
    "load_dataset",
    "load_image",
    "stratified_split",
    "stratified_subset",
]
