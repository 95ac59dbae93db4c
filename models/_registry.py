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
from typing import Callable, Iterator

import torch
from torch import nn

# Shorthands for the criteria the seed tutorials use, and cross-entropy over class labels.
LOSSES: dict[str, Callable[[], nn.Module]] = {
    "mse": nn.MSELoss,
    "nll": nn.NLLLoss,
    "cross_entropy": nn.CrossEntropyLoss,
}
# Criteria whose target is a real tensor shaped as the output; any other takes class labels.
REGRESSION_CRITERIA = (nn.MSELoss, nn.L1Loss, nn.SmoothL1Loss, nn.HuberLoss)
ENTRY_POINT_GROUP = "blitzbench.models"


@dataclass(frozen=True)
class ModelSpec:
    """What the harness needs to know to run a model."""

    name: str
    builder: Callable[..., nn.Module]
    input_shape: tuple[int, ...]  # one sample at its default size, without the batch dimension
    loss: str  # a LOSSES shorthand, or the criterion's class name
    num_classes: int
    flatten_input: bool = False  # the seed reshapes images with view(B, -1) before the model
    description: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)
    criterion: Callable[[], nn.Module] | None = None  # the factory; None: LOSSES[loss]
    family: str = "custom"
    # The builder takes image_size= (vision transformers size their position embedding), or
    # the model accepts other square sizes as they are (global pooling); False: only its own.
    resizable: bool = False
    size_arg: bool = False

    @property
    def default_image_size(self) -> int | None:
        return self.input_shape[-1] if len(self.input_shape) == 3 else None

    def build(self, image_size: int | None = None, **kwargs) -> nn.Module:
        if self.size_arg:
            kwargs["image_size"] = image_size or self.default_image_size
        return self.builder(**kwargs)

    def make_criterion(self) -> nn.Module:
        return (self.criterion or LOSSES[self.loss])()

    @property
    def takes_labels(self) -> bool:
        """The criterion compares with class labels (not a target shaped as the output)."""
        return not isinstance(self.make_criterion(), REGRESSION_CRITERIA)

    def shape_at(self, image_size: int | None) -> tuple[int, ...]:
        """One sample's shape at ``image_size`` (None: the default)."""
        if image_size is None or len(self.input_shape) != 3:
            return self.input_shape
        return (self.input_shape[0], image_size, image_size)

    def size_problem(self, image_size: int | None) -> str | None:
        """Why the model cannot take ``image_size`` px inputs, or None when it can."""
        if image_size is None or image_size == self.default_image_size:
            return None
        if self.default_image_size is None:
            return f"model {self.name!r} does not take images (its input is {self.input_shape})"
        if not self.resizable:
            return (f"model {self.name!r} takes only {self.default_image_size} px inputs "
                    "(its layers fix the input size)")
        return _meta_size_problem(self, image_size)

    def make_batch(
        self,
        batch_size: int,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        rng_seed: int = 0,
        image_size: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A synthetic batch (inputs, target) shaped as the seed's data; no downloads.

        ``rng_seed`` seeds the random numbers ("seed" alone means the tutorials)."""
        gen = torch.Generator().manual_seed(rng_seed)
        inputs = torch.randn((batch_size, *self.shape_at(image_size)), generator=gen)
        if not self.takes_labels:
            # The blitz regresses the 10 outputs onto a random target of the same shape.
            target = torch.randn((batch_size, self.num_classes), generator=gen).to(dtype)
        else:
            target = torch.randint(0, self.num_classes, (batch_size,), generator=gen)
        return inputs.to(device=device, dtype=dtype), target.to(device)

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


_REGISTRY: dict[str, ModelSpec] = {}
# Families registered on first listing (name -> function registering them): torchvision.
_LAZY: dict[str, Callable[[], None]] = {}
_plugins_loaded = False


def register_model(
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    loss: str | None = None,
    criterion: Callable[[], nn.Module] | None = None,
    flatten_input: bool = False,
    name: str | None = None,
    tags: tuple[str, ...] = (),
    family: str = "custom",
    resizable: bool = False,
    size_arg: bool = False,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a model builder under its function name (or ``name``).

    The loss is the model's criterion: ``criterion=`` a callable returning an ``nn.Module``,
    or ``loss=`` one of the shorthands ``mse``, ``nll``, ``cross_entropy``."""
    if (loss is None) == (criterion is None):
        raise ValueError("give the model's loss: loss= one of "
                         f"{', '.join(LOSSES)}, or criterion= a callable returning an nn.Module")
    if loss is not None and loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; valid losses: {', '.join(LOSSES)}")

    def decorator(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or builder.__name__
        if key in _REGISTRY:
            raise ValueError(f"model {key!r} is already registered")
        doc = (builder.__doc__ or "").strip().splitlines()
        label = loss if loss is not None else getattr(criterion, "__name__", type(criterion).__name__)
        _REGISTRY[key] = ModelSpec(
            name=key,
            builder=builder,
            input_shape=tuple(input_shape),
            loss=label,
            num_classes=num_classes,
            flatten_input=flatten_input,
            description=doc[0] if doc else "",
            tags=tuple(tags),
            criterion=criterion,
            family=family,
            resizable=resizable or size_arg,
            size_arg=size_arg,
        )
        return builder

    return decorator


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


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names in registration order, optionally filtered by a glob."""
    _complete()
    names = list(_REGISTRY)
    return [n for n in names if fnmatch.fnmatchcase(n, pattern)] if pattern else names


def get_spec(name: str) -> ModelSpec:
    if name not in _REGISTRY:
        _complete()
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise ValueError(f"unknown model {name!r}{hint}; known models: {', '.join(_REGISTRY)}") from None


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
