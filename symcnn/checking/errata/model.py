"""What the errata are made of: a document's claim as transcribed (:class:`Transcription`), the
document's conventions where they differ from symcnn's (:class:`Convention`, and the helpers that
write one as checker options), the conditions a document assumes of a configuration, and a checked
claim (:class:`Erratum`).

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

__all__ = ["STATUSES", "Convention", "Transcription", "Erratum", "SAME", "FROM_ONE", "true_convolution", "from_one",
           "channels_last", "padded", "merge", "windows_tile", "no_output_padding", "square_input"]

#: An erratum's status: the claim holds in symcnn's conventions, only in the document's, or not at all.
STATUSES = ("verified", "convention", "wrong")


@dataclass(frozen=True)
class Convention:
    """A document's convention, and the checker options that read a claim under it."""

    name: str
    options: Mapping = field(default_factory=dict)


@dataclass(frozen=True)
class Transcription:
    """One claim of a document and how to check it: ``formula`` against ``against`` (an op or a
    worked example) with the document's ``options``, or a worked ``example``."""

    document: str
    section: str
    claim: str
    formula: Optional[str] = None
    against: Optional[str] = None
    options: Mapping = field(default_factory=dict)
    conventions: tuple[Convention, ...] = ()
    example: Optional[str] = None


@dataclass(frozen=True)
class Erratum:
    """A checked claim: ``status`` is ``verified``, ``convention`` or ``wrong``; ``detail`` names the
    convention or gives the counter-example."""

    document: str
    section: str
    claim: str
    status: str
    detail: str

    def as_dict(self) -> dict:
        return {"document": self.document, "section": self.section, "claim": self.claim, "status": self.status,
                "detail": self.detail}


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


def merge(conventions) -> Convention:
    """Several conventions at once."""
    options: dict = {}
    for convention in conventions:
        for key, value in convention.options.items():
            if isinstance(value, frozenset):
                options[key] = options.get(key, frozenset()) | value
            elif isinstance(value, Mapping):
                options[key] = {**options.get(key, {}), **value}
            else:
                options[key] = value
    return Convention("; ".join(convention.name for convention in conventions), options)


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


def square_input(config) -> bool:
    """A square input."""
    return config["in_height"] == config["in_width"]

