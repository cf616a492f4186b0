"""General formulas of every op, specialized on request, as text, LaTeX and JSON.

:func:`general_formula` gives the forward formula or a derived gradient of an op, with any of
its parameters specialized (stride 1 drops the divisibility condition). The JSON view holds the
exact SymPy object (``srepr`` of ``Eq(lhs, rhs)``), each tensor's role, name and shape, and each
shape parameter's role mapped to its symbol's name (or its expression, where derived), and
``zero_outside``, the tensors the formula reads outside their shape, where they are 0 by definition
(a convolution's zero-padded input), so that a reader can rebuild the object, substitute a
configuration and evaluate it: every other read lies inside its tensor. The text and LaTeX views
state the same in a line of their own (:class:`ZeroOutside`).

Example:
    >>> view = general_formula("conv2d", "input", stride=1, padding=0, dilation=1)
    >>> print(view.text().splitlines()[1])
    dL/dX[n, c_in, k, l] = sum_{c_out=0..C_out - 1, u=0..K_h - 1, v=0..K_w - 1} [0 <= k - u and 0 <= l - v and k - u <= H_out - 1 and l - v <= W_out - 1] * (W[c_out, c_in, u, v]*dL/dY[n, c_out, k - u, l - v])
"""  # noqa: E501  (a doctest's output, as printed)

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Optional, Union

import sympy
from sympy import Eq, Expr, Indexed, Sum, Symbol

from symcnn import registry
from symcnn.registry import differentiable
from symcnn.symbolic import ops
from symcnn.symbolic.adjoint import GradientFormula, derive_gradient
from symcnn.symbolic.display import LatexDisplay, register_latex_view
from symcnn.printing.latex import latex
from symcnn.printing.nodes import Iverson
from symcnn.printing.text import OUT_SIZE_NAMES, readable, text
from symcnn.validation import pair
from symcnn.views.derivation import latex_text

__all__ = ["FORMULA_OPS", "FormulaView", "ZeroOutside", "general_formula", "from_srepr", "zero_outside",
           "as_latex_display"]


def from_srepr(text: str) -> sympy.Basic:
    """Rebuild a formula from its ``srepr`` (the JSON's ``srepr`` field).

    It is SymPy's constructor syntax; besides SymPy's names it may use ``ExprCondPair``,
    symcnn's reductions ``MaxOver`` and ``FirstArgmax`` and its ``Bracket``. Only evaluate text you trust.
    """
    from sympy.functions.elementary.piecewise import ExprCondPair

    from symcnn.symbolic.functions import Bracket, FirstArgmax, MaxOver, WindowMax

    namespace = {**vars(sympy), "ExprCondPair": ExprCondPair, "MaxOver": MaxOver,
                 "FirstArgmax": FirstArgmax, "WindowMax": WindowMax, "Bracket": Bracket}
    return eval(text, {"__builtins__": {}}, namespace)  # noqa: S307

class _FormulaOps(Mapping):
    """Every registered op's formula factory, by name: a live view of :mod:`symcnn.registry`."""

    def __getitem__(self, name: str) -> Callable[..., ops.IndexFormula]:
        if name not in registry.names():
            raise KeyError(name)
        return registry.get(name).load_formula()

    def __iter__(self) -> Iterator[str]:
        return iter(registry.names())

    def __len__(self) -> int:
        return len(registry.names())


#: The ops with general formulas, by name (every registered op).
FORMULA_OPS: Mapping[str, Callable[..., ops.IndexFormula]] = _FormulaOps()

def _describe(op: str, wrt: str) -> str:
    """What a formula is: ``gradient with respect to the input``; of an add's or concat's inputs X1,
    X2, ..., ``... to input 2``."""
    if registry.get(op).merges and wrt != "forward":
        return f"gradient with respect to input {registry.input_number(wrt)}"
    return _DESCRIPTION.get(wrt, wrt)
#: The names of a tensor's axes in a zero-padding statement, by rank (NCHW; features).
_AXIS_NAMES = {4: ("n", "c", "h", "w"), 2: ("n", "f")}


@dataclass(frozen=True)
class ZeroOutside:
    """A tensor that a formula reads outside its shape, where it is 0 by definition (zero padding):
    the tensor at named indices (``X[n, c, h, w]``) and the range of each padded axis (``h``:
    ``0..H_in - 1``), outside which a read is 0.

    >>> [line.text() for line in zero_outside(ops.conv2d(), ops.conv2d().rhs)]
    ['X[n, c, h, w] is read as 0 outside 0 <= h <= H_in - 1, 0 <= w <= W_in - 1 (zero padding)']
    """

    tensor: ops.Tensor
    read: Indexed
    ranges: tuple[tuple[Symbol, Expr], ...]  # (axis name, its last index), for each padded axis

    def text(self) -> str:
        bounds = ", ".join(f"0 <= {text(name)} <= {text(last)}" for name, last in self.ranges)
        return f"{text(self.read)} is read as 0 outside {bounds} (zero padding)"

    def latex(self, doprint: Optional[Callable[[sympy.Basic], str]] = None) -> str:
        """The statement in LaTeX, its math printed by ``doprint`` (default: symcnn's LaTeX printer)."""
        doprint = doprint or latex
        bounds = r",\ ".join(rf"0 \leq {doprint(name)} \leq {doprint(last)}" for name, last in self.ranges)
        return rf"{doprint(self.read)} \text{{ is read as }} 0 \text{{ outside }} {bounds} \text{{ (zero padding)}}"


def _unpadded_axes(forward: ops.IndexFormula, tensor: ops.Tensor) -> set[int]:
    """The padded axes of ``tensor`` whose padding ``forward`` has specialized to 0: the op's
    ``padding`` setting names one parameter per padded axis, in order (a convolution's ``p_h, p_w``)."""
    if forward.op not in registry.names() or "padding" not in registry.get(forward.op).keys():
        return set()
    roles = registry.get(forward.op).setting("padding").roles
    if len(roles) != len(tensor.padded_axes):
        return set()
    return {axis for axis, role in zip(tensor.padded_axes, roles) if forward.parameters.get(role) == 0}


def zero_outside(forward: ops.IndexFormula, expr: sympy.Basic) -> tuple[ZeroOutside, ...]:
    """The zero-padded tensors of ``forward`` that ``expr`` (its formula, or one derived from it)
    reads, each with its padded axes; an axis whose padding is specialized to 0 is read inside
    the tensor only, and a tensor left with none is not listed."""
    read = {node.base for node in sympy.preorder_traversal(expr) if isinstance(node, Indexed)}
    found = []
    for tensor in forward.operands:
        if not tensor.zero_padded or tensor.base not in read:
            continue
        unpadded = _unpadded_axes(forward, tensor)
        axes = [axis for axis in tensor.padded_axes if axis not in unpadded]
        if not axes:
            continue
        names = _AXIS_NAMES.get(len(tensor.shape), tuple(f"t{axis}" for axis in range(len(tensor.shape))))
        symbols = tuple(Symbol(name, integer=True) for name in names)
        ranges = tuple((symbols[axis], readable(tensor.shape[axis] - 1, forward.parameters)) for axis in axes)
        found.append(ZeroOutside(tensor, tensor.base[symbols], ranges))
    return tuple(found)


_DESCRIPTION = {"forward": "forward pass", "input": "gradient with respect to the input",
                "weight": "gradient with respect to the weight", "bias": "gradient with respect to the bias"}


@dataclass(frozen=True)
class FormulaView(LatexDisplay):
    """One formula of an op (``wrt`` = ``forward`` or an operand role) and how to show it."""

    op: str
    wrt: str
    equation: Eq
    forward: ops.IndexFormula
    gradient: Optional[GradientFormula]
    specialized: dict

    @property
    def conditions(self) -> tuple:
        return self.gradient.conditions if self.gradient else ()

    @property
    def zero_outside(self) -> tuple[ZeroOutside, ...]:
        """The tensors this formula reads outside their shape, 0 there by definition (zero padding)."""
        return zero_outside(self.forward, self.equation.rhs)

    def _display_rhs(self):
        """The right-hand side for reading: conditions as Iverson brackets, sizes named."""
        if self.gradient is None:
            rhs = self.equation.rhs
        else:
            rhs = sympy.Add(*[
                Sum(Iverson(term.body, term.conditions) if term.conditions else term.body, *term.limits)
                if term.limits else (Iverson(term.body, term.conditions) if term.conditions else term.body)
                for term in self.gradient.terms
            ])
        return readable(rhs, self.forward.parameters)

    def text(self) -> str:
        settings = ", ".join(f"{name} {value}" for name, value in self.specialized.items())
        header = f"{self.op}: {_describe(self.op, self.wrt)}" + (f" ({settings})" if settings else "")
        lhs, rhs = self.equation.lhs, self._display_rhs()
        lines = [header, f"{text(lhs)} = {text(rhs)}"]
        lines += [f"  where {text(name)} = {text(size)}" for name, size in self._named_sizes(rhs)]
        lines += [f"  {padded.text()}" for padded in self.zero_outside]
        return "\n".join(lines)

    def _named_sizes(self, display):
        """The output sizes the display names (``H_out``), with their expressions (not one that is a
        setting: an adaptive pool's ``H_out``)."""
        sizes = []
        for role, name in OUT_SIZE_NAMES.items():
            size = self.forward.parameters.get(role)
            if size is not None and size != name and display.has(name):
                sizes.append((name, size))
        return sizes

    def latex(self) -> str:
        rhs = self._display_rhs()
        lines = [f"{latex(self.equation.lhs)} = {latex(rhs)}"]
        lines += [f"{latex(name)} = {latex(size)}" for name, size in self._named_sizes(rhs)]
        lines += [padded.latex() for padded in self.zero_outside]
        return ",\\qquad\n".join(lines)

    def as_dict(self) -> dict:
        tensors = {}
        for tensor in self.forward.tensors + ((self.gradient.gradient,) if self.gradient else ()) + (
                (self.gradient.grad_output,) if self.gradient and self.gradient.grad_output is not None else ()):
            tensors[tensor.role] = {"name": tensor.name, "shape": [str(dim) for dim in tensor.shape]}
        parameters = {role: str(value) for role, value in self.forward.parameters.items()}
        return {
            "op": self.op,
            "wrt": self.wrt,
            "specialized": self.specialized,
            "srepr": sympy.srepr(self.equation),
            "text": text(self.equation.lhs) + " = " + text(self.equation.rhs),
            "latex": self.latex(),
            "conditions": [text(condition) for condition in self.conditions],
            "tensors": tensors,
            "parameters": parameters,
            "zero_outside": [padded.tensor.name for padded in self.zero_outside],
        }

    def json(self) -> str:
        return json.dumps(self.as_dict(), indent=2)


def as_latex_display(view: FormulaView) -> str:
    """Jupyter's rich display of a formula: the header line as text above :meth:`FormulaView.latex`."""
    header = latex_text(view.text().splitlines()[0])
    return f"$$\n\\begin{{gathered}}\n{header} \\\\\n{view.latex()}\n\\end{{gathered}}\n$$"


def gradient_latex_display(formula: GradientFormula) -> str:
    """A derived gradient displayed as ``symcnn formula`` prints it (conditions as Iverson brackets)."""
    view = FormulaView(formula.forward.op, formula.wrt, formula.equation(), formula.forward, formula, {})
    return as_latex_display(view)


register_latex_view(FormulaView, as_latex_display)
register_latex_view(GradientFormula, gradient_latex_display)


def _specialization(forward: ops.IndexFormula, op: str, settings: dict) -> tuple[dict, dict]:
    values, shown = {}, {}
    for option, setting in settings.items():
        if setting is None:
            continue
        entry = registry.get(op)
        if option not in entry.keys() or entry.setting(option).kind != "pair":
            raise ValueError(f"{option}: {op} has no {option}")
        height_role, width_role = entry.setting(option).roles
        height, width = pair(setting, option, entry.setting(option).minimum)
        values[forward.parameters[height_role]] = height
        values[forward.parameters[width_role]] = width
        shown[option] = height if height == width else f"{height}x{width}"
    return values, shown


def general_formula(
    op: str,
    wrt: str = "input",
    kernel: Union[int, tuple, None] = None,
    stride: Union[int, tuple, None] = None,
    padding: Union[int, tuple, None] = None,
    dilation: Union[int, tuple, None] = None,
) -> FormulaView:
    """The forward formula (``wrt="forward"``) or derived gradient of ``op``, specialized where asked.

    Raises ``ValueError`` naming the field for an unknown op, an operand the op does not have,
    or a parameter it does not take.
    """
    if op not in FORMULA_OPS:
        raise ValueError(f"op: must be one of {', '.join(FORMULA_OPS)}, got {op!r}")
    forward = FORMULA_OPS[op]()
    roles = [tensor.role for tensor in forward.operands if differentiable(tensor.role)]
    if wrt != "forward" and wrt not in roles:
        raise ValueError(f"wrt: {op} has no {wrt}; choose from forward, {', '.join(roles)}")
    values, shown = _specialization(forward, op, dict(kernel=kernel, stride=stride, padding=padding, dilation=dilation))
    if wrt == "forward":
        specialized = forward.substitute(values)
        return FormulaView(op, wrt, specialized.equation(), specialized, None, shown)
    # Derive in general, then specialize: the general derivation is the one that is proved.
    gradient = derive_gradient(forward, wrt).substitute(values)
    return FormulaView(op, wrt, gradient.equation(), gradient.forward, gradient, shown)
