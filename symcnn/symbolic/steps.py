"""Step by step: a gradient entry as the chain rule computes it, and a numeric walk-through.

For an entry ``t`` of a tensor (``w00``, ``x10``, ``b0``) and an op's output ``Y`` with upstream
gradient ``G = dL/dY``, the chain rule reads ``dL/dt = sum_o G[o] * dY[o]/dt``. :func:`steps`
takes every piece from the derivation: the partial derivatives ``dY[o]/dt`` by SymPy's ``diff``
of the expanded forward expressions (term by term), the terms that survive (the outputs that contain ``t``),
and, at numeric input values, the same with the values substituted. For max pooling that is
document 002's walk-through: which window's maximum receives which upstream value.
:class:`Route` is the same chain rule read the other way (scatter): where each ``G[o]`` goes.
Each entry's sum equals :func:`symcnn.symbolic.derive.derive`'s gradient entry (``EntrySteps.result``).

Example (document 002's max pooling, 2x2 window, stride 1):
    >>> from sympy import Array
    >>> from symcnn.symbolic.derive import LayerConfig
    >>> config = LayerConfig("maxpool2d", input_size=(3, 3), kernel=(2, 2), stride=(1, 1))
    >>> walk = steps(config, Array([[[[1, 5, 4], [9, 2, 1], [6, 3, 2]]]]), entries=["x10"])
    >>> entry = walk.entries[0]
    >>> [partial.output.name for partial in entry.surviving]
    ['y00', 'y10']
    >>> entry.numeric, entry.result
    (a + c, a + c)
    >>> whole = steps(config, Array([[[[1, 5, 4], [9, 2, 1], [6, 3, 2]]]]))
    >>> [(route.upstream, route.targets) for route in whole.routes["input"]]
    [(a, ((x10, a),)), (b, ((x01, b),)), (c, ((x10, c),)), (d, ((x21, d),))]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, NamedTuple, Optional, Sequence

import sympy
from sympy import Array, Expr, Symbol

from symcnn.registry import is_input_role
from symcnn.symbolic.derive import Derivation, LayerConfig, derive, partial_derivative
from symcnn.symbolic.display import LatexDisplay
from symcnn.symbolic.tensors import element_name, indices_of

__all__ = ["ChainPartial", "Partial", "EntrySteps", "Route", "ForwardStep", "Steps", "steps", "ChainRule", "ROLES",
           "gradient_roles"]

#: The tensors a gradient is taken for, in the order ``symcnn derive`` prints them.
ROLES = ("weight", "bias", "input")


def gradient_roles(tensors: Mapping[str, Array]) -> list[str]:
    """The roles of the tensors with a gradient, in the documents' order: weight, bias, input, then an
    add's or concat's other inputs (input2, ...).

    >>> gradient_roles({"input": None, "input2": None, "grad_output": None})
    ['input', 'input2']
    """
    return [role for role in ROLES if role in tensors] + [role for role in tensors
                                                          if is_input_role(role) and role != "input"]


class ChainPartial(Expr):
    """Display only: the partial derivative ``dy/dt`` as a name, a factor of the chain rule.

    >>> from symcnn.printing.latex import latex
    >>> from symcnn.printing.text import text
    >>> partial = ChainPartial(Symbol("y00"), Symbol("w00"))
    >>> text(Symbol("a") * partial), latex(partial)
    ('a*dy00/dw00', '\\\\frac{\\\\partial y_{00}}{\\\\partial w_{00}}')
    """

    is_commutative = True

    def __new__(cls, output: Symbol, entry: Symbol):
        return Expr.__new__(cls, output, entry)

    def _sympystr(self, printer) -> str:
        output, entry = self.args
        return f"d{output.name}/d{entry.name}"

    def _latex(self, printer) -> str:
        output, entry = self.args
        return r"\frac{\partial %s}{\partial %s}" % (printer._print(output), printer._print(entry))


@dataclass(frozen=True)
class Partial:
    """One term ``G[o] * dY[o]/dt`` of the chain rule of an entry ``t``."""

    output: Symbol  # the output element, named as the documents name it (y00)
    upstream: Expr  # its upstream gradient G[o] (a)
    derivative: Expr  # dY[o]/dt by SymPy's diff of the expanded forward expression; 0 where t is absent
    at_values: Optional[Expr]  # the derivative at the input values; None without values

    @property
    def term(self) -> Expr:
        return self.upstream * self.derivative


@dataclass(frozen=True)
class EntrySteps:
    """The chain rule of one gradient entry ``dL/dt``, every output element's term."""

    role: str  # the tensor of t: input, weight or bias
    symbol: Symbol  # t (x10)
    index: tuple[int, ...]  # t's full index in its tensor
    partials: tuple[Partial, ...]  # one per output element, row-major
    result: Expr  # symcnn derive's dL/dt (at the values, if any)

    @property
    def name(self) -> str:
        return self.symbol.name

    @property
    def surviving(self) -> tuple[Partial, ...]:
        """The terms whose output element contains the entry."""
        return tuple(partial for partial in self.partials if partial.derivative != 0)

    @property
    def symbolic(self) -> Expr:
        """The sum of the surviving terms: ``dL/dt`` with the inputs symbolic."""
        return sympy.Add(*[partial.term for partial in self.surviving])

    @property
    def numeric(self) -> Optional[Expr]:
        """The same sum at the input values (``None`` without values)."""
        if any(partial.at_values is None for partial in self.partials):
            return None
        return sympy.Add(*[partial.upstream * partial.at_values for partial in self.surviving])


@dataclass(frozen=True)
class Route:
    """Where one output element's upstream gradient goes: ``t += G[o] * dY[o]/dt`` for each ``t``."""

    output: Symbol
    upstream: Expr
    targets: tuple[tuple[Symbol, Expr], ...]  # (t, its contribution), at the values if any; nonzero only


@dataclass(frozen=True)
class ForwardStep:
    """An output element's expanded forward expression, and its value at the input values."""

    output: Symbol
    expression: Expr
    value: Optional[Expr]


@dataclass(frozen=True)
class Steps(LatexDisplay):
    """The step-by-step view of a derivation: forward expressions, routes and entries.

    ``derivation`` is :func:`~symcnn.symbolic.derive.derive`'s result (at the values, if any);
    ``routes`` holds the scatter view of each tensor whose every entry is shown.
    """

    derivation: Derivation
    forward: tuple[ForwardStep, ...]
    routes: Mapping[str, tuple[Route, ...]]
    entries: tuple[EntrySteps, ...]

    @property
    def values(self) -> dict[Symbol, Expr]:
        return dict(self.derivation.values)


def _select(tensors: Mapping[str, Array], entries: Sequence[str]) -> tuple[list[tuple[str, tuple]], set[str]]:
    """The ``(role, index)`` of each entry asked for, and the roles asked for whole.

    A name is an entry's symbol (``x10``, also written ``dL/dx10``) or a tensor's letter
    (``x``, ``w``, ``b``) for all of its entries. No names: every entry of every tensor.
    """
    roles = gradient_roles(tensors)
    letters = {role: _letter(tensors[role]) for role in roles}
    if not entries:
        return [(role, index) for role in roles for index in indices_of(tensors[role].shape)], set(roles)
    where = {tensors[role][index].name: (role, tuple(index))
             for role in roles for index in indices_of(tensors[role].shape)}
    chosen, whole = [], set()
    for name in entries:
        key = str(name).strip().removeprefix("dL/d")
        if key in letters.values():
            role = next(role for role in roles if letters[role] == key)
            whole.add(role)
            chosen += [(role, tuple(index)) for index in indices_of(tensors[role].shape)]
        elif key in where:
            chosen.append(where[key])
        else:
            ranges = ", ".join(f"{letters[role]} ({_first_last(tensors[role])})" for role in roles)
            raise ValueError(f"entry: no entry {name!r} in this derivation; "
                             f"choose an entry or a whole tensor: {ranges}")
    unique = list(dict.fromkeys(chosen))  # asked twice, shown once
    return unique, whole


def _letter(array: Array) -> str:
    first = array[tuple(0 for _ in array.shape)]
    return first.name.rstrip("0123456789_")


def _first_last(array: Array) -> str:
    names = [array[index].name for index in indices_of(array.shape)]
    return names[0] if len(names) == 1 else f"{names[0]}..{names[-1]}"


def _at(expr: Expr, values: Mapping[Symbol, Expr]) -> Optional[Expr]:
    return expr.xreplace(values) if values else None


def steps(config: LayerConfig, values: Optional[Array] = None, entries: Sequence[str] = ()) -> Steps:
    """The chain rule of every gradient entry of ``config``'s op (or of ``entries`` only).

    ``values`` are numbers for the input, as for :func:`~symcnn.symbolic.derive.derive`; ``entries``
    names entries (``"x10"``, ``"w00"``) or whole tensors (``"x"``). Raises ``ValueError``
    (field ``entry``) for a name the derivation does not have.
    """
    symbolic = derive(config)
    derivation = derive(config, values) if values is not None else symbolic
    substitution = derivation.values
    tensors, output = symbolic.tensors, symbolic.output
    upstream = tensors["grad_output"]
    chosen, whole = _select(tensors, entries)

    # Differentiate each output element with respect to the symbols it contains, once.
    outputs = [(Symbol(element_name("y", index, output.shape), real=True), upstream[index], output[index])
               for index in indices_of(output.shape)]
    targets = {tensors[role][index] for role, index in chosen}
    derivatives = [{symbol: partial_derivative(expression, symbol) for symbol in expression.free_symbols & targets}
                   for _, _, expression in outputs]

    forward = tuple(ForwardStep(name, expression, _at(expression, substitution)) for name, _, expression in outputs)
    entry_steps = []
    for role, index in chosen:
        symbol = tensors[role][index]
        partials = []
        for (name, gradient_of_output, _), table in zip(outputs, derivatives):
            derivative = table.get(symbol, sympy.S.Zero)
            partials.append(Partial(name, gradient_of_output, derivative, _at(derivative, substitution)))
        result = derivation.gradients[f"grad_{role}"][index]
        entry_steps.append(EntrySteps(role, symbol, index, tuple(partials), result))

    routes = {role: tuple(_route(name, gradient_of_output, table, tensors[role], substitution)
                          for (name, gradient_of_output, _), table in zip(outputs, derivatives))
              for role in gradient_roles(tensors) if role in whole}
    return Steps(derivation, forward, routes, tuple(entry_steps))


class ChainRule(NamedTuple):
    """Entries whose chain rule to show, as ``symcnn derive ... --entry NAME`` shows it: an op's
    configuration, the entries, and the input's rows (a worked example's numbers) or ``None``."""

    config: LayerConfig
    entries: tuple[str, ...]
    values: Optional[list] = None

    def steps(self) -> Steps:
        return steps(self.config, Array([[self.values]]) if self.values else None, self.entries)


def _route(output: Symbol, upstream: Expr, derivatives: Mapping[Symbol, Expr], tensor: Array,
           substitution: Mapping[Symbol, Expr]) -> Route:
    """The nonzero contributions ``upstream * dy/dt`` of one output element to a tensor's entries."""
    targets = []
    for index in indices_of(tensor.shape):
        symbol = tensor[index]
        if symbol in derivatives:
            contribution = upstream * derivatives[symbol].xreplace(substitution)
            if contribution != 0:
                targets.append((symbol, contribution))
    return Route(output, upstream, tuple(targets))
