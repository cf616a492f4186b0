"""Document 003's costs: a convolution's operation counts and unfolded input, checked on symcnn's
expanded formulas at small configurations, and a network's memory, measured on its runtime Network.

- **forward FLOPs**: the floating-point operations of the expanded forward formula, one per
  multiplication and one per addition (:func:`operations`), the products with the zero padding
  dropped, as symcnn's expansion drops them. Read with "a FLOP is a multiply-add"
  (``options["flop"] == "multiply-add"``), the multiply-adds instead (:func:`multiply_adds`); with
  "the products with the padding count" (``options["padded_products"] == "counted"``), the expansion
  of the input padded explicitly (its border symbols too), as an unfolded-matrix product computes
  them; with both, the op registry's ``macs`` (``symcnn summary``'s MACs) too, a case of its own.
- **backward FLOPs**: the multiply-adds of the expanded gradients symcnn derives (input, weight and
  bias), counted as the document counts the forward pass: each term accumulated into an element is one
  (:func:`multiply_adds`), as are the forward pass's, given to the claim as ``FLOPs_forward``.
  ``≈`` is read at the document's precision, one significant figure: the claim holds where the ratio
  rounds to 2 (from 1.5 to 2.5).
- **im2col**: the unfolded input has a row per output position; its columns are the input entries
  (the padding's included: the input padded explicitly) that the outputs there read, of every
  output channel, counted on the expansion, row by row (``columns[r]``).
- **model size**: the bytes of the parameter arrays a :class:`~symcnn.runtime.network.Network` of each
  shipped spec holds (measured, ``nbytes``), in float32 and float64, the claim given each layer's
  parameter count ``n[l]`` and ``bits`` per parameter.
- **activation memory**: at each layer whose output is feature maps (``C_out`` maps of ``H_out ×
  W_out``) of the shipped digits and seed004 networks, the bytes that output occupies in a training
  pass of a :class:`~symcnn.runtime.network.Network` (measured, ``nbytes``; an array that is a view
  of an earlier one would hold none of its own; the pass's forward fusions off, so that each layer's
  output is an array), which the Network keeps for its backward pass, in
  float32 and float64, batches of 1 and 2. ``sizeof_float`` is C's ``sizeof(float)``, 4 bytes, or
  read as the size of the network's element (``options["sizeof_float"] == "dtype"``).

Example:
    >>> case = next(iter(BACKWARD_FLOPS.cases({})))
    >>> case.label, BACKWARD_FLOPS.evidence(case, {}).given["FLOPs_forward"]
    ('N=1, C_in=1, C_out=1, input 1x1, kernel 1x1, stride 1, padding 0', 2)
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np
import sympy
from sympy import Array

from symcnn import registry
from symcnn.checking.errata.probes.core import Case, Evidence, Probe
from symcnn.runtime.network import Network
from symcnn.spec import SHIPPED_SPECS, load_spec
from symcnn.symbolic import layers
from symcnn.symbolic.derive import Derivation, LayerConfig, derive
from symcnn.symbolic.tensors import symbol_array

__all__ = ["FORWARD_FLOPS", "BACKWARD_FLOPS", "UNFOLDED", "MODEL_SIZE", "ACTIVATION_MEMORY", "operations",
           "multiply_adds", "Convolution", "CONVOLUTIONS", "FORWARD_CONVOLUTIONS"]


class Convolution(NamedTuple):
    """A small convolution: batch, channels, input and kernel (height, width), stride, padding and dilation."""

    batch: int
    channels_in: int
    channels_out: int
    input: tuple[int, int]
    kernel: tuple[int, int]
    stride: int = 1
    padding: int = 0
    dilation: int = 1

    def words(self) -> str:
        return (f"N={self.batch}, C_in={self.channels_in}, C_out={self.channels_out}, input "
                f"{self.input[0]}x{self.input[1]}, kernel {self.kernel[0]}x{self.kernel[1]}, stride {self.stride}, "
                f"padding {self.padding}" + (f", dilation {self.dilation}" if self.dilation > 1 else ""))

    def config(self) -> LayerConfig:
        return LayerConfig("conv2d", input_size=self.input, kernel=self.kernel, channels_in=self.channels_in,
                           channels_out=self.channels_out, stride=self.stride, padding=self.padding,
                           dilation=self.dilation, batch=self.batch)

    def settings(self) -> dict:
        """The convolution's settings as the op registry reads them (a spec layer's)."""
        return registry.get("conv2d").settings_of({"out_channels": self.channels_out, "kernel": list(self.kernel),
                                                   "stride": self.stride, "padding": self.padding,
                                                   "dilation": self.dilation})


#: The convolutions checked, smallest first.
CONVOLUTIONS = (
    Convolution(1, 1, 1, (1, 1), (1, 1)),
    Convolution(1, 1, 1, (1, 2), (1, 2)),
    Convolution(1, 1, 1, (2, 2), (2, 2)),
    Convolution(1, 2, 1, (2, 2), (1, 1)),
    Convolution(1, 1, 2, (3, 3), (2, 2)),
    Convolution(2, 1, 1, (3, 3), (2, 2)),
    Convolution(1, 1, 1, (1, 1), (3, 3), padding=1),
    Convolution(1, 2, 2, (3, 3), (2, 2), padding=1),
    Convolution(1, 1, 1, (4, 4), (2, 2), stride=2),
    Convolution(1, 2, 3, (4, 3), (3, 2), stride=2, padding=1),
    Convolution(2, 3, 2, (5, 5), (3, 3), stride=1, padding=1),
)

#: The convolutions the forward count is checked at: those, and dilated ones (the document's formula
#: has no dilation: a dilated kernel has as many taps).
FORWARD_CONVOLUTIONS = CONVOLUTIONS + (
    Convolution(1, 1, 1, (3, 3), (2, 2), dilation=2),
    Convolution(1, 2, 2, (5, 4), (2, 2), stride=2, padding=1, dilation=2),
)


def operations(element: sympy.Expr) -> int:
    """The floating-point operations of an expanded element, one per multiplication and one per
    addition: ``b + w0·x0 + w1·x1`` takes 4."""
    return int(sympy.count_ops(sympy.expand(element)))


def multiply_adds(element: sympy.Expr) -> int:
    """The multiply-adds of an expanded element as document 003 counts them: each term accumulated
    into it is one (a product, or a bias's add): ``b + w0·x0 + w1·x1`` takes 3, ``0`` none."""
    element = sympy.expand(element)
    return 0 if element == 0 else len(sympy.Add.make_args(element))


@functools.lru_cache(maxsize=None)
def _derived(convolution: Convolution) -> Derivation:
    return derive(convolution.config())


def _count(array, counter) -> int:
    return sum(counter(element) for element in sympy.flatten(array.tolist()))


def _given(convolution: Convolution, derivation: Derivation) -> dict:
    _, c_out, h_out, w_out = derivation.output.shape
    return {"N": convolution.batch, "C_in": convolution.channels_in, "C_out": c_out, "H_out": h_out,
            "W_out": w_out, "K_h": convolution.kernel[0], "K_w": convolution.kernel[1]}


def _cases(options) -> list[Case]:
    return [Case(convolution.words(), {"convolution": convolution}) for convolution in CONVOLUTIONS]


def _backward_evidence(case: Case, options) -> Evidence:
    convolution = case.values["convolution"]
    derivation = _derived(convolution)
    forward = _count(derivation.output, multiply_adds)
    backward = sum(_count(gradient, multiply_adds) for gradient in derivation.gradients.values())
    return Evidence({**_given(convolution, derivation), "FLOPs_forward": forward}, {"FLOPs_backward": backward},
                    tolerances={"FLOPs_backward": forward / 2},
                    origin="counted; ≈ at one significant figure")


#: A convolution's backward multiply-adds (its input, weight and bias gradients) against twice its forward ones.
BACKWARD_FLOPS = Probe("the multiply-adds of the gradients symcnn derives (input, weight, bias), counted on their "
                       "expansion as the forward pass's", _cases, _backward_evidence)

# --- forward FLOPs -------------------------------------------------------------------------------------


def _padded_input(convolution: Convolution) -> Array:
    """The convolution's input padded explicitly: its border symbols too, not zeros."""
    n, c_in, _, (height, width), _, _, padding, _ = convolution
    return symbol_array("x", (n, c_in, height + 2 * padding, width + 2 * padding))


@functools.lru_cache(maxsize=None)
def _padded_output(convolution: Convolution) -> Array:
    """symcnn's convolution of the input padded explicitly, expanded: each product with the padding is
    a term, as an unfolded-matrix product computes it."""
    _, c_in, c_out, _, kernel, stride, _, dilation = convolution
    return layers.conv2d(_padded_input(convolution), symbol_array("w", (c_out, c_in, *kernel)),
                         symbol_array("b", (c_out,)), stride=stride, dilation=dilation)


def _forward_cases(options) -> list[Case]:
    registry_too = options.get("flop") == "multiply-add" and options.get("padded_products") == "counted"
    cases = []
    for convolution in FORWARD_CONVOLUTIONS:
        cases.append(Case(f"{convolution.words()}, counted on symcnn's expanded formula",
                          {"convolution": convolution, "source": "expansion"}))
        if registry_too:  # the registry counts multiply-adds, the padding's products included
            cases.append(Case(f"{convolution.words()}, the op registry's macs (symcnn summary's MACs)",
                              {"convolution": convolution, "source": "registry"}))
    return cases


def _forward_evidence(case: Case, options) -> Evidence:
    convolution = case.values["convolution"]
    given = _given(convolution, _derived(convolution))
    if case.values["source"] == "registry":
        macs = registry.get("conv2d").macs((convolution.channels_in, *convolution.input), convolution.settings())
        return Evidence(given, {"FLOPs": convolution.batch * macs})  # the registry counts one image
    counted = options.get("padded_products") == "counted"
    output = _padded_output(convolution) if counted else _derived(convolution).output
    counter = multiply_adds if options.get("flop") == "multiply-add" else operations
    return Evidence(given, {"FLOPs": _count(output, counter)})


#: A convolution's forward FLOPs, counted on its expansion (``options["flop"]``: ``"multiply-add"``
#: counts those; ``options["padded_products"]``: ``"counted"`` counts the products with the padding).
FORWARD_FLOPS = Probe("the operations of symcnn's expanded forward formula, and the op registry's macs",
                      _forward_cases, _forward_evidence)

# --- im2col --------------------------------------------------------------------------------------------


def _unfolded_cases(options) -> list[Case]:
    return [Case(convolution.words(), {"convolution": convolution}) for convolution in FORWARD_CONVOLUTIONS
            if convolution.batch == 1]  # one image's unfolded matrix


def _unfolded_evidence(case: Case, options) -> Evidence:
    """A row per output position (row-major), of as many columns as the input entries (the padding's
    included) that the outputs there read, over every output channel: one row serves them all."""
    convolution = case.values["convolution"]
    output, entries = _padded_output(convolution), set(sympy.flatten(_padded_input(convolution).tolist()))
    _, c_out, h_out, w_out = output.shape
    columns = [len(entries & set().union(*(output[0, k, i, j].free_symbols for k in range(c_out))))
               for i in range(h_out) for j in range(w_out)]
    return Evidence({"H_out": h_out, "W_out": w_out, "C_in": convolution.channels_in, "K_h": convolution.kernel[0],
                     "K_w": convolution.kernel[1]}, {"columns": Array(columns)}, {"columns": (h_out * w_out,)})


#: The columns of a convolution's unfolded input, one row an output position, against symcnn's expansion.
UNFOLDED = Probe("the input entries each output position of symcnn's expanded formula reads (the input padded "
                 "explicitly)", _unfolded_cases, _unfolded_evidence)

# --- model size ----------------------------------------------------------------------------------------

_BITS = {"float32": 32, "float64": 64}


def _size_cases(options) -> list[Case]:
    return [Case(f"{spec} in {dtype}", {"spec": spec, "dtype": dtype}) for spec in SHIPPED_SPECS for dtype in _BITS]


def _layer_parameters(spec: str) -> list[int]:
    """Each layer's parameter count (weights, biases, a normalization's scale and shift), from the spec."""
    counts: dict[str, int] = {}
    for name, shape in load_spec(spec).parameter_shapes().items():
        layer = name.rsplit(".", 1)[0]
        counts[layer] = counts.get(layer, 0) + math.prod(shape)
    return list(counts.values())


@functools.lru_cache(maxsize=None)
def _parameter_bytes(spec: str, dtype: str) -> int:
    """The bytes of the parameter arrays a Network of ``spec`` holds in ``dtype``."""
    return sum(array.nbytes for array in Network.from_spec(spec, dtype=dtype).params.values())


def _size_evidence(case: Case, options) -> Evidence:
    counts = _layer_parameters(case.values["spec"])
    return Evidence({"L": len(counts), "n": Array(counts), "bits": _BITS[case.values["dtype"]]},
                    {"Size": _parameter_bytes(case.values["spec"], case.values["dtype"])})


#: A network's size in bytes, against the parameter arrays a Network holds.
MODEL_SIZE = Probe("the bytes of the parameter arrays a Network of each shipped spec holds", _size_cases,
                   _size_evidence)

# --- activation memory ---------------------------------------------------------------------------------

#: The shipped networks measured, smallest first: those whose kernels compile in seconds (and which the
#: test suite compiles anyway). resnet-mini's and mobilenet-mini's take minutes to compile on first use;
#: their layers' outputs are arrays of the same kind (an ``out`` buffer of the layer's output shape).
_MEASURED = ("digits", "seed004")
_BATCHES = (1, 2)


@functools.lru_cache(maxsize=None)
def _kept_bytes(spec: str, dtype: str) -> dict[tuple[str, int], int]:
    """The bytes each layer's output occupies in a training pass of a Network of ``spec``, by layer
    label and batch size: its own memory (a view of an earlier array, as flatten's, holds none)."""
    network = Network.from_spec(spec, dtype=dtype, seed=0)
    # Each layer's output as an array of its own, as the claim counts it: with its forward fusions, a
    # training pass never writes a convolution's output that only the ReLU after it reads.
    network.fuse_with_gradients = False
    kept = {}
    for batch in _BATCHES:
        images = np.random.default_rng(batch).standard_normal((batch, *network.spec.input_shape)).astype(dtype)
        # The tensors a training pass keeps for its backward pass, by label (loss_and_grads reads them).
        _, tensors, _ = network._forward(images, training=True)
        earlier = [tensors["input"]]
        for layer in network.spec.layers:
            array = tensors[layer.label]
            shared = any(np.may_share_memory(array, other) for other in earlier)
            kept[layer.label, batch] = 0 if shared else array.nbytes
            earlier.append(array)
    return kept


def _memory_cases(options) -> list[Case]:
    """Every layer with feature-map outputs, in float32 then float64, batches of 1 then 2."""
    cases = []
    for spec, dtype, batch in ((spec, dtype, batch) for spec in _MEASURED for dtype in _BITS for batch in _BATCHES):
        cases += [Case(f"{spec} {layer.label} ({layer.kind}, output {'x'.join(map(str, layer.output_shape))}), "
                       f"batch {batch}, in {dtype}", {"spec": spec, "layer": layer.label, "dtype": dtype,
                                                      "batch": batch, "shape": layer.output_shape})
                  for layer in load_spec(spec).layers if len(layer.output_shape) == 3]
    return cases


def _memory_evidence(case: Case, options) -> Evidence:
    channels, height, width = case.values["shape"]
    element = np.dtype(case.values["dtype"]).itemsize if options.get("sizeof_float") == "dtype" else 4
    kept = _kept_bytes(case.values["spec"], case.values["dtype"])
    return Evidence({"N": case.values["batch"], "C_out": channels, "H_out": height, "W_out": width,
                     "sizeof_float": element}, {"Memory": kept[case.values["layer"], case.values["batch"]]})


#: A layer's activation memory, against the bytes of the output a Network keeps for its backward pass.
ACTIVATION_MEMORY = Probe("the bytes of each layer's output that a Network (digits, seed004) keeps for its "
                          "backward pass", _memory_cases, _memory_evidence)
