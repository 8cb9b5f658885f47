"""Training: recipes (``seed``, ``default``), the fit loop, callbacks and run artifacts.

Keras is imported when ``train`` runs, not when this package is imported.
"""

from __future__ import annotations

from cifarkit.train.fit import TrainOptions, TrainResult, train
from cifarkit.train.recipes import RECIPES, Recipe, get_recipe, recipe_from_dict

__all__ = ["RECIPES", "Recipe", "TrainOptions", "TrainResult", "get_recipe", "recipe_from_dict",
           "train"]
