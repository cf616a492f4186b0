"""What a check takes and returns: its options, its verdict and the entries that differ, and the
exact comparison both checkers (element-wise and index notation) use.

Example:
    >>> result = CheckResult("y = 1", "conv2d", "index", False, 2, "input 2x2", (Difference("y", "1", "2"),))
    >>> result.counterexample()
    'at input 2x2: y: claimed 1, derived 2'
    >>> count(1, "index"), count(3, "elements")
    ('1 configuration', '3 entries')
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Mapping, Optional, Sequence

import sympy

from symcnn.symbolic.verify import exactly_equal

__all__ = ["CheckOptions", "Difference", "CheckResult", "count", "show", "equal"]


@dataclass(frozen=True)
class CheckOptions:
    """How to read and where to check a claim.

    Configuration: ``kernel``, ``stride``, ``padding``, ``dilation``, ``input_size`` (ints or
    ``(h, w)`` pairs), ``channels_in``, ``channels_out``, ``batch``: fixed where given, else searched
    (index claims) or defaulted as ``symcnn derive`` does (element-wise claims against an op).
    ``values`` are numeric inputs for an element-wise claim (row-major).

    Reading: ``tensors`` maps a claim's tensor names to roles (``input``, ``weight``, ``bias``,
    ``output``, ``target``, ``grad_output``, ``grad_input``, ...); ``layouts`` maps a name (or
    ``*``, every tensor) to its axis letters (``NHWC``; ``N`` batch, ``C`` channels, ``H W``
    spatial, ``O I`` a weight's output and input channels, ``F`` features); ``zero_outside``
    names tensors read as zero outside their shape; ``one_based`` names tensors whose every index
    counts from 1; ``index_maps`` maps a name to, per axis,
    ``(sign, offset)``: symcnn's index is ``sign * claim's index + offset`` (``(1, "-1")`` for an
    index counted from 1; ``(-1, "K_h - 1")`` for a flipped kernel axis); ``sizes`` replaces
    numbers of the claim's sum bounds by parameters (``{4096: "F_in"}``).
    """

    kernel: object = None
    stride: object = None
    padding: object = None
    dilation: object = None
    input_size: object = None
    channels_in: Optional[int] = None
    channels_out: Optional[int] = None
    batch: Optional[int] = None
    values: Optional[Sequence] = None
    tensors: Mapping[str, str] = field(default_factory=dict)
    layouts: Mapping[str, str] = field(default_factory=dict)
    zero_outside: frozenset = frozenset()
    one_based: frozenset = frozenset()
    index_maps: Mapping[str, tuple] = field(default_factory=dict)
    sizes: Mapping[int, str] = field(default_factory=dict)
    constraint: Optional[Callable[[Mapping[str, int]], bool]] = None

    def merged(self, **changes) -> "CheckOptions":
        """These options with ``changes``; mappings and sets are merged, not replaced."""
        values = {}
        for name, change in changes.items():
            current = getattr(self, name)
            if isinstance(current, frozenset):
                values[name] = current | frozenset(change)
            elif isinstance(current, Mapping):
                values[name] = {**current, **change}
            elif name == "constraint" and current is not None and change is not None:
                values[name] = lambda config, first=current, second=change: first(config) and second(config)
            else:
                values[name] = change
        return replace(self, **values)


@dataclass(frozen=True)
class Difference:
    """One entry where the claim and the derivation differ."""

    entry: str
    claimed: str
    derived: str


@dataclass(frozen=True)
class CheckResult:
    """The verdict: ``correct``, or the first ``configuration`` where the claim fails and the
    entries that differ there. ``checked`` counts the configurations (or entries) compared."""

    claim: str
    against: str
    kind: str  # "elements" or "index"
    correct: bool
    checked: int
    configuration: Optional[str] = None
    differences: tuple[Difference, ...] = ()
    notes: tuple[str, ...] = ()

    def counterexample(self, limit: int = 4) -> str:
        """The counter-example in one line (empty when correct)."""
        if self.correct:
            return ""
        shown = "; ".join(f"{d.entry}: claimed {d.claimed}, derived {d.derived}" for d in self.differences[:limit])
        more = len(self.differences) - limit
        where = f"at {self.configuration}: " if self.configuration else ""
        return where + shown + (f"; and {more} more" if more > 0 else "")

    def text(self) -> str:
        if self.correct:
            lines = [f"correct: checked against {self.against} ({count(self.checked, self.kind)})"]
        else:
            where = f" at {self.configuration}" if self.configuration else ""
            lines = [f"wrong: differs from {self.against}{where}"]
            lines += [f"  {d.entry}: claimed {d.claimed}" + "\n" + f"  {' ' * len(d.entry)}  derived {d.derived}"
                      for d in self.differences[:12]]
            if len(self.differences) > 12:
                lines.append(f"  ... and {len(self.differences) - 12} more entries differ")
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {
            "claim": self.claim, "against": self.against, "kind": self.kind,
            "status": "correct" if self.correct else "wrong", "checked": self.checked,
            "configuration": self.configuration,
            "differences": [{"entry": d.entry, "claimed": d.claimed, "derived": d.derived} for d in self.differences],
            "notes": list(self.notes),
        }


def count(number: int, kind: str) -> str:
    """``3 configurations``, ``1 entry``: what a result of ``kind`` (``index`` or ``elements``) counts."""
    unit = ("configuration" if kind == "index" else "entry") if number == 1 else (
        "configurations" if kind == "index" else "entries")
    return f"{number} {unit}"


def show(value) -> str:
    """A claimed or derived value as a difference shows it."""
    return str(value)


def equal(claimed, derived) -> bool:
    """Exact equality (:func:`symcnn.symbolic.verify.exactly_equal`); a ``max(0, x)`` against the derivation's
    ``Piecewise`` is compared with both written as ``Piecewise``."""
    if exactly_equal(claimed, derived):
        return True
    claimed, derived = sympy.sympify(claimed), sympy.sympify(derived)
    if claimed.has(sympy.Max, sympy.Min) or derived.has(sympy.Max, sympy.Min):
        difference = claimed.rewrite(sympy.Piecewise) - derived.rewrite(sympy.Piecewise)
        return sympy.piecewise_fold(difference) == 0 or sympy.simplify(difference) == 0
    return False
