"""What a model takes: float images, or integer token ids of a vocabulary, and the target.

A registration names its inputs (``register_model(inputs=tokens(vocab_size=65, seq_len=64))``;
without ``inputs=`` a model takes ``images`` of its ``input_shape``). The inputs make a
synthetic ``Batch`` for any batch size and length, say how the model is called (positional
arguments, or named ones: ``input_ids``, ``attention_mask``, ``labels``) and how its target
reaches it when the model computes its own loss (``loss="own"``).

    tokens(vocab_size, seq_len)                       # model(ids) / model(ids, targets): nanoGPT
    tokens(vocab_size, seq_len, keywords=True,        # model(input_ids=, attention_mask=, labels=)
           attention_mask=True, target="same")        #   Hugging Face causal LMs (they shift labels)
    tokens(vocab_size, seq_len, keywords=True, target="class", num_classes=2)   # a classifier
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator

import torch

# What a token workload's target is: the next token ids (the model compares position i with
# token i+1: nanoGPT's targets), the input ids themselves (a model that shifts them itself:
# Hugging Face causal LMs' labels), or one class label per sequence (a classifier).
TOKEN_TARGETS = ("next", "same", "class")


@dataclass
class Batch:
    """One batch as the model takes it: positional and keyword inputs, and the target.

    ``target_name`` says how a model that computes its own loss gets the target: as the
    keyword argument of that name, or (None) as the positional argument after the inputs."""

    args: tuple[torch.Tensor, ...]
    kwargs: dict[str, torch.Tensor] = field(default_factory=dict)
    target: torch.Tensor | None = None
    target_name: str | None = None

    def call(self, fn: Callable[..., Any], *, with_target: bool = False) -> Any:
        """``fn`` on the inputs; with the target too when the model computes its own loss."""
        if not with_target:
            return fn(*self.args, **self.kwargs)
        if self.target_name is not None:
            return fn(*self.args, **self.kwargs, **{self.target_name: self.target})
        return fn(*self.args, self.target, **self.kwargs)

    def tensors(self) -> Iterator[torch.Tensor]:
        """Every tensor of the batch, the target included."""
        yield from self.args
        yield from self.kwargs.values()
        if self.target is not None:
            yield self.target

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> "Batch":
        """A batch with ``fn`` applied to every tensor (the target included)."""
        return replace(self, args=tuple(fn(t) for t in self.args),
                       kwargs={k: fn(t) for k, t in self.kwargs.items()},
                       target=None if self.target is None else fn(self.target))

    def floating(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> "Batch":
        """``fn`` on the floating-point tensors only (token ids and labels stay integers)."""
        return self.map(lambda t: fn(t) if t.is_floating_point() else t)

    @property
    def first(self) -> torch.Tensor:
        """The main input: the images, or the token ids."""
        return self.args[0] if self.args else next(iter(self.kwargs.values()))


@dataclass(frozen=True)
class Images:
    """Float images (or flat feature vectors) of ``shape`` per sample; class labels or, for a
    regression criterion, a random target of ``num_classes`` values."""

    shape: tuple[int, ...]
    num_classes: int
    flatten: bool = False  # the seed's view(B, -1) before the model
    kind: str = "images"

    @property
    def default_size(self) -> int | None:
        return self.shape[-1] if len(self.shape) == 3 else None

    def shape_at(self, image_size: int | None) -> tuple[int, ...]:
        if image_size is None or len(self.shape) != 3:
            return self.shape
        return (self.shape[0], image_size, image_size)

    def batch(self, batch_size: int, gen: torch.Generator, *, regression: bool,
              image_size: int | None = None, seq_len: int | None = None) -> Batch:
        inputs = torch.randn((batch_size, *self.shape_at(image_size)), generator=gen)
        if regression:  # the blitz regresses the 10 outputs onto a random target of that shape
            target = torch.randn((batch_size, self.num_classes), generator=gen)
        else:
            target = torch.randint(0, self.num_classes, (batch_size,), generator=gen)
        if self.flatten:
            inputs = inputs.view(batch_size, -1)
        return Batch((inputs,), target=target)

    def describe(self) -> str:
        return "x".join(str(d) for d in self.shape)


@dataclass(frozen=True)
class Tokens:
    """Integer token ids in ``[0, vocab_size)``, ``seq_len`` of them per sample by default (at
    most ``max_seq_len``: the model's block size or position embeddings)."""

    vocab_size: int
    seq_len: int
    max_seq_len: int
    keywords: bool = False  # model(input_ids=..., ...) rather than model(ids)
    attention_mask: bool = False  # also pass attention_mask (all ones: no padding)
    target: str = "next"
    num_classes: int | None = None  # target="class": labels in [0, num_classes)
    input_name: str = "input_ids"
    target_name: str = "labels"
    kind: str = "tokens"

    @property
    def labels(self) -> int:
        """How many values the target takes: the vocabulary, or the classes."""
        return self.num_classes if self.target == "class" else self.vocab_size

    def batch(self, batch_size: int, gen: torch.Generator, *, regression: bool = False,
              image_size: int | None = None, seq_len: int | None = None) -> Batch:
        length = seq_len or self.seq_len
        window = torch.randint(0, self.vocab_size, (batch_size, length + 1), generator=gen)
        return self.from_window(window, gen)

    def from_window(self, window: torch.Tensor, gen: torch.Generator | None = None) -> Batch:
        """A batch from ``seq_len + 1`` consecutive tokens per sample (a token file's windows):
        the first ``seq_len`` are the inputs, the target follows from them."""
        # Contiguous, as a loader's stacked batches are (nanoGPT's loss views its targets flat).
        ids = window[:, :-1].contiguous()
        if self.target == "next":
            target = window[:, 1:].contiguous()
        elif self.target == "same":
            target = ids
        else:  # one label per sequence: random when made, a function of the text it labels when read
            target = (torch.randint(0, self.labels, (ids.shape[0],), generator=gen) if gen is not None
                      else ids[:, 0] % self.labels)
        if not self.keywords:
            return Batch((ids,), target=target)
        kwargs = {self.input_name: ids}
        if self.attention_mask:
            kwargs["attention_mask"] = torch.ones_like(ids)
        return Batch((), kwargs, target=target, target_name=self.target_name)

    def describe(self) -> str:
        return f"tokens: vocab {self.vocab_size:,}, seq {self.seq_len} (max {self.max_seq_len})"


def tokens(vocab_size: int, seq_len: int, *, max_seq_len: int | None = None, keywords: bool = False,
           attention_mask: bool = False, target: str = "next", num_classes: int | None = None,
           input_name: str = "input_ids", target_name: str = "labels") -> Tokens:
    """Token-id inputs for ``register_model(inputs=...)``; see the module's docstring."""
    if not isinstance(vocab_size, int) or vocab_size < 2:
        raise ValueError(f"invalid vocab_size {vocab_size!r}: a vocabulary has at least 2 tokens")
    if not isinstance(seq_len, int) or seq_len < 1:
        raise ValueError(f"invalid seq_len {seq_len!r}: a sequence has at least 1 token")
    limit = seq_len if max_seq_len is None else max_seq_len
    if limit < seq_len:
        raise ValueError(f"seq_len {seq_len} is above max_seq_len {limit}")
    if target not in TOKEN_TARGETS:
        raise ValueError(f"invalid target {target!r}; valid choices: {', '.join(TOKEN_TARGETS)}")
    if (target == "class") != (num_classes is not None):
        raise ValueError("target='class' takes num_classes= (the number of labels), and only it does")
    if num_classes is not None and num_classes < 2:
        raise ValueError(f"invalid num_classes {num_classes!r}: a classifier has at least 2 classes")
    if attention_mask and not keywords:
        raise ValueError("attention_mask=True passes it by name: give keywords=True")
    return Tokens(vocab_size, seq_len, limit, keywords, attention_mask, target, num_classes, input_name,
                  target_name)


def images(shape: tuple[int, ...], num_classes: int, *, flatten: bool = False) -> Images:
    """Float image inputs for ``register_model(inputs=...)``: the same as ``input_shape=``,
    ``num_classes=`` and ``flatten_input=``."""
    if num_classes < 1 or not shape or any(d < 1 for d in shape):
        raise ValueError(f"invalid image inputs: shape {shape!r}, {num_classes!r} classes")
    return Images(tuple(shape), num_classes, flatten)


Inputs = Images | Tokens


# --- what a model returns --------------------------------------------------------------------


def _values(output: Any) -> list[Any]:
    """The entries of a model's output: itself, a tuple's items, or a dict's (and a Hugging Face
    ``ModelOutput``'s, which is an OrderedDict holding the fields that are set) values."""
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, dict):
        return list(output.values())
    if isinstance(output, (tuple, list)):
        return list(output)
    return []


def floating_tensors(output: Any) -> list[torch.Tensor]:
    """Every floating-point tensor of a model's output (nested tuples and dicts included), in
    order: what the finite and correctness checks compare."""
    found = []
    for value in _values(output):
        if isinstance(value, torch.Tensor):
            if value.is_floating_point():
                found.append(value)
        elif isinstance(value, (tuple, list, dict)):
            found.extend(floating_tensors(value))
    return found


def loss_of(output: Any) -> torch.Tensor | None:
    """The loss in a model's output: its ``loss`` entry, else its one 0-dim floating tensor (a
    tensor that is itself 0-dim included); None when there is none, or several 0-dim ones."""
    if isinstance(output, dict) and isinstance(output.get("loss"), torch.Tensor):
        return output["loss"]
    scalars = [t for t in floating_tensors(output) if t.dim() == 0]
    return scalars[0] if len(scalars) == 1 else None


def prediction(output: Any) -> torch.Tensor | None:
    """What a criterion compares with the target: the output itself, a dict's ``logits``, else the
    first floating tensor that is not 0-dim."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict) and isinstance(output.get("logits"), torch.Tensor):
        return output["logits"]
    return next((t for t in floating_tensors(output) if t.dim() > 0), None)


def describe_output(output: Any) -> str:
    """A short account of an output's structure, for error messages."""
    if isinstance(output, torch.Tensor):
        return f"Tensor{tuple(output.shape)} {output.dtype}"
    if isinstance(output, dict):
        inner = ", ".join(f"{k}: {describe_output(v)}" for k, v in output.items())
        return f"{type(output).__name__}({inner})"
    if isinstance(output, (tuple, list)):
        return f"{type(output).__name__}({', '.join(describe_output(v) for v in output)})"
    return type(output).__name__
