"""What ``cifarkit data`` reports about a dataset: counts, imbalance, file sizes, leaks."""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from cifarkit.data.folders import cross_split_duplicates
from cifarkit.data.sources import ALL_SPLITS, Dataset

#: Image headers read for the size/format summary (reading a header decodes no pixels).
SIZE_SAMPLE = 5000
#: Largest/smallest class count ratio past which the imbalance is worth a warning.
IMBALANCE_WARN = 3.0


@dataclass
class DatasetSummary:
    counts: dict[str, list[int]]  # split → images per class
    imbalance: dict[str, float]  # split → largest / smallest class
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)  # min/median/max → (w, h)
    formats: dict[str, int] = field(default_factory=dict)
    leaks: list[tuple[str, str, str]] = field(default_factory=list)  # (digest, a, b)
    duplicates_within: int = 0  # files whose exact bytes occur earlier in the same split
    warnings: list[str] = field(default_factory=list)


def _headers(paths: list[str]) -> tuple[dict[str, tuple[int, int]], dict[str, int]]:
    step = max(1, len(paths) // SIZE_SAMPLE)
    dims, formats = [], collections.Counter()
    for p in paths[::step]:
        try:
            with Image.open(p) as img:
                dims.append(img.size)
                formats[img.format or "?"] += 1
        except Exception:  # undecodable files are listed by the loader already
            continue
    if not dims:
        return {}, dict(formats)
    area = np.array([w * h for w, h in dims])
    order = np.argsort(area, kind="stable")
    pick = {"smallest": order[0], "median": order[len(order) // 2], "largest": order[-1]}
    return {k: dims[i] for k, i in pick.items()}, dict(formats.most_common())


def summarize(ds: Dataset) -> DatasetSummary:
    """Per-class counts and imbalance for every split present; for image folders also the
    files' pixel sizes and formats (a sample of headers) and byte-identical duplicates."""
    counts, imbalance = {}, {}
    for split in ALL_SPLITS:
        _, y = ds.split(split)
        if len(y):
            per_class = np.bincount(y, minlength=len(ds.classes))
            counts[split] = per_class.tolist()
            imbalance[split] = float(per_class.max() / max(per_class.min(), 1))
    summary = DatasetSummary(counts, imbalance)
    for split, ratio in imbalance.items():
        if ratio >= IMBALANCE_WARN:
            per_class = counts[split]
            small = ds.classes[int(np.argmin(per_class))]
            summary.warnings.append(
                f"{split}: classes are imbalanced ({ratio:.1f}× between the largest and "
                f"'{small}' with {min(per_class)}); accuracy alone will flatter the model")
    if ds.folders is not None:
        files = ds.folders.files
        summary.sizes, summary.formats = _headers([p for f in files.values() for p in f.paths])
        summary.leaks = cross_split_duplicates(files)
        for f in files.values():
            summary.duplicates_within += len(f.digests) - len(set(f.digests))
    if summary.leaks:
        summary.warnings.append(
            f"{len(summary.leaks)} file(s) occur byte for byte in two splits (a leak: scores "
            "on the later split are inflated); first: "
            f"{summary.leaks[0][1]} = {summary.leaks[0][2]}")
    return summary
