"""Kernels from formulas: lower each layer's forward and gradient formulas to a kernel description.

For one layer of a network spec, :func:`symcnn.codegen.network.layer_kernels` takes the op's forward formula and its
derived gradients (:mod:`symcnn.symbolic.adjoint`), substitutes every shape, stride, padding and dilation
(all but the batch size, which stays a runtime variable), rewrites what a kernel computes differently from
what a reader reads, and prints the arithmetic and index maps with :class:`~symcnn.printing.numba.NumbaPrinter`.
The result, a :class:`Kernel` per function, holds only printed strings and loop bounds: the templates lay them
out and add no math.

The rewrites before printing (integer indices, padding bounds, the argmax switch, log-sum-exp) are
:mod:`symcnn.codegen.rewrites`. Each reduction, the kernel's own sum and the ones inside its terms,
is printed from its node in the formula (``Sum`` or :class:`~symcnn.symbolic.functions.MaxOver`): its identity
starts the accumulator and its step combines each value into it (:func:`~symcnn.symbolic.functions.reduction_identity`,
:func:`~symcnn.symbolic.functions.reduction_step`); max pooling's scan tests each window value by the formula's tie
rule (:func:`~symcnn.symbolic.functions.replaces_first_max`).

Example:
    >>> from symcnn.spec import load_spec
    >>> layer = load_spec("digits").layers[0]
    >>> forward_kernel(layer, *layer_formula(layer)).name
    'conv1_forward'
"""

from __future__ import annotations

from typing import Optional

import sympy
from sympy import Expr, Indexed, IndexedBase, Sum, Symbol

from symcnn.registry import array_name
from symcnn.symbolic import ops
from symcnn.symbolic.instances import bind_layer
from symcnn.symbolic.adjoint import GatherTerm, GradientFormula, derive_gradient, lift_conditions, sum_terms
from symcnn.symbolic.output_form import gradient_from_output
from symcnn.symbolic.functions import FirstArgmax, MaxOver, reduction_identity, reduction_step
from symcnn.codegen.kernel_ir import Kernel, Loop, Reduction, Term
from symcnn.codegen.layout import collapse_image, collapse_rows, image_size, reshape_of
from symcnn.codegen.invariants import Precomputer, factor_sums
from symcnn.codegen.invariant_loops import invariants_inside
from symcnn.codegen.coefficients import invariant_terms
from symcnn.codegen.docstrings import kernel_docstring
from symcnn.codegen.epilogue import FusedElementwise, epilogue_at
from symcnn.codegen.backends.numba_cpu.lanes import lanes_schedule
from symcnn.codegen.schedule_choice import vector_schedule
from symcnn.codegen.widths import per_vector_width
from symcnn.codegen.small_batches import per_batch_size
from symcnn.codegen.phase_items import one_item
from symcnn.codegen.phases import PhaseSplit, shared_loops, split_phases, without_single_loops
from symcnn.codegen.taps import one_tap_terms
from symcnn.codegen.rewrites import always_holds, fold_bound, for_kernels, padding_conditions, shifted_exponential_sum
from symcnn.codegen.window_max import switch_tests, window_max
from symcnn.printing.nodes import Assign
from symcnn.printing.numba import NumbaPrinter
from symcnn.spec import LayerSpec, NetworkSpec

__all__ = ["Loop", "Term", "Reduction", "Kernel", "forward_kernel", "gradient_kernel", "loss_kernels"]


# Array names in generated code, by formula role.
ARRAY_NAMES = {
    "input": "x", "weight": "weight", "bias": "bias", "output": "out", "target": "targets",
    "grad_output": "grad_output", "grad_input": "grad_input", "grad_weight": "grad_weight", "grad_bias": "grad_bias",
}


#: A gather kernel's accumulator, one output element's sum of terms.
ACCUMULATOR = Symbol("acc")


def batch_symbol(formula: ops.IndexFormula) -> Optional[Symbol]:
    return formula.parameters.get("batch")


def layer_formula(layer: LayerSpec, mode: str = "training") -> tuple[ops.IndexFormula, dict]:
    """The layer's forward formula (in ``mode``) and every shape parameter's value except the batch size,
    from the op registry; a slope such as LeakyReLU's alpha as a float, as the kernels compute it."""
    return bind_layer(layer.kind, layer.formula_shape, layer.settings, number=sympy.Float, mode=mode)


# --- lowering -----------------------------------------------------------------------------------


class Lowering:
    """Prints one kernel's pieces with one printer, collecting its imports."""

    def __init__(self, formula_tensors, batch: Optional[Symbol], extra_names=None,
                 fused: Optional[FusedElementwise] = None):
        names = {tensor.base: ARRAY_NAMES.get(tensor.role, array_name(tensor.role)) for tensor in formula_tensors}
        names.update(extra_names or {})
        self.names = names
        self.printer = NumbaPrinter(names, {batch: "N"} if batch is not None else {})
        self.padded = {tensor.base: tensor.shape for tensor in formula_tensors if tensor.zero_padded}
        self.counter = 0
        self.batch = batch
        # Printed names of strided views (a kernel's phases): not C-contiguous, so never reshaped (layout).
        self.strided: set[str] = set()
        self.fused = fused  # an epilogue at every store (symcnn.codegen.epilogue)
        # a view of the output a phase stores into -> the same view of the fused array (_fused_views)
        self.fused_views: dict[str, str] = {}
        # index -> (low, high), inclusive: the indices of the output being printed (always_holds)
        self.ranges: dict[Symbol, tuple[int, int]] = {}

    def precompute_invariants(self, indices, shape, tensors, shared: Optional[Precomputer] = None) -> Precomputer:
        """What collects the reductions and factors that depend on fewer indices than the loops around
        them, computed once, before the output loops (:mod:`symcnn.codegen.invariants`,
        :func:`~symcnn.codegen.coefficients.invariant_terms`); with ``shared``, for another output of
        the same kernel, its arrays shared (:mod:`symcnn.codegen.backward`)."""
        batch_index = indices[0] if shape and shape[0] == self.batch else None
        if shared is not None:
            return shared.for_output(indices, shape, batch_index)
        return Precomputer(indices, shape, batch_index, self.array, self.loop, self.reduction, self.code,
                           lambda term, views: collapse_rows(self, term, tensors, views))

    def code(self, expr) -> str:
        return self.printer.doprint(for_kernels(sympy.sympify(expr)))

    def loop(self, variable, low, high, parallel=False) -> Loop:
        """The loop ``low <= variable <= high``: its bounds may depend on outer loops (an adaptive window)."""
        return Loop(self.printer.doprint(variable), self.code(high + 1), parallel, self.code(low))

    def array(self, name: str) -> IndexedBase:
        """An array of the generated code, printed by ``name`` (an output, or a kernel's own)."""
        base = IndexedBase(name)
        self.printer.array_names[base] = name
        return base

    def identity(self, reduction: type) -> str:
        """The identity of ``reduction`` (``Sum`` or ``MaxOver``), where its accumulator starts,
        printed as a float (the accumulators are floats): ``0.0``, ``-np.inf``."""
        value = reduction_identity(reduction)
        return self.code(sympy.Float(value) if value.is_finite else value)

    def statement(self, target: Expr, value: Expr) -> str:
        """``target = value`` printed (``target += rest`` for a value ``target + rest``)."""
        return self.printer.doprint(for_kernels(Assign(target, value)))

    def update(self, accumulator: Expr, reduction: type, value: Expr) -> str:
        """The statement that combines ``value`` into ``accumulator`` by ``reduction``'s step:
        ``acc += x[n, k]`` for a ``Sum``, ``peak1 = max(peak1, x[n, j])`` for a ``MaxOver``."""
        return self.statement(accumulator, reduction_step(reduction, accumulator, value))

    def reduction(self, name: str, node: Expr) -> Reduction:
        """``node``, a ``Sum`` or ``MaxOver`` of the formula, reduced into the variable ``name``."""
        return Reduction(name, tuple(self.loop(*limit) for limit in node.limits), self.identity(type(node)),
                         self.update(Symbol(name), type(node), node.function))

    def hoist(self, body: Expr, reductions: list) -> Expr:
        """Move inner reductions (softmax's normalizer) out of the body into ``reductions``; a reduction
        nested in another (a variance's mean) first, computed once before the one that reads it."""
        while body.atoms(Sum, MaxOver):
            nodes = body.atoms(Sum, MaxOver)
            innermost = {node for node in nodes if not node.function.atoms(Sum, MaxOver)}
            for outer in nodes - innermost:
                bound = {limit[0] for limit in outer.limits}
                if any(node.free_symbols & bound for node in outer.function.atoms(Sum, MaxOver)):
                    raise ValueError(f"cannot lower {outer}: a reduction nested in it reads its index")
            body = self._hoist_innermost(body, innermost, reductions)
        # exp(z)/(exp(m)*s) -> exp(z - m)/s: combine the exponentials the shift introduced
        return sympy.powsimp(sympy.expand_log(body, force=True), combine="exp")

    def _hoist_innermost(self, body: Expr, innermost: set, reductions: list) -> Expr:
        for inner in sorted(innermost, key=lambda s: -sympy.count_ops(s)):
            if inner not in body.atoms(Sum, MaxOver):
                continue
            name = f"{'sum' if isinstance(inner, Sum) else 'max'}{self.counter}"
            self.counter += 1
            peak = Symbol(f"peak{self.counter}")
            shifted = shifted_exponential_sum(inner, peak)
            if shifted is not None:  # sum exp(z): shifted by the max (log-sum-exp)
                self.counter += 1
                maximum, shifted_sum = shifted
                reductions += [self.reduction(str(peak), maximum), self.reduction(name, shifted_sum)]
                body = body.xreplace({inner: sympy.exp(peak) * Symbol(name)})
            else:
                reductions.append(self.reduction(name, inner))
                body = body.xreplace({inner: Symbol(name)})
        return body

    def term(self, term: GatherTerm, accumulator: Expr, outer: tuple = ()) -> Term:
        """Print one term of a sum, added into ``accumulator``. A range condition on a loop
        variable with a unit coefficient is folded into that loop's bounds
        (:func:`~symcnn.codegen.rewrites.fold_bound`); the other conditions stay as tests."""
        reductions: list = []
        body = self.hoist(term.body, reductions)
        conditions = list(term.conditions) + padding_conditions(body, self.padded)
        # a condition that every output element and every value of the term's loops meet tests nothing
        # (a depthwise weight gradient's channel c_out + c_in < 32, c_in in range(1)); kept, it would keep
        # the sum from vectorizing (a tested sum is never reassociated)
        ranges = {**self.ranges, **{var: (int(low), int(high)) for var, low, high in term.limits
                                    if low.is_Integer and high.is_Integer}}
        conditions = [condition for condition in conditions if not always_holds(condition, ranges)]
        bounds = {var: [low, high + 1] for var, low, high in term.limits}
        order = [limit[0] for limit in term.limits]
        remaining = []
        for condition in conditions:
            if not fold_bound(condition, bounds, order, set(outer)):
                remaining.append(condition)
        # divisibility first: it makes the integer divisions of the other conditions exact
        remaining.sort(key=lambda c: not (isinstance(c, sympy.Eq) and c.lhs.has(sympy.Mod)))
        condition = " and ".join(f"({self.code(c)})" for c in remaining) if remaining else None
        loops = tuple(
            Loop(self.printer.doprint(var), self.code(bounds[var][1]), False, self.code(bounds[var][0]))
            for var in order
        )
        body, loads = self.hoist_loads(body)
        return Term(loops, condition, self.update(accumulator, Sum, body), tuple(reductions), loads)

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


def _output_loops(lowering: Lowering, indices, shape, batch) -> tuple[Loop, ...]:
    loops = []
    for position, (index, size) in enumerate(zip(indices, shape)):
        stop = "N" if size == batch else lowering.code(size)
        loops.append(Loop(lowering.printer.doprint(index), stop, parallel=position == 0))
    return tuple(loops)


#: Rows shorter than this are not worth the accumulate schedule (the inner loop would be tiny).
MIN_TILE_EXTENT = 4


def summation(lowering: Lowering, indices, shape, batch, terms, output_name: str, tensors) -> dict:
    """Loops and printed terms of a sum kernel, in the schedule that suits it.

    A vector schedule when the kernel is one product ``broadcast * streamed`` (convolutions, dense
    layers' gradients): the lanes schedule (:mod:`symcnn.codegen.backends.numba_cpu.lanes`, over channels)
    or the columns schedule (:mod:`symcnn.codegen.backends.numba_cpu.columns`, over output columns),
    whichever the cost model (:mod:`symcnn.codegen.cost_model`) estimates cheapest, the scalar form
    included; otherwise the accumulate or gather form.

    The accumulate schedule (reduction loops outside, the last two output axes inside) is a loop
    interchange of the same sums: legal because every term adds into its own output element. It
    is chosen when the last two output axes are rows of at least ``MIN_TILE_EXTENT``, no term
    reduces over the batch (a weight gradient keeps the gather form, parallel over its channels)
    and no term tests divisibility (a strided input gradient: most of its tile would be skipped).

    Divisibility conditions are first rewritten away where :mod:`symcnn.codegen.phases` can: the
    kernel is then its phases, each scheduled as any sum.
    """
    terms = one_tap_terms(terms, indices, shape)  # a 2x2 pool's gradient at stride 2: one tap per element
    # these indices' ranges, for the terms printed below (a phase's own call sets its own)
    lowering.ranges = {index: (0, int(size) - 1) for index, size in zip(indices, shape) if size.is_Integer}
    split = split_phases(lowering.names, indices, shape, terms, tensors, output_name)
    if split is not None:
        return _phase_schedules(lowering, split, batch)
    tiled = (len(indices) >= 3 and all(size.is_Integer and size >= MIN_TILE_EXTENT for size in shape[-2:])
             and any(term.limits for term in terms)
             and not any((low.free_symbols | high.free_symbols) & set(indices[-2:])  # windows that follow the
                         for term in terms for _, low, high in term.limits)  # tile's indices: no interchange
             and not any(limit[2] + 1 == batch or limit[2].has(batch) for term in terms for limit in term.limits)
             and not any(condition.has(sympy.Mod) for term in terms for condition in term.conditions))
    vector = vector_schedule(lowering, indices, shape, batch, terms, output_name, tensors, tiled)
    if vector is not None:
        return vector
    loops = _output_loops(lowering, indices, shape, batch)
    if not tiled:
        views: dict[str, str] = {}
        schedule = {}
        collapsed = None if lowering.fused is not None else collapse_image(  # an epilogue reads the output's
            lowering, indices, shape, batch, terms, tensors, output_name, views)  # own indices: no reshaped views
        if collapsed is not None:
            indices, terms, schedule["output"] = collapsed
            loops = (loops[0], Loop(lowering.printer.doprint(indices[1]), str(image_size(shape)), False))
        terms = [collapse_rows(lowering, term, tensors, views) for term in terms]
        return {"output_loops": loops, "terms": tuple(lowering.term(term, ACCUMULATOR, indices) for term in terms),
                "views": tuple(views.items()), **schedule, **_sum_accumulator(lowering, ACCUMULATOR),
                "epilogue": epilogue_at(lowering, lowering.array(output_name)[tuple(indices)])}
    inner = tuple((index, sympy.S.Zero, size - 1) for index, size in zip(indices[-2:], shape[-2:]))
    element = lowering.array(output_name)[tuple(indices)]  # each term adds into the output element
    printed = tuple(lowering.term(GatherTerm(term.limits + inner, term.conditions, term.body), element, indices[:-2])
                    for term in terms)
    return {"output_loops": loops[:-2], "tile": loops[-2:], "terms": printed, "kind": "accumulate",
            **_sum_accumulator(lowering, element), "epilogue": epilogue_at(lowering, element)}


def _phase_schedules(lowering: Lowering, split: PhaseSplit, batch) -> dict:
    """The :class:`Kernel` fields of a kernel run as its phases (one phase over the output itself:
    that phase's schedule). A phase that no term reaches writes the sum's identity."""
    for view in split.views:
        lowering.names[view.base] = lowering.printer.array_names[view.base] = view.name
        lowering.strided.add(view.name)
    if not split.views:
        (phase,) = split.phases
        return summation(lowering, phase.indices, phase.shape, batch, list(phase.terms), phase.output, phase.tensors)
    phases, views = [], [(view.name, view.printed()) for view in split.views] + _fused_views(lowering, split.views)
    for phase in split.phases:
        schedule = lanes_schedule(lowering, phase.output, phase.indices, phase.shape, batch, list(phase.terms),
                                  phase.tensors) if phase.terms else None
        if schedule is not None:
            schedule.pop("nest")  # a phase keeps the lanes schedule wherever it fits
        if schedule is None and phase.terms:  # a single tap's loop helps only the lanes schedule
            schedule = summation(lowering, phase.indices, phase.shape, batch,
                                  [without_single_loops(term) for term in phase.terms], phase.output, phase.tensors)
        elif schedule is None:  # no terms: the sum's identity, element by element (through the epilogue)
            schedule = {"output_loops": _output_loops(lowering, phase.indices, phase.shape, batch),
                        **_sum_accumulator(lowering, ACCUMULATOR),
                        "epilogue": epilogue_at(lowering, lowering.array(phase.output)[tuple(phase.indices)])}
        views += schedule.pop("views", ())
        phases.append(Kernel(phase.output, "", (), schedule.pop("output", phase.output), **schedule))
    return {"kind": "phases", "output_loops": (), "phases": tuple(phases), "views": tuple(views),
            "shared_loops": shared_loops(phases), "one_item": one_item(phases)}


def _fused_views(lowering: Lowering, views) -> list[tuple[str, str]]:
    """A fused kernel in phases (:mod:`symcnn.codegen.epilogue`): each view of its output that a phase stores
    into, recorded in ``lowering.fused_views`` with the same view of the fused array (E's input or output,
    which has the output's shape), so that the phase's epilogue reads E's element where it stores. The views'
    ``(name, printed)``, in the order they are defined; none where the epilogue reads no array (a forward
    fusion's: only the stored value)."""
    fused = lowering.fused
    if fused is None:
        return []
    reads = fused.expression.has(fused.base)
    printed = []
    for view in views:
        source = fused.argument if view.source == fused.output else lowering.fused_views.get(view.source)
        if source is None:
            continue  # a view of another array (a weight's taps)
        name = (f"{fused.argument}{view.name[len(fused.output):]}" if view.name.startswith(f"{fused.output}_")
                else f"{fused.argument}_{view.name}")  # grad_input_p01 -> fused_x_p01
        lowering.fused_views[view.name] = name
        if reads:
            lowering.strided.add(name)
            printed.append((name, view._replace(source=source).printed()))
    return printed


def _sum_accumulator(lowering: Lowering, accumulator: Expr) -> dict:
    """The :class:`Kernel` fields of a kernel whose terms are a sum: its accumulator and the sum's identity."""
    return {"accumulator": lowering.code(accumulator), "initial": lowering.identity(Sum)}


def _forward_terms(formula: ops.IndexFormula) -> list[GatherTerm]:
    """The forward sum's terms, each with the conditions its brackets state (a transposed convolution's)."""
    return [GatherTerm(tuple(limits), *lift_conditions(summand))
            for limits, summand in sum_terms(formula.rhs, set(formula.indices))]


def kernel_name(layer_label: str, what: str) -> str:
    return f"{layer_label}_{what}"


def kernel_arguments(lowering: Lowering, expr_terms, outputs: tuple[str, ...], order, extra=()) -> tuple[str, ...]:
    """The arrays the terms read, in ``order`` and then (an operand ``order`` does not know, such as
    dropout's ``mask``) by name; then ``extra`` (an epilogue's, ``fused_x``); the outputs last."""
    used = set()
    for term in expr_terms:
        for node in term.body.atoms(Indexed):
            used.add(lowering.names[node.base])
    others = sorted(used - set(order))  # operands of no common role (batch norm's running statistics)
    return tuple(name for name in order if name in used) + tuple(others) + tuple(extra) + tuple(outputs)


ARGUMENT_ORDER = ("grad_output", "x", "weight", "bias", "targets", "switch")


@per_batch_size
@per_vector_width
def forward_kernel(layer: LayerSpec, formula: ops.IndexFormula, values: dict, what: str = "forward",
                   fused: Optional[FusedElementwise] = None, saving: bool = False) -> Optional[Kernel]:
    """The kernel ``<label>_<what>`` that computes ``formula`` (a layer's forward pass, or another formula of
    it), storing each output element through ``fused`` if given: E's forward pass, which reads only the
    stored value (:mod:`symcnn.codegen.forward_fusion`), or E's input gradient, which also reads E's input or
    output (a fan-out's sum: :func:`symcnn.codegen.fusion.fanout_fused_kernels`), an argument of the kernel.
    With ``saving``, ``<label>_<what>_saving``, which also stores its statistics for the backward pass
    (:mod:`symcnn.codegen.saved_statistics`), or ``None`` where it computes none."""
    concrete = formula.substitute(values)
    batch = batch_symbol(formula)
    fused_reads = (fused.argument,) if fused is not None and fused.expression.has(fused.base) else ()
    lowering = Lowering(concrete.tensors, batch, {fused.base: fused.argument} if fused_reads else {}, fused)
    name = kernel_name(layer.label, what)
    loops = _output_loops(lowering, concrete.indices, concrete.output.shape, batch)
    doc = kernel_docstring(formula, None, values)
    if isinstance(concrete.rhs, MaxOver):  # max pooling: the window max and its first argmax
        if saving:
            return None  # no statistics
        fields = {**window_max(lowering, concrete.rhs),  # printed before the imports are collected
                  "epilogue": epilogue_at(lowering, lowering.array("out")[tuple(concrete.indices)])}
        return Kernel(name, doc, ("x", "out", "switch"), "out", loops, kind="max", switch="switch",
                      imports=lowering.printer.imports(), batch_from="x", **fields)
    terms, precomputer, invariant = forward_invariants(lowering, concrete)
    kept = precomputer.kept(concrete.statistics) if saving else None
    if saving and kept is None:
        return None  # no statistics: decided before the schedule's work
    schedule = precomputer.with_views(summation(lowering, concrete.indices, concrete.output.shape, batch,
                                                 invariant, "out", concrete.tensors))
    arguments = kernel_arguments(lowering, terms, ("out",), ARGUMENT_ORDER, fused_reads)
    reshaped = "" if fused else reshape_of(lowering, concrete.tensors, concrete.indices, concrete.output.shape,
                                           batch, terms)
    precomputed = precomputer.precomputed()  # printed before the imports are collected
    batch_from = "x" if "x" in arguments else arguments[0]  # a formula without a batch: any array
    if kept is not None:
        name, arguments = f"{name}_{SAVING}", (*arguments, STATISTICS)
        doc += (f"\n\nKeeps its statistics for the backward pass (<label>_backward_saved): `statistics` holds "
                f"{', '.join(kept[0].rows)},\nthe last {len(kept[0].tracked)} the batch values of "
                f"{', '.join(role for role, _ in kept[0].tracked)}.")
    return invariants_inside(Kernel(name, doc, arguments, schedule.pop("output", "out"),
                                    imports=lowering.printer.imports(), batch_from=batch_from,
                                    reshape_of=reshaped, precomputed=precomputed,
                                    statistics=kept[0] if kept is not None else None, **schedule))


#: A forward kernel that keeps its statistics for the backward pass: ``<label>_forward_saving``; the argument
#: it stores them in, which the backward kernel reading them takes (symcnn.codegen.saved_statistics).
SAVING, STATISTICS = "saving", "statistics"


def forward_invariants(lowering: Lowering, concrete: ops.IndexFormula) -> tuple[list, Precomputer, list]:
    """A forward formula's terms, the :class:`Precomputer` of their invariant reductions, and the terms
    reading them (how :func:`forward_kernel` lowers them, and :mod:`symcnn.codegen.saved_statistics` finds
    which statistics its kernel keeps)."""
    terms = [factor_sums(term) for term in _forward_terms(concrete)]
    precomputer = lowering.precompute_invariants(concrete.indices, concrete.output.shape, concrete.tensors)
    return terms, precomputer, invariant_terms(terms, precomputer)


SWITCH = IndexedBase("switch")  # max pooling's argmax offsets, which its gradient reads


def gradient_terms(concrete: GradientFormula) -> list[GatherTerm]:
    """A gradient's terms (its shapes substituted) as its kernel sums them: max pooling's argmax tests
    read from ``switch``, each term's sums factored (:func:`~symcnn.codegen.invariants.factor_sums`)."""
    terms = []
    for term in concrete.terms:
        body = term.body
        if body.has(FirstArgmax):
            body = switch_tests(body, SWITCH, concrete.forward)
        terms.append(factor_sums(GatherTerm(term.limits, term.conditions, body)))
    return terms


def computed_gradient(formula: ops.IndexFormula, role: str, values: dict) -> GradientFormula:
    """The gradient of ``formula`` with respect to the operand of ``role`` as its kernel computes it: as
    derived, or, for an element-wise op whose derivative is cheaper from its output (tanh's ``1 - Y^2``),
    reading the output (:mod:`symcnn.symbolic.output_form`; checked at the layer's settings, ``values``)."""
    gradient = derive_gradient(formula, role)
    return gradient_from_output(gradient, values) or gradient


def gradient_output(gradient: GradientFormula) -> str:
    """The array a gradient is written to: ``grad_input``, ``grad_weight``, an add's second input's ``grad_input2``."""
    return ARRAY_NAMES.get(gradient.gradient.role, gradient.gradient.role)


@per_vector_width
def gradient_kernel(layer: LayerSpec, gradient: GradientFormula, values: dict, prefix: str = "",
                     fused: Optional[FusedElementwise] = None) -> Kernel:
    """The kernel of ``gradient``, storing each sum through ``fused`` if given (:mod:`symcnn.codegen.epilogue`)."""
    concrete = gradient.substitute(values)
    batch = batch_symbol(gradient.forward)
    reads = {read.base for term in concrete.terms for read in term.body.atoms(Indexed)}
    output = (concrete.forward.output,) if concrete.forward.output.base in reads else ()  # tanh's 1 - Y^2
    tensors = concrete.operands + output + (concrete.gradient,)
    lowering = Lowering(tensors, batch, {SWITCH: "switch"} | ({fused.base: fused.argument} if fused else {}), fused)
    terms = gradient_terms(concrete)
    output_name = gradient_output(gradient)
    precomputer = lowering.precompute_invariants(concrete.indices, concrete.gradient.shape, tensors)
    schedule = precomputer.with_views(summation(lowering, concrete.indices, concrete.gradient.shape, batch,
                                                 invariant_terms(terms, precomputer), output_name, tensors))
    arguments = kernel_arguments(lowering, terms, (output_name,), ARGUMENT_ORDER, (fused.argument,) if fused else ())
    batch_from = next((a for a in arguments[:-1] if a in ("grad_output", "x")), arguments[0])
    reshaped = "" if fused else reshape_of(lowering, tensors, concrete.indices, concrete.gradient.shape, batch, terms)
    precomputed = precomputer.precomputed()  # printed before the imports are collected
    doc = kernel_docstring(gradient.forward, gradient, values)
    return invariants_inside(Kernel(kernel_name(layer.label, prefix + gradient.gradient.role), doc, arguments,
                                    schedule.pop("output", output_name), imports=lowering.printer.imports(),
                                    batch_from=batch_from, reshape_of=reshaped, precomputed=precomputed, **schedule))


def loss_kernels(spec: NetworkSpec) -> list[Kernel]:
    """The loss (softmax cross-entropy, batch mean) and its gradient with respect to the scores."""
    formula = ops.softmax_cross_entropy()
    values = {ops.F_in: spec.classes}
    concrete = formula.substitute(values)
    batch = batch_symbol(formula)
    lowering = Lowering(concrete.tensors, batch)
    # L = -(1/N) sum_{n,i} T (X - log sum exp X): accumulate the sum, then scale by -1/N.
    scale, total = concrete.rhs.as_independent(Sum, as_Add=False)
    terms = _forward_terms(ops.IndexFormula("loss", concrete.output, (), total, concrete.operands))
    printed = tuple(lowering.term(term, ACCUMULATOR, concrete.indices) for term in terms)
    loss = Kernel("loss_forward", kernel_docstring(formula, None, values), ("x", "targets"), "", (), terms=printed,
                  result=lowering.code(scale * ACCUMULATOR), imports=lowering.printer.imports(), batch_from="x",
                  **_sum_accumulator(lowering, ACCUMULATOR))
    gradient = derive_gradient(formula, "input")
    loss_layer = LayerSpec("loss", -1, (spec.classes,), (), "loss")
    grad = gradient_kernel(loss_layer, gradient, values)
    return [loss, grad]
