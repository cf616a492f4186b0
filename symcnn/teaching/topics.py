"""The topics of a sheet, each a kind of registry op, and the levels.

A topic does not list its ops: it holds a predicate over registry entries (as the checker's
:class:`~symcnn.checking.index.vocabulary.OpKind` does), read when a sheet is made, so that an op
registered later (adaptive pooling, a grouped convolution, batch normalization) joins its topic
without an edit here. :func:`layer_settings` chooses an op's settings from its registry
:class:`~symcnn.registry.Setting` s: defaults at the lower levels, strides, padding, dilation and
overlapping windows at level 3.

Example:
    >>> list(TOPICS["pooling"].ops())
    ['maxpool2d', 'avgpool2d', 'global_avgpool', 'adaptive_avgpool2d', 'adaptive_maxpool2d']
    >>> list(TOPICS["normalization"].ops())
    ['batchnorm2d', 'layernorm']
    >>> list(TOPICS["activations"].ops())
    ['relu', 'leaky_relu', 'elu', 'sigmoid', 'tanh']
    >>> read_topics("pooling,dense")
    ('pooling', 'dense')
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from typing import Any, Callable

import sympy

from symcnn import registry
from symcnn.checking.index.vocabulary import OpKind

__all__ = ["Topic", "TOPICS", "LEVELS", "read_topics", "read_level", "layer_settings", "exercisable", "has_statistics",
           "enlarges", "output_size_setting", "OUTPUT_SIZE_ROLES", "GUARD_ROLES"]

#: 1: small integers, worked by hand; 2: symbols; 3: strides, padding, dilation and overlapping windows.
LEVELS = {1: "small integers, worked by hand", 2: "symbols", 3: "strides, padding, dilation, overlapping windows"}

_PLAIN_ROLES = {"input", "weight", "bias"}


@functools.lru_cache(maxsize=None)
def _operand_roles(name: str, formula: object) -> frozenset:
    entry = registry.get(name)
    options = {"rank": max(entry.inputs) + 1} if entry.ranked else {}
    return frozenset(operand.role for operand in entry.load_formula()(**options).operands)


def has_statistics(entry: registry.Op) -> bool:
    """A formula with a sum inside a sum (a normalization's mean inside its variance): its entries are
    exercised with the statistics named (:mod:`symcnn.teaching.statistics`), and not in ``spot`` (a
    whole entry runs to thousands of characters, beyond the checker's limit)."""
    options = {"rank": max(entry.inputs) + 1} if entry.ranked else {}
    rhs = entry.load_formula()(**options).rhs
    return any(inner is not outer and isinstance(inner, sympy.Sum)
               for outer in rhs.atoms(sympy.Sum) for inner in outer.function.atoms(sympy.Sum))


#: The roles of a setting that is the output's size (an adaptive pool's ``output``).
OUTPUT_SIZE_ROLES = ("out_height", "out_width")
#: The roles of a setting that only guards a division (a normalization's ε): kept a symbol in symbols,
#: and 0 for hand work in numbers (stated on the sheet).
GUARD_ROLES = ("epsilon",)
#: The required settings the exercise generators choose (a window, a layer's width, an output size), and
#: those of them that ``symcnn check`` (the ``spot`` topic) can be told.
_CHOSEN = {"kernel", "out_channels", "out_features", "output"}
_CHECKABLE = {"kernel", "out_channels", "out_features"}


def output_size_setting(entry: registry.Op) -> str | None:
    """The key of the setting that gives the output's size (``output``), if the op has one."""
    return next((setting.key for setting in entry.settings if setting.roles == OUTPUT_SIZE_ROLES), None)


def exercisable(entry: registry.Op) -> bool:
    """An op ``symcnn derive`` expands from its input and learned parameters alone (no mask, no
    running statistics, no target): a layer of a spec; and one the generators can set up: its required
    settings are among those they choose."""
    if not (entry.layer and not entry.loss and _operand_roles(entry.name, entry.formula) <= _PLAIN_ROLES):
        return False
    return not set(_required(entry)) - _CHOSEN


def enlarges(entry: registry.Op) -> bool:
    """Whether the op makes a small map larger (a transposed convolution): its output is asked too (each
    input element spreads over a window of it), and it is no network's first layer (the network exercise
    pools that layer's map down to one value)."""
    return 3 in entry.inputs and any(size > 3 for size in
                                     entry.output_shape((1, 3, 3), entry.settings_of(_required(entry)))[1:])


def _checkable(entry: registry.Op) -> bool:
    """Whether ``symcnn check`` can be told every required setting, and reads an entry whole (no statistics)."""
    return not set(_required(entry)) - _CHECKABLE and not has_statistics(entry)


def _kind(predicate: Callable[[registry.Op], bool]) -> OpKind:
    return OpKind(lambda entry: exercisable(entry) and predicate(entry))


def _keeps_maps(entry: registry.Op) -> bool:
    """An op whose output is a (C, H, W) map again (not flatten)."""
    return len(entry.output_shape((1, 4, 4), entry.settings_of(_required(entry)))) == 3


def _required(entry: registry.Op) -> dict:
    """The smallest values of an entry's required settings (to ask it for a shape)."""
    return {setting.key: 1 if setting.kind != "pair" else 2 for setting in entry.settings
            if setting.default is registry.REQUIRED and setting.default_from is None}


CONVOLUTION = _kind(lambda entry: entry.parameterized and "kernel" in entry.keys() and 3 in entry.inputs)
POOLING = _kind(lambda entry: not entry.parameterized and entry.inputs == (3,) and _keeps_maps(entry))
DENSE = _kind(lambda entry: entry.parameterized and entry.inputs == (1,))
ACTIVATIONS = _kind(lambda entry: entry.ranked and not entry.parameterized)
NORMALIZATION = _kind(lambda entry: entry.parameterized and 3 in entry.inputs and "kernel" not in entry.keys())
WINDOWED = _kind(lambda entry: "kernel" in entry.keys())


@dataclass(frozen=True)
class Topic:
    """A topic: its name (``--topic``), its title, and the registry ops it draws from."""

    name: str
    title: str
    kind: OpKind

    def ops(self) -> tuple[str, ...]:
        return tuple(self.kind)


TOPICS = {topic.name: topic for topic in (
    Topic("convolution", "Convolution", CONVOLUTION),
    Topic("pooling", "Pooling", POOLING),
    Topic("dense", "Dense layers", DENSE),
    Topic("activations", "Activations", ACTIVATIONS),
    Topic("normalization", "Normalization", NORMALIZATION),
    Topic("sizes", "Output sizes and parameter counts", WINDOWED),
    Topic("network", "A network's backward pass", _kind(lambda entry: entry.name in CONVOLUTION and
                                                        not enlarges(entry))),
    Topic("spot", "Spot the wrong formula",
          _kind(lambda entry: not entry.ranked and (entry.parameterized or _keeps_maps(entry)) and
                _checkable(entry))),
)}


def read_topics(text: str) -> tuple[str, ...]:
    """``--topic``: names separated by commas, or ``all`` (every topic that has ops now)."""
    names = [name.strip() for name in str(text).split(",") if name.strip()]
    if not names:
        raise ValueError(f"topic: expected a topic name or 'all', got {text!r}")
    if names == ["all"]:
        return tuple(name for name, topic in TOPICS.items() if topic.ops())
    for name in names:
        if name not in TOPICS:
            raise ValueError(f"topic: must be 'all' or among {', '.join(TOPICS)}, got {name!r}")
        if not TOPICS[name].ops():
            raise ValueError(f"topic: no op of {name} can be exercised yet (an op joins its topic once the "
                             f"exercise generators can set it up: see symcnn.teaching.topics.exercisable)")
    return tuple(dict.fromkeys(names))


def read_level(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value not in LEVELS:
        raise ValueError(f"level: must be 1, 2 or 3, got {value!r}")
    return value


#: Values a number setting takes in an exercise (a slope alpha): small fractions, worked by hand.
_NUMBERS = (0.5, 0.25, 0.1)


def layer_settings(entry: registry.Op, level: int, rng: random.Random) -> dict[str, Any]:
    """An op's settings for an exercise, from its registry settings.

    Level 1 and 2 keep each default (a pool's stride is its window); level 3 gives a setting with a
    default one step more (stride 2, padding 1, dilation 2) at random, and a pool's stride 1 or its
    window (overlapping windows or not). A required size is small: a kernel or an output size of 2 (3 at
    level 3), one output channel, two output features. A guard against dividing by zero (ε) is left
    out: it stays a symbol of the formula (:data:`GUARD_ROLES`). The settings may not fit together (an
    output padding needs a stride or a dilation above it): the caller draws again.
    """
    settings: dict[str, Any] = {}
    for setting in entry.settings:
        if setting.kind == "flag":
            settings[setting.key] = setting.default if level == 1 else rng.choice((True, False))
        elif setting.kind == "number" and setting.roles == GUARD_ROLES:
            continue
        elif setting.kind == "number":
            settings[setting.key] = rng.choice(_NUMBERS)
        elif setting.default_from is not None:  # a pool's stride: its window, or 1 (overlapping windows)
            if level == 3 and rng.random() < 0.5:
                settings[setting.key] = 1
        elif setting.default is registry.REQUIRED:
            if setting.kind == "pair":
                settings[setting.key] = rng.choice((2, 3)) if level == 3 else 2
            else:
                settings[setting.key] = 2 if setting.key == "out_features" else 1
        elif level == 3 and setting.kind == "pair" and rng.random() < 0.5:
            settings[setting.key] = setting.read(setting.default)[0] + 1
    return settings
