"""A layer whose formula nests reductions (a normalization's mean inside its variance), with its statistics
named: document 003's chain ``x -> mu -> sigma2 -> y``, and the chain rule back through it.

:func:`named_chain` reads the statistics off the op's index formula, innermost first: each reduction,
divided by its number of terms, becomes a node, a tensor indexed by the output indices it depends on (a
batch norm's channel, a layer norm's sample); the first is the mean ``mu``, the one around it the variance
``sigma2``. It expands the output and each node's definition at the layer's configuration
(:func:`symcnn.symbolic.expand.evaluate`), then takes the vector-Jacobian product
(:func:`symcnn.symbolic.derive.vjp`) back through the nodes, the last first, as document 003's four
backward lines do. With each node replaced by its definition, the gradients are
:func:`~symcnn.symbolic.derive.derive`'s (the tests check it), written the short way.

Example:
    >>> from symcnn.symbolic.derive import LayerConfig
    >>> chain = named_chain(LayerConfig("batchnorm2d", input_size=(1, 2), batch=2))
    >>> [node.name for node in chain.nodes], chain.output[0, 0, 0, 0]
    (['mu', 'sigma2'], b0 + w0*(-mu + x000)/sqrt(sigma2 + epsilon))
    >>> chain.gradients["bias"][0]
    g000 + g001 + g100 + g101
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping

import sympy
from sympy import Array, Expr, IndexedBase, Sum, Symbol

from symcnn.symbolic.derive import LayerConfig, vjp
from symcnn.symbolic.expand import evaluate
from symcnn.symbolic.instances import bind_layer
from symcnn.symbolic.ops import IndexFormula, Tensor
from symcnn.symbolic.tensors import symbol_array, upstream_array

__all__ = ["StatisticSymbol", "Node", "Chain", "named_chain", "NODE_NAMES", "partial", "compact_node_gradients",
           "compact_gradient"]

#: The statistics' names, innermost first, and how LaTeX writes them.
NODE_NAMES = {"mu": r"\mu", "sigma2": r"\sigma^2"}


class StatisticSymbol(Symbol):
    """A statistic's symbol: ``sigma2`` in SymPy syntax (as an answers file writes it), ``\\sigma^2`` in LaTeX.

    >>> from symcnn.printing.latex import latex
    >>> latex(StatisticSymbol("sigma2", positive=True) + 1)
    '\\\\sigma^2 + 1'
    """

    def _latex(self, printer) -> str:
        return NODE_NAMES.get(self.name, self.name)


@dataclass(frozen=True)
class Node:
    """A named statistic: its symbol, its definition (expanded, in the input's symbols and the earlier
    nodes' symbols), and that definition in the input's symbols alone."""

    name: str
    symbol: StatisticSymbol
    definition: Expr
    value: Expr  # the definition with every earlier node put in


@dataclass(frozen=True)
class Chain:
    """The layer with its statistics named; gradients by role (``input``, ``weight``, ``bias``) and each
    node's total gradient ``dL/dnode`` (by name), all in terms of the nodes' symbols.

    ``partials[name][role]`` is each node's partial derivative with respect to each tensor entry (and to
    the earlier nodes, by their names): the factors of the chain rule after the direct term."""

    config: LayerConfig
    tensors: Mapping[str, Array]  # the symbols, by role, as derive names them (input, weight, bias, grad_output)
    nodes: tuple[Node, ...]
    output: Array
    gradients: Mapping[str, Array]
    node_gradients: Mapping[str, Expr]
    direct: Mapping[str, Array]  # sum_o g_o dY[o]/dt for each tensor, and for each node (by name)

    @property
    def definitions(self) -> dict[Symbol, Expr]:
        """Each node's symbol -> its value in the input's symbols."""
        return {node.symbol: node.value for node in self.nodes}

    def node(self, name: str) -> Node:
        return next(node for node in self.nodes if node.name == name)


def _name_reductions(formula: IndexFormula) -> tuple[IndexFormula, list[tuple[str, Tensor, IndexFormula]]]:
    """The formula with each reduction (innermost first) over its number of terms replaced by a node, and
    each node's own formula."""
    rhs, nodes = formula.rhs, []
    for name in NODE_NAMES:
        innermost = [node for node in rhs.atoms(Sum) if not node.function.has(Sum)]
        if not innermost:
            break
        if len(innermost) > 1:
            raise ValueError(f"{formula.op}: statistics side by side, not nested ({len(innermost)} sums)")
        (reduction,) = innermost
        count = sympy.Mul(*[high - low + 1 for _, low, high in reduction.limits])
        depends = tuple(index for index in formula.indices if index in reduction.free_symbols)
        shape = tuple(formula.output.shape[formula.indices.index(index)] for index in depends)
        tensor = Tensor(name, IndexedBase(name), shape)
        earlier = tuple(node_tensor for _, node_tensor, _ in nodes)
        definition = replace(formula, output=tensor, indices=depends, rhs=reduction / count,
                             operands=(formula.operand("input"), *earlier))
        nodes.append((name, tensor, definition))
        rhs = rhs.xreplace({reduction: count * tensor.base[depends]})
    if rhs.has(Sum):
        raise ValueError(f"{formula.op}: more than {len(NODE_NAMES)} nested statistics")
    named = replace(formula, rhs=rhs, operands=(*formula.operands, *(tensor for _, tensor, _ in nodes)))
    return named, nodes


def _add(first: Array, second: Array) -> Array:
    return Array([a + b for a, b in zip(first, second)], first.shape) if first.shape else first + second


def named_chain(config: LayerConfig) -> Chain:
    """``config``'s op with its statistics named (one value each: one channel of a batch norm, one sample
    of a layer norm), and its gradients back through them.

    The tensors' symbols are named as :func:`~symcnn.symbolic.derive.derive` names them; settings left out
    of ``config`` (ε) stay symbols, as there.
    """
    formula, values = bind_layer(config.op, config.entry_shape, config.settings)
    named, node_formulas = _name_reductions(formula.substitute(values))
    if not node_formulas:
        raise ValueError(f"{config.op}: its formula has no statistics to name")
    tensors = {"input": symbol_array("x", config.input_shape)}
    tensors.update({role: symbol_array(role[0], shape) for role, shape in config.parameter_shapes.items()})
    arrays = dict(tensors)
    nodes: list[Node] = []
    node_arrays: dict[str, Array] = {}
    for name, _, definition in node_formulas:
        expanded = evaluate(definition, {"input": tensors["input"], **node_arrays})
        if len(expanded) != 1:
            raise ValueError(f"{config.op}: one {name} is named, this configuration has {len(expanded)}")
        symbol = StatisticSymbol(name, **({"positive": True} if name == "sigma2" else {"real": True}))
        value = expanded[(0,) * expanded.rank()].xreplace({node.symbol: node.value for node in nodes})
        nodes.append(Node(name, symbol, expanded[(0,) * expanded.rank()], value))
        node_arrays[name] = Array([symbol] * len(expanded), expanded.shape)
    output = evaluate(named, {**arrays, **node_arrays})
    upstream = tensors["grad_output"] = upstream_array(output.shape)
    direct = vjp(output, upstream, {**arrays, **node_arrays})
    totals = dict(direct)
    for (name, _, _), node in zip(reversed(node_formulas), reversed(nodes)):  # the last node first
        earlier = {other: node_arrays[other] for other in node_arrays if other != name
                   and list(node_arrays).index(other) < list(node_arrays).index(name)}
        through = vjp(Array([node.definition]), Array([totals[name][(0,) * totals[name].rank()]]),
                      {"input": tensors["input"], **earlier})
        for role, contribution in through.items():
            totals[role] = _add(totals[role], contribution)
    gradients = {role: totals[role] for role in arrays}
    node_gradients = {node.name: totals[node.name][(0,) * totals[node.name].rank()] for node in nodes}
    return Chain(config, tensors, tuple(nodes), output, gradients, node_gradients, direct)


def partial(expression: Expr, symbol: Symbol) -> Expr:
    """``d expression / d symbol``, a node's symbols held fixed (the chain rule's partials)."""
    return sympy.diff(expression, symbol)


def compact_node_gradients(chain: Chain) -> dict[str, Expr]:
    """Each node's ``dL/dnode`` written short, the last node first: its direct terms with their common factors
    taken out, plus each later node's gradient times that node's partial, left out where that partial is 0
    once the statistics are put in (``d sigma2/d mu = -(2/m) sum (x_k - mu)``, 0 at the mean)."""
    compact: dict[str, Expr] = {}
    for position in reversed(range(len(chain.nodes))):
        node = chain.nodes[position]
        total = sympy.factor_terms(chain.direct[node.name][(0,) * chain.direct[node.name].rank()])
        for later in chain.nodes[position + 1:]:
            factor = partial(later.definition, node.symbol)
            if sympy.expand(factor.xreplace(chain.definitions)) != 0:
                total += compact[later.name] * sympy.factor_terms(factor)
        compact[node.name] = total
    return compact


def compact_gradient(chain: Chain, role: str, index: tuple[int, ...]) -> Expr:
    """``dL/dt`` for the entry ``index`` of ``role``'s tensor, written short: its direct terms (common factors
    out), plus each node's short gradient times the node's partial with respect to ``t``."""
    symbol = chain.tensors[role][index]
    gradient = sympy.factor_terms(chain.direct[role][index])
    nodes = compact_node_gradients(chain)
    for node in chain.nodes:
        factor = partial(node.definition, symbol)
        if factor != 0:
            gradient += nodes[node.name] * sympy.factor_terms(factor)
    return gradient
