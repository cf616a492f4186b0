"""``symcnn report --network SPEC``: document 004's walk-through, for any network spec.

Forward: each layer's equation at its concrete sizes, with its output shape and size rule; then
the loss. Backward: from the loss to the input, one chain-rule step a layer: softmax with
cross-entropy gives ``(p - y)/N``, the dense layer its three gradients, flatten the inverse of its
index map, max pooling routes to the window's first maximum, ReLU masks, the convolution its
three gradients. Every equation is the op's forward formula (:mod:`symcnn.symbolic.ops`) or its derived
gradient (:mod:`symcnn.symbolic.adjoint`), specialized to the layer (the same step that feeds the kernel
generator, :func:`symcnn.codegen.lower`), with each tensor given the name document 004 uses
(``S^{[1]}``, ``A^{[1]}``, ``P^{[1]}``, ``h``, ``z``, ``p``).

Example:
    >>> report = network_report("seed004-text")
    >>> [section.title for section in report.sections]
    ['Layers', 'Forward pass', 'Loss', 'Backward pass']
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections import Counter
from dataclasses import dataclass

import sympy
from sympy import IndexedBase

from symcnn import registry
from symcnn.symbolic import ops
from symcnn.symbolic.instances import bind_layer
from symcnn.symbolic.adjoint import GRADIENT_NAMES, GatherTerm, GradientFormula
from symcnn.report.document import Display, Items, Prose, Report, Section
from symcnn.report.indexform import FormulaDisplay, forward_display, gradient_display
from symcnn.report.mathtex import ReportPrinter
from symcnn.report.opformulas import general_gradient, zero_outside_prose
from symcnn.spec import LayerSpec, NetworkSpec, load_spec
from symcnn.symbolic.verify import exactly_equal

__all__ = ["network_report", "LayerNames", "layer_names"]

# Document 004's letters (each op's registry entry names its own): S (convolution), A (activation),
# P (pooling), h (flatten), z (scores).
_SPATIAL_LETTERS = ("S", "A", "P")  # always numbered, as document 004 numbers S^{[1]}


_ROLE_ORDER = ("bias", "weight", "input")  # document 004's order within a layer


@dataclass(frozen=True)
class LayerNames:
    """Each tensor's label (an ``IndexedBase`` name) and its LaTeX, for the network's layers."""

    activations: tuple[str, ...]  # activations[0] is the input, activations[k + 1] layer k's output
    latex: dict  # label -> LaTeX


def layer_names(spec: NetworkSpec) -> LayerNames:
    """Document 004's names: ``X``, then ``S^{[1]}``, ``A^{[1]}``, ``P^{[1]}``, ``h``, ``z`` by layer kind."""
    counts = Counter(registry.get(layer.kind).letter for layer in spec.layers)
    seen: Counter = Counter()
    activations, latex = ["X"], {"X": "X", "p": "p", "y": "y"}
    for layer in spec.layers:
        letter = registry.get(layer.kind).letter
        seen[letter] += 1
        label = f"{letter}{seen[letter]}"
        numbered = letter in _SPATIAL_LETTERS or counts[letter] > 1
        latex[label] = f"{letter}^{{[{seen[letter]}]}}" if numbered else letter
        activations.append(label)
        if layer.name:
            latex[f"W_{layer.name}"] = rf"W^{{\mathrm{{{layer.name}}}}}"
            latex[f"b_{layer.name}"] = rf"b^{{\mathrm{{{layer.name}}}}}"
    return LayerNames(tuple(activations), latex)


def layer_formula(layer: LayerSpec) -> tuple[ops.IndexFormula, dict]:
    """The op's formula of ``layer`` and the values of its shape parameters (all but the batch size);
    a whole-number alpha written as an integer (``1``, not ``1.0``)."""
    formula, values = bind_layer(layer.kind, layer.input_shape, layer.settings, number=sympy.Float)
    return formula, {symbol: sympy.Integer(int(value)) if isinstance(value, sympy.Float) and value == int(value)
                     else value for symbol, value in values.items()}


def _renaming(formula: ops.IndexFormula, layer: LayerSpec, source: str, target: str) -> dict:
    """The op's tensors (X, W, b, Y and their gradients) renamed to the network's."""
    labels = {"input": source, "output": target}
    if layer.name:
        labels.update(weight=f"W_{layer.name}", bias=f"b_{layer.name}")
    mapping = {}
    for tensor in formula.tensors:
        if tensor.role in labels:
            mapping[tensor.base] = IndexedBase(labels[tensor.role])
            mapping[IndexedBase(GRADIENT_NAMES[tensor.role])] = IndexedBase(f"dL/d{labels[tensor.role]}")
    return mapping


def _renamed_formula(formula: ops.IndexFormula, mapping: dict) -> ops.IndexFormula:
    def tensor(t: ops.Tensor) -> ops.Tensor:
        return dataclasses.replace(t, base=mapping.get(t.base, t.base))

    return dataclasses.replace(formula, output=tensor(formula.output), rhs=formula.rhs.xreplace(mapping),
                               operands=tuple(tensor(t) for t in formula.operands))


def _renamed_gradient(gradient: GradientFormula, mapping: dict) -> GradientFormula:
    def tensor(t):
        return None if t is None else dataclasses.replace(t, base=mapping.get(t.base, t.base))

    terms = tuple(GatherTerm(term.limits, tuple(c.xreplace(mapping) for c in term.conditions),
                             term.body.xreplace(mapping)) for term in gradient.terms)
    return dataclasses.replace(gradient, forward=_renamed_formula(gradient.forward, mapping), terms=terms,
                               gradient=tensor(gradient.gradient), grad_output=tensor(gradient.grad_output))


def _shape(printer: ReportPrinter, label: str, shape) -> str:
    dims = r" \times ".join(["N", *(str(size) for size in shape)])
    return f"${printer.names[label]} \\in \\mathbb{{R}}^{{{dims}}}$"


def _settings_text(layer: LayerSpec) -> str:
    return registry.get(layer.kind).settings_text(layer.settings)


def _layer_title(layer: LayerSpec) -> str:
    settings = _settings_text(layer)
    return f"`{layer.label}`: {layer.kind}" + (f", {settings}" if settings else "")


def _display_blocks(shown: FormulaDisplay) -> list:
    blocks = [Display(shown.rows)]
    if shown.definitions:
        names = " and ".join(f"${d.name} = {d.latex}$" for d in shown.definitions)
        blocks.append(Prose(f"where {names} (the output position the derivation solved for)."))
    return blocks


def _forward_layer(layer: LayerSpec, names: LayerNames, printer: ReportPrinter) -> Section:
    formula, values = layer_formula(layer)
    source, target = names.activations[layer.index], names.activations[layer.index + 1]
    concrete = _renamed_formula(formula, _renaming(formula, layer, source, target)).substitute(values)
    text = registry.get(layer.kind).description or registry.get(layer.kind).title
    blocks = [Prose(f"{text[0].upper()}{text[1:]}:"), Display(forward_display(concrete, printer).rows)]
    blocks += zero_outside_prose(concrete, concrete.rhs, printer)
    if "out_height" in formula.parameters and not formula.parameters["out_height"].is_Symbol:  # a rule, not a setting
        size = formula.parameters["out_height"]
        used = ", ".join(f"${printer.doprint(symbol)} = {values[symbol]}$"
                         for symbol in sorted(size.free_symbols, key=sympy.default_sort_key))
        blocks.append(Prose(f"Output {_shape(printer, target, layer.output_shape)}, by the output-size rule with "
                            f"{used} (the width likewise):"))
        blocks.append(Display((f"H_{{out}} &= {printer.doprint(size)} = {printer.doprint(size.xreplace(values))}",)))
    else:
        blocks.append(Prose(f"Output {_shape(printer, target, layer.output_shape)}."))
    return Section(_layer_title(layer), tuple(blocks))


def _loss_section(spec: NetworkSpec, names: LayerNames, printer: ReportPrinter) -> Section:
    scores = names.activations[-1]
    values = {ops.F_in: spec.classes}
    softmax = ops.softmax()
    probabilities = _renamed_formula(softmax, {softmax.operand("input").base: IndexedBase(scores),
                                               softmax.output.base: IndexedBase("p")}).substitute(values)
    entropy = ops.cross_entropy()
    loss = _renamed_formula(entropy, {entropy.operand("input").base: IndexedBase("p"),
                                      entropy.operand("target").base: IndexedBase("y")}).substitute(values)
    fused = ops.softmax_cross_entropy()
    fused = _renamed_formula(fused, {fused.operand("input").base: IndexedBase(scores),
                                     fused.operand("target").base: IndexedBase("y")}).substitute(values)
    blocks = [
        Prose(f"Softmax turns the {spec.classes} scores into probabilities, and the loss is their cross-entropy "
              "with the one-hot labels $y$, averaged over the batch of $N$ (for one sample, document 004's loss):"),
        Display(forward_display(probabilities, printer).rows + forward_display(loss, printer).rows),
        Prose("symcnn computes both as one formula, with $\\log p$ written in the numerically stable form:"),
        Display(forward_display(fused, printer).rows),
    ]
    return Section("Loss", tuple(blocks))


def _softmax_named(gradient: GradientFormula, scores: str, classes: int) -> GradientFormula:
    """The loss gradient with softmax's formula named ``p`` (a display rewrite, checked exact)."""
    softmax = ops.softmax()
    named = _renamed_formula(softmax, {softmax.operand("input").base: IndexedBase(scores),
                                       softmax.output.base: IndexedBase("p")}).substitute({ops.F_in: classes})
    body = sympy.Add(*[term.body for term in gradient.terms])
    probability = named.output.base[named.indices]
    rewritten = sympy.factor_terms(body.subs(named.rhs, probability))
    if rewritten.has(sympy.exp) or not exactly_equal(rewritten.subs(probability, named.rhs), body):
        return gradient  # not of the form p - y: show it as derived
    return dataclasses.replace(gradient, terms=(GatherTerm((), (), rewritten),))


def _loss_gradient(spec: NetworkSpec, names: LayerNames, printer: ReportPrinter) -> Section:
    scores = names.activations[-1]
    fused = ops.softmax_cross_entropy()
    mapping = {fused.operand("input").base: IndexedBase(scores), fused.operand("target").base: IndexedBase("y"),
               IndexedBase(GRADIENT_NAMES["input"]): IndexedBase(f"dL/d{scores}")}
    gradient = _renamed_gradient(general_gradient("softmax_cross_entropy", "input"), mapping)
    gradient = _softmax_named(gradient.substitute({ops.F_in: spec.classes}), scores, spec.classes)
    (total, value), = fused.identities
    one_hot = printer.doprint(sympy.Eq(total.xreplace(mapping).xreplace({ops.F_in: spec.classes}), value))
    blocks = [Prose(f"Differentiating the loss with respect to the scores, with ${one_hot}$ for one-hot labels, "
                    "gives document 004's $p - y$, divided by $N$ for the batch mean:"),
              Display(gradient_display(gradient, printer).rows)]
    return Section(f"Loss to ${printer.names[scores]}$", tuple(blocks))


def _backward_layer(layer: LayerSpec, names: LayerNames, printer: ReportPrinter) -> Section:
    formula, values = layer_formula(layer)
    source, target = names.activations[layer.index], names.activations[layer.index + 1]
    mapping = _renaming(formula, layer, source, target)
    roles = [role for role in _ROLE_ORDER if role in {t.role for t in formula.operands}]
    blocks = [Prose(registry.get(layer.kind).gradient_note or "By the chain rule, from the derived gradient below.")]
    for role in roles:
        gradient = _renamed_gradient(general_gradient(formula.op, role), mapping).substitute(values)
        label = {"input": source, "weight": f"W_{layer.name}", "bias": f"b_{layer.name}"}[role]
        shown = gradient_display(gradient, printer)
        blocks += _display_blocks(shown)
        blocks += zero_outside_prose(gradient.forward, gradient.rhs, printer)
        shape = [str(dim) for dim in gradient.gradient.shape]
        dims = r" \times ".join(shape)
        note = " (the network's input: not needed to train, shown as document 004 shows it)" \
            if role == "input" and layer.index == 0 else ""
        blocks.append(Prose(f"$\\partial L/\\partial {printer.names[label]}$ has the shape of "
                            f"${printer.names[label]}$, ${dims}${note}."))
    title = f"`{layer.label}` to ${printer.names[source]}$"
    return Section(title, tuple(blocks))


def _description(spec: NetworkSpec) -> str:
    try:
        return str(tomllib.loads(spec.source).get("description", ""))
    except tomllib.TOMLDecodeError:  # a spec built in Python: its source is not TOML
        return ""


def network_report(spec_name: str) -> Report:
    """The walk-through of a network spec (a shipped name like ``seed004-text``, or a ``.toml`` path)."""
    spec = load_spec(spec_name)
    names = layer_names(spec)
    printer = ReportPrinter(names.latex)
    description = _description(spec)
    input_shape = r" \times ".join(map(str, spec.input_shape))
    intro = [Prose(f"Network `{spec.name}`" + (f": {description}." if description else ".") +
                   f" Input $X \\in \\mathbb{{R}}^{{N \\times {input_shape}}}$ "
                   "(a batch of $N$, NCHW), loss: softmax cross-entropy. Every equation below is an op's formula "
                   "or its derived gradient, specialized to the layer's sizes; indices are 0-based.")]
    layers = Items(tuple(f"`{layer.label}`: {layer.kind}"
                         + (f" ({_settings_text(layer)})" if _settings_text(layer) else "")
                         + f", output {_shape(printer, names.activations[layer.index + 1], layer.output_shape)}"
                         for layer in spec.layers))
    forward = Section("Forward pass", (Prose("Each layer's output, element by element."),),
                      tuple(_forward_layer(layer, names, printer) for layer in spec.layers))
    backward_steps = [_loss_gradient(spec, names, printer)]
    backward_steps += [_backward_layer(layer, names, printer) for layer in reversed(spec.layers)]
    backward = Section("Backward pass", (Prose(
        "From the loss back to the input, one layer at a time. Each step takes the gradient with respect to a "
        "layer's output and gives, by the chain rule $\\partial L/\\partial x = \\sum_y \\partial L/\\partial y "
        "\\cdot \\partial y/\\partial x$, the gradients with respect to its parameters and its input."),),
        tuple(backward_steps))
    sections = (Section("Layers", (layers,)), forward, _loss_section(spec, names, printer), backward)
    summary = f"forward and backward pass of `{spec.name}`" + (f" ({description})" if description else "")
    return Report(f"network-{spec.name}", f"Network `{spec.name}`: forward and backward pass", summary, sections,
                  tuple(intro))
