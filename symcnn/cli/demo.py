"""``symcnn demo``: a guided tour of the toolkit, each step computed as it is shown.

Example:
    $ symcnn demo
"""

from __future__ import annotations

import re
import textwrap
import time

from sympy import Array

from symcnn.symbolic import ops
from symcnn.views import derivation as render
from symcnn.symbolic.adjoint import derive_gradient
from symcnn.symbolic.derive import LayerConfig, derive
from symcnn.checking.documents import REFERENCE_DOCUMENTS, by_document
from symcnn.checking.examples import EXAMPLE_LIST, POOL_INPUT, check
from symcnn.views.formula import general_formula
from symcnn.symbolic.tensors import element_name, indices_of, symbol_array, upstream_array
from symcnn.symbolic.verify import expand_gradient, mismatches

__all__ = ["run"]


#: Columns of the tour's lines: one screen wide.
WIDTH = 100


def _heading(number: int, text: str) -> None:
    print(f"\n{number}. {text}\n{'-' * (len(text) + 3)}")


def _say(text: str, indent: str = "") -> None:
    """A paragraph of the tour, wrapped to :data:`WIDTH`; a bracketed matrix like ``[a b; c d]`` stays on one line."""
    kept = re.sub(r"\[[^\]]*\]", lambda match: match.group(0).replace(" ", "\0"), text)
    print(textwrap.fill(kept, WIDTH, initial_indent=indent, subsequent_indent=indent, break_long_words=False,
                        break_on_hyphens=False).replace("\0", " "))


def _formula_lines(line: str) -> list[str]:
    """A general formula as ``symcnn formula`` prints it (one long line), broken for reading: the sum,
    then its bracket of conditions one per line, then the term."""
    head, bracket, rest = line.partition(" [")
    if not bracket:
        return textwrap.wrap(line, WIDTH, subsequent_indent="    ", break_long_words=False)
    conditions, _, term = rest.partition("] * ")
    parts = conditions.split(" and ")
    return ([head] + [f"    [{parts[0]}"] + [f"     and {part}" for part in parts[1:-1]]
            + [f"     and {parts[-1]}]"] + [f"    * {term}"])


def run() -> int:
    """Print the tour; return 1 when an example does not reproduce its document, else 0."""
    print("symcnn demo: the mathematics of convolutional networks, derived from one definition per layer\n")
    _say("symcnn reproduces five reference documents, tutorials on the mathematics of CNNs (not shipped with "
         "symcnn: each step below quotes what it checks):")
    for document in REFERENCE_DOCUMENTS:
        print(f"  {document.number}  {document.title}")

    _heading(1, "Document 002's convolution, derived by differentiation (3x3 input, 2x2 kernel)")
    _say("Document 002 takes a 3x3 input x00..x22, a 2x2 kernel w00..w11 and the upstream gradient dL/dY = "
         "[a b; c d], and writes y00 = x00*w00 + x01*w01 + x10*w10 + x11*w11, the four dL/dw and 4 of the 9 "
         "input-gradient entries, dL/dx00 = a*w00 to dL/dx11 = a*w11 + b*w10 + c*w01 + d*w00. symcnn "
         "differentiates the expanded forward pass and gets all of them:")
    print()
    print(render.as_text(derive(LayerConfig("conv2d", input_size=(3, 3), kernel=(2, 2), bias=False))))

    _heading(2, "Document 002's max pooling: gradient routing decided by the numbers (2x2 window, stride 1)")
    _say("The document max-pools [1 5 4; 9 2 1; 6 3 2] with 2x2 windows that overlap (stride 1) and routes each "
         "upstream value to its window's maximum: dL/dX = [0 b 0; a+c 0 0; 0 d 0].")
    print()
    config = LayerConfig("maxpool2d", input_size=(3, 3), kernel=(2, 2), stride=(1, 1))
    print(render.as_text(derive(config, values=Array([[POOL_INPUT]]))))

    _heading(3, "Beyond the documents: stride 2, padding 1, dilation 2, two channels")
    config = LayerConfig("conv2d", input_size=(5, 4), kernel=(2, 2), channels_in=2, stride=2, padding=1,
                         dilation=2, bias=True)
    result = derive(config)
    _say(render.describe(config))
    _say("With two input channels an input entry is named x<channel><row><column> (x011: channel 0, row 1, "
         "column 1), and dL/dx011 is the loss's gradient with respect to it. The output is 3x2 here, so the "
         "upstream gradient dL/dY has six entries, g00..g21 (gij = dL/dyij; document 002 names a 2x2 one a, b, c, d).",
         indent="  ")
    for name, key in (("dL/dx011", (0, 0, 1, 1)), ("dL/dx133", (0, 1, 3, 3)), ("dL/dx000", (0, 0, 0, 0))):
        print(f"  {name} = {result.gradients['grad_input'][key]}")
    print("  (x000 lies in no window of this stride and dilation, so its gradient is 0)")
    print(f"  dL/db0 = {result.gradients['grad_bias'][0]}")
    print("  (symcnn derive conv2d --input 5x4 --kernel 2 --channels-in 2 --stride 2 --padding 1 --dilation 2\n"
          "   prints every entry)")

    _heading(4, "The general formula, derived for any stride, padding and dilation, and its small expansion")
    view = general_formula("conv2d", "input")
    _say("Document 000 writes the input gradient with i = (k + p - m)/s, \"only if the division is integer\". "
         "Derived from the forward formula, in gather form: the bracket [...] is 1 where every condition holds "
         "(s_h | ... reads \"s_h divides ...\"; the range conditions are the ones document 000 leaves out).")
    print()
    header, formula, *sizes = view.text().splitlines()
    print("\n".join([header, *_formula_lines(formula), *sizes]))
    print("\nInstantiated at document 002's configuration (3x3 input, 2x2 kernel, stride 1, no padding):")
    arrays = {"input": symbol_array("x", (1, 1, 3, 3)), "weight": symbol_array("w", (1, 1, 2, 2))}
    parameters = {"stride_h": 1, "stride_w": 1, "padding_h": 0, "padding_w": 0, "dilation_h": 1, "dilation_w": 1}
    upstream = upstream_array((1, 1, 2, 2))
    expanded = expand_gradient(derive_gradient(ops.conv2d(bias=False), "input"), arrays, upstream, parameters)
    for index in indices_of(expanded.shape):
        print(f"  dL/d{element_name('x', index, expanded.shape)} = {expanded[index]}")
    proof = mismatches(ops.conv2d(bias=False), arrays, parameters)
    agreed = all(not wrong for wrong in proof.values())
    print(f"equal to the element-wise derivatives of section 1: {'yes' if agreed else 'NO'}\n"
          "  (the tests prove every op's formulas this way at 50+ configurations)")

    kernels_agree = _generated_kernels()
    trained = _training()

    _heading(7, "Every worked example of the reference documents, derived and compared")
    start = time.perf_counter()
    results = {example.name: check(example) for example in EXAMPLE_LIST}
    width = max(len(name) for name in results)
    for document, examples in by_document(EXAMPLE_LIST, lambda example: example.document):
        print(f"Document {document.number}: {document.title}")
        for example in examples:
            result = results[example.name]
            lead = f"  {example.name:<{width}}  {result.status:<8}  "
            title = textwrap.wrap(example.title, WIDTH - len(lead), break_long_words=False, break_on_hyphens=False)
            print(lead + title[0])
            print("".join(f"{' ' * len(lead)}{line}\n" for line in title[1:]), end="")
            for mismatch in result.mismatches:
                print(f"      {mismatch}")
    passed = sum(r.status == "ok" for r in results.values())
    print(f"\n{passed} of {len(results)} examples reproduce their documents exactly "
          f"({sum(r.checked for r in results.values())} values, {time.perf_counter() - start:.1f} s)")

    print("\nNext:")
    width = max(len(command) for command, _ in NEXT_STEPS)
    for command, what in NEXT_STEPS:
        print(f"  {command:<{width}}  {what}")
    return 0 if passed == len(results) and agreed and kernels_agree and trained else 1


#: Where to go from the tour: a command, and what it does.
NEXT_STEPS = (
    ("symcnn examples --check", "the worked examples, checked"),
    ("symcnn derive conv2d --input 3x3 --kernel 2 --steps", "each gradient entry as its chain rule"),
    ("symcnn formula conv2d --wrt weight", "a general gradient formula"),
    ("symcnn report --example conv_3x3_2x2 -o conv.pdf", "document 002's example as a PDF"),
    ("symcnn check FORMULA --against NAME|OP", "check a formula you wrote"),
    ("symcnn errata", "the documents' own formulas, checked"),
    ("symcnn train seed004", "train document 004's network on digits"),
    ("symcnn bench seed004", "the kernels against NumPy and PyTorch"),
)


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
          f"{seconds:.1f} s\n  (symcnn train digits --plot curves.png does the same, with checkpoints)")
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

    from symcnn.bench.bench import CALLS_PER_TIMING, SETTLE_SECONDS, median_seconds
    from symcnn.codegen.package import render_package, stale_files
    from symcnn.runtime.loader import cache_entry, load_kernels
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
    print(textwrap.indent(textwrap.dedent(body), "    "))

    net = Network.from_spec("seed004", seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 3, 32, 32)).astype(np.float32)
    labels = rng.integers(0, 10, 64)
    start = time.perf_counter()
    net.loss_and_grads(x[:1], labels[:1])  # compile (or load numba's cache)
    compiled = time.perf_counter() - start
    loss, grads = net.loss_and_grads(x, labels)
    print(f"\nbatch of 64: loss {loss:.4f}\n  gradients of {', '.join(sorted(grads))}")
    # Timed as `symcnn bench` times: a rest, an untimed call, back-to-back calls, the median of repeats
    # (a call after a rest would time the worker threads waking up, not the throughput bench reports).
    step = median_seconds(lambda: net.train_step(x, labels, lr=1e-4))
    print(f"a train step of 64 images (forward, every gradient, SGD update): {step * 1000:.1f} ms, "
          f"{64 / step:,.0f} images/s")
    _say(f"(the median of 5 timings of {CALLS_PER_TIMING} back-to-back steps, each after a {SETTLE_SECONDS:g} s "
         f"rest and one untimed step, as `symcnn bench seed004` times it; the first call took {compiled:.1f} s: "
         "numba compiling, or loading its cache)", indent="  ")

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
    target = cache_entry(small)
    if stale_files(render_package(small), target / small.module_name):
        generate_from_text(SMALL_SPEC, target)
    small_net = Network(small, load_kernels(small), dtype="float64", seed=1)
    xs = rng.standard_normal((2, 2, 5, 6))
    ys = np.array([0, 2])
    loss_small, grads_small = small_net.loss_and_grads(xs, ys)
    symbolic = symbolic_network_gradients(small, small_net.params, xs, ys)
    difference = max([abs(loss_small - symbolic["loss"])] +
                     [float(np.abs(grads_small[key] - symbolic[key]).max()) for key in grads_small])
    print(f"small network (stride 2x1, padding 1x0, dilation 1x2, max pool): generated kernels vs the symbolic\n"
          f"  expansion, loss and every gradient: largest difference {difference:.1e}")
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
