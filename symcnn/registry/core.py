"""The op registry's mechanism: :class:`Op`, :class:`Setting`, :func:`register` and the lookups.

The package's docstring (:mod:`symcnn.registry`) says what an entry holds and who reads it.

Example:
    >>> get("relu").inputs, get("maxpool2d").setting("stride").default_from
    ((3, 1), 'kernel')
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, NamedTuple, Optional, Union

from symcnn.validation import integer, number, pair

__all__ = ["REQUIRED", "MAX_SIZE", "Setting", "Window", "Op", "register", "unregister", "get", "names", "ops",
           "input_roles", "in_words"]


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


#: The default of a setting that a spec must give.
REQUIRED: Any = _Required()

Shape = tuple[int, ...]

#: The largest value of any size setting (channels, features, kernel, stride, padding, dilation):
#: far beyond any network that fits in memory, and small enough that no index overflows.
MAX_SIZE = 65_536


@dataclass(frozen=True)
class Setting:
    """One key a spec layer of an op takes (besides ``type`` and ``name``).

    ``kind`` says how the value is read: ``count`` (an int >= ``minimum``), ``pair`` (an int or
    ``[height, width]``, each >= ``minimum``), ``flag`` (true or false), ``number`` (a finite number
    > 0, or in ``interval``, ``[low, high)``, where given) or ``fraction`` (in [0, 1]). ``roles`` are the
    formula parameters the value sets (a pair sets two: ``("stride_h", "stride_w")``); ``option``
    settings are passed to the formula's factory instead (``bias``: whether the formula has a bias
    term). ``default_from`` names the setting whose value is the default (a pool's stride is its kernel).
    """

    key: str
    kind: str
    default: Any = REQUIRED
    minimum: int = 1
    roles: tuple[str, ...] = ()
    option: bool = False
    default_from: Optional[str] = None
    help: str = ""
    interval: Optional[tuple[float, float]] = None  # a number's [low, high): a probability's [0, 1)

    def __post_init__(self):
        if self.kind not in ("count", "pair", "flag", "number", "fraction"):
            raise ValueError(f"{self.key}: kind must be count, pair, flag, number or fraction, got {self.kind!r}")
        expected_roles = {"pair": 2, "count": 1, "number": 1, "fraction": 1}.get(self.kind, 0)
        if self.roles and len(self.roles) != expected_roles:
            raise ValueError(f"{self.key}: a {self.kind} setting sets {expected_roles} role(s), got {self.roles}")

    def read(self, value: Any) -> Any:
        """``value`` as this setting holds it, or a one-line ``ValueError`` naming the key."""
        if self.kind == "count":
            return integer(value, self.key, self.minimum, MAX_SIZE)
        if self.kind == "pair":
            return pair(tuple(value) if isinstance(value, list) else value, self.key, self.minimum, MAX_SIZE)
        if self.kind == "flag":
            if not isinstance(value, bool):
                raise ValueError(f"{self.key}: must be true or false, got {value!r}")
            return value
        if self.kind == "fraction":  # a number in [0, 1]
            if not isinstance(value, bool) and isinstance(value, (int, float)) and 0 <= value <= 1:
                return float(value)
            raise ValueError(f"{self.key}: must be a number in [0, 1], got {value!r}")
        return number(value, self.key, self.interval)


class Window(NamedTuple):
    """One spatial axis of the window an output element reads, in input positions: its ``kernel``
    taps, ``dilation`` apart, its ``stride`` from one output to the next, the zero ``padding`` before
    the input. ``exact`` is False where windows differ in size (an adaptive pool's): then this is
    the largest window and the largest step, a bound. Model summaries read it (the receptive field,
    the check that the windows tile the input)."""

    kernel: int
    stride: int
    padding: int = 0
    dilation: int = 1
    exact: bool = True


def _same_shape(input_shape: Shape, settings: Mapping[str, Any]) -> Shape:
    return tuple(input_shape)


def _no_parameters(input_shape: Shape, settings: Mapping[str, Any]) -> dict[str, Shape]:
    return {}


def _no_multiply_adds(input_shape: Shape, settings: Mapping[str, Any]) -> int:
    return 0


@dataclass(frozen=True)
class Op:
    """One op: its name, formula, spec settings, shapes and display names.

    ``formula`` is the factory of its :class:`~symcnn.symbolic.ops.IndexFormula`, as a callable or
    as ``"module:function"`` (imported when first needed). The factory is called with the
    ``option`` settings as keywords and, for an op of several input ranks, ``rank`` (the rank of
    the input with its batch axis). ``inputs`` are the input ranks the op accepts, without the
    batch axis: 3 is ``(C, H, W)``, 1 is ``(features,)``. ``output_shape`` and
    ``parameter_shapes`` take the input shape without the batch axis and the settings (as
    :meth:`settings_of` returns them); ``output_shape`` raises ``ValueError`` naming the setting
    when the configuration does not fit. ``mask_drop`` names the setting that holds the drop
    probability of the op's ``mask`` operand: 0s and 1s of the input's shape, drawn afresh at each
    pass in training mode, neither learned nor differentiated; such an op (dropout) is the identity
    in evaluation mode. A ``merges`` op (add, concat) takes two or more inputs, of one rank: its
    ``output_shape`` and :meth:`roles` take the tuple of their shapes, and its formula's factory the
    keyword ``inputs`` (how many).

    ``macs`` counts one sample's multiply-accumulates in evaluation mode, as document 003 counts a
    convolution's (each product summed into an output, and a bias's add, one each); it takes what
    ``output_shape`` takes. ``window`` gives the ``(height, width)`` :class:`Window` an output element
    reads, from the ``(height, width)`` grid the input lies on (a map's own size; a flattened
    vector's, the map's) and the settings; ``None`` for an op that reads one element per output
    (element-wise, flatten, add, concat), and a function returning ``None`` where windows are not
    integer steps of the input (a transposed convolution's outputs lie 1/stride apart).
    """

    name: str
    formula: Union[str, Callable[..., Any]]
    title: str
    settings: tuple[Setting, ...] = ()
    inputs: tuple[int, ...] = (3,)
    output_shape: Callable[[Shape, Mapping[str, Any]], Shape] = _same_shape
    parameter_shapes: Callable[[Shape, Mapping[str, Any]], dict[str, Shape]] = _no_parameters
    layer: bool = True  # usable as a layer of a network spec (softmax and the losses are not)
    loss: bool = False  # a scalar of the scores and the targets (cross_entropy): derived in the examples
    summary: str = ""  # a sentence"s worth, for the op"s report ("a 2-D convolution as ...")
    description: str = ""  # a phrase, for a network walk-through ("max pooling")
    gradient_note: str = ""  # how the gradient flows, for a network walk-through
    nondifferentiable: str = ""  # the rule at points where the op has no derivative
    letter: str = "A"  # the letter a network walk-through names the op's output with
    phrase: Optional[Callable[[Mapping[str, Any]], str]] = None  # its settings in words (else key value, ...)
    evaluation: Union[str, Callable[..., Any], None] = None  # the formula in evaluation mode, if it differs
    # buffers (state kept, not learned: running statistics) shaped as parameters; counters are int64
    buffer_shapes: Callable[[Shape, Mapping[str, Any]], dict[str, Shape]] = _no_parameters
    counters: tuple[str, ...] = ()
    initial: Mapping[str, float] = field(default_factory=dict)  # constant initial values by role (else He or 0)
    # refuses an input shape (with the batch axis) training mode cannot compute: one line, a ValueError
    check_training_input: Optional[Callable[[Shape, Mapping[str, Any]], None]] = None
    mask_drop: Optional[str] = None  # the setting of the drawn mask's drop probability (dropout's p)
    merges: bool = False  # joins two or more inputs (add, concat)
    macs: Callable[[Any, Mapping[str, Any]], int] = _no_multiply_adds  # one sample's, in evaluation mode
    window: Optional[Callable[[tuple[int, int], Mapping[str, Any]], Optional[tuple[Window, Window]]]] = None

    @property
    def parameterized(self) -> bool:
        """Whether the op has learned parameters (and a spec layer of it a ``name``)."""
        return self.parameter_shapes is not _no_parameters

    @property
    def ranked(self) -> bool:
        """Whether the formula"s factory takes the input"s ``rank`` (an op of several input ranks)."""
        return len(self.inputs) > 1

    def settings_text(self, settings: Mapping[str, Any]) -> str:
        """A layer's settings in words, for reports: ``16 kernels of size 3, stride 1, padding 1``.

        >>> get("maxpool2d").settings_text({"kernel": (2, 2), "stride": (2, 1)})
        'window 2, stride 2×1'
        """
        if self.phrase is not None:
            return self.phrase(settings)
        words = []
        for setting in self.settings:
            if setting.key in settings and setting.kind != "flag":
                words.append(f"{setting.key} {in_words(settings[setting.key])}")
        return ", ".join(words)

    def setting(self, key: str) -> Setting:
        for setting in self.settings:
            if setting.key == key:
                return setting
        raise KeyError(f"{self.name} has no setting {key!r}")

    def keys(self) -> tuple[str, ...]:
        return tuple(setting.key for setting in self.settings)

    def settings_of(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Every setting's value, read and checked: ``given`` where there, else the default.

        Raises a one-line ``ValueError`` naming the key for an unknown, missing or bad value.
        """
        unknown = sorted(set(given) - set(self.keys()))
        if unknown:
            allowed = ", ".join(sorted(self.keys())) or "none"
            raise ValueError(f"{unknown[0]}: unknown key for {self.name} (allowed: {allowed})")
        values: dict[str, Any] = {}
        for setting in self.settings:
            if setting.key in given and given[setting.key] is not None:
                values[setting.key] = setting.read(given[setting.key])
            elif setting.default_from is not None:
                values[setting.key] = values[setting.default_from]
            elif setting.default is REQUIRED:
                raise ValueError(f"{setting.key}: missing (required)")
            else:
                values[setting.key] = setting.read(setting.default)
        return values

    def roles(self, input_shape, settings: Mapping[str, Any]) -> dict[str, Any]:
        """The formula parameters a layer fixes, by role: the input"s sizes, then each setting"s. A
        ``merges`` op takes the tuple of its inputs' shapes: input ``m``'s sizes have roles suffixed
        by ``m`` from the second on (``in_channels2``).

        >>> get("maxpool2d").roles((16, 8, 8), {"kernel": (2, 2), "stride": (2, 1)})["stride_w"]
        1
        >>> get("concat").roles(((16, 8, 8), (4, 8, 8)), {})["in_channels2"]
        4
        """
        if self.merges:
            roles = input_roles(input_shape[0])
            for number, shape in enumerate(input_shape[1:], 2):
                roles.update({f"{role}{number}": size for role, size in input_roles(shape).items()})
        else:
            roles = input_roles(input_shape)
        for setting in self.settings:
            if setting.key not in settings:  # left out: the formula keeps its symbol (alpha)
                continue
            values = settings[setting.key] if setting.kind == "pair" else (settings[setting.key],)
            roles.update(zip(setting.roles, values))
        return roles

    def load_formula(self, mode: str = "training") -> Callable[..., Any]:
        """The formula's factory (imported the first time); ``mode="evaluation"``: of ``evaluation``, if set."""
        reference = self.evaluation if mode == "evaluation" and self.evaluation is not None else self.formula
        if callable(reference):
            return reference
        module, _, function = reference.partition(":")
        return getattr(importlib.import_module(module), function)


def input_roles(input_shape: Shape) -> dict[str, int]:
    """The formula parameters an input shape (without the batch axis) sets.

    >>> input_roles((3, 32, 32)), input_roles((10,))
    ({'in_channels': 3, 'in_height': 32, 'in_width': 32}, {'in_features': 10})
    """
    if len(input_shape) == 3:
        return dict(zip(("in_channels", "in_height", "in_width"), input_shape))
    if len(input_shape) == 1:
        return {"in_features": input_shape[0]}
    raise ValueError(f"input: expected a (C, H, W) or (features,) shape, got {tuple(input_shape)}")


_REGISTRY: dict[str, Op] = {}


def register(op: Op, replace: bool = False) -> Op:
    """Add ``op`` to the registry (``replace=True`` to redefine a name); returns it.

    >>> square = register(Op("square_demo", formula=lambda rank: None, title="square", inputs=(1, 3)))
    >>> "square_demo" in names()
    True
    >>> unregister("square_demo")
    """
    if not isinstance(op, Op):
        raise ValueError(f"op: must be a symcnn.registry.Op, got {type(op).__name__}")
    if not op.name.isidentifier() or op.name != op.name.lower():
        raise ValueError(f"name: an op's name is a lower-case identifier, got {op.name!r}")
    if op.name in _REGISTRY and not replace:
        raise ValueError(f"name: an op named {op.name!r} is registered already (pass replace=True)")
    if not op.inputs or any(rank not in (1, 3) for rank in op.inputs):
        raise ValueError(f"inputs: each input rank is 1 (features) or 3 (C, H, W), got {op.inputs}")
    keys = op.keys()
    if len(set(keys)) != len(keys) or {"type", "name"} & set(keys):
        raise ValueError(f"settings: keys must be distinct and not 'type' or 'name', got {keys}")
    _REGISTRY[op.name] = op
    return op


def unregister(name: str) -> None:
    """Remove an op (for tests that register one of their own)."""
    _REGISTRY.pop(name, None)


def get(name: str) -> Op:
    """The op named ``name``, or a one-line ``ValueError`` listing the ops there are."""
    if not isinstance(name, str) or name not in _REGISTRY:
        shown = name if isinstance(name, str) else type(name).__name__
        raise ValueError(f"op: must be one of {', '.join(_REGISTRY)}, got {shown!r}")
    return _REGISTRY[name]


def names(layer: Optional[bool] = None, parameterized: Optional[bool] = None, inputs: Optional[int] = None,
          has: Optional[str] = None, loss: Optional[bool] = None) -> tuple[str, ...]:
    """Registered op names in registration order, filtered: usable as a spec layer, with learned
    parameters, accepting an input rank, with a setting ``has``, a loss or not.

    >>> names(parameterized=True)
    ('conv2d', 'dense', 'conv_transpose2d', 'batchnorm2d', 'layernorm')
    """
    return tuple(op.name for op in ops(layer=layer, parameterized=parameterized, inputs=inputs, has=has, loss=loss))


def ops(layer: Optional[bool] = None, parameterized: Optional[bool] = None, inputs: Optional[int] = None,
        has: Optional[str] = None, loss: Optional[bool] = None) -> tuple[Op, ...]:
    """Registered ops, filtered as :func:`names` filters them."""
    chosen = []
    for op in _REGISTRY.values():
        if layer is not None and op.layer != layer:
            continue
        if loss is not None and op.loss != loss:
            continue
        if parameterized is not None and op.parameterized != parameterized:
            continue
        if inputs is not None and inputs not in op.inputs:
            continue
        if has is not None and has not in op.keys():
            continue
        chosen.append(op)
    return tuple(chosen)


def in_words(value: Any) -> str:
    """A setting's value as reports write it: a pair ``3×2``, or ``3`` when square."""
    if isinstance(value, tuple):
        return str(value[0]) if value[0] == value[1] else f"{value[0]}×{value[1]}"
    return str(value)
