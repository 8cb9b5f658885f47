"""The model zoo: a registry of Keras architectures (``cifarkit models``)."""

from cifarkit.models.registry import (
    ModelInfo,
    create_model,
    get_model_info,
    list_models,
    register_model,
)

__all__ = ["ModelInfo", "create_model", "get_model_info", "list_models", "register_model"]
