"""Shared model definitions and their registry."""

from ._registry import ModelSpec, get_model, get_spec, list_models, register_model, unregister_model
from . import blitz, fashion  # noqa: F401  (importing registers the seed models)

__all__ = ["ModelSpec", "get_model", "get_spec", "list_models", "register_model", "unregister_model"]
