"""Data: any image-folder dataset or CIFAR-10, safe unpickling, the one image decoder, splits.

Imports no TensorFlow or Keras (Keras only for the download fallback, lazily).
"""

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
