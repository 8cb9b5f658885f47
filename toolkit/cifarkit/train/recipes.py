"""Training recipes: ``seed`` reproduces the notebook, ``default`` is the toolkit's own.

``default`` (measured on this project's 2-core CPU; see the README's results):
- Nesterov SGD, momentum 0.9, batch 128, peak learning rate 0.05 reached by a linear
  warm-up over 2 epochs (at most 20 % of the run, so short runs warm up and decay too), then
  cosine decay to 0 (a one-cycle shape: fast and stable).
- Decoupled weight decay 5e-3 per unit learning rate (≈ PyTorch's coupled 5e-4 with
  momentum 0.9), not applied to biases or BatchNorm parameters.
- Label smoothing 0.1.
- Augmentation: random horizontal flip and random translation by up to 4 pixels
  (reflection-padded crop) — the two standard CIFAR-10 augmentations.
- A stratified 10 % validation split; the weights of the best validation epoch are kept.
- BatchNorm recalibration: before every validation pass, each BatchNorm layer's moving
  statistics are recomputed on 5,000 clean training images with dropout off (models with
  BatchNorm only). Dropout placed before BatchNorm, as in the notebook's cnn-batchnorm,
  otherwise leaves statistics that fit dropout-noised activations, not inference ones.

``fast`` is airbench94's recipe (the ``fastnet`` architectures' own; see
:mod:`cifarkit.models.fastnet`): Nesterov SGD with momentum 0.85 at batch 1024, peak
learning rate 1.5 (airbench's 11.5 per 1024 examples of summed loss, translated to Keras's
mean loss), a triangular schedule (0.2 → 1 over the first 23 % of steps, then down to 0.07),
decoupled weight decay 9e-3 per unit lr (airbench's coupled decay, amplified by momentum),
label smoothing 0.2, flips and 2 px translations, lookahead (an average of the weights every
5 steps, growing stronger towards the end), 10 epochs on all 50,000 training images; and, as
airbench: BatchNorm offsets learn 64× faster than the other weights (its ``bias_scaler``),
every trainable variable is decayed, biases included, and flips alternate (a fixed random
half of the images flipped, all of them flipped every other epoch, so each image is seen
both ways in any two consecutive epochs).

``fast-l`` is airbench95's change to ``fast``, for the wide ``fastnet-l``: 15 epochs and the
learning rate × 0.87 (airbench95 reaches 95.01 % with it, on the original pickles, TTA level 2).

``seed`` is the notebook exactly: plain SGD at 0.01, categorical cross-entropy, batch 32,
10 epochs, 25 % validation (stratified here: the notebook's unshuffled ``validation_split``
held out the last classes only), pixels/255 (inside the model), no augmentation.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, replace
from typing import Any

from cifarkit.errors import UsageError


@dataclass(frozen=True)
class Recipe:
    name: str
    epochs: int
    batch_size: int
    lr: float  # peak learning rate
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    warmup_epochs: float = 0.0
    schedule: str = "constant"  # "constant" | "cosine" | "triangle"
    lr_start_factor: float = 0.0  # triangle: lr at step 0, as a fraction of the peak
    lr_end_factor: float = 0.0  # triangle: lr at the last step, as a fraction of the peak
    label_smoothing: float = 0.0
    flip: bool = False
    translate: int = 0  # pixels
    val_split: float = 0.1
    restore_best: bool = False
    lookahead: bool = False
    # Fields added later must default to "off": a run saved before they existed resumes
    # with the defaults (see recipe_from_dict).
    # BatchNorm statistics recomputed on this many clean training images before each
    # validation (0: off); see cifarkit.train.recalibrate.
    bn_recalibration: int = 0
    # Learning-rate multiplier for BatchNorm offsets (airbench's bias_scaler); see
    # cifarkit.train.schedules.BiasScaledSGD.
    norm_bias_lr_scale: float = 1.0
    # Weight decay on every trainable variable, biases included (airbench); else kernels only.
    decay_biases: bool = False
    # Flip a fixed random half of the images, then flip all every other epoch (airbench).
    alternate_flip: bool = False
    # Side of the square cutout fills with the mean pixel in each training image (0: off).
    cutout: int = 0
    # Warm-up capped at this fraction of the run's steps (0: no cap), so a short run (say
    # `--epochs 3`) also decays. The warm-up keeps its slope (the peak over
    # ``warmup_epochs``): a run too short for all of it turns over at the rate it reached.
    # At the shipped models' lengths the cap is above ``warmup_epochs``: nothing changes.
    warmup_max_fraction: float = 0.0

    def warmup(self, steps_per_epoch: int) -> tuple[int, float]:
        """(warm-up steps, the learning rate it reaches as a fraction of ``lr``).

        ``warmup_epochs`` of steps, at most ``warmup_max_fraction`` of the run; a capped
        warm-up climbs at the full one's slope, from ``lr_start_factor`` (triangle) or 0.
        """
        full = int(round(self.warmup_epochs * steps_per_epoch))
        steps = full
        if self.warmup_max_fraction > 0:
            steps = min(full, int(round(self.warmup_max_fraction * self.epochs
                                        * steps_per_epoch)))
        if steps >= full or full == 0:
            return full, 1.0
        start = self.lr_start_factor if self.schedule == "triangle" else 0.0
        return steps, start + (1.0 - start) * steps / full

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: ``fast``'s warm-up cap: airbench94's 23 % of the steps. Its 2.3 warm-up epochs are under
#: it from 10 epochs on (its own 10, the 15 of fastnet's card): those runs are unchanged.
#: ``default`` caps at 20 %: its 2 epochs are under it from 10 epochs on (its 30, the 40 of
#: cnn-batchnorm's card). A shorter run warms up over 20 % of its steps at the full warm-up's
#: slope, so it peaks lower: the notebook's plain ``cnn`` (no BatchNorm) collapses to chance
#: when a 3-epoch run on 5,000 images climbs faster (seed 0: 16.5 % with a 30 % cap, 27.2 %
#: with 20 %; benchmarks/results/quick-check-3ep-5000.json).
WARMUP_MAX_FRACTION = 0.23

RECIPES: dict[str, Recipe] = {
    "seed": Recipe(name="seed", epochs=10, batch_size=32, lr=0.01, val_split=0.25),
    "default": Recipe(
        name="default",
        epochs=30,
        batch_size=128,
        lr=0.05,
        momentum=0.9,
        nesterov=True,
        weight_decay=5e-3,
        warmup_epochs=2,
        warmup_max_fraction=0.2,
        schedule="cosine",
        label_smoothing=0.1,
        flip=True,
        translate=4,
        val_split=0.1,
        restore_best=True,
        bn_recalibration=5000,
    ),
    "fast": Recipe(
        name="fast",
        epochs=10,
        batch_size=1024,
        lr=1.5,
        momentum=0.85,
        nesterov=True,
        weight_decay=9e-3,
        warmup_epochs=2.3,
        warmup_max_fraction=WARMUP_MAX_FRACTION,
        schedule="triangle",
        lr_start_factor=0.2,
        lr_end_factor=0.07,
        label_smoothing=0.2,
        flip=True,
        translate=2,
        val_split=0.0,
        restore_best=False,
        lookahead=True,
        norm_bias_lr_scale=64.0,
        decay_biases=True,
        alternate_flip=True,
    ),
}
RECIPES["fast-l"] = replace(RECIPES["fast"], name="fast-l", epochs=15, lr=1.5 * 0.87)


def get_recipe(name: str, **overrides: Any) -> Recipe:
    """The named recipe with ``overrides`` (``None`` values ignored) applied and checked."""
    if name not in RECIPES:
        raise UsageError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    recipe = replace(RECIPES[name], **{k: v for k, v in overrides.items() if v is not None})
    if recipe.epochs < 1:
        raise UsageError(f"--epochs must be at least 1, got {recipe.epochs}")
    if recipe.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {recipe.batch_size}")
    if not recipe.lr > 0:
        raise UsageError(f"--lr must be positive, got {recipe.lr}")
    if recipe.weight_decay < 0:
        raise UsageError(f"--weight-decay must be >= 0, got {recipe.weight_decay}")
    if not 0.0 <= recipe.label_smoothing < 1.0:
        raise UsageError(f"--label-smoothing must be in [0, 1), got {recipe.label_smoothing}")
    if not 0 <= recipe.cutout <= 32:
        raise UsageError(f"--cutout must be in [0, 32] (pixels), got {recipe.cutout}")
    if not 0.0 <= recipe.val_split < 1.0:
        raise UsageError(f"--val-split must be in [0, 1), got {recipe.val_split}")
    return recipe


def recipe_from_dict(saved: dict[str, Any]) -> Recipe:
    """The recipe a run recorded (``run.json`` / the resume state), rebuilt.

    Fields the record lacks (added to :class:`Recipe` after it was written) take their
    defaults, which are always "off", so an older run resumes with the training it had.
    """
    fields = Recipe.__dataclass_fields__
    unknown = sorted(set(saved) - set(fields))
    if unknown:
        raise UsageError(f"recorded recipe has unknown field(s) {unknown} (a newer cifarkit?)")
    required = [k for k, f in fields.items() if f.default is MISSING and k not in saved]
    if required:
        raise UsageError(f"recorded recipe lacks {required}; the record is damaged")
    return Recipe(**saved)
