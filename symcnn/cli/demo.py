"""``symcnn demo``: a guided tour of the toolkit, each step computed as it is shown.

Example:
    $ symcnn demo
"""

from __future__ import annotations

import time

from sympy import Array

from symcnn.symbolic import ops
from symcnn.views import derivation as render
from symcnn.symbolic.adjoint import derive_gradient
from symcnn.symbolic.derive import LayerConfig, derive
from symcnn.checking.examples import EXAMPLE_LIST, POOL_INPUT, check
from symcnn.views.formula import general_formula
from symcnn.symbolic.tensors import element_name, indices_of, symbol_array, upstream_array
from symcnn.symbolic.verify import expand_gradient, mismatches

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

    kernels_agree = _generated_kernels()
    trained = _training()

    _heading(7, "Every worked example of the reference documents, derived and compared")
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

    print("\nNext: symcnn examples --check | symcnn derive OP --steps | symcnn formula OP --wrt input|weight|bias | "
          "symcnn report --example conv_3x3_2x2 -o conv.pdf | symcnn check FORMULA --against NAME|OP | "
          "symcnn errata | symcnn generate SPEC | symcnn train seed004 | symcnn bench seed004")
    return 0 if passed == len(results) and agreed and kernels_agree and trained else 1


def _training() -> bool:
    """Section 6: train the digits network on the shipped real digits for a few seconds."""
    from symcnn.training.data import load_digits
    from symcnn.runtime.network import Network
    from symcnn.training.trainer import TrainConfig, Trainer

    _heading(6, "Training the generated kernels on 1,797 real handwritten digits (8x8, shipped)")
    net = Network.from_spec("digits", seed=0)
    data = load_digits(net.spec.input_shape).standardized()
    config = TrainConfig(epochs=15, batch=32, lr=0.05, momentum=0.9, weight_decay=5e-4, seed=0)
    start = time.perf_counter()
    history = Trainer(net, config).fit(data, progress=False)
    seconds = time.perf_counter() - start
    for record in history[::3] + ([history[-1]] if (len(history) - 1) % 3 else []):
        print(f"  epoch {record['epoch']:>2}: train loss {record['train_loss']:.4f}, "
              f"held-out accuracy {100 * record['test_accuracy']:.2f}%")
    accuracy = history[-1]["test_accuracy"]
    print(f"digits: {100 * accuracy:.2f}% on {len(data.x_test)} held-out images after {len(history)} epochs, "
          f"{seconds:.1f} s (symcnn train digits --plot curves.png does the same, with checkpoints)")
    return accuracy >= 0.9


SMALL_SPEC = """
name = "demo-small"
input = [2, 5, 6]
[[layers]]
type = "conv2d"
name = "conv"
out_channels = 2
kernel = [2, 3]
stride = [2, 1]
padding = [1, 0]
dilation = [1, 2]
[[layers]]
type = "relu"
[[layers]]
type = "maxpool2d"
kernel = 2
stride = 1
[[layers]]
type = "flatten"
[[layers]]
type = "dense"
name = "fc"
out_features = 3
"""


def _generated_kernels() -> bool:
    """Section 5: generate document 004's kernels, run them, compare with the symbolic results."""
    import numpy as np

    from symcnn.codegen.package import render_package, stale_files
    from symcnn.runtime.loader import cache_dir, load_kernels
    from symcnn.runtime.network import Network
    from symcnn.spec import load_spec, parse_spec, shipped_kernels_dir
    from symcnn.symbolic.verify import symbolic_network_gradients

    _heading(5, "Generated numba kernels for document 004's network (32x32x3, conv-ReLU-pool-conv-dense)")
    spec = load_spec("seed004")
    start = time.perf_counter()
    files = render_package(spec)
    stale = stale_files(files, shipped_kernels_dir() / spec.module_name)
    print(f"rendered {len(files)} modules from templates/ in {time.perf_counter() - start:.1f} s; the shipped "
          f"kernels {'match them' if not stale else 'differ: ' + ', '.join(stale)}")
    kernel = files["conv1.py"]
    body = kernel[kernel.index("def conv1_grad_input"):]
    body = body[body.index('    N = '):].split("\n\n")[0]
    print("conv1's input gradient, printed from the derived formula above (every size a constant):")
    print("\n".join("    " + line for line in body.splitlines()))

    net = Network.from_spec("seed004", seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 3, 32, 32)).astype(np.float32)
    labels = rng.integers(0, 10, 64)
    start = time.perf_counter()
    net.loss_and_grads(x[:1], labels[:1])  # compile (or load numba's cache)
    compiled = time.perf_counter() - start
    start = time.perf_counter()
    loss, grads = net.loss_and_grads(x, labels)
    elapsed = time.perf_counter() - start
    print(f"\nbatch of 64: loss {loss:.4f}, gradients of {', '.join(sorted(grads))}; "
          f"{elapsed * 1000:.0f} ms ({64 / elapsed:,.0f} images/s; first call {compiled:.1f} s incl. compilation)")

    # Finite differences, float64, on sampled coordinates of the full-size network.
    net64 = Network.from_spec("seed004", dtype="float64", seed=0)
    x64, few = x[:2].astype(np.float64), labels[:2]
    _, grads64 = net64.loss_and_grads(x64, few)
    worst = 0.0
    for name in ("conv1.weight", "conv2.weight", "fc1.bias"):
        array = net64.params[name]
        index = tuple(int(rng.integers(0, size)) for size in array.shape)
        original = array[index]
        array[index] = original + 1e-5
        upper = net64.loss_and_grads(x64, few)[0]
        array[index] = original - 1e-5
        lower = net64.loss_and_grads(x64, few)[0]
        array[index] = original
        numeric = (upper - lower) / 2e-5
        worst = max(worst, abs(numeric - grads64[name][index]) / max(abs(numeric), 1e-3))
    print(f"central finite differences (float64) at sampled weights: largest relative difference {worst:.1e}")

    # A small network with stride, padding and dilation: kernels against the symbolic expansion.
    small = parse_spec(SMALL_SPEC)
    target = cache_dir() / f"{small.module_name}_{small.digest()}"
    if stale_files(render_package(small), target / small.module_name):
        generate_from_text(SMALL_SPEC, target)
    small_net = Network(small, load_kernels(small), dtype="float64", seed=1)
    xs = rng.standard_normal((2, 2, 5, 6))
    ys = np.array([0, 2])
    loss_small, grads_small = small_net.loss_and_grads(xs, ys)
    symbolic = symbolic_network_gradients(small, small_net.params, xs, ys)
    difference = max([abs(loss_small - symbolic["loss"])] +
                     [float(np.abs(grads_small[key] - symbolic[key]).max()) for key in grads_small])
    print(f"small network (stride 2x1, padding 1x0, dilation 1x2, max pool): generated kernels vs the symbolic "
          f"expansion, loss and every gradient: largest difference {difference:.1e}")
    return worst < 1e-5 and difference < 1e-10 and not stale


def generate_from_text(text: str, target) -> None:
    """Generate a spec given as TOML text into ``target`` (for the demo's small network)."""
    import tempfile
    from pathlib import Path

    from symcnn.codegen.package import generate

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "spec.toml"
        path.write_text(text, encoding="utf-8")
        generate([str(path)], target)
