"""Hugging Face ``transformers`` models by name, built from a config (no weights, no hub).

``hf:<model_type>`` is ``AutoModelForCausalLM`` and ``hf-cls:<model_type>``
``AutoModelForSequenceClassification`` (2 labels), each from ``AutoConfig.for_model(model_type,
...)`` at a small default size (2 layers, 128 hidden, 2 heads, feed-forward 512) that
``--hf-config KEY=VALUE,...`` overrides (any config attribute: ``num_hidden_layers=4``,
``hidden_size=256``, ``vocab_size=8192``...; carried to child processes as the environment
variable ``BLITZBENCH_HF_CONFIG``). The model takes ``input_ids``, ``attention_mask`` and
``labels`` by name and computes its own loss (causal LMs shift the labels themselves).

``transformers`` is optional (``pip install 'blitzbench[hf]'``; the nox sessions install it);
without it an ``hf:`` model is refused with the install command.
"""

from __future__ import annotations

import difflib
import os
from typing import Any

from torch import nn

from ._registry import Decoder, ModelSpec, make_spec
from .decoder import decay_groups
from .inputs import tokens

PREFIXES = {"hf:": "causal", "hf-cls:": "classifier"}
ENV = "BLITZBENCH_HF_CONFIG"
INSTALL = "pip install 'blitzbench[hf]' (or pip install transformers)"
# Small enough for a CPU: what a config gets unless --hf-config says otherwise. The names are the
# common ones; each config maps them to its own (GPT-2's n_layer, n_embd, n_head).
SMALL = {"num_hidden_layers": 2, "hidden_size": 128, "num_attention_heads": 2, "intermediate_size": 512,
         "use_cache": False}
DEFAULT_SEQ_LEN = 128
DEFAULT_BATCH = 8
NUM_LABELS = 2


def is_hf_name(name: str) -> bool:
    return name.startswith(tuple(PREFIXES))


def parse_overrides(text: str) -> dict[str, Any]:
    """``KEY=VALUE,...`` -> a dict of config values (ints, floats, true/false, or strings)."""
    found: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ValueError(f"invalid --hf-config item {item!r}; expected KEY=VALUE, e.g. num_hidden_layers=4")
        found[key.strip()] = _value(value.strip())
    return found


def _value(text: str) -> Any:
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def overrides() -> dict[str, Any]:
    return parse_overrides(os.environ.get(ENV, ""))


def _transformers():
    # Nothing may reach the hub: configs are built locally, models from them without weights.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import transformers
    except ImportError:
        return None
    return transformers


def model_types() -> list[str]:
    """The model types transformers knows (its config registry), or [] without it."""
    lib = _transformers()
    return sorted(lib.CONFIG_MAPPING.keys()) if lib is not None else []


def resolve(name: str) -> ModelSpec:
    """The registry entry of ``hf:<type>`` / ``hf-cls:<type>``; a ValueError names what is wrong."""
    prefix = next(p for p in PREFIXES if name.startswith(p))
    kind, model_type = PREFIXES[prefix], name[len(prefix):]
    lib = _transformers()
    if lib is None:
        raise ValueError(f"model {name!r} needs Hugging Face transformers, which is not installed: {INSTALL}")
    if model_type not in lib.CONFIG_MAPPING:
        close = difflib.get_close_matches(model_type, model_types(), n=3)
        hint = f"; closest: {', '.join(prefix + c for c in close)}" if close else ""
        raise ValueError(f"unknown Hugging Face model type {model_type!r} in {name!r}{hint} "
                         f"(transformers {lib.__version__} knows {len(lib.CONFIG_MAPPING)} types)")
    config = make_config(lib, model_type, kind)
    auto = lib.AutoModelForCausalLM if kind == "causal" else lib.AutoModelForSequenceClassification

    def build() -> nn.Module:
        return auto.from_config(config)

    build.__doc__ = f"Hugging Face {auto.__name__} for {model_type!r} from its config (no weights)"
    vocab = int(config.vocab_size)
    limit = _max_positions(config)
    inputs = tokens(vocab_size=vocab, seq_len=min(DEFAULT_SEQ_LEN, limit), max_seq_len=limit, keywords=True,
                    attention_mask=True, target="same" if kind == "causal" else "class",
                    num_classes=None if kind == "causal" else NUM_LABELS)
    decoder = (Decoder(int(config.num_hidden_layers), int(config.num_attention_heads), int(config.hidden_size))
               if kind == "causal" and _has(config, "num_hidden_layers", "num_attention_heads", "hidden_size")
               else None)
    return make_spec(name, build, inputs, loss="own", criterion=None, tags=("transformer", "hf"),
                     family="huggingface", param_groups=decay_groups, batch_size=DEFAULT_BATCH, decoder=decoder)


def make_config(lib: Any, model_type: str, kind: str) -> Any:
    values = dict(SMALL, **overrides())
    if kind == "classifier":
        # A padding token: decoder classifiers (GPT-2's) pool the last non-padding token.
        values = dict({"num_labels": NUM_LABELS, "pad_token_id": 0}, **values)
    return lib.AutoConfig.for_model(model_type, **values)


def _has(config: Any, *names: str) -> bool:
    return all(isinstance(getattr(config, n, None), int) for n in names)


def _max_positions(config: Any) -> int:
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return 1 << 16  # a model without a fixed limit (relative positions)
