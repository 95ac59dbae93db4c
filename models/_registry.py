"""The model registry: one decorated builder function per model.

An entry carries what a benchmark needs besides the module itself: the shape of one
example input (its default size), the model's criterion factory, and the number of
classes. Builders are plain functions so that adding a model is one decorated function.

Models come from three places: the seed models (``models.blitz``, ``models.fashion``),
every torchvision classification architecture (``models.vision``, registered lazily by
name), and plug-ins: a module named with ``--model-module`` or an installed package's
``blitzbench.models`` entry point, loaded when the registry is first listed.
"""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
import importlib
import traceback
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Iterable, Iterator

import torch
from torch import nn

from .inputs import Batch, Images, Tokens, describe_output, floating_tensors

# Shorthands for the criteria the seed tutorials use, and cross-entropy over class labels.
LOSSES: dict[str, Callable[[], nn.Module]] = {
    "mse": nn.MSELoss,
    "nll": nn.NLLLoss,
    "cross_entropy": nn.CrossEntropyLoss,
}
# Criteria whose target is a real tensor shaped as the output; any other takes class labels.
REGRESSION_CRITERIA = (nn.MSELoss, nn.L1Loss, nn.SmoothL1Loss, nn.HuberLoss)
# The model is called with its targets and returns its loss (nanoGPT's model(idx, targets),
# Hugging Face's labels=): no criterion.
OWN_LOSS = "own"
ENTRY_POINT_GROUP = "blitzbench.models"
DEFAULT_BATCH_SIZE = 64  # the seed's DataLoader batch size


@dataclass(frozen=True)
class Decoder:
    """A decoder's shape, for the PaLM / nanoGPT FLOP estimate 6·N·T + 12·L·H·Q·T per token."""

    layers: int
    heads: int
    width: int  # the model dimension: heads × head size


@dataclass(frozen=True)
class ModelSpec:
    """What the harness needs to know to run a model: its builder, what it takes (``inputs``),
    how its loss is computed, and its optimizer's parameter groups."""

    name: str
    builder: Callable[..., nn.Module]
    inputs: Images | Tokens
    loss: str  # "own" (the model computes it from its targets), a LOSSES shorthand, or the criterion's name
    description: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)
    criterion: Callable[[], nn.Module] | None = None  # the factory; None: LOSSES[loss]
    family: str = "custom"
    # The builder takes image_size= (vision transformers size their position embedding), or
    # the model accepts other square sizes as they are (global pooling); False: only its own.
    resizable: bool = False
    size_arg: bool = False
    # torch.optim's parameter groups (a list of dicts) from the model; None: one group of all.
    param_groups: Callable[[nn.Module], list[dict]] | None = None
    batch_size: int = DEFAULT_BATCH_SIZE  # when the selection does not name one
    decoder: Decoder | None = None

    @property
    def tokens(self) -> bool:
        """Token ids in (a language model, an encoder), not images."""
        return isinstance(self.inputs, Tokens)

    @property
    def own_loss(self) -> bool:
        return self.loss == OWN_LOSS

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One sample at its default size, without the batch dimension (a sequence's length)."""
        return (self.inputs.seq_len,) if isinstance(self.inputs, Tokens) else self.inputs.shape

    @property
    def num_classes(self) -> int:
        return self.inputs.labels if isinstance(self.inputs, Tokens) else self.inputs.num_classes

    @property
    def flatten_input(self) -> bool:
        return isinstance(self.inputs, Images) and self.inputs.flatten

    @property
    def default_image_size(self) -> int | None:
        return None if self.tokens else self.inputs.default_size

    def build(self, image_size: int | None = None, **kwargs) -> nn.Module:
        if self.size_arg:
            kwargs["image_size"] = image_size or self.default_image_size
        return self.builder(**kwargs)

    def make_criterion(self) -> nn.Module | None:
        """The criterion over output and target; None when the model computes its own loss."""
        if self.own_loss:
            return None
        return (self.criterion or LOSSES[self.loss])()

    @property
    def takes_labels(self) -> bool:
        """The target is class labels (or token ids), not a tensor shaped as the output."""
        return self.tokens or self.own_loss or not isinstance(self.make_criterion(), REGRESSION_CRITERIA)

    def shape_at(self, image_size: int | None) -> tuple[int, ...]:
        """One sample's shape at ``image_size`` (None: the default)."""
        return self.input_shape if self.tokens else self.inputs.shape_at(image_size)

    def size_problem(self, image_size: int | None) -> str | None:
        """Why the model cannot take ``image_size`` px inputs, or None when it can."""
        if image_size is None or image_size == self.default_image_size:
            return None
        if self.default_image_size is None:
            what = self.inputs.describe() if self.tokens else f"its input is {self.input_shape}"
            return f"model {self.name!r} does not take images ({what})"
        if not self.resizable:
            return (f"model {self.name!r} takes only {self.default_image_size} px inputs "
                    "(its layers fix the input size)")
        return _meta_size_problem(self, image_size)

    def seq_problem(self, seq_len: int | None) -> str | None:
        """Why the model cannot take sequences of ``seq_len`` tokens, or None when it can."""
        if seq_len is None:
            return None
        if not isinstance(self.inputs, Tokens):
            return f"model {self.name!r} takes images ({self.inputs.describe()}), not token sequences"
        if seq_len > self.inputs.max_seq_len:
            return (f"model {self.name!r} takes sequences of at most {self.inputs.max_seq_len} tokens "
                    "(its block size / position embeddings)")
        return None

    def make_batch(
        self,
        batch_size: int,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        rng_seed: int = 0,
        image_size: int | None = None,
        seq_len: int | None = None,
    ) -> Batch:
        """A synthetic batch as the model takes it, on ``device``; floating tensors in ``dtype``
        (token ids and labels stay integers); no downloads.

        ``rng_seed`` seeds the random numbers ("seed" alone means the tutorials)."""
        gen = torch.Generator().manual_seed(rng_seed)
        batch = self.inputs.batch(batch_size, gen, regression=not self.takes_labels, image_size=image_size,
                                  seq_len=seq_len)
        return batch.map(lambda t: t.to(device=device, dtype=dtype) if t.is_floating_point() else t.to(device))

    def prepare(self, inputs: torch.Tensor) -> torch.Tensor:
        """Reshape a batch the way the seed's training loop does before calling the model."""
        return inputs.view(inputs.shape[0], -1) if self.flatten_input else inputs


@lru_cache(maxsize=None)
def _meta_size_problem(spec: ModelSpec, image_size: int) -> str | None:
    """Run the model once on the meta device (shapes only, no arithmetic) at this size."""
    try:
        with torch.device("meta"):
            model = spec.build(image_size=image_size)
            model.eval()(torch.empty((1, *spec.shape_at(image_size))))
    except NotImplementedError:
        return None  # an operator without a meta kernel: nothing learnt, let the run try
    except Exception as exc:  # noqa: BLE001  the architecture's own complaint is the reason
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return f"model {spec.name!r} does not accept {image_size} px inputs: {reason}"
    return None


@lru_cache(maxsize=None)
def output_problem(spec: ModelSpec) -> str | None:
    """Why the model's output cannot be benchmarked (it holds no floating tensor: nothing to
    check, nothing a loss could come from), or None. One forward on the meta device (shapes only)
    with a batch of one at a short length."""
    try:
        with torch.device("meta"):
            model = spec.build()
        batch = spec.make_batch(1, device="meta", seq_len=min(8, spec.input_shape[0]) if spec.tokens else None)
        with torch.no_grad():
            output = batch.call(model.eval())
    except Exception:  # noqa: BLE001  no meta kernel, or a model that computes on real values:
        return None  # nothing learnt here; the run itself says what fails
    if not floating_tensors(output):
        return (f"model {spec.name!r} returns {describe_output(output)}: no floating-point tensor to time, "
                "check or take a loss from (return the logits, a tuple, a dict or a ModelOutput)")
    return None


_REGISTRY: dict[str, ModelSpec] = {}
# Models made by name on first use (prefix -> function making the entry): hf:<model_type>.
_RESOLVERS: dict[str, Callable[[str], ModelSpec]] = {}
# Families registered on first listing (name -> function registering them): torchvision.
_LAZY: dict[str, Callable[[], None]] = {}
_plugins_loaded = False


def register_model(
    *,
    input_shape: tuple[int, ...] | None = None,
    num_classes: int | None = None,
    inputs: Images | Tokens | None = None,
    loss: str | None = None,
    criterion: Callable[[], nn.Module] | None = None,
    flatten_input: bool = False,
    name: str | None = None,
    tags: tuple[str, ...] = (),
    family: str = "custom",
    resizable: bool = False,
    size_arg: bool = False,
    param_groups: Callable[[nn.Module], list[dict]] | None = None,
    batch_size: int | None = None,
    decoder: Decoder | None = None,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a model builder under its function name (or ``name``).

    What it takes: ``inputs=`` (``models.tokens(...)``, ``models.images(...)``), or float images
    of ``input_shape`` with ``num_classes`` labels. Its loss: ``loss="own"`` (the model is called
    with its targets and returns the loss, alone or in its output), ``criterion=`` a callable
    returning an ``nn.Module``, or ``loss=`` one of the shorthands ``mse``, ``nll``,
    ``cross_entropy``. ``param_groups=`` a function of the model returning torch.optim's list of
    parameter-group dicts (weight decay on some parameters only); ``batch_size=`` the batch when
    the selection names none; ``decoder=`` ``Decoder(layers, heads, width)`` for the 6·N·T FLOP
    estimate."""
    if (loss is None) == (criterion is None):
        raise ValueError("give the model's loss: loss= one of "
                         f"{', '.join((*LOSSES, OWN_LOSS))}, or criterion= a callable returning an nn.Module")
    if loss is not None and loss != OWN_LOSS and loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; valid losses: {', '.join((*LOSSES, OWN_LOSS))}")
    if inputs is None:
        if input_shape is None or num_classes is None:
            raise ValueError("give what the model takes: inputs= (models.tokens(...), models.images(...)), "
                             "or input_shape= and num_classes= for images")
        inputs = Images(tuple(input_shape), num_classes, flatten_input)
    elif input_shape is not None or num_classes is not None or flatten_input:
        raise ValueError("inputs= already says what the model takes: drop input_shape=, num_classes= and "
                         "flatten_input=")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"invalid batch_size {batch_size!r}: expected a positive integer")

    def decorator(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or builder.__name__
        if key in _REGISTRY:
            raise ValueError(f"model {key!r} is already registered")
        _REGISTRY[key] = make_spec(key, builder, inputs, loss=loss, criterion=criterion, tags=tags,
                                   family=family, resizable=resizable, size_arg=size_arg,
                                   param_groups=param_groups, batch_size=batch_size, decoder=decoder)
        return builder

    return decorator


def make_spec(key: str, builder: Callable[..., nn.Module], inputs: Images | Tokens, *, loss: str | None,
              criterion: Callable[[], nn.Module] | None, tags: tuple[str, ...] = (), family: str = "custom",
              resizable: bool = False, size_arg: bool = False,
              param_groups: Callable[[nn.Module], list[dict]] | None = None, batch_size: int | None = None,
              decoder: Decoder | None = None) -> ModelSpec:
    """The registry entry of a builder (also for models made by name: ``hf:gpt2``)."""
    doc = (builder.__doc__ or "").strip().splitlines()
    label = loss if loss is not None else getattr(criterion, "__name__", type(criterion).__name__)
    return ModelSpec(name=key, builder=builder, inputs=inputs, loss=label, description=doc[0] if doc else "",
                     tags=tuple(tags), criterion=criterion, family=family, resizable=resizable or size_arg,
                     size_arg=size_arg, param_groups=param_groups,
                     batch_size=batch_size or DEFAULT_BATCH_SIZE, decoder=decoder)


def lazy_family(name: str, register: Callable[[], None]) -> None:
    """Register a family's models the first time the registry is listed or looked up."""
    _LAZY[name] = register


def _complete() -> None:
    global _plugins_loaded
    while _LAZY:
        _LAZY.pop(next(iter(_LAZY)))()
    if not _plugins_loaded:
        _plugins_loaded = True
        load_entry_points()


def load_entry_points() -> list[str]:
    """Import the installed plug-ins' model modules (entry point group ``blitzbench.models``)."""
    from importlib.metadata import entry_points

    loaded = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        ep.load()
        loaded.append(ep.name)
    return loaded


def import_model_module(module: str) -> None:
    """Import a module that registers models with ``register_model`` (``--model-module``)."""
    _complete()
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise ValueError(f"--model-module {module}: cannot import it ({type(exc).__name__}: {exc}); "
                         "give an importable module (on PYTHONPATH) that calls models.register_model") from None
    except ValueError as exc:  # a registration it makes is refused (a bad vocab_size, a loss...)
        raise ValueError(f"--model-module {module}: {exc}") from None
    except Exception as exc:  # the module's own code failed: name where, not a traceback of the harness
        text = exc.msg if isinstance(exc, SyntaxError) else exc
        raise ValueError(f"--model-module {module}: cannot import it: {_where(exc)}: {type(exc).__name__}: {text}") \
            from None


def _where(exc: Exception) -> str:
    """The file and line an import failed at: a SyntaxError's own, else the innermost frame."""
    if isinstance(exc, SyntaxError):
        return f"{exc.filename}, line {exc.lineno}"
    frame = traceback.extract_tb(exc.__traceback__)[-1]
    return f"{frame.filename}, line {frame.lineno}"


def list_models(pattern: str | None = None, *, lazy: bool = True) -> list[str]:
    """Registered model names in registration order, optionally filtered by a glob. ``lazy=False``
    lists only what is registered already (the built-in models, never a lazy family such as
    torchvision's, whose import costs seconds)."""
    if lazy:
        _complete()
    names = list(_REGISTRY)
    return [n for n in names if fnmatch.fnmatchcase(n, pattern)] if pattern else names


def register_resolver(prefixes: Iterable[str], resolve: Callable[[str], ModelSpec]) -> None:
    """Make models named ``<prefix><anything>`` on first use with ``resolve(name)`` (which raises
    a ValueError naming what is wrong with a name it cannot make)."""
    for prefix in prefixes:
        _RESOLVERS[prefix] = resolve


def get_spec(name: str) -> ModelSpec:
    if name not in _REGISTRY:
        _complete()
    if name not in _REGISTRY:
        resolver = next((r for prefix, r in _RESOLVERS.items() if name.startswith(prefix)), None)
        if resolver is not None:
            _REGISTRY[name] = resolver(name)
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = f"; closest: {', '.join(close)}" if close else ""
        by_name = f"; by name: {', '.join(p + '<model_type>' for p in _RESOLVERS)}" if _RESOLVERS else ""
        raise ValueError(f"unknown model {name!r}{hint}; known models: {', '.join(_REGISTRY)}{by_name}") from None


def get_model(name: str, **kwargs) -> nn.Module:
    """Build a fresh instance of a registered model."""
    return get_spec(name).build(**kwargs)


def unregister_model(name: str) -> None:
    """Remove an entry; for tests and plugins that register temporary variants."""
    _REGISTRY.pop(name, None)


@contextlib.contextmanager
def _parameters_on_meta() -> Iterator[None]:
    """Build a module with its parameters on the meta device: each is allocated empty (never
    touched) and moved to meta as registered, so initialisation costs nothing. (Building under
    ``torch.device("meta")`` fails for builders that compute with tensors, as regnet does.)"""
    original = nn.Module.register_parameter

    def register(self: nn.Module, name: str, param: nn.Parameter | None) -> None:
        original(self, name, param)
        if param is not None and param.device.type != "meta":
            self._parameters[name] = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)

    nn.Module.register_parameter = register
    try:
        yield
    finally:
        nn.Module.register_parameter = original


@lru_cache(maxsize=None)
def parameter_count(name: str) -> int:
    """The model's parameter count, from a build whose parameters live on the meta device."""
    with _parameters_on_meta():
        model = get_spec(name).build()
    return sum(p.numel() for p in model.parameters())
