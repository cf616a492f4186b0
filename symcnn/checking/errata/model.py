"""What the errata are made of: a document's claim as transcribed (:class:`Transcription`), the
document's conventions where they differ from symcnn's (:class:`Convention`, and the helpers that
write one as checker options), the conditions a claim needs that its document does not state
(:class:`Condition`), and a checked claim (:class:`Erratum`).

A convention is the document's *notation*: channels last, indices counted from 1, a flipped kernel,
a tensor read as zero outside its shape where a sum leaves its range implicit. A condition restricts
the *setting*: a stride, a size, a bias, the values; a claim that holds only under one that its
document does not state, while the document's own setting allows the case where it fails, is
``conditional``, shown with the smallest counter-example inside that setting.

Example:
    >>> convention = merge([from_one("indices i", {"p": (FROM_ONE,)}), padded("dL/dY", "the document pads it")])
    >>> convention.name
    'indices i counted from 1; dL/dY zero outside its shape (the document pads it)'
    >>> convention.options["index_maps"], convention.options["zero_outside"]
    ({'p': ((1, -1),)}, frozenset({'dL/dY'}))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional

__all__ = ["STATUSES", "Convention", "Condition", "Transcription", "Erratum", "SAME", "FROM_ONE", "true_convolution",
           "from_one", "channels_last", "padded", "merge", "windows_tile", "windows_disjoint", "no_output_padding",
           "square_input", "output_divides_input", "without_bias", "features_differ", "no_dilation"]

#: An erratum's status: the claim holds in symcnn's conventions, only in the document's notation, only
#: under a condition the document does not state, or not at all.
STATUSES = ("verified", "convention", "conditional", "wrong")


@dataclass(frozen=True)
class Convention:
    """A document's convention, and the checker options that read a claim under it."""

    name: str
    options: Mapping = field(default_factory=dict)


@dataclass(frozen=True)
class Condition:
    """A condition on the setting that a claim needs and its document does not state (``name``
    completes "holds only if ..."), and the checker (or probe) options that impose it: a fixed
    setting (``{"stride": 1}``) or a ``constraint``, a predicate on a configuration."""

    name: str
    options: Mapping = field(default_factory=dict)


@dataclass(frozen=True)
class Transcription:
    """One claim of a document and how to check it: ``formula`` against ``against`` (an op or a
    worked example) with the document's ``options``, or a worked ``example``, or ``formula`` (SymPy
    syntax) by a ``probe`` of :mod:`symcnn.checking.errata.probes`. ``note`` says how the claim is
    read where its document leaves something open (shown in the detail)."""

    document: str
    section: str
    claim: str
    formula: Optional[str] = None
    against: Optional[str] = None
    options: Mapping = field(default_factory=dict)
    conventions: tuple[Convention, ...] = ()
    example: Optional[str] = None
    conditions: tuple[Condition, ...] = ()
    probe: Optional[str] = None
    note: str = ""


@dataclass(frozen=True)
class Erratum:
    """A checked claim: ``status`` is one of :data:`STATUSES`; ``detail`` names the convention or the
    condition, or gives the counter-example. A ``conditional`` claim's ``condition`` completes "holds
    only if ..."; a conditional or wrong claim's ``counterexample`` is the smallest found."""

    document: str
    section: str
    claim: str
    status: str
    detail: str
    condition: Optional[str] = None
    counterexample: Optional[str] = None

    def as_dict(self) -> dict:
        return {"document": self.document, "section": self.section, "claim": self.claim, "status": self.status,
                "detail": self.detail, "condition": self.condition, "counterexample": self.counterexample}


# --- conventions ---------------------------------------------------------------------------------------

# Index maps, per axis: symcnn's index = sign * the document's index + offset.
SAME = (1, 0)
FROM_ONE = (1, -1)


def true_convolution(kernel: str, output: str, rank: int = 2, zero_kernel: bool = False) -> Convention:
    """The textbook convolution: the kernel flipped, and the output counted from the kernel's last tap.

    ``sum_m X(i - m) K(m)`` is symcnn's cross-correlation ``sum_u X(i' + u) K'(u)`` with
    ``K'(u) = K(K_h - 1 - u)`` and ``i = i' + K_h - 1``.
    """
    lead = (SAME,) * (rank - 2)
    options = {"index_maps": {kernel: lead + ((-1, "K_h - 1"), (-1, "K_w - 1")),
                              output: lead + ((1, "1 - K_h"), (1, "1 - K_w"))}}
    if zero_kernel:
        options["zero_outside"] = frozenset({kernel})
    return Convention("true convolution: the kernel flipped (rotated 180°), output positions counted from the "
                      "kernel's last tap" + (", the kernel zero outside its shape" if zero_kernel else ""), options)


def from_one(what: str, maps: Mapping[str, tuple]) -> Convention:
    return Convention(f"{what} counted from 1", {"index_maps": dict(maps)})


def channels_last(layouts: Mapping[str, str]) -> Convention:
    shown = ", ".join(f"{name} as {layout}" for name, layout in layouts.items())
    return Convention(f"channels last ({shown})", {"layouts": dict(layouts)})


def padded(name: str, why: str) -> Convention:
    return Convention(f"{name} zero outside its shape ({why})", {"zero_outside": frozenset({name})})


def merge(items, separator: str = "; "):
    """Several conventions (or conditions) at once: one of the same kind, their names joined."""
    items = list(items)
    options: dict = {}
    for item in items:
        for key, value in item.options.items():
            if isinstance(value, frozenset):
                options[key] = options.get(key, frozenset()) | value
            elif isinstance(value, Mapping):
                options[key] = {**options.get(key, {}), **value}
            elif key == "constraint" and key in options:
                options[key] = lambda config, first=options[key], second=value: first(config) and second(config)
            else:
                options[key] = value
    kind = type(items[0]) if items else Convention
    return kind(separator.join(item.name for item in items), options)


# --- conditions a document assumes of a configuration ----------------------------------------------------


def windows_tile(config) -> bool:
    """Every input element in exactly one pooling window."""
    return all(config[f"in_{side}"] % config[f"kernel_{side}"] == 0 and config[f"stride_{axis}"] == config[
        f"kernel_{side}"] for side, axis in (("height", "h"), ("width", "w")))


def no_output_padding(config) -> bool:
    """No output padding: the stride divides ``in + 2p - d(K-1) - 1``, so that the output size
    determines the input size."""
    return all((config[f"in_{side}"] + 2 * config[f"padding_{axis}"] - config[f"dilation_{axis}"] * (
        config[f"kernel_{side}"] - 1) - 1) % config[f"stride_{axis}"] == 0
        for side, axis in (("height", "h"), ("width", "w")))


def windows_disjoint(config) -> bool:
    """Pooling windows that do not overlap: the stride is the window."""
    return config["stride_h"] == config["kernel_height"] and config["stride_w"] == config["kernel_width"]


def square_input(config) -> bool:
    """A square input."""
    return config["in_height"] == config["in_width"]


# Conditions on a probe's cases (symcnn/checking/errata/probes/), read off the values each case carries.


def output_divides_input(case) -> bool:
    """An adaptive pool's output size divides its input size."""
    return case["input"] % case["output"] == 0


def without_bias(case) -> bool:
    """The convolutions have no bias."""
    return not case["bias"]


def features_differ(case) -> bool:
    """A sample's features are not all equal (its standard deviation is not 0)."""
    return not case["equal"]


def no_dilation(case) -> bool:
    """No layer of a stack is dilated (each a ``(kind, kernel, stride, dilation)``)."""
    return all(layer[3] == 1 for layer in case["stack"])

