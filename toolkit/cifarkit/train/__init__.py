"""Training: recipes (``seed``, ``default``), the fit loop, callbacks and run artifacts.

Keras is imported when ``train`` runs, not when this package is imported.
"""

from __future__ import annotations

from typing import Any

from cifarkit.train.recipes import RECIPES, Recipe, get_recipe, recipe_from_dict


def train(*args: Any, **kwargs: Any) -> Any:
    """See :func:`cifarkit.train.fit.train`."""
    from cifarkit.train.fit import train as _train

    return _train(*args, **kwargs)


__all__ = ["RECIPES", "Recipe", "get_recipe", "recipe_from_dict", "train"]
