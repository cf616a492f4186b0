"""The report's document model: what a report says, before it is LaTeX or Markdown.

A :class:`Report` is a title and :class:`Section` s of blocks: :class:`Prose` (text with ``$math$``
and ```code``` marked), :class:`Items` (a bullet list of such text) and :class:`Display` (rows of
display math, aligned at ``&``). The writers (:mod:`symcnn.report.writer`) lay the same model out
as a LaTeX document or a GitHub Markdown page; the math strings are printed by SymPy's printers
from the derivation objects, never typed.

Example:
    >>> report = Report("example-demo", "A demo", "one line", (Section("Math", (Display(("y &= x",)),)),))
    >>> [type(block).__name__ for block in report.sections[0].blocks]
    ['Display']
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Union

__all__ = ["Prose", "Items", "Display", "Block", "Section", "Report", "Part", "Collection"]


@dataclass(frozen=True)
class Prose:
    """A paragraph: plain text with inline ``$math$`` and ```code``` spans."""

    kind: ClassVar[str] = "prose"
    text: str


@dataclass(frozen=True)
class Items:
    """A bullet list; each item is marked up like :class:`Prose`."""

    kind: ClassVar[str] = "items"
    items: tuple[str, ...]


@dataclass(frozen=True)
class Display:
    """Display math: rows of LaTeX, aligned at their ``&`` (``aligned``) or each centred."""

    kind: ClassVar[str] = "display"
    rows: tuple[str, ...]
    aligned: bool = True


Block = Union[Prose, Items, Display]


@dataclass(frozen=True)
class Section:
    title: str
    blocks: tuple[Block, ...] = ()
    sections: tuple["Section", ...] = ()


@dataclass(frozen=True)
class Report:
    """One derivation: a worked example, an op's formulas or a network's walk-through.

    ``name`` is its file stem (``example-conv_3x3_2x2``); ``summary`` its line in an index.
    """

    name: str
    title: str
    summary: str
    sections: tuple[Section, ...]
    intro: tuple[Block, ...] = ()


@dataclass(frozen=True)
class Part:
    """A group of reports in a collection (``Worked examples``, ``General formulas``, ...)."""

    title: str
    intro: str
    reports: tuple[Report, ...]


@dataclass(frozen=True)
class Collection:
    """Everything shipped, as one document or one page per report with an index."""

    name: str
    title: str
    intro: str
    parts: tuple[Part, ...] = field(default_factory=tuple)

    @property
    def reports(self) -> tuple[Report, ...]:
        return tuple(report for part in self.parts for report in part.reports)
