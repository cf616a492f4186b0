"""``symcnn report --network SPEC``: document 004's walk-through, for any network spec.

Forward: each layer's equation at its concrete sizes, with its output shape and size rule; then
the loss. Backward: from the loss to the input, one chain-rule step a layer: softmax with
cross-entropy gives ``(p - y)/N``, the dense layer its three gradients, flatten the inverse of its
index map, max pooling routes to the window's first maximum, ReLU masks, the convolution its
three gradients. Every equation is the op's forward formula (:mod:`symcnn.symbolic.ops`) or its derived
gradient (:mod:`symcnn.symbolic.adjoint`), specialized to the layer (the same step that feeds the kernel
generator, :func:`symcnn.codegen.lower`), with each tensor given the name document 004 uses
(``S^{[1]}``, ``A^{[1]}``, ``P^{[1]}``, ``h``, ``z``, ``p``).

A graph spec's layers read the tensors their ``inputs`` name: an add passes its gradient to each input,
a concat gives each input its block of channels, and a tensor that several layers read (a fan-out) gets
the sum of the gradients they send back (the multivariable chain rule), written out before the step of
the layer that made it.

Example:
    >>> report = network_report("seed004-text")
    >>> [section.title for section in report.sections]
    ['Layers', 'Forward pass', 'Loss', 'Backward pass']
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections import Counter
from dataclasses import dataclass, field

import sympy
from sympy import IndexedBase

from symcnn import registry
from symcnn.registry import input_role, is_input_role
from symcnn.symbolic import ops
from symcnn.symbolic.instances import bind_layer
from symcnn.symbolic.adjoint import GRADIENT_NAMES, GatherTerm, GradientFormula, derive_gradient
from symcnn.report.document import Display, Items, Prose, Report, Section
from symcnn.report.indexform import FormulaDisplay, forward_display, gradient_display
from symcnn.report.mathtex import ReportPrinter, reader_tex
from symcnn.report.opformulas import general_gradient, zero_outside_prose
from symcnn.spec import LayerSpec, NetworkSpec, load_spec
from symcnn.symbolic.verify import exactly_equal

__all__ = ["network_report", "LayerNames", "layer_names", "FanOut", "fan_outs"]

# Document 004's letters (each op's registry entry names its own): S (convolution), A (activation),
# P (pooling), h (flatten), z (scores).
_SPATIAL_LETTERS = ("S", "A", "P")  # always numbered, as document 004 numbers S^{[1]}


_ROLE_ORDER = ("bias", "weight", "input")  # document 004's order within a layer


@dataclass(frozen=True)
class LayerNames:
    """Each tensor's label (an ``IndexedBase`` name) and its LaTeX, for the network's layers."""

    activations: tuple[str, ...]  # activations[0] is the input, activations[k + 1] layer k's output
    latex: dict  # label -> LaTeX
    tensors: dict = field(default_factory=dict)  # by spec label ("input", a layer's): its tensor's name

    def sources(self, layer: LayerSpec) -> tuple[str, ...]:
        """The names of the tensors ``layer`` reads, in the order of its ``inputs``."""
        return tuple(self.tensors[source] for source in layer.inputs)


def layer_names(spec: NetworkSpec) -> LayerNames:
    """Document 004's names: ``X``, then ``S^{[1]}``, ``A^{[1]}``, ``P^{[1]}``, ``h``, ``z`` by layer kind."""
    counts = Counter(registry.get(layer.kind).letter for layer in spec.layers)
    seen: Counter = Counter()
    activations, latex, tensors = ["X"], {"X": "X", "p": "p", "y": "y"}, {"input": "X"}
    for layer in spec.layers:
        letter = registry.get(layer.kind).letter
        seen[letter] += 1
        label = f"{letter}{seen[letter]}"
        numbered = letter in _SPATIAL_LETTERS or counts[letter] > 1
        latex[label] = f"{letter}^{{[{seen[letter]}]}}" if numbered else letter
        activations.append(label)
        tensors[layer.label] = label
        if layer.name:
            latex[f"W_{layer.name}"] = rf"W^{{\mathrm{{{layer.name}}}}}"
            latex[f"b_{layer.name}"] = rf"b^{{\mathrm{{{layer.name}}}}}"
    return LayerNames(tuple(activations), latex, tensors)


def layer_formula(layer: LayerSpec) -> tuple[ops.IndexFormula, dict]:
    """The op's formula of ``layer`` and the values of its shape parameters (all but the batch size);
    a whole-number alpha written as an integer (``1``, not ``1.0``)."""
    formula, values = bind_layer(layer.kind, layer.formula_shape, layer.settings, number=sympy.Float)
    return formula, {symbol: sympy.Integer(int(value)) if isinstance(value, sympy.Float) and value == int(value)
                     else value for symbol, value in values.items()}


def _renaming(formula: ops.IndexFormula, layer: LayerSpec, sources: tuple[str, ...], target: str,
              sent: tuple[str, ...] = ()) -> dict:
    """The op's tensors (X, or an add's X1, X2, ...; W, b, Y and their gradients) renamed to the network's;
    the gradient of input ``m`` to ``sent[m - 1]`` where given (the part a fan-out's reader sends back)."""
    labels = {input_role(number): source for number, source in enumerate(sources, 1)}
    labels["output"] = target
    if layer.name:
        labels.update(weight=f"W_{layer.name}", bias=f"b_{layer.name}")
    gradients = {role: f"dL/d{label}" for role, label in labels.items()}
    gradients.update((input_role(number), name) for number, name in enumerate(sent, 1))
    mapping = {}
    for tensor in formula.tensors:
        if tensor.role in labels:
            mapping[tensor.base] = IndexedBase(labels[tensor.role])
            gradient = IndexedBase(gradients[tensor.role])
            mapping[IndexedBase(GRADIENT_NAMES.get(tensor.role, f"dL/d{tensor.base}"))] = gradient
            if is_input_role(tensor.role):  # an add's inputs X1, X2 have the gradients dL/dX1, dL/dX2
                mapping[IndexedBase(f"dL/d{tensor.base}")] = gradient
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
    target = names.activations[layer.index + 1]
    concrete = _renamed_formula(formula, _renaming(formula, layer, names.sources(layer), target)).substitute(values)
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


@dataclass(frozen=True)
class FanOut:
    """A tensor that several layers read: its spec label, and one entry per read, in the spec's order:
    the reader's label, which of its inputs it is (from 1), and the name of the part of the gradient it
    sends back (``dL/dA1|c2``: printed :math:`(\\partial L/\\partial A^{[1]})_{\\mathrm{c2}}`)."""

    label: str
    reads: tuple[tuple[str, int], ...]
    parts: tuple[str, ...]


def fan_outs(spec: NetworkSpec, names: LayerNames) -> dict[str, FanOut]:
    """Every tensor read more than once, by spec label (``"input"`` where several layers read the input).

    >>> spec = load_spec("digits")
    >>> fan_outs(spec, layer_names(spec))
    {}
    """
    reads: dict[str, list[tuple[str, int]]] = {}
    for layer in spec.layers:
        for number, source in enumerate(layer.inputs, 1):
            reads.setdefault(source, []).append((layer.label, number))
    found = {}
    for source, readers in reads.items():
        if len(readers) > 1:
            counts = Counter(reader for reader, _ in readers)  # a layer reading it twice: its parts by input
            tags = [reader if counts[reader] == 1 else f"{reader}.{number}" for reader, number in readers]
            found[source] = FanOut(source, tuple(readers), tuple(f"dL/d{names.tensors[source]}|{tag}" for tag in tags))
    return found


def _gradient_text(printer: ReportPrinter, name: str) -> str:
    """``\\partial L/\\partial A^{[1]}``, or a fan-out's part ``(\\partial L/\\partial A^{[1]})_{\\mathrm{c2}}``."""
    tensor, _, reader = name.removeprefix("dL/d").partition("|")
    text = f"\\partial L/\\partial {printer.names[tensor]}"
    return f"({text})_{{\\mathrm{{{reader_tex(reader)}}}}}" if reader else text


def _backward_layer(layer: LayerSpec, names: LayerNames, printer: ReportPrinter,
                    parts: dict[tuple[str, int], str]) -> Section:
    """The layer's step: the gradients with respect to its parameters and inputs, from its output's; an
    input that other layers read too gets this layer's part (``parts``, by reader and input number)."""
    formula, values = layer_formula(layer)
    sources, target = names.sources(layer), names.activations[layer.index + 1]
    sent = tuple(parts.get((layer.label, number), f"dL/d{source}") for number, source in enumerate(sources, 1))
    mapping = _renaming(formula, layer, sources, target, sent)
    present = [t.role for t in formula.operands]
    roles = [role for role in _ROLE_ORDER if role in present]
    roles += [role for role in present if is_input_role(role) and role != "input"]  # an add's input2, ...
    merges = registry.get(layer.kind).merges
    blocks = [Prose(registry.get(layer.kind).gradient_note or "By the chain rule, from the derived gradient below.")]
    for role in roles:
        # an add's or concat's gradients from its formula for this many inputs (the general one has two)
        derived = derive_gradient(formula, role) if merges else general_gradient(formula.op, role)
        gradient = _renamed_gradient(derived, mapping).substitute(values)
        label = {"weight": f"W_{layer.name}", "bias": f"b_{layer.name}"}.get(role)
        number = int(role.removeprefix("input") or 1) if label is None else 0
        label = label or sources[number - 1]
        shown = gradient_display(gradient, printer)
        blocks += _display_blocks(shown)
        blocks += zero_outside_prose(gradient.forward, gradient.rhs, printer)
        shape = [str(dim) for dim in gradient.gradient.shape]
        dims = r" \times ".join(shape)
        note = " (the network's input: not needed to train, shown as document 004 shows it)" \
            if number and layer.inputs[number - 1] == "input" else ""
        gradient_name = sent[number - 1] if number else f"dL/d{label}"
        part = f", `{layer.label}`'s part of the gradient of ${printer.names[label]}$ (other layers read it too: " \
            "the parts are summed below)," if number and "|" in gradient_name else ""
        blocks.append(Prose(f"${_gradient_text(printer, gradient_name)}${part} has the shape of "
                            f"${printer.names[label]}$, ${dims}${note}."))
    title = f"`{layer.label}` to " + " and ".join(f"${printer.names[name]}$" for name in dict.fromkeys(sources))
    return Section(title, tuple(blocks))


def _fan_out_section(fan_out: FanOut, spec: NetworkSpec, names: LayerNames, printer: ReportPrinter) -> Section:
    """The gradient of a tensor several layers read: the sum of the parts they send back (the multivariable
    chain rule), written as the ``add`` formula of those parts, which the generated ``fanout_<label>``
    kernel computes."""
    tensor = names.tensors[fan_out.label]
    shape = spec.input_shape if fan_out.label == "input" else \
        next(layer.output_shape for layer in spec.layers if layer.label == fan_out.label)
    formula, values = bind_layer("add", (shape,) * len(fan_out.parts), {})
    mapping = {formula.output.base: IndexedBase(f"dL/d{tensor}")}
    mapping.update((operand.base, IndexedBase(part)) for operand, part in zip(formula.operands, fan_out.parts))
    concrete = _renamed_formula(formula, mapping).substitute(values)
    readers = [f"`{reader}`" for reader in dict.fromkeys(reader for reader, _ in fan_out.reads)]
    listed = ", ".join(readers[:-1]) + f" and {readers[-1]}" if len(readers) > 1 else readers[0]
    made_by = "the network's input" if fan_out.label == "input" else f"the output of `{fan_out.label}`"
    text = (f"${printer.names[tensor]}$ ({made_by}) is read by {listed}: the loss depends on it through each of "
            "them. By the multivariable chain rule, $\\partial L/\\partial x = \\sum_r \\sum_y \\partial L/\\partial "
            "y_r \\cdot \\partial y_r/\\partial x$ over its readers $r$, so its gradient is the sum of the "
            f"{len(fan_out.parts)} parts they send back, ${_gradient_text(printer, fan_out.parts[0])}$ being "
            f"`{fan_out.reads[0][0]}`'s (the generated kernel `fanout_{fan_out.label}` adds them):")
    return Section(f"Fan-out of ${printer.names[tensor]}$: the sum of its readers' gradients",
                   (Prose(text), Display(forward_display(concrete, printer).rows)))


def _backward_steps(spec: NetworkSpec, names: LayerNames, printer: ReportPrinter) -> list[Section]:
    """From the loss back to the input: each layer's step, preceded by the sum at its output where
    several layers read it (complete then: every reader's step came before)."""
    found = fan_outs(spec, names)
    parts = {read: part for fan_out in found.values() for read, part in zip(fan_out.reads, fan_out.parts)}
    steps = [_loss_gradient(spec, names, printer)]
    for layer in reversed(spec.layers):
        if layer.label in found:
            steps.append(_fan_out_section(found[layer.label], spec, names, printer))
        steps.append(_backward_layer(layer, names, printer, parts))
    if "input" in found:
        steps.append(_fan_out_section(found["input"], spec, names, printer))
    return steps


def _reads_text(layer: LayerSpec, names: LayerNames, previous: str) -> str:
    """``, reads $S^{[2]}$ and $A^{[1]}$`` for a layer that reads other than the layer above it."""
    if layer.inputs == (previous,):
        return ""
    shown = [f"${names.latex[name]}$" for name in names.sources(layer)]
    return ", reads " + (", ".join(shown[:-1]) + f" and {shown[-1]}" if len(shown) > 1 else shown[0])


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
    above = ("input",) + tuple(layer.label for layer in spec.layers)  # the label above each layer
    layers = Items(tuple(f"`{layer.label}`: {layer.kind}"
                         + (f" ({_settings_text(layer)})" if _settings_text(layer) else "")
                         + _reads_text(layer, names, previous)
                         + f", output {_shape(printer, names.activations[layer.index + 1], layer.output_shape)}"
                         for previous, layer in zip(above, spec.layers)))
    forward = Section("Forward pass", (Prose("Each layer's output, element by element."),),
                      tuple(_forward_layer(layer, names, printer) for layer in spec.layers))
    backward_steps = _backward_steps(spec, names, printer)
    graph = "" if spec.sequential else (
        " Where several layers read one tensor, its gradient is the sum of the parts they send back: the "
        "chain rule summed over every path from the tensor to the loss.")
    backward = Section("Backward pass", (Prose(
        "From the loss back to the input, one layer at a time. Each step takes the gradient with respect to a "
        "layer's output and gives, by the chain rule $\\partial L/\\partial x = \\sum_y \\partial L/\\partial y "
        "\\cdot \\partial y/\\partial x$, the gradients with respect to its parameters and its input." + graph),),
        tuple(backward_steps))
    sections = (Section("Layers", (layers,)), forward, _loss_section(spec, names, printer), backward)
    summary = f"forward and backward pass of `{spec.name}`" + (f" ({description})" if description else "")
    return Report(f"network-{spec.name}", f"Network `{spec.name}`: forward and backward pass", summary, sections,
                  tuple(intro))
