"""Images of subjects that are none of CIFAR-10's classes, from what scikit-image ships (nothing
is downloaded), as PNG folders for ``cifarkit bench --ood DIR``:

- ``lfw_subset/``: ``skimage.data.lfw_subset()``, 200 25×25 grey crops: 100 faces of Labeled
  Faces in the Wild (``faces/``) and 100 crops of other parts of those photos
  (``non-faces/``);
- ``photos/``: scikit-image's sample photographs whose subject is none of the ten classes,
  whole: a person (astronaut, camera man), coffee, coins, the moon, a book page, text, a
  clock, a rocket launch, the Hubble deep field, two microscope slides, a retina, a
  micro-aneurysm scan, brick, grass and gravel. Left out: ``chelsea``/``cat`` (a cat),
  ``horse`` (a horse silhouette), ``stereo_motorcycle`` (a vehicle, near ``automobile``), the
  synthetic images (colour wheel, logo, checkerboard, blobs, phantom) and those scikit-image
  fetches from the internet.

    python benchmarks/ood_sets.py /tmp/ood
    cifarkit bench fastnet-relu --precision fp32,int8 --data ../shared/data/cifar10 \\
        --ood /tmp/ood/lfw_subset --batch-sizes 1 --iterations 5 --json …
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

PHOTOS = ("astronaut", "camera", "coffee", "coins", "moon", "page", "text", "clock", "rocket",
          "hubble_deep_field", "immunohistochemistry", "cell", "retina", "microaneurysms",
          "brick", "grass", "gravel")


def write_lfw(root: Path) -> int:
    from skimage.data import lfw_subset

    images = (lfw_subset() * 255).round().astype(np.uint8)
    for i, img in enumerate(images):
        folder = root / ("faces" if i < 100 else "non-faces")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img, "L").save(folder / f"{i:03d}.png")
    return len(images)


def write_photos(root: Path) -> int:
    import skimage.data

    root.mkdir(parents=True, exist_ok=True)
    for name in PHOTOS:
        img = np.asarray(getattr(skimage.data, name)())
        Image.fromarray(img).save(root / f"{name}.png")
    return len(PHOTOS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder to write lfw_subset/ and photos/ into")
    args = parser.parse_args()
    n_lfw = write_lfw(args.out / "lfw_subset")
    n_photos = write_photos(args.out / "photos")
    print(f"wrote {n_lfw} images to {args.out / 'lfw_subset'}, {n_photos} to "
          f"{args.out / 'photos'}")


if __name__ == "__main__":
    main()
