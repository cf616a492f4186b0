"""Kernels from formulas: lower each layer's forward and gradient formulas to a kernel description.

For one layer of a network spec, :func:`layer_kernels` takes the op's forward formula and its
derived gradients (:mod:`symcnn.symbolic.adjoint`), substitutes every shape, stride, padding and dilation
(all but the batch size, which stays a runtime variable), rewrites what a kernel computes
differently from what a reader reads, and prints the arithmetic and index maps with
:class:`~symcnn.printing.numba.NumbaPrinter`. The result, a :class:`Kernel` per function, holds only
printed strings and loop bounds: the templates lay them out and add no math.

Rewrites (before printing, never inside the printer):
- an index ``(k + 1 - u)/2``, exact under its divisibility condition, becomes ``(k + 1 - u) // 2``;
- a read of a zero-padded input gets its bounds as conditions;
- max pooling's routing indicator ``[(u, v) = first argmax]`` becomes a test of the window's
  argmax offset, which the forward kernel records (document 001's "switch variables");
- ``sum_j exp(z_j)`` is computed as ``exp(m) * sum_j exp(z_j - m)`` with ``m = max_j z_j``, so that
  large scores do not overflow (log-sum-exp).

Example:
    >>> from symcnn.spec import load_spec
    >>> kernels = layer_kernels(load_spec("digits").layers[0])
    >>> [kernel.name for kernel in kernels]
    ['conv1_forward', 'conv1_grad_input', 'conv1_grad_weight', 'conv1_grad_bias']
"""

from __future__ import annotations

from typing import Mapping, Optional

import numpy
import sympy
from sympy import Expr, Indexed, IndexedBase, Sum, Symbol

from symcnn.symbolic import ops
from symcnn.symbolic.adjoint import GatherTerm, GradientFormula, derive_gradient, sum_terms
from symcnn.symbolic.functions import FirstArgmax, MaxOver
from symcnn.codegen.kernel_ir import Kernel, Loop, Reduction, Term
from symcnn.codegen.backends.numba_cpu.lanes import lanes_schedule
from symcnn.views.formula import FormulaView
from symcnn.printing.nodes import FloorDiv
from symcnn.printing.numba import NumbaPrinter
from symcnn.spec import LayerSpec, NetworkSpec

__all__ = ["Loop", "Term", "Reduction", "Kernel", "layer_kernels", "loss_kernels", "network_kernels"]


# Array names in generated code, by formula role.
ARRAY_NAMES = {
    "input": "x", "weight": "weight", "bias": "bias", "output": "out", "target": "targets",
    "grad_output": "grad_output", "grad_input": "grad_input", "grad_weight": "grad_weight",
    "grad_bias": "grad_bias",
}


def _batch_symbol(formula: ops.IndexFormula) -> Optional[Symbol]:
    return formula.parameters.get("batch")


def _layer_parameters(layer: LayerSpec) -> tuple[ops.IndexFormula, dict]:
    """The op's forward formula and every shape parameter's value except the batch size."""
    settings, shape = layer.settings, layer.input_shape
    if layer.kind == "conv2d":
        formula = ops.conv2d(bias=settings["bias"])
        values = {ops.C_in: shape[0], ops.H_in: shape[1], ops.W_in: shape[2], ops.C_out: settings["out_channels"],
                  ops.K_h: settings["kernel"][0], ops.K_w: settings["kernel"][1],
                  ops.s_h: settings["stride"][0], ops.s_w: settings["stride"][1],
                  ops.p_h: settings["padding"][0], ops.p_w: settings["padding"][1],
                  ops.d_h: settings["dilation"][0], ops.d_w: settings["dilation"][1]}
    elif layer.kind in ("maxpool2d", "avgpool2d"):
        formula = ops.maxpool2d() if layer.kind == "maxpool2d" else ops.avgpool2d()
        values = {ops.C_in: shape[0], ops.H_in: shape[1], ops.W_in: shape[2],
                  ops.K_h: settings["kernel"][0], ops.K_w: settings["kernel"][1],
                  ops.s_h: settings["stride"][0], ops.s_w: settings["stride"][1]}
    elif layer.kind in ("global_avgpool", "flatten"):
        formula = ops.global_avgpool() if layer.kind == "global_avgpool" else ops.flatten()
        values = {ops.C_in: shape[0], ops.H_in: shape[1], ops.W_in: shape[2]}
    elif layer.kind == "dense":
        formula = ops.dense(bias=settings["bias"])
        values = {ops.F_in: shape[0], ops.F_out: settings["out_features"]}
    else:  # element-wise activations, rank 4 or 2
        rank = len(shape) + 1
        factory = {"relu": ops.relu, "leaky_relu": ops.leaky_relu, "elu": ops.elu}[layer.kind]
        formula = factory(rank=rank)
        values = {ops.C_in: shape[0], ops.H_in: shape[1], ops.W_in: shape[2]} if rank == 4 else {ops.F_in: shape[0]}
        if "alpha" in settings:
            values[ops.alpha] = sympy.Float(settings["alpha"])
    return formula, values


# --- rewrites -------------------------------------------------------------------------------


def _integer_index(expr: Expr) -> Expr:
    """An integer-valued index with rational coefficients as a floor division (exact by its conditions)."""
    expr = sympy.sympify(expr)
    if isinstance(expr, sympy.floor):
        numerator, denominator = sympy.fraction(sympy.together(expr.args[0]))
        return FloorDiv(_integer_index(numerator), denominator) if denominator != 1 else _integer_index(numerator)
    if isinstance(expr, sympy.Mod):
        return sympy.Mod(_integer_index(expr.args[0]), expr.args[1], evaluate=False)
    if isinstance(expr, (sympy.Add, sympy.Mul)):
        numerator, denominator = sympy.fraction(sympy.together(expr))
        if denominator != 1 and denominator.is_Integer:
            return FloorDiv(sympy.expand(numerator), denominator)
        if any(arg.has(sympy.floor, sympy.Mod) for arg in expr.args):
            return expr.func(*[_integer_index(arg) for arg in expr.args], evaluate=False)
    return expr


def _integer_indices(expr: Expr) -> Expr:
    """Every array index and every comparison in ``expr`` with integer arithmetic."""
    def rewrite(node):
        if isinstance(node, Indexed):
            return node.base[tuple(_integer_index(index) for index in node.indices)]
        if isinstance(node, sympy.Rel) and not any(isinstance(a, Indexed) or a.has(Indexed) for a in node.args):
            return node.func(_integer_index(node.lhs), _integer_index(node.rhs), evaluate=False)
        return None

    return _replace(expr, rewrite)


def _replace(expr, rewrite):
    """Bottom-up rewrite that leaves unevaluated the nodes it builds (printer-ready)."""
    new = rewrite(expr)
    if new is not None:
        return new
    if not expr.args or isinstance(expr, (Symbol, sympy.Number, IndexedBase)):
        return expr
    args = [_replace(arg, rewrite) for arg in expr.args]
    if all(a is b for a, b in zip(args, expr.args)):
        return expr
    try:
        return expr.func(*args, evaluate=False)
    except TypeError:
        return expr.func(*args)


def _padding_conditions(expr: Expr, padded: Mapping[IndexedBase, tuple]) -> list:
    """Bounds of every read of a zero-padded tensor: the read counts only inside the tensor."""
    conditions = []
    for read in sorted(expr.atoms(Indexed), key=sympy.default_sort_key):
        if read.base not in padded:
            continue
        for index, size in zip(read.indices, padded[read.base]):
            if index.is_Symbol or index.is_Integer:
                continue  # a loop index over the tensor's own axis, or a constant: in range
            conditions += [sympy.Le(0, index, evaluate=False), sympy.Lt(index, size, evaluate=False)]
    return conditions


def _switch_test(node: FirstArgmax, switch: IndexedBase, stride: tuple) -> Expr:
    """``[(u, v) = first argmax of window (i, j)]`` as ``switch[n, c, i, j] == u*K_w + v``."""
    read = next(iter(node.function.atoms(Indexed)))
    window_variables = [limit[0] for limit in node.limits]
    extents = [limit[2] - limit[1] + 1 for limit in node.limits]
    leading = list(read.indices[:-2])
    window_origin = []
    for axis, step in zip((-2, -1), stride):
        start = read.indices[axis].xreplace({variable: 0 for variable in window_variables})
        window_origin.append(start / step)
    offset = node.position[0] * extents[1] + node.position[1]
    return sympy.Eq(switch[tuple(leading + window_origin)], offset, evaluate=False)


# --- lowering -----------------------------------------------------------------------------------


class _Lowering:
    """Prints one kernel's pieces with one printer, collecting its imports."""

    def __init__(self, formula_tensors, batch: Optional[Symbol], extra_names=None):
        names = {tensor.base: ARRAY_NAMES.get(tensor.role, tensor.role) for tensor in formula_tensors}
        names.update(extra_names or {})
        self.names = names
        self.printer = NumbaPrinter(names, {batch: "N"} if batch is not None else {})
        self.padded = {tensor.base: tensor.shape for tensor in formula_tensors if tensor.zero_padded}
        self.counter = 0

    def code(self, expr) -> str:
        return self.printer.doprint(_integer_indices(sympy.sympify(expr)))

    def loop(self, variable, low, high, parallel=False) -> Loop:
        if low != 0:
            raise ValueError(f"loop over {variable} starts at {low}, not 0")
        return Loop(self.printer.doprint(variable), self.code(high + 1), parallel)

    def hoist(self, body: Expr, reductions: list) -> Expr:
        """Move inner sums (softmax's normalizer) out of the body into reductions."""
        for inner in sorted(body.atoms(Sum), key=lambda s: -sympy.count_ops(s)):
            if inner not in body.atoms(Sum):
                continue
            name = f"sum{self.counter}"
            self.counter += 1
            function = inner.function
            limits = inner.limits
            exps = [node for node in function.atoms(sympy.exp)]
            if len(exps) == 1 and function == exps[0]:  # sum exp(z): shift by the max (log-sum-exp)
                peak_name = f"peak{self.counter}"
                self.counter += 1
                peak = Symbol(peak_name)
                reductions.append(Reduction(peak_name, "max",
                                            tuple(self.loop(*limit) for limit in limits), self.code(exps[0].args[0])))
                reductions.append(Reduction(name, "sum", tuple(self.loop(*limit) for limit in limits),
                                            self.code(sympy.exp(exps[0].args[0] - peak))))
                body = body.xreplace({inner: sympy.exp(peak) * Symbol(name)})
            else:
                reductions.append(Reduction(name, "sum", tuple(self.loop(*limit) for limit in limits),
                                            self.code(function)))
                body = body.xreplace({inner: Symbol(name)})
        # exp(z)/(exp(m)*s) -> exp(z - m)/s: combine the exponentials the shift introduced
        return sympy.powsimp(sympy.expand_log(body, force=True), combine="exp")

    def term(self, term: GatherTerm, outer: tuple = ()) -> Term:
        """Print one term. A range condition on a loop variable with a unit coefficient is folded
        into that loop's bounds (``0 <= i + u - 1`` starts ``u`` at ``max(0, 1 - i)``), so that the
        inner loops test nothing they need not; the other conditions stay as tests."""
        reductions: list = []
        body = self.hoist(term.body, reductions)
        conditions = list(term.conditions) + _padding_conditions(body, self.padded)
        bounds = {var: [sympy.S.Zero, high + 1] for var, low, high in term.limits}
        order = [limit[0] for limit in term.limits]
        remaining = []
        for condition in conditions:
            if not _fold_bound(condition, bounds, order, set(outer)):
                remaining.append(condition)
        # divisibility first: it makes the integer divisions of the other conditions exact
        remaining.sort(key=lambda c: not (isinstance(c, sympy.Eq) and c.lhs.has(sympy.Mod)))
        condition = " and ".join(f"({self.code(c)})" for c in remaining) if remaining else None
        loops = tuple(
            Loop(self.printer.doprint(var), self.code(bounds[var][1]), False, self.code(bounds[var][0]))
            for var in order
        )
        body, loads = self.hoist_loads(body)
        return Term(loops, condition, self.code(body), tuple(reductions), loads)

    def hoist_loads(self, body: Expr) -> tuple[Expr, tuple[tuple[str, str], ...]]:
        """Read the arrays a ``Piecewise`` branches on before it: ``load0 = grad_output[n, c, i, j]``.

        Python's ``a if c else b`` reads ``a`` only when ``c`` holds; LLVM cannot then vectorize the
        loop (a load it may not speculate). Reads at plain loop indices are always in bounds, so
        reading them first computes the same value, branch-free.
        """
        reads = sorted({read for piecewise in body.atoms(sympy.Piecewise) for read in piecewise.atoms(Indexed)
                        if all(index.is_Symbol or index.is_Integer for index in read.indices)},
                       key=sympy.default_sort_key)
        names = {read: Symbol(f"load{position}") for position, read in enumerate(reads)}
        return body.xreplace(names), tuple((str(names[read]), self.code(read)) for read in reads)


def _fold_bound(condition, bounds: dict, order: list, outer: set) -> bool:
    """Fold ``condition`` into ``bounds[var] = [start, stop)`` when it bounds one loop variable with
    coefficient +-1 by what is known before that loop; ``True`` when folded."""
    if not isinstance(condition, (sympy.LessThan, sympy.StrictLessThan, sympy.GreaterThan,
                                  sympy.StrictGreaterThan)) or condition.has(sympy.Mod, Indexed):
        return False
    if isinstance(condition, (sympy.GreaterThan, sympy.StrictGreaterThan)):
        difference = condition.rhs - condition.lhs  # rhs - lhs <= 0 (or < 0)
    else:
        difference = condition.lhs - condition.rhs
    if isinstance(condition, (sympy.StrictLessThan, sympy.StrictGreaterThan)):
        difference = difference + 1  # integers: d < 0 is d + 1 <= 0
    difference = sympy.expand(difference)
    candidates = [var for var in order if difference.has(var)]
    if not candidates:
        return False
    variable = candidates[-1]  # bound the innermost loop; the outer ones are known there
    coefficient = difference.coeff(variable)
    rest = sympy.expand(difference - coefficient * variable)
    known = outer | set(order[:order.index(variable)])
    if coefficient not in (1, -1) or rest.has(variable) or not all(
            symbol in known or not _is_index(symbol) for symbol in rest.free_symbols):
        return False
    if not all(term.is_integer for term in sympy.Add.make_args(rest)):
        return False
    start, stop = bounds[variable]
    if coefficient == 1:  # variable + rest <= 0
        bounds[variable][1] = sympy.Min(stop, -rest + 1)
    else:  # rest - variable <= 0
        bounds[variable][0] = sympy.Max(start, rest)
    return True


def _is_index(symbol) -> bool:
    """Index variables are nonnegative integers that are not shape parameters (sizes are positive)."""
    return bool(symbol.is_integer and symbol.is_nonnegative and not symbol.is_positive)


def _output_loops(lowering: _Lowering, indices, shape, batch) -> tuple[Loop, ...]:
    loops = []
    for position, (index, size) in enumerate(zip(indices, shape)):
        stop = "N" if size == batch else lowering.code(size)
        loops.append(Loop(lowering.printer.doprint(index), stop, parallel=position == 0))
    return tuple(loops)


#: Rows shorter than this are not worth the accumulate schedule (the inner loop would be tiny).
MIN_TILE_EXTENT = 4


def _summation(lowering: _Lowering, indices, shape, batch, terms, output_name: str, tensors) -> dict:
    """Loops and printed terms of a sum kernel, in the schedule that suits it.

    The lanes schedule (:mod:`symcnn.codegen.backends.numba_cpu.lanes`) when the kernel is one product ``broadcast *
    streamed`` (convolutions, dense layers' gradients); otherwise the accumulate or gather form.

    The accumulate schedule (reduction loops outside, the last two output axes inside) is a loop
    interchange of the same sums: legal because every term adds into its own output element. It
    is chosen when the last two output axes are rows of at least ``MIN_TILE_EXTENT``, no term
    reduces over the batch (a weight gradient keeps the gather form, parallel over its channels)
    and no term tests divisibility (a strided input gradient: most of its tile would be skipped).
    """
    lanes = lanes_schedule(lowering, output_name, indices, shape, batch, terms, tensors)
    if lanes is not None:
        return lanes
    loops = _output_loops(lowering, indices, shape, batch)
    tiled = (len(indices) >= 3 and all(size.is_Integer and size >= MIN_TILE_EXTENT for size in shape[-2:])
             and any(term.limits for term in terms)
             and not any(limit[2] + 1 == batch or limit[2].has(batch) for term in terms for limit in term.limits)
             and not any(condition.has(sympy.Mod) for term in terms for condition in term.conditions))
    if not tiled:
        views: dict[str, str] = {}
        schedule = {}
        collapsed = _collapse_image(lowering, indices, shape, batch, terms, tensors, output_name, views)
        if collapsed is not None:
            indices, terms, schedule["output"] = collapsed
            loops = (loops[0], Loop(lowering.printer.doprint(indices[1]), str(_image_size(shape)), False))
        terms = [_collapse_rows(lowering, term, tensors, views) for term in terms]
        return {"output_loops": loops, "terms": tuple(lowering.term(term, indices) for term in terms),
                "views": tuple(views.items()), **schedule}
    inner = tuple((index, sympy.S.Zero, size - 1) for index, size in zip(indices[-2:], shape[-2:]))
    printed = tuple(lowering.term(GatherTerm(term.limits + inner, term.conditions, term.body), indices[:-2])
                    for term in terms)
    return {"output_loops": loops[:-2], "tile": loops[-2:], "terms": printed, "kind": "accumulate"}


def _reshape_of(lowering: _Lowering, tensors, indices, shape, batch, terms) -> str:
    """The argument whose row-major reshape the output is, or ``""``.

    A kernel that copies one read per element (no sum, no condition) from an operand with the
    output's batch axis and its number of elements per image, where each element's flat row-major
    offset in the operand is its own in the output, moves nothing: ``flatten`` and its gradient on
    C-contiguous arrays. Checked for every element of one image (the shapes are constants), so a
    runtime may pass ``operand.reshape(output shape)``, a view, instead of calling the kernel.

    Example: ``Y[n, k] = X[n, k // 256, k // 16 % 16, k % 16]`` is the reshape of ``X (N, 32, 16, 16)``.
    """
    if len(terms) != 1 or terms[0].limits or terms[0].conditions or not isinstance(terms[0].body, Indexed):
        return ""
    read = terms[0].body
    source_shape = next(tensor.shape for tensor in tensors if tensor.base == read.base)
    if (not shape or shape[0] != batch or not source_shape or source_shape[0] != batch
            or read.indices[0] != indices[0] or not all(size.is_Integer for size in (*shape[1:], *source_shape[1:]))):
        return ""
    per_image = [int(size) for size in shape[1:]]
    if int(sympy.prod(per_image)) != int(sympy.prod(source_shape[1:])):
        return ""
    positions = numpy.indices(per_image).reshape(len(per_image), -1)  # every element of one image
    arguments = {var: position for var, position in zip(indices[1:], positions)}
    offset = numpy.zeros(positions.shape[1], dtype=numpy.int64)
    for index, size in zip(read.indices[1:], source_shape[1:]):
        if not index.free_symbols <= set(arguments):
            return ""
        values = sympy.lambdify(list(arguments), index, modules="numpy")(*arguments.values())
        offset = offset * int(size) + numpy.broadcast_to(numpy.asarray(values, dtype=numpy.int64), offset.shape)
    return lowering.names[read.base] if numpy.array_equal(offset, numpy.arange(offset.size)) else ""


def _image_size(shape) -> int:
    return int(sympy.prod(shape[1:]))


def _rows_view(lowering: _Lowering, name: str, leading, extent: int, views: dict) -> IndexedBase:
    """A view of argument ``name`` with its trailing axes as one of ``extent``, registered in ``views``."""
    view = IndexedBase(f"{name}_rows")
    lowering.printer.array_names[view] = str(view)
    sizes = [str(size) if size.is_Integer else f"{name}.shape[{axis}]" for axis, size in enumerate(leading)]
    views[str(view)] = f"{name}.reshape(({', '.join(sizes + [str(extent)])}))"
    return view


def _collapse_image(lowering: _Lowering, indices, shape, batch, terms, tensors, output_name: str, views: dict):
    """An element-wise kernel's loops over an image (``c, i, j``) as one loop over reshaped views:
    ``(indices, terms, output view name)``, or ``None`` when a term sums, tests, or reads anything
    but the output's own element of an array of the output's shape. One loop of 16,384 vectorizes
    where 32 of 32 barely did (measured alone on seed004's ReLU gradient: 0.25 -> 0.08 ms)."""
    if len(indices) < 3 or shape[0] != batch or not all(size.is_Integer for size in shape[1:]) \
            or any(term.limits or term.conditions for term in terms):
        return None
    shapes = {tensor.base: tensor.shape for tensor in tensors}
    reads = sorted(set().union(*(term.body.atoms(Indexed) for term in terms)), key=sympy.default_sort_key)
    placeholders = {read: Symbol(f"read{position}") for position, read in enumerate(reads)}
    if any(tuple(read.indices) != tuple(indices) or tuple(shapes.get(read.base, ())[1:]) != tuple(shape[1:])
           for read in reads) or any(term.body.xreplace(placeholders).has(*indices[1:]) for term in terms):
        return None
    element = Symbol("".join(str(index) for index in indices[1:]), integer=True, nonnegative=True)
    extent = _image_size(shape)
    replaced = {read: _rows_view(lowering, lowering.names[read.base], shape[:1], extent, views)[indices[0], element]
                for read in reads}
    output = _rows_view(lowering, output_name, shape[:1], extent, views)
    return ((indices[0], element), [GatherTerm((), (), term.body.xreplace(replaced)) for term in terms], str(output))


def _collapse_rows(lowering: _Lowering, term: GatherTerm, tensors, views: dict) -> GatherTerm:
    """``term`` with its two innermost loops as one, when they run over whole rows and columns
    that every read indexes last: ``sum_{i, j} dL/dY[n, c, i, j]`` as ``sum_p rows[n, c, p]``, over
    ``rows = grad_output.reshape((N, 16, 1024))``, a view (the arrays are C-contiguous). One loop
    of 1,024 vectorizes; 32 of 32 each end in a horizontal sum (measured on seed004's conv1 bias
    gradient: 0.15 -> 0.04 ms). ``views`` collects each view's name and printed reshape."""
    if len(term.limits) < 2 or term.conditions:
        return term
    (row, row_low, row_high), (column, column_low, column_high) = term.limits[-2:]
    if row_low != 0 or column_low != 0:
        return term
    shapes = {tensor.base: tensor.shape for tensor in tensors}
    reads = sorted((read for read in term.body.atoms(Indexed) if read.has(row) or read.has(column)),
                   key=sympy.default_sort_key)
    placeholders = {read: Symbol(f"read{position}") for position, read in enumerate(reads)}
    if not reads or term.body.xreplace(placeholders).has(row, column):
        return term  # the loop variables appear outside the reads
    for read in reads:
        shape = shapes.get(read.base)
        if (shape is None or tuple(read.indices[-2:]) != (row, column) or any(index.has(row, column) for index in read.indices[:-2])
                or tuple(shape[-2:]) != (row_high + 1, column_high + 1)):
            return term
    pixel = Symbol(f"{row}{column}", integer=True, nonnegative=True)
    extent = (row_high + 1) * (column_high + 1)
    replaced = {read: _rows_view(lowering, lowering.names[read.base], shapes[read.base][:-2], int(extent), views)[
        tuple(read.indices[:-2]) + (pixel,)] for read in reads}
    return GatherTerm(term.limits[:-2] + ((pixel, sympy.S.Zero, extent - 1),), term.conditions, term.body.xreplace(replaced))


def _forward_terms(formula: ops.IndexFormula) -> list[GatherTerm]:
    return [GatherTerm(tuple(limits), (), summand) for limits, summand in sum_terms(formula.rhs, set(formula.indices))]


def _docstring(formula: ops.IndexFormula, gradient: Optional[GradientFormula], values: dict) -> str:
    """The kernel's formula as ``symcnn formula`` prints it, and the constants it was specialized to."""
    wrt = gradient.wrt if gradient is not None else "forward"
    equation = gradient.equation() if gradient is not None else formula.equation()
    view = FormulaView(formula.op, wrt, equation, formula, gradient, {})
    constants = ", ".join(f"{symbol} = {value}" for symbol, value in
                          sorted(values.items(), key=lambda item: str(item[0])))
    return f"{view.text()}\n\nwith {constants}." if constants else view.text()


def _kernel_name(layer_label: str, what: str) -> str:
    return f"{layer_label}_{what}"


def _arguments(lowering: _Lowering, expr_terms, output_name: str, order) -> tuple[str, ...]:
    used = set()
    for term in expr_terms:
        for node in term.body.atoms(Indexed):
            used.add(lowering.names[node.base])
    return tuple(name for name in order if name in used) + (output_name,)


_ARGUMENT_ORDER = ("grad_output", "x", "weight", "bias", "targets", "switch")


def _forward_kernel(layer: LayerSpec, formula: ops.IndexFormula, values: dict) -> Kernel:
    concrete = formula.substitute(values)
    batch = _batch_symbol(formula)
    lowering = _Lowering(concrete.tensors, batch)
    name = _kernel_name(layer.label, "forward")
    loops = _output_loops(lowering, concrete.indices, concrete.output.shape, batch)
    doc = _docstring(formula, None, values)
    if isinstance(concrete.rhs, MaxOver):  # max pooling: the window max and its first argmax
        window = tuple(lowering.loop(*limit) for limit in concrete.rhs.limits)
        extent = concrete.rhs.limits[1][2] + 1
        offset = lowering.code(concrete.rhs.limits[0][0] * extent + concrete.rhs.limits[1][0])
        return Kernel(name, doc, ("x", "out", "switch"), "out", loops, kind="max",
                      switch="switch", window=window, window_value=lowering.code(concrete.rhs.function),
                      window_offset=offset, imports=lowering.printer.imports(), batch_from="x")
    terms = _forward_terms(concrete)
    schedule = _summation(lowering, concrete.indices, concrete.output.shape, batch, terms, "out", concrete.tensors)
    arguments = _arguments(lowering, terms, "out", _ARGUMENT_ORDER)
    reshape_of = _reshape_of(lowering, concrete.tensors, concrete.indices, concrete.output.shape, batch, terms)
    return Kernel(name, doc, arguments, schedule.pop("output", "out"), imports=lowering.printer.imports(),
                  batch_from="x", reshape_of=reshape_of, **schedule)


def _gradient_kernel(layer: LayerSpec, gradient: GradientFormula, values: dict, stride=None) -> Kernel:
    concrete = gradient.substitute(values)
    batch = _batch_symbol(gradient.forward)
    switch = IndexedBase("switch")
    tensors = concrete.operands + (concrete.gradient,)
    lowering = _Lowering(tensors, batch, {switch: "switch"})
    terms = []
    for term in concrete.terms:
        body = term.body
        if body.has(FirstArgmax):
            body = body.replace(lambda node: isinstance(node, FirstArgmax),
                                lambda node: sympy.Piecewise((1, _switch_test(node, switch, stride)), (0, True)))
        terms.append(GatherTerm(term.limits, term.conditions, body))
    role = gradient.gradient.role
    schedule = _summation(lowering, concrete.indices, concrete.gradient.shape, batch, terms, ARRAY_NAMES[role],
                          tensors)
    arguments = _arguments(lowering, terms, ARRAY_NAMES[role], _ARGUMENT_ORDER)
    batch_from = next((a for a in arguments[:-1] if a in ("grad_output", "x")), arguments[0])
    reshape_of = _reshape_of(lowering, tensors, concrete.indices, concrete.gradient.shape, batch, terms)
    return Kernel(_kernel_name(layer.label, role), _docstring(gradient.forward, gradient, values), arguments,
                  schedule.pop("output", ARRAY_NAMES[role]), imports=lowering.printer.imports(), batch_from=batch_from,
                  reshape_of=reshape_of, **schedule)


def layer_kernels(layer: LayerSpec) -> list[Kernel]:
    """The forward kernel and one kernel per gradient of ``layer``."""
    formula, values = _layer_parameters(layer)
    kernels = [_forward_kernel(layer, formula, values)]
    stride = layer.settings.get("stride")
    for tensor in formula.operands:
        if tensor.role in ("input", "weight", "bias"):
            gradient = derive_gradient(formula, tensor.role)
            kernels.append(_gradient_kernel(layer, gradient, values, stride))
    return kernels


def loss_kernels(spec: NetworkSpec) -> list[Kernel]:
    """The loss (softmax cross-entropy, batch mean) and its gradient with respect to the scores."""
    formula = ops.softmax_cross_entropy()
    values = {ops.F_in: spec.classes}
    concrete = formula.substitute(values)
    batch = _batch_symbol(formula)
    lowering = _Lowering(concrete.tensors, batch)
    # L = -(1/N) sum_{n,i} T (X - log sum exp X): accumulate the sum, then scale by -1/N.
    scale, summation = concrete.rhs.as_independent(Sum, as_Add=False)
    terms = _forward_terms(ops.IndexFormula("loss", concrete.output, (), summation, concrete.operands))
    printed = tuple(lowering.term(term, concrete.indices) for term in terms)
    loss = Kernel("loss_forward", _docstring(formula, None, values), ("x", "targets"), "", (), terms=printed,
                  result=lowering.code(scale * Symbol("acc")), imports=lowering.printer.imports(), batch_from="x")
    gradient = derive_gradient(formula, "input")
    loss_layer = LayerSpec("loss", -1, (spec.classes,), (), "loss")
    grad = _gradient_kernel(loss_layer, gradient, values)
    return [loss, grad]


def network_kernels(spec: NetworkSpec) -> dict[str, list[Kernel]]:
    """Every kernel of ``spec``, by module (layer label, and ``loss``)."""
    modules = {layer.label: layer_kernels(layer) for layer in spec.layers}
    modules["loss"] = loss_kernels(spec)
    return modules
