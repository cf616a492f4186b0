"""The evaluation plan of an index-notation claim: everything decided once, before any configuration
is tried. Which tensor of the op each name of the claim is (its role, axes, index maps, whether it is
zero outside its shape), which equations are claims about a tensor and which identities over
parameters, the where-clause's definitions and constraints, the shape parameters the claim mentions
and the ones the options fix.

Example:
    >>> from symcnn.checking.parse import parse_claim
    >>> from symcnn.checking.result import CheckOptions
    >>> claim = parse_claim(r"Y_{i,j} = \\sum_{m}\\sum_{n} X_{i s + m, j s + n} W_{m,n}", tensors={"X", "W", "Y"})
    >>> plan = plan_claim(claim, "conv2d", CheckOptions())
    >>> plan.tensors["X"].role, plan.tensors["X"].letters, sorted(plan.parameter_symbols.items())
    ('input', 'HW', [(s, ('stride_h', 'stride_w'))])
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping, Optional

import sympy
from sympy import IndexedBase, Symbol

from symcnn.checking.claims import OPEN, Claim, Equation, MatrixValue, base_name, is_gradient_name, tensor_base
from symcnn.checking.index.vocabulary import (default_tensors, FEATURE_OPS, FLATTENING_OPS, PARAMETER_DISPLAY,
                                              PARAMETER_NAMES, canonical_letters, claim_letters, op_formula,
                                              resolve_role)
from symcnn.checking.result import CheckOptions
from symcnn.symbolic import ops
from symcnn.symbolic.functions import MaxOver
from symcnn.validation import integer, pair

__all__ = ["ClaimTensor", "Plan", "plan_claim", "free_symbols"]


@dataclass(frozen=True)
class ClaimTensor:
    """How one of the claim's tensor names maps onto the derivation."""

    name: str
    role: str  # input, weight, bias, target, output, softmax, grad_output, grad_input, ...
    letters: str  # the claim's axes, as canonical letters
    canonical: str  # the project tensor's axes
    maps: tuple  # per claim axis: (sign, offset expression)
    zero_outside: bool


def plan_claim(claim: Claim, op: str, options: CheckOptions) -> "Plan":
    """The plan of a parsed index-notation claim against ``op``: its names resolved with the op's
    vocabulary and ``options.tensors``, its forward formula at the rank the claim reads."""
    vocabulary = {**default_tensors(op), **options.tensors}
    claim = _scalar_reads(claim, vocabulary)
    ranks = _tensor_ranks(claim)
    roles = {name: resolve_role(name, vocabulary, op) for name in ranks}
    rank = 4 if max(ranks.values(), default=4) >= 2 else 2
    forward = op_formula(op, rank, bias=bool({"bias", "grad_bias"} & set(roles.values())))
    return Plan.build(claim, op, forward, roles, ranks, options)


def _tensor_ranks(claim: Claim) -> dict[str, int]:
    ranks: dict[str, int] = {}
    for equation in claim.equations + claim.definitions:
        for side in (equation.lhs, equation.rhs):
            if isinstance(side, MatrixValue):
                raise ValueError("formula: a matrix belongs to an element-wise claim (against a worked example)")
            for node in sympy.preorder_traversal(side):
                if isinstance(node, sympy.Indexed):
                    name, rank = str(node.base.label), len(node.indices)
                elif isinstance(node, IndexedBase):
                    name, rank = str(node.label), 0
                else:
                    continue
                if name in ranks and ranks[name] != rank and not (rank == 0 and isinstance(node, IndexedBase)):
                    raise ValueError(f"formula: {name} is read with {ranks[name]} and with {rank} indices")
                if rank or name not in ranks:
                    ranks[name] = max(rank, ranks.get(name, 0))
    return ranks


def _index_symbols(claim: Claim) -> set:
    """Names that are indices: the left sides' indices, summation and max variables, ranges, definitions."""
    indices = {symbol for symbol, _, _ in claim.ranges}
    indices |= {definition.lhs for definition in claim.definitions if isinstance(definition.lhs, Symbol)}
    for equation in claim.equations + claim.definitions:
        if isinstance(equation.lhs, sympy.Indexed):
            indices |= {symbol for index in equation.lhs.indices for symbol in sympy.sympify(index).free_symbols}
        for side in (equation.lhs, equation.rhs):
            if isinstance(side, MatrixValue):
                continue
            for node in sympy.preorder_traversal(side):
                if isinstance(node, (sympy.Sum, MaxOver)):
                    indices |= {limit[0] for limit in node.limits}
    return indices


def _scalar_reads(claim: Claim, vocabulary: Mapping[str, str]) -> Claim:
    """Bare tensor names as reads of a tensor with no indices (the loss ``L``, a bias ``b`` of one
    channel, ``dL/db``), unless they are indices or shape parameters (``K`` the kernel size)."""
    indices = _index_symbols(claim)

    def is_tensor(name: str) -> bool:
        inner = name[4:] if is_gradient_name(name) else name
        return (inner in vocabulary or base_name(inner) in vocabulary) and (
            inner not in PARAMETER_NAMES or vocabulary.get(inner) == "output" and inner == "L")

    def convert(expr):
        if isinstance(expr, MatrixValue):
            return expr
        replacements = {symbol: tensor_base(symbol.name) for symbol in sympy.sympify(expr).free_symbols
                        if isinstance(symbol, Symbol) and symbol not in indices and is_tensor(symbol.name)}
        return sympy.sympify(expr).xreplace(replacements) if replacements else expr

    return replace(claim, equations=tuple(Equation(convert(e.lhs), convert(e.rhs)) for e in claim.equations),
                   definitions=tuple(Equation(e.lhs, convert(e.rhs)) for e in claim.definitions))


@dataclass
class Plan:
    """Everything fixed before the configuration search."""

    claim: Claim
    op: str
    forward: ops.IndexFormula
    tensors: dict[str, ClaimTensor]
    equations: list  # (target Equation, kind) with kind "tensor" or "identity"
    substitutions: dict
    constraints: list  # Equations over parameters
    ranges: dict
    parameter_symbols: dict  # Symbol -> roles
    fixed: dict
    forced: dict
    options: CheckOptions
    notes: list

    @classmethod
    def build(cls, claim, op, forward, roles, ranks, options) -> "Plan":
        notes: list[str] = []
        parameter_roles = set(forward.parameters)
        tensors = {}
        forced: dict[str, int] = {}
        shapes = {tensor.role: tensor for tensor in forward.operands}
        shapes["output"] = forward.output
        for name, role in roles.items():
            project = _project_tensor(forward, role)
            rank = len(project.shape)
            canonical = canonical_letters(role, rank)
            if op in FLATTENING_OPS and role in ("output", "grad_output"):
                canonical = "NF"
            letters = claim_letters(name, role, ranks[name], canonical, options.layouts)
            for position, letter in enumerate(canonical):
                if letter not in letters:
                    dimension = sympy.sympify(project.shape[position])
                    if dimension == 1:
                        continue
                    if not isinstance(dimension, Symbol) or letter in "HWF":
                        raise ValueError(f"formula: {name} is read with {ranks[name]} indices; its axis {letter} "
                                         f"(of {canonical}) needs one")
                    parameter = _role_of_symbol(forward, dimension)
                    forced[parameter] = 1
            maps = options.index_maps.get(name) or options.index_maps.get(base_name(name))
            if maps is not None and len(maps) != ranks[name]:
                raise ValueError(f"index_maps: {name} has {ranks[name]} indices, the map {len(maps)}")
            if maps is None and (name in options.one_based or base_name(name) in options.one_based):
                maps = tuple((1, -1) for _ in range(ranks[name]))
            maps = tuple((sign, sympy.sympify(offset)) for sign, offset in maps) if maps else \
                tuple((1, sympy.S.Zero) for _ in range(ranks[name]))
            zero = name in options.zero_outside or base_name(name) in options.zero_outside or (
                role == "input" and project.zero_padded)
            tensors[name] = ClaimTensor(name, role, letters, canonical, maps, zero)
        for parameter in forced:
            display = PARAMETER_DISPLAY.get(parameter, parameter)
            notes.append(f"{display} fixed at 1: the claim's tensors have no {display} axis")
        # Equations: targets and chains.
        equations, constraints, substitutions = [], [], {}
        target_names = set()
        for equation in claim.equations:
            lhs = equation.lhs
            if isinstance(lhs, (sympy.Indexed, IndexedBase)):
                name = str(lhs.label if isinstance(lhs, IndexedBase) else lhs.base.label)
                role = roles[name]
                if role not in ("output", "grad_input", "grad_weight", "grad_bias"):
                    raise ValueError(f"formula: the left side {lhs} is the {role.replace('_', ' ')}, which is given, "
                                     f"not derived; a claim is about the output or a gradient")
                if _same_tensor(lhs, equation.rhs, roles):
                    continue  # an alias in a chain: delta^[z]_i = dL/dz_i = ...
                target_names.add(name)
                equations.append((equation, "tensor"))
            else:
                equations.append((equation, "identity"))
        # Index symbols: the left sides' free symbols, summation and range variables. A left-side
        # symbol named like a parameter (s in X_{i s + u}) is the parameter, unless some read or the
        # where-clause uses it as an index on its own (p in document 004's P_{c,p,q}).
        bare = {index for equation, _ in equations for side in (equation.lhs, equation.rhs)
                for node in sympy.sympify(side).atoms(sympy.Indexed) for index in node.indices
                if isinstance(index, Symbol)} | {symbol for symbol, _, _ in claim.ranges}
        index_symbols = set()
        for equation, kind in equations:
            if kind == "tensor":
                index_symbols |= {symbol for symbol in free_symbols(equation.lhs)
                                  if symbol in bare or symbol.name not in PARAMETER_NAMES}
        for equation, _ in equations:
            for node in sympy.preorder_traversal(equation.rhs):
                if isinstance(node, (sympy.Sum,)) or type(node).__name__ == "MaxOver":
                    index_symbols |= {limit[0] for limit in node.limits}
        ranges = {symbol: (low, high) for symbol, low, high in claim.ranges}
        index_symbols |= set(ranges)
        for definition in claim.definitions:
            if not isinstance(definition.lhs, Symbol):
                raise ValueError(f"formula: a where-clause must define a name, got {definition.lhs}")
            if definition.lhs.name in PARAMETER_NAMES and definition.lhs not in index_symbols:
                constraints.append(definition)
            else:
                substitutions[definition.lhs] = definition.rhs
        # Parameters: every other free symbol.
        parameter_symbols = {}
        free = set()
        for equation, _ in equations:
            free |= free_symbols(equation.lhs) | free_symbols(equation.rhs)
        for equation in constraints:
            free |= free_symbols(equation.lhs) | free_symbols(equation.rhs)
        for value in substitutions.values():
            free |= free_symbols(value)
        for offset_maps in (tensor.maps for tensor in tensors.values()):
            for _, offset in offset_maps:
                free |= offset.free_symbols
        for size_name in options.sizes.values():
            free.add(Symbol(size_name))
        free -= index_symbols | set(substitutions) | set(OPEN)
        for symbol in sorted(free, key=lambda s: s.name):
            if symbol.name not in PARAMETER_NAMES:
                raise ValueError(f"formula: {symbol.name} is not an index of the left side, a summation index or a "
                                 f"shape parameter of {op} ({', '.join(sorted(_parameter_names(forward)))})")
            wanted = PARAMETER_NAMES[symbol.name]
            missing = [role for role in wanted if role not in parameter_roles]
            if missing:
                kind = missing[0].replace("_", " ")
                raise ValueError(f"formula: {symbol.name} is a {kind}, which {op} does not have")
            parameter_symbols[symbol] = wanted
        fixed = _fixed_configuration(op, options)
        return cls(claim, op, forward, tensors, equations, substitutions, constraints, ranges, parameter_symbols,
                   fixed, forced, options, notes)

    def all_parameters(self, config: Mapping[str, int]) -> dict[str, int]:
        """Every parameter of the op at ``config``, the derived ones (``out_height``) included."""
        result = dict(config)
        for role, (arguments, function) in _derived_parameters(self.forward.op, self.forward).items():
            if all(argument in config for argument in arguments):
                result[role] = int(function(*[config[argument] for argument in arguments]))
        return result

    def parameter_values(self, config: Mapping[str, int]) -> Optional[dict]:
        """Each parameter symbol of the claim at ``config`` (None when a square name meets a non-square one)."""
        parameters = self.all_parameters(config)
        values = {}
        for symbol, roles in self.parameter_symbols.items():
            found = {parameters.get(role) for role in roles}
            if len(found) != 1 or None in found:
                return None
            values[symbol] = sympy.Integer(found.pop())
        return values


def _fixed_configuration(op: str, options: CheckOptions) -> dict[str, int]:
    """The parameters ``options`` fix (``kernel``, ``stride``, ``input_size``, ...), validated."""
    fixed = {}
    for option, (height, width) in (("kernel", ("kernel_height", "kernel_width")),
                                    ("stride", ("stride_h", "stride_w")),
                                    ("padding", ("padding_h", "padding_w")),
                                    ("dilation", ("dilation_h", "dilation_w"))):
        value = getattr(options, option)
        if value is not None:
            minimum = 0 if option == "padding" else 1
            fixed[height], fixed[width] = pair(value, option, minimum)
    if options.input_size is not None:
        if op in FEATURE_OPS:
            fixed["in_features"] = integer(options.input_size, "input_size", 1)
        else:
            fixed["in_height"], fixed["in_width"] = pair(options.input_size, "input_size", 1)
    for option, role in (("channels_in", "in_channels"), ("channels_out", "out_channels"), ("batch", "batch")):
        value = getattr(options, option)
        if value is not None:
            fixed[role] = integer(value, option, 1)
    return fixed


_DERIVED_CACHE: dict = {}


def _derived_parameters(op: str, forward: ops.IndexFormula) -> dict:
    """The op's derived parameters (``out_height`` = its output-size rule) as Python functions of the
    free ones, compiled once from the op's own expressions (lambdify: the rule stays defined once)."""
    if op not in _DERIVED_CACHE:
        free = {value: role for role, value in forward.parameters.items() if isinstance(value, Symbol)}
        derived = {}
        for role, expr in forward.parameters.items():
            if isinstance(expr, Symbol):
                continue
            symbols = sorted(sympy.sympify(expr).free_symbols, key=lambda symbol: symbol.name)
            derived[role] = (tuple(free[symbol] for symbol in symbols), sympy.lambdify(symbols, expr, "math"))
        _DERIVED_CACHE[op] = derived
    return _DERIVED_CACHE[op]


def _project_tensor(forward: ops.IndexFormula, role: str) -> ops.Tensor:
    base = role[5:] if role.startswith("grad_") else role
    if base == "output":
        return forward.output
    if base == "softmax":
        return forward.operand("input")
    try:
        return forward.operand(base)
    except KeyError:
        raise ValueError(f"formula: {forward.op} has no {base}") from None


def _role_of_symbol(forward: ops.IndexFormula, symbol: Symbol) -> str:
    for role, value in forward.parameters.items():
        if value == symbol:
            return role
    raise ValueError(f"formula: the size {symbol} of {forward.op} is not a parameter")


def _parameter_names(forward) -> set:
    return {name for name, roles in PARAMETER_NAMES.items() if all(role in forward.parameters for role in roles)}


def free_symbols(expr) -> set:
    """The symbols of ``expr`` that are indices or parameters: not a tensor's label, not a dummy."""
    if isinstance(expr, MatrixValue):
        return set()
    return {symbol for symbol in sympy.sympify(expr).free_symbols if isinstance(symbol, Symbol)
            and not isinstance(symbol, sympy.Dummy)} - _labels(expr)


def _labels(expr) -> set:
    return {node.label for node in sympy.sympify(expr).atoms(IndexedBase)}


def _same_tensor(lhs, rhs, roles) -> bool:
    if isinstance(lhs, sympy.Indexed) and isinstance(rhs, sympy.Indexed):
        return roles.get(str(lhs.base.label)) == roles.get(str(rhs.base.label)) and lhs.indices == rhs.indices
    if isinstance(lhs, IndexedBase) and isinstance(rhs, IndexedBase):
        return roles.get(str(lhs.label)) == roles.get(str(rhs.label))
    return False
