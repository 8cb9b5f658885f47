"""Everything a GPU check needs that the device machine lacks, packed to travel with one call.

The device machine (see the `device` tool) gets a copy of the repository and the paths named
in ``carry`` (64 MiB in all), and nothing else: no ``../shared`` data, no internet, no Keras.
The CIFAR-10 image folders are 55 MB of 32×32 JPEGs, but every file begins with the same
~600-byte header (quantisation and Huffman tables), so storing each distinct header once
and the rest of each file as-is packs them, losslessly, into 20.7 MB. ``pack`` writes

    .device/cifar10.npz      the image-folder tree: headers, payloads, paths, a sha256
    .device/wheels/*.whl     Keras and the dependencies of it the device image lacks

and ``unpack`` rebuilds the tree byte for byte on the other side, checking the digest.
``benchmarks/gpu_check.sh`` is the one command that uses them there:

    python benchmarks/device_kit.py pack --data ../shared/data/cifar10 --out .device
    device run: bash benchmarks/gpu_check.sh   (carry: .device; see that script)

``.device/`` is git-ignored: rebuild it in each session that has a device machine.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

SCHEMA = "cifarkit.device-pack/1"
SPLITS = ("train", "test")
SOS = b"\xff\xda"  # JPEG start-of-scan: what precedes it is tables and headers
# What Keras needs beyond the device image's packages (absl-py, numpy, rich, h5py,
# ml-dtypes and packaging are there; KINDS.md of the device tool lists them).
WHEELS = ("keras=={keras}", "namex", "optree")


def _files(data: Path) -> list[Path]:
    files = []
    for split in SPLITS:
        root = data / split
        if not root.is_dir():
            raise SystemExit(f"{data} has no {split}/ folder: not an image-folder CIFAR-10")
        files += sorted(p for p in root.rglob("*") if p.is_file())
    if not files:
        raise SystemExit(f"{data}: no files under train/ and test/")
    return files


def _digest(items: list[tuple[str, bytes]]) -> str:
    h = hashlib.sha256()
    for rel, blob in items:
        h.update(rel.encode() + b"\0" + len(blob).to_bytes(8, "little") + blob)
    return h.hexdigest()


def pack_tree(data: Path, out: Path) -> dict[str, int | str]:
    """Pack every file under ``data``/train and ``data``/test into ``out`` (an .npz)."""
    from cifarkit._io import atomic_path

    headers: dict[bytes, int] = {}
    header_index, payloads, rels, items = [], [], [], []
    for f in _files(data):
        blob = f.read_bytes()
        rel = f.relative_to(data).as_posix()
        cut = blob.find(SOS) if blob[:2] == b"\xff\xd8" else -1
        head, body = (blob[:cut], blob[cut:]) if cut > 0 else (b"", blob)
        header_index.append(headers.setdefault(head, len(headers)))
        payloads.append(body)
        rels.append(rel)
        items.append((rel, blob))
    heads = list(headers)
    arrays = {
        "schema": np.array(SCHEMA),
        "digest": np.array(_digest(items)),
        "paths": np.frombuffer("\n".join(rels).encode(), dtype=np.uint8),
        "header_index": np.array(header_index, dtype=np.int32),
        "headers": np.frombuffer(b"".join(heads), dtype=np.uint8),
        "header_offsets": np.cumsum([0] + [len(h) for h in heads], dtype=np.int64),
        "payload": np.frombuffer(b"".join(payloads), dtype=np.uint8),
        "payload_offsets": np.cumsum([0] + [len(p) for p in payloads], dtype=np.int64),
    }
    with atomic_path(out) as tmp:
        np.savez(tmp, **arrays)
    return {"files": len(rels), "headers": len(heads), "bytes_in": sum(len(b) for _, b in items),
            "bytes_out": out.stat().st_size, "digest": str(arrays["digest"])}


def unpack_tree(pack: Path, dest: Path) -> dict[str, int | str]:
    """Rebuild the tree packed in ``pack`` under ``dest``, byte for byte, or fail.

    Written into ``dest``.partial and renamed, so a half-written tree is never taken for
    the data; an existing ``dest`` is left alone if it already holds the same digest, and
    never deleted unless an earlier unpack wrote it."""
    with np.load(pack, allow_pickle=False) as z:
        if str(z["schema"]) != SCHEMA:
            raise SystemExit(f"{pack}: schema {z['schema']}, expected {SCHEMA}")
        want = str(z["digest"])
        done = dest / ".device-pack-digest"
        if done.is_file() and done.read_text() == want:
            return {"files": len(z["header_index"]), "digest": want, "reused": 1}
        hb, ho = z["headers"].tobytes(), z["header_offsets"]
        pb, po = z["payload"].tobytes(), z["payload_offsets"]
        items = []
        rels = z["paths"].tobytes().decode().split("\n")
        for i, (rel, h) in enumerate(zip(rels, z["header_index"], strict=True)):
            items.append((rel, hb[ho[h]:ho[h + 1]] + pb[po[i]:po[i + 1]]))
    bad = [rel for rel, _ in items
           if rel.startswith("/") or ".." in rel.split("/") or rel.split("/")[0] not in SPLITS]
    if bad:
        raise SystemExit(f"{pack}: refusing to write outside {dest}'s train/ and test/: {bad[0]!r}")
    got = _digest(items)
    if got != want:
        raise SystemExit(f"{pack}: unpacked digest {got} != packed {want}: the pack is damaged")
    tmp = dest.with_name(dest.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    for rel, blob in items:
        path = tmp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blob)
    (tmp / ".device-pack-digest").write_text(want)
    if dest.exists():
        if not done.is_file():  # only ever replace a tree this script wrote
            shutil.rmtree(tmp)
            raise SystemExit(f"{dest} exists and was not unpacked by this script: "
                             "choose another destination")
        shutil.rmtree(dest)
    tmp.rename(dest)
    return {"files": len(items), "digest": want, "reused": 0}


def download_wheels(out: Path, python: str = "3.12") -> list[str]:
    """Keras (this environment's version) and its missing dependencies, for the device's
    CPython ``python`` on x86-64 Linux."""
    from importlib.metadata import version

    out.mkdir(parents=True, exist_ok=True)
    specs = [w.format(keras=version("keras")) for w in WHEELS]
    platforms = [f"manylinux_2_{n}_x86_64" for n in (28, 27, 24, 17)] + ["manylinux2014_x86_64"]
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
           "--python-version", python, "--implementation", "cp", "-d", str(out)]
    for p in platforms:
        cmd += ["--platform", p]
    subprocess.run(cmd + specs, check=True)
    return sorted(p.name for p in out.glob("*.whl"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="pack the data (and download the wheels) into --out")
    p.add_argument("--data", type=Path, required=True, help="image-folder CIFAR-10")
    p.add_argument("--out", type=Path, default=Path(".device"))
    p.add_argument("--no-wheels", action="store_true", help="pack the data only")
    u = sub.add_parser("unpack", help="rebuild the image folders from a pack")
    u.add_argument("pack", type=Path)
    u.add_argument("dest", type=Path)
    args = parser.parse_args()

    if args.cmd == "pack":
        info = pack_tree(args.data, args.out / "cifar10.npz")
        print(f"{args.out / 'cifar10.npz'}: {info['files']} files, {info['headers']} distinct "
              f"header(s), {info['bytes_in'] / 1e6:.1f} MB -> {info['bytes_out'] / 1e6:.1f} MB, "
              f"sha256 {info['digest'][:16]}…")
        if not args.no_wheels:
            for name in download_wheels(args.out / "wheels"):
                print(f"{args.out / 'wheels'}/{name}")
    else:
        info = unpack_tree(args.pack, args.dest)
        what = "already there" if info["reused"] else "unpacked"
        print(f"{args.dest}: {info['files']} files {what}, sha256 {info['digest'][:16]}… verified")
    return 0


if __name__ == "__main__":
    sys.exit(main())
