"""Document 003's operation counts of a convolution, checked by counting the operations of symcnn's
expanded formulas at small configurations.

- **forward FLOPs**: the floating-point operations of the expanded forward formula, one per
  multiplication and one per addition (:func:`operations`); read with "a FLOP is a multiply-add"
  (``options["flop"] == "multiply-add"``), symcnn's multiply-accumulate count instead (the op
  registry's, ``macs``, padded taps included).
- **backward FLOPs**: the multiply-adds of the expanded gradients symcnn derives (input, weight and
  bias), counted as the document counts the forward pass: each term accumulated into an element is one
  (:func:`multiply_adds`), as are the forward pass's, given to the claim as ``FLOPs_forward``.
  ``≈`` is read at the document's precision, one significant figure: the claim holds where the ratio
  rounds to 2 (from 1.5 to 2.5).
- **model size**: the bytes of the parameter arrays a :class:`~symcnn.runtime.network.Network` of each
  shipped spec holds (measured, ``nbytes``), in float32 and float64, the claim given each layer's
  parameter count ``n[l]`` and ``bits`` per parameter.

Example:
    >>> case = next(iter(BACKWARD_FLOPS.cases({})))
    >>> case.label, BACKWARD_FLOPS.evidence(case, {}).given["FLOPs_forward"]
    ('N=1, C_in=1, C_out=1, input 1x1, kernel 1x1, stride 1, padding 0', 2)
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import sympy
from sympy import Array

from symcnn.checking.errata.probes.core import Case, Evidence, Probe
from symcnn.runtime.network import Network
from symcnn.spec import SHIPPED_SPECS, load_spec
from symcnn.symbolic.derive import Derivation, LayerConfig, derive

__all__ = ["BACKWARD_FLOPS", "MODEL_SIZE", "operations", "multiply_adds", "Convolution", "CONVOLUTIONS"]


class Convolution(NamedTuple):
    """A small convolution: batch, channels, input and kernel (height, width), stride and padding."""

    batch: int
    channels_in: int
    channels_out: int
    input: tuple[int, int]
    kernel: tuple[int, int]
    stride: int = 1
    padding: int = 0

    def words(self) -> str:
        return (f"N={self.batch}, C_in={self.channels_in}, C_out={self.channels_out}, input "
                f"{self.input[0]}x{self.input[1]}, kernel {self.kernel[0]}x{self.kernel[1]}, stride {self.stride}, "
                f"padding {self.padding}")

    def config(self) -> LayerConfig:
        return LayerConfig("conv2d", input_size=self.input, kernel=self.kernel, channels_in=self.channels_in,
                           channels_out=self.channels_out, stride=self.stride, padding=self.padding,
                           batch=self.batch)


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
