"""The model registry: registry names are the user-facing architecture names.

Builders register with ``@register_model``; ``create_model(name, **kwargs)`` builds one and,
for an unknown name, fails once with the close matches. Modelled on timm's registry.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cifarkit.contract import check_image_size
from cifarkit.errors import UsageError


@dataclass(frozen=True)
class ModelInfo:
    name: str
    builder: Callable[..., Any]
    description: str
    family: str
    #: What the seed notebook reported for this architecture (or "" if it never ran it).
    notebook_accuracy: str = ""
    #: Registry defaults for the training recipes of this architecture.
    train_defaults: dict[str, Any] = field(default_factory=dict)
    #: "imagenet" for transfer models: they want pretrained weights by default.
    pretrained: str | None = None
    #: ``init(model, x_train)`` run by ``train`` before fitting (e.g. fastnet's whitening).
    data_init: Callable[[Any, Any], None] | None = None


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(
    name: str,
    *,
    description: str,
    family: str,
    notebook_accuracy: str = "",
    train_defaults: dict[str, Any] | None = None,
    pretrained: str | None = None,
    data_init: Callable[[Any, Any], None] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = ModelInfo(
            name, fn, description, family, notebook_accuracy, dict(train_defaults or {}),
            pretrained, data_init,
        )
        return fn

    return decorator


def check_num_classes(num_classes: int) -> None:
    """The argument checks every builder shares."""
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")


def check_input_size(input_size: int) -> None:
    """Builders take square RGB images of the contract's size range (``--image-size``)."""
    check_image_size(input_size)


def _ensure_loaded() -> None:
    # Importing the family modules registers them; they import Keras only inside builders.
    import importlib

    # In this order: `cifarkit models` lists the notebook's models first.
    for family in ("seed", "vgg", "fastnet"):
        importlib.import_module(f"cifarkit.models.{family}")


def list_models(pattern: str = "*") -> list[str]:
    _ensure_loaded()
    return [n for n in _REGISTRY if fnmatch.fnmatch(n, pattern)]


def get_model_info(name: str) -> ModelInfo:
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise UsageError(
            f"unknown architecture {name!r}.{hint} Known: {', '.join(_REGISTRY)}"
        ) from None


def create_model(name: str, **kwargs: Any) -> Any:
    """Build the Keras model registered as ``name`` (uncompiled)."""
    return get_model_info(name).builder(**kwargs)
