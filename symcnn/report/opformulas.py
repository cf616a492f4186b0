"""``symcnn report --op OP``: an op's general formulas, with their conditions, and a small instance.

The forward formula is the op's definition (:mod:`symcnn.symbolic.ops`); every gradient is derived from it
(:func:`symcnn.views.formula.general_formula`, :mod:`symcnn.symbolic.adjoint`) and shown in document 000's form,
with the divisibility and range conditions. Beside them, a small instance: the formulas
instantiated at a few elements (:mod:`symcnn.symbolic.expand`), each entry checked, when the page is
built, against the element-wise derivative of the expanded forward pass (:mod:`symcnn.symbolic.verify`).

Example:
    >>> report = op_report("conv2d", stride=1, padding=0, dilation=1)
    >>> report.name, [section.title for section in report.sections][:2]
    ('op-conv2d-stride1-padding0-dilation1', ['Forward pass', 'Gradient with respect to the input'])
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional

import sympy
from sympy import Array

from symcnn import registry
from symcnn.registry import differentiable, input_number
from symcnn.symbolic import ops
from symcnn.symbolic.functions import FirstArgmax
from symcnn.symbolic.adjoint import GradientFormula, derive_gradient
from symcnn.symbolic.expand import evaluate
from symcnn.symbolic.normalization_backward import split_statistics
from symcnn.views.formula import FORMULA_OPS, general_formula, zero_outside
from symcnn.printing.text import OUT_SIZE_NAMES, readable
from symcnn.report.compactbackward import compact_section
from symcnn.report.document import Display, Items, Prose, Report, Section
from symcnn.report.indexform import FormulaDisplay, forward_display, gradient_display, size_rows
from symcnn.report.mathtex import ReportPrinter, entry_name, entry_rows, gradient_entry_name, matrix_rows, sum_rows
from symcnn.symbolic.tensors import indices_of, symbol_array, upstream_array
from symcnn.validation import pair
from symcnn.symbolic.verify import elementwise_gradients, exactly_equal, expand_gradient

__all__ = ["op_report", "formula_report", "Instance", "instance", "zero_outside_prose", "INSTANCE_KERNEL_LIMIT"]

def _summary(op: str) -> str:
    """What the op is, in words (its registry entry's summary; the formula comes from symcnn.symbolic.ops)."""
    entry = registry.get(op)
    return entry.summary or entry.title


_ROLE_TITLES = {"input": "the input", "weight": "the weight", "bias": "the bias"}


def _role_title(op: str, role: str) -> str:
    """How a page names an operand: ``the input``, ``the weight``; an add's or concat's inputs by number."""
    return f"input {input_number(role)}" if registry.get(op).merges else _ROLE_TITLES[role]

#: The largest kernel (elements) whose instance is expanded; a larger one is described only.
INSTANCE_KERNEL_LIMIT = 9


@functools.lru_cache(maxsize=None)
def general_gradient(op: str, role: str) -> GradientFormula:
    """The derived gradient of an op in general (cached: derived once per process)."""
    return derive_gradient(FORMULA_OPS[op](), role)


def _roles(formula: ops.IndexFormula) -> list[str]:
    return [tensor.role for tensor in formula.operands if differentiable(tensor.role)]


def _shape_item(tensor: ops.Tensor, parameters, printer: ReportPrinter) -> str:
    if not tensor.shape:
        return f"${printer.doprint(tensor.base)}$ is a scalar"
    dims = r" \times ".join(printer.doprint(readable(dim, parameters)) for dim in tensor.shape)
    return f"${printer.doprint(tensor.base)} \\in \\mathbb{{R}}^{{{dims}}}$ ({tensor.role.replace('_', ' ')})"


def _display_blocks(shown: FormulaDisplay) -> list:
    blocks = [Display(shown.rows)]
    if shown.definitions:
        names = " and ".join(f"${d.name}$" for d in shown.definitions)
        blocks.append(Prose(f"where {names} name the output position the derivation solved for:"))
        blocks.append(Display(tuple(f"{d.name} &= {d.latex}" for d in shown.definitions)))
    return blocks


def _condition_items(shown: FormulaDisplay, windows: bool = False) -> Optional[Items]:
    """The conditions explained; ``windows``: they bound the element itself, to the windows the sum runs over."""
    divisible = [f"${c.latex}$" for c in shown.conditions if c.kind == "divisibility"]
    ranges = [f"${c.latex}$" for c in shown.conditions if c.kind == "range"]
    items = []
    if not shown.definitions:  # no index solved for: the forward formula's own conditions (where it reads)
        if divisible:
            items.append(f"{' and '.join(divisible)}: the stride divides the offset, so that the index read is a "
                         "whole number: only then does the tap reach an input element.")
        if ranges:
            items.append(f"{' and '.join(ranges)}: the index read lies inside the input. The formula states where "
                         "it reads instead of padding the input with zeros.")
        return Items(tuple(items)) if items else None
    if divisible:
        items.append(f"{' and '.join(divisible)}: the stride divides the offset, so that the solved index is a whole "
                     "number (document 000's condition).")
    if ranges and windows:
        items.append(f"{' and '.join(ranges)}: the element lies in the window of output $(i, j)$, so that the sum "
                     "gathers the upstream gradient of every window that contains it (adaptive windows overlap where "
                     "the output size does not divide the input size).")
    elif ranges:
        items.append(f"{' and '.join(ranges)}: the solved index lies inside the output. Document 000 leaves this "
                     "condition out; without it the formula would read outside the upstream gradient.")
    return Items(tuple(items)) if items else None


def zero_outside_prose(forward: ops.IndexFormula, expr: sympy.Basic, printer: ReportPrinter) -> list[Prose]:
    """A sentence for each tensor that ``expr`` reads outside its shape, 0 there by definition (the
    zero-padded input of a convolution), as ``symcnn formula`` states it."""
    sentences = []
    for padded in zero_outside(forward, expr):
        bounds = ", ".join(f"$0 \\leq {printer.doprint(name)} \\leq {printer.doprint(last)}$"
                           for name, last in padded.ranges)
        sentences.append(Prose(f"${printer.doprint(padded.read)}$ is read as 0 outside {bounds}: it is zero-padded, "
                               "and the formula reads it beyond its border."))
    return sentences


def _forward_section(op: str, settings: dict, printer: ReportPrinter) -> Section:
    view = general_formula(op, "forward", **settings)
    formula = view.forward
    shown = forward_display(formula, printer)
    module = registry.get(op).load_formula().__module__  # where the formula is defined
    blocks = [Prose(f"The definition symcnn derives everything else from (`{module.replace('.', '/')}.py`), "
                    f"{_summary(op)}:")]
    blocks += _display_blocks(FormulaDisplay(shown.rows))
    blocks.append(Items(tuple(_shape_item(t, formula.parameters, printer) for t in formula.tensors)))
    conditions = _condition_items(shown)
    if conditions is not None:  # a formula that states where it reads (a transposed convolution)
        blocks += [Prose("Conditions (an Iverson bracket $[\\cdot]$ is 1 where they hold, else 0):"), conditions]
    blocks += zero_outside_prose(formula, formula.rhs, printer)
    sizes = size_rows(formula, sympy.Add(*OUT_SIZE_NAMES.values()), printer)  # every output size it has
    if sizes:
        blocks.append(Prose("The output-size rule:"))
        blocks.append(Display(sizes))
        dilation = formula.parameters.get("dilation_h")
        transposed = "output_padding_h" in formula.parameters  # document 001's rule is the convolution's
        if transposed:
            padding = [printer.doprint(formula.parameters[f"output_padding_{axis}"]) for axis in "hw"]
            blocks.append(Prose(f"${padding[0]}$ and ${padding[1]}$ are the output padding (PyTorch's "
                                "`output_padding`): rows and columns added at the end of the output, which only the "
                                "bias reaches."))
        if dilation is not None and dilation.is_Symbol and not transposed:  # 001 states it without dilation
            plain = formula.parameters["out_height"].xreplace({dilation: 1})
            blocks.append(Prose(f"With dilation 1 it is document 001's rule, "
                                f"${printer.doprint(OUT_SIZE_NAMES['out_height'])} = {printer.doprint(plain)}$."))
    return Section("Forward pass", tuple(blocks))


def _gradient_section(op: str, role: str, settings: dict, printer: ReportPrinter) -> Section:
    # The general derivation is shared with the instance; a specialized one is derived, then specialized.
    gradient = general_formula(op, role, **settings).gradient if settings else general_gradient(op, role)
    shown = gradient_display(gradient, printer)
    blocks = _display_blocks(shown)
    # conditions on the element's own indices (an adaptive window's), not on a solved output index
    windows = any(isinstance(c, sympy.Rel) and set(c.args) & set(gradient.indices) for c in gradient.conditions)
    conditions = _condition_items(shown, windows)
    if conditions is not None:
        blocks += [Prose("Conditions (an Iverson bracket $[\\cdot]$ is 1 where they hold, else 0):"), conditions]
    blocks += zero_outside_prose(gradient.forward, gradient.rhs, printer)
    indicators = [node for node in sympy.preorder_traversal(gradient.equation()) if isinstance(node, FirstArgmax)]
    if indicators:
        position = ", ".join(printer.doprint(p) for p in indicators[0].position)
        where = ("the window element at offset" if all(limit[1] == 0 for limit in indicators[0].limits)
                 else "the input element")  # a window from 0 (a pool's), or from where its output puts it
        blocks.append(Prose(f"$\\mathbf{{1}}[({position}) = \\operatorname{{argmax}} \\ldots]$ is the routing "
                            f"indicator: 1 when {where} $({position})$ is the window's first maximum."))
    return Section(f"Gradient with respect to {_role_title(op, role)}", tuple(blocks))


# --- the small instance -------------------------------------------------------------------------


@dataclass(frozen=True)
class Instance:
    """An op at a few elements: its operands, output and gradients, element by element, the
    gradients equal (checked on construction) to the derivative of the expanded forward pass."""

    description: str
    operands: dict  # role -> Array (symbols)
    upstream: Optional[Array]
    output: object  # Array, or an expression (a loss)
    gradients: dict  # role -> Array, from the general formula


def _instance_setup(op: str, settings: dict) -> Optional[tuple[dict, dict, str]]:
    """Operand arrays, parameters by role and a description; ``None`` when too large to show."""
    entry = registry.get(op)
    kernel = pair(settings.get("kernel") or 2, "kernel", 1)
    if "kernel" in entry.keys() and kernel[0] * kernel[1] > INSTANCE_KERNEL_LIMIT:
        return None
    if "kernel" in entry.keys() and entry.parameterized:  # a convolution
        stride = pair(settings.get("stride") or 1, "stride", 1)
        padding = pair(settings.get("padding") or 0, "padding", 0)
        dilation = pair(settings.get("dilation") or 1, "dilation", 1)
        # The input that gives a 2x2 output (document 002's upstream a, b, c, d), at least 1x1.
        size = tuple(max(1, stride[a] + dilation[a] * (kernel[a] - 1) + 1 - 2 * padding[a]) for a in range(2))
        parameters = {"stride_h": stride[0], "stride_w": stride[1], "padding_h": padding[0], "padding_w": padding[1],
                      "dilation_h": dilation[0], "dilation_w": dilation[1]}
        extra = ""
        if "output_padding" in entry.keys():  # a transposed convolution: a 2x2 input, its output at least 2x2
            needed = [1 + 2 * padding[a] - dilation[a] * (kernel[a] - 1) for a in range(2)]
            size = tuple(max(2, 1 - (-needed[a] // stride[a])) for a in range(2))
            parameters.update(output_padding_h=0, output_padding_w=0)
            extra = ", output padding 0"
        arrays = {"input": symbol_array("x", (1, 1, *size)), "weight": symbol_array("w", (1, 1, *kernel)),
                  "bias": symbol_array("b", (1,))}
        text = (f"input {size[0]}×{size[1]}, kernel {kernel[0]}×{kernel[1]}, stride {_pair_text(stride)}, "
                f"padding {_pair_text(padding)}, dilation {_pair_text(dilation)}{extra}, one channel, with a bias")
        return arrays, parameters, text
    if "output" in entry.keys():  # an adaptive pool: windows that overlap and differ in length
        parameters = dict(zip(entry.setting("output").roles, (2, 3)))
        text = "input 3×5 pooled to 2×3 (windows of 2 rows; of 2, 3 and 2 columns, overlapping)"
        return {"input": symbol_array("x", (1, 1, 3, 5))}, parameters, text
    if "kernel" in entry.keys():  # a pooling window
        stride = pair(settings.get("stride") or kernel, "stride", 1)
        size = tuple(stride[a] + kernel[a] for a in range(2))
        parameters = {"kernel_height": kernel[0], "kernel_width": kernel[1],
                      "stride_h": stride[0], "stride_w": stride[1]}
        text = f"input {size[0]}×{size[1]}, window {kernel[0]}×{kernel[1]}, stride {_pair_text(stride)}"
        return {"input": symbol_array("x", (1, 1, *size))}, parameters, text
    if entry.merges:  # two inputs, x and z, of one 2x2 channel each
        arrays = {"input": symbol_array("x", (1, 1, 2, 2)), "input2": symbol_array("z", (1, 1, 2, 2))}
        return arrays, {}, "two inputs of one 2×2 channel each"
    shapes = {"global_avgpool": (1, 1, 3, 3), "flatten": (1, 2, 2, 2), "relu": (1, 1, 2, 2),
              "leaky_relu": (1, 1, 2, 2), "elu": (1, 1, 2, 2), "softmax": (1, 3), "cross_entropy": (1, 3),
              "softmax_cross_entropy": (1, 3), "dense": (1, 3)}
    shape = shapes.get(op, (1, 1, 2, 2) if 3 in entry.inputs else (1, 3))  # an op of its own: a few elements
    arrays = {"input": symbol_array("x", shape)}
    text = f"input {'×'.join(map(str, shape))}"
    if entry.parameterized:  # two outputs, e.g. a dense layer's
        given = {setting.key: 2 for setting in entry.settings if setting.kind == "count"}
        for role, parameter_shape in entry.parameter_shapes(shape[1:], entry.settings_of(given)).items():
            arrays[role] = symbol_array(role[0], parameter_shape)
        if op == "dense":
            text = "3 input features, 2 output features, a batch of one"
    targets = [tensor for tensor in FORMULA_OPS[op]().operands if tensor.role == "target"]
    if targets:  # a loss
        arrays["target"] = symbol_array("t", shape)
        text = "3 classes, a batch of one, labels t"
    if entry.mask_drop is not None:  # dropout: the drawn mask, m
        arrays["mask"] = symbol_array("m", shape)
        text += ", mask m"
    return arrays, {}, text


def _pair_text(value: tuple) -> str:
    return str(value[0]) if value[0] == value[1] else f"{value[0]}×{value[1]}"


def _one_hot(formula: ops.IndexFormula, arrays: dict) -> dict:
    """The substitution the formula's identities allow at this instance: one-hot labels sum to 1,
    so the last label of each sample is 1 minus the others."""
    substitution = {}
    for total, value in formula.identities:
        read = total.function
        tensor = next(t for t in formula.operands if t.base == read.base)
        array = arrays[tensor.role]
        for outer in indices_of(array.shape[:-1]):
            row = [array[outer + (k,)] for k in range(array.shape[-1])]
            substitution[row[-1]] = value - sum(row[:-1])
    return substitution


def instance(op: str, **settings) -> Optional[Instance]:
    """The op's formulas at a small configuration, checked against the element-wise derivative."""
    setup = _instance_setup(op, settings)
    if setup is None:
        return None
    arrays, parameters, text = setup
    formula = FORMULA_OPS[op]()
    roles = _roles(formula)
    output = evaluate(formula, arrays, parameters)
    upstream, oracle = elementwise_gradients(formula, arrays, parameters, roles)
    gradients = {role: expand_gradient(general_gradient(op, role), arrays, upstream, parameters) for role in roles}
    one_hot = _one_hot(formula, arrays)
    for role in roles:  # never show a formula that its own expansion contradicts
        for index in indices_of(gradients[role].shape):
            if not exactly_equal(gradients[role][index].xreplace(one_hot), oracle[role][index].xreplace(one_hot)):
                raise AssertionError(f"{op}: the general formula disagrees with the element-wise derivative of "
                                     f"the expansion at {text}, {role} {index}")
    return Instance(text, arrays, upstream, output, gradients)


def _instance_section(op: str, settings: dict, printer: ReportPrinter) -> Section:
    found = instance(op, **settings)
    if found is None:
        return Section("A small instance", (Prose(
            f"The kernel is larger than {INSTANCE_KERNEL_LIMIT} elements: its expansion would not be small. "
            "Choose a kernel of at most 3×3 to see one."),))
    blocks = [Prose(f"The formulas above at {found.description}. Given:")]
    merges = registry.get(op).merges
    given = [(_operand_letter(role, merges), array) for role, array in found.operands.items()]
    if found.upstream is not None:
        given.append((r"\frac{\partial L}{\partial Y}", found.upstream))
    blocks.append(Display(tuple(matrix_rows(given, printer)), aligned=False))
    if isinstance(found.output, sympy.NDimArray):
        shape = found.output.shape
        rows = entry_rows([(entry_name("y", index, shape), found.output[index]) for index in indices_of(shape)],
                          printer, shape[-1])
    else:
        rows = sum_rows("L", found.output)
    blocks += [Prose("Each output entry:"), Display(tuple(rows))]
    for role, array in found.gradients.items():
        operand = found.operands[role]
        rows = entry_rows([(gradient_entry_name(printer.doprint(operand[index])), array[index])
                           for index in indices_of(array.shape)], printer, array.shape[-1])
        blocks += [Prose(f"The gradient with respect to {_role_title(op, role)}, each entry:"), Display(tuple(rows))]
    blocks.append(Prose("symcnn checked, when this page was generated, that every gradient entry above (the "
                        "general formula, instantiated) equals the derivative of the expanded forward pass."))
    return Section("A small instance", tuple(blocks))


def _compact_section(op: str, formula: ops.IndexFormula, printer: ReportPrinter) -> Section:
    """Document 003's backward of a normalization, checked at the page's instance."""
    arrays, _, text = _instance_setup(op, {})
    derived = {role: general_gradient(op, role) for role in _roles(formula)}
    return compact_section(formula, arrays, upstream_array(arrays["input"].shape), text, derived, printer)


def _operand_letter(role: str, merges: bool = False) -> str:
    if merges:  # an add's or concat's inputs X_1, X_2, ...
        return f"X_{{{input_number(role)}}}"
    return {"input": "X", "weight": "W", "bias": "b", "target": "T", "mask": "M"}[role]


def op_report(op: str, kernel=None, stride=None, padding=None, dilation=None) -> Report:
    """The report of one op: forward formula, every derived gradient, the output-size rule, an instance."""
    if op not in FORMULA_OPS:
        raise ValueError(f"op: must be one of {', '.join(FORMULA_OPS)}, got {op!r}")
    settings = {key: value for key, value in dict(kernel=kernel, stride=stride, padding=padding,
                                                     dilation=dilation).items() if value is not None}
    general_formula(op, "forward", **settings)  # validates the settings (ValueError naming the option)
    printer = ReportPrinter()
    formula = FORMULA_OPS[op]()
    suffix = "".join(f"-{key}{_pair_text(pair(value, key, 0)).replace('×', 'x')}" for key, value in settings.items())
    shown = ", ".join(f"{key} {_pair_text(pair(value, key, 0))}" for key, value in settings.items())
    title = f"`{op}`: forward pass and gradients" + (f" ({shown})" if shown else "")
    roles = _roles(formula)
    intro = (Prose(f"`{op}` is {_summary(op)}. Its gradients with respect to "
                   f"{', '.join(_role_title(op, r) for r in roles)} are derived from the forward formula "
                   "(`symcnn/symbolic/adjoint.py`): differentiate, then eliminate each Kronecker delta by solving "
                   "its index equation for a summation index, keeping the conditions under which the solution is an "
                   "index. Every index is 0-based; tensors are NCHW."),)
    if shown:
        intro += (Prose(f"Specialized to {shown}; the general formula is derived first, then specialized."),)
    sections = [_forward_section(op, settings, printer)]
    sections += [_gradient_section(op, role, settings, printer) for role in roles]
    if not settings and split_statistics(formula) is not None:  # a normalization: document 003's four lines
        sections.append(_compact_section(op, formula, printer))
    sections.append(_instance_section(op, settings, printer))
    summary = f"{_summary(op)}: forward formula and the derived gradients" + (f", {shown}" if shown else "")
    return Report(f"op-{op}{suffix}", title, summary, tuple(sections), intro)


def formula_report(op: str, wrt: str, kernel=None, stride=None, padding=None, dilation=None) -> Report:
    """One formula of :func:`op_report` (``wrt``: ``forward`` or an operand role) as a report of its own:
    ``symcnn formula OP --format latex --standalone``.

    >>> [section.title for section in formula_report("dense", "weight").sections]
    ['Gradient with respect to the weight']
    """
    settings = {key: value for key, value in dict(kernel=kernel, stride=stride, padding=padding,
                                                     dilation=dilation).items() if value is not None}
    view = general_formula(op, wrt, **settings)  # validates op, wrt and the settings (ValueError naming each)
    printer = ReportPrinter()
    section = (_forward_section(op, settings, printer) if wrt == "forward"
               else _gradient_section(op, wrt, settings, printer))
    heading = view.text().splitlines()[0]  # "conv2d: gradient with respect to the input (stride 2)"
    intro = (Prose(f"`{op}` is {_summary(op)}. Indices are 0-based; tensors are NCHW. `symcnn report --op {op}` "
                   "shows every formula of the op, with a small instance."),)
    return Report(f"formula-{op}-{wrt}", f"`{op}`: {heading.partition(': ')[2]}", heading, (section,), intro)
