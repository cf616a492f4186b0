"""``symcnn demo``: a guided tour of the toolkit, each step computed as it is shown.

Example:
    $ symcnn demo
"""

from __future__ import annotations

import time

from sympy import Array

from symcnn import ops, render
from symcnn.adjoint import derive_gradient
from symcnn.derive import LayerConfig, derive
from symcnn.examples import EXAMPLE_LIST, POOL_INPUT, check
from symcnn.formulas import general_formula
from symcnn.tensors import element_name, indices_of, symbol_array, upstream_array
from symcnn.verify import expand_gradient, mismatches

__all__ = ["run"]


def _heading(number: int, text: str) -> None:
    print(f"\n{number}. {text}\n{'-' * (len(text) + 3)}")


def run() -> int:
    """Print the tour; return 1 when an example does not reproduce its document, else 0."""
    print("symcnn demo: the mathematics of convolutional networks, derived from one definition per layer")

    _heading(1, "Document 002's convolution, derived by differentiation (3x3 input, 2x2 kernel)")
    print("The document lists 4 of the 9 input-gradient entries; all 9 follow.\n")
    print(render.as_text(derive(LayerConfig("conv2d", input_size=(3, 3), kernel=(2, 2), bias=False))))

    _heading(2, "Document 002's max pooling: gradient routing decided by the numbers (2x2 window, stride 1)")
    config = LayerConfig("maxpool2d", input_size=(3, 3), kernel=(2, 2), stride=(1, 1))
    print(render.as_text(derive(config, values=Array([[POOL_INPUT]]))))

    _heading(3, "Beyond the documents: stride 2, padding 1, dilation 2, two channels")
    config = LayerConfig("conv2d", input_size=(5, 4), kernel=(2, 2), channels_in=2, stride=2, padding=1,
                         dilation=2, bias=True)
    result = derive(config)
    print(render.describe(config))
    for name, key in (("dL/dx011", (0, 0, 1, 1)), ("dL/dx133", (0, 1, 3, 3)), ("dL/dx000", (0, 0, 0, 0))):
        print(f"  {name} = {result.gradients['grad_input'][key]}")
    print("  (x000 lies in no window of this stride and dilation, so its gradient is 0)")
    print(f"  dL/db0 = {result.gradients['grad_bias'][0]}")
    print("  (symcnn derive conv2d --input 5x4 --kernel 2 --channels-in 2 --stride 2 --padding 1 --dilation 2"
          " prints every entry)")

    _heading(4, "The general formula, derived for any stride, padding and dilation, and its small expansion")
    view = general_formula("conv2d", "input")
    print(view.text())
    print("\nInstantiated at document 002's configuration (3x3 input, 2x2 kernel, stride 1, no padding):")
    arrays = {"input": symbol_array("x", (1, 1, 3, 3)), "weight": symbol_array("w", (1, 1, 2, 2))}
    parameters = {"stride_h": 1, "stride_w": 1, "padding_h": 0, "padding_w": 0, "dilation_h": 1, "dilation_w": 1}
    upstream = upstream_array((1, 1, 2, 2))
    expanded = expand_gradient(derive_gradient(ops.conv2d(bias=False), "input"), arrays, upstream, parameters)
    for index in indices_of(expanded.shape):
        print(f"  dL/d{element_name('x', index, expanded.shape)} = {expanded[index]}")
    proof = mismatches(ops.conv2d(bias=False), arrays, parameters)
    agreed = all(not wrong for wrong in proof.values())
    print(f"equal to the element-wise derivatives of section 1: {'yes' if agreed else 'NO'} "
          "(tests prove every op's formulas this way at 50+ configurations)")

    _heading(5, "Every worked example of the reference documents, derived and compared")
    start = time.perf_counter()
    results = [check(example) for example in EXAMPLE_LIST]
    width = max(len(r.name) for r in results)
    for example, r in zip(EXAMPLE_LIST, results):
        print(f"  {r.name:<{width}}  {r.document}  {r.status:<8}  {example.title}")
        for mismatch in r.mismatches:
            print(f"      {mismatch}")
    passed = sum(r.status == "ok" for r in results)
    print(f"\n{passed} of {len(results)} examples reproduce their documents exactly "
          f"({sum(r.checked for r in results)} values, {time.perf_counter() - start:.1f} s)")

    print("\nNext: symcnn examples --check, symcnn derive OP --help, symcnn formula OP --wrt input|weight|bias")
    return 0 if passed == len(results) and agreed else 1
