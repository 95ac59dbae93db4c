"""Shared model definitions and their registry.

``register_model`` registers a builder; ``tokens(...)`` / ``images(...)`` say what it takes,
``Decoder(...)`` a decoder's shape for the FLOP estimate, and ``loss="own"`` that it computes
its own loss. Models by name: ``hf:<model_type>`` and ``hf-cls:<model_type>`` (Hugging Face,
``models.hf``)."""

from . import blitz, fashion, decoder, encoder, hf, vision  # noqa: F401  (importing registers their models)  isort: skip
from ._registry import (OWN_LOSS, Decoder, ModelSpec, get_model, get_spec, import_model_module, list_models,
                        output_problem, parameter_count, register_model, register_resolver, unregister_model)
from .inputs import Batch, Images, Tokens, floating_tensors, images, loss_of, prediction, tokens

register_resolver(hf.PREFIXES, hf.resolve)

__all__ = ["OWN_LOSS", "Batch", "Decoder", "Images", "ModelSpec", "Tokens", "floating_tensors", "get_model",
           "get_spec", "images", "import_model_module", "list_models", "loss_of", "output_problem",
           "parameter_count", "prediction", "register_model", "tokens", "unregister_model"]
