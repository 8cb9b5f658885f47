"""CIFAR-10 data: sources, safe unpickling, the shared image decoder, stratified splits.

Imports no TensorFlow or Keras (Keras only for the download fallback, lazily).
"""

from cifarkit.data.images import is_image_path, load_image
from cifarkit.data.sources import (
    CLASSES,
    Dataset,
    cache_dir,
    decode_images,
    keras_cache_path,
    load_data,
    load_dataset,
)
from cifarkit.data.splits import stratified_split, stratified_subset

__all__ = [
    "CLASSES",
    "Dataset",
    "cache_dir",
    "decode_images",
    "is_image_path",
    "keras_cache_path",
    "load_data",
    "load_dataset",
    "load_image",
    "stratified_split",
    "stratified_subset",
]
