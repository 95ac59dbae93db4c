"""Shared model definitions and their registry."""

from ._registry import (ModelSpec, get_model, get_spec, import_model_module, list_models, parameter_count,
                        register_model, unregister_model)
from . import blitz, fashion, vision  # noqa: F401  (importing registers the seed models; torchvision's lazily)

__all__ = ["ModelSpec", "get_model", "get_spec", "import_model_module", "list_models", "parameter_count",
           "register_model", "unregister_model"]
