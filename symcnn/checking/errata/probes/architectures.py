"""Document 003's counts for its named architectures and blocks, checked against the networks symcnn
builds: the shipped ``lenet5``, ``alexnet`` and ``vgg16`` specs (:data:`symcnn.spec.ARCHITECTURE_SPECS`,
from the document's layer lists), and dense blocks of symcnn's ``concat`` layers.

- **parameters**: the parameters ``symcnn summary`` counts in the network named by
  ``options["network"]`` (every layer's weights and biases, from the op registry's shapes), rounded
  to the document's precision, ``options["precision"]``, the place of its last significant digit
  (10,000 for "≈ 60,000" read to one significant figure). The case says the exact count and each
  layer's, so that a difference can be traced to its layer.
- **dense growth**: DenseNet's block, ``x_l = H_l([x_0, x_1, ..., x_{l-1}])``, as a spec: ``H_l`` a
  3×3 convolution of ``k`` maps (the growth rate) reading the concatenation of the block's input
  ``x_0`` (``k_0`` maps) and every earlier ``H``'s output. ``features[l]`` (``l ≥ 1``) is the number
  of maps ``H_l`` reads, or with ``options["layer_features"] == "after"`` the number in ``[x_0, ...,
  x_l]``, once ``H_l`` has added its own; ``features[0]`` is ``k_0``. Counted by symcnn's spec
  validation (the op registry's output shapes).

Example:
    >>> (case,) = PARAMETERS.cases({"network": "lenet5", "precision": 1000})
    >>> case.label
    'lenet5 (61,706 parameters: conv1 156, conv2 2,416, fc1 48,120, fc2 10,164, fc3 850)'
    >>> PARAMETERS.evidence(case, {"network": "lenet5", "precision": 1000}).derived
    {'parameters': 62000}
"""

from __future__ import annotations

import functools

from sympy import Array

from symcnn.checking.errata.probes.core import Case, Evidence, Probe
from symcnn.network_summary import NetworkSummary, summary
from symcnn.spec import NetworkSpec, spec_from_dict

__all__ = ["PARAMETERS", "DENSE_GROWTH", "dense_block"]


@functools.lru_cache(maxsize=None)
def _summary(network: str) -> NetworkSummary:
    return summary(network)


def _parameter_cases(options) -> list[Case]:
    network = options["network"]  # a transcription's: the probe's description names it too
    result = _summary(network)
    counts = ", ".join(f"{layer.label} {layer.parameters:,}" for layer in result.layers if layer.parameters)
    return [Case(f"{network} ({result.totals.parameters:,} parameters: {counts})", {"network": network})]


def _parameter_evidence(case: Case, options) -> Evidence:
    precision = options.get("precision", 1)
    if isinstance(precision, bool) or not isinstance(precision, int) or precision < 1:
        raise ValueError(f"precision: must be a positive integer (the place of the last significant digit), "
                         f"got {precision!r}")
    count = _summary(case.values["network"]).totals.parameters
    return Evidence({}, {"parameters": (count + precision // 2) // precision * precision})  # rounded, half up


#: A named network's parameter count, against symcnn summary's.
PARAMETERS = Probe("symcnn summary's parameter count of the {network} spec, rounded to the document's precision",
                   _parameter_cases,
                   _parameter_evidence)

# --- dense blocks --------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def dense_block(input_maps: int, growth: int, layers: int) -> NetworkSpec:
    """A dense block of ``layers`` layers on ``input_maps`` maps of 4×4: ``h1``, ``h2``, ... (3×3
    convolutions of ``growth`` maps, padding 1) and ``cat1``, ``cat2``, ... (``[x_0, ..., x_l]``), then
    a dense layer for the class scores that a spec ends with.

    >>> [(layer.label, layer.output_shape[0]) for layer in dense_block(3, 2, 2).layers[:4]]
    [('h1', 2), ('cat1', 5), ('h2', 2), ('cat2', 7)]
    """
    tables, outputs = [], ["input"]
    for number in range(1, layers + 1):
        tables.append({"type": "conv2d", "name": f"h{number}", "out_channels": growth, "kernel": 3, "padding": 1,
                       "inputs": ["input" if number == 1 else f"cat{number - 1}"]})
        outputs.append(f"h{number}")
        tables.append({"type": "concat", "name": f"cat{number}", "inputs": list(outputs)})
    tables += [{"type": "flatten"}, {"type": "dense", "name": "scores", "out_features": 2}]
    return spec_from_dict({"name": "dense-block", "input": [input_maps, 4, 4], "layers": tables})


def _growth_cases(options) -> list[Case]:
    return [Case(f"a dense block of {layers} layer{'s' if layers > 1 else ''} on k_0 = {maps} maps, growth rate "
                 f"k = {growth}", {"maps": maps, "growth": growth, "layers": layers})
            for layers in (1, 2, 3) for maps in (1, 3) for growth in (1, 2)]


def _growth_evidence(case: Case, options) -> Evidence:
    maps, growth, layers = case.values["maps"], case.values["growth"], case.values["layers"]
    by_label = {layer.label: layer for layer in dense_block(maps, growth, layers).layers}
    if options.get("layer_features") == "after":
        counted = [by_label[f"cat{number}"].output_shape[0] for number in range(1, layers + 1)]
    else:
        counted = [by_label[f"h{number}"].input_shape[0] for number in range(1, layers + 1)]
    return Evidence({"k_0": maps, "k": growth, "L": layers}, {"features": Array([maps, *counted])},
                    {"features": (layers + 1,)})


#: The maps a dense block's layer reads (or holds after it), against symcnn's concat shapes.
DENSE_GROWTH = Probe("the maps of dense blocks built of symcnn's conv2d and concat layers", _growth_cases,
                     _growth_evidence)
