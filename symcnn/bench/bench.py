"""``symcnn bench``: generated kernels, NumPy (im2col + BLAS) and PyTorch, side by side in one run.

Every measurement is interleaved across the implementations (one repeat of each in turn, so that
a noisy neighbour slows all of them alike), each timed call after a short rest (so that no other
implementation's worker threads are still spinning) and made of a few back-to-back calls (the
steady state of a training loop), and reported as the median of the repeats, with the ratios to
PyTorch and their range: the lowest and highest of the ratios repeat by repeat. FLOP counts are
the multiply-adds of the network's convolutions and dense layers, times 2; a train step counts three
times the forward pass (forward, input and weight gradients).

Example:
    $ symcnn bench seed004 --batch 64 --threads 2 --repeat 7
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from symcnn.bench.numpy_network import NumpyNetwork
from symcnn.bench.torch_twin import torch_model
from symcnn.runtime.gradient_flow import tensors_needing_gradients
from symcnn.runtime.loader import load_kernels
from symcnn.runtime.network import Network
from symcnn.spec import LayerSpec, NetworkSpec, load_spec, with_kernels

__all__ = ["forward_flops", "train_step_flops", "layer_flops", "torch_model", "torch_passes", "run_benchmark",
           "BenchResult", "machine_description", "sgemm_gflops", "mean_seconds", "median_seconds", "check_limits",
           "memory_per_image", "format_profile", "format_range"]


def layer_flops(layer: LayerSpec) -> int:
    """Floating-point operations of one image through ``layer``'s forward pass: 2 per multiply-add of its
    products (convolutions, transposed convolutions and dense layers; every other layer 0, biases not counted).
    Its input gradient and its weight gradient each do the same products."""
    if layer.kind == "conv2d":
        channels_out, height, width = layer.output_shape
        kernel_h, kernel_w = layer.settings["kernel"]
        channels_in = layer.input_shape[0] // layer.settings.get("groups", 1)  # each output reads its group's
        return 2 * channels_out * height * width * channels_in * kernel_h * kernel_w
    if layer.kind == "conv_transpose2d":  # each input element times a kernel of every output channel
        kernel_h, kernel_w = layer.settings["kernel"]
        return 2 * int(np.prod(layer.input_shape)) * layer.output_shape[0] * kernel_h * kernel_w
    if layer.kind == "dense":
        return 2 * layer.output_shape[0] * layer.input_shape[0]
    return 0


def forward_flops(spec: NetworkSpec) -> int:
    """Floating-point operations of one image's forward pass (2 per multiply-add)."""
    return sum(layer_flops(layer) for layer in spec.layers)


def train_step_flops(spec: NetworkSpec) -> int:
    """Floating-point operations of one image's train step: each layer's forward pass, its weight gradient and
    its input gradient, but where no gradient of its input is needed (the network's input, or a tensor with no
    parameter before it: :func:`~symcnn.runtime.gradient_flow.tensors_needing_gradients`), which neither
    symcnn's train step nor PyTorch's computes.

    >>> spec = load_spec("seed004")
    >>> first = layer_flops(spec.layers[0])
    >>> train_step_flops(spec) == 3 * forward_flops(spec) - first
    True
    """
    needed = tensors_needing_gradients(spec, input_gradient=False)
    return sum(layer_flops(layer) * (3 if any(source in needed for source in layer.inputs) else 2)
               for layer in spec.layers)


#: At most this many threads per logical core: more only oversubscribe the cores, and a huge count
#: makes the thread pools allocate until memory runs out.
THREADS_PER_CORE = 4


def memory_per_image(spec: NetworkSpec) -> int:
    """Bytes one image of a batch takes in a benchmark run (an estimate): each of the three
    implementations keeps every layer's input and output and a gradient of each (float32), and the
    NumPy baseline its im2col columns (the columns, their reordered copy and their gradient)."""
    activations = sum(_size(layer.input_shape) + _size(layer.output_shape) for layer in spec.layers)
    columns = sum(layer.input_shape[0] * layer.settings["kernel"][0] * layer.settings["kernel"][1]
                  * _size(layer.output_shape[1:]) for layer in spec.layers if layer.kind == "conv2d")
    return 4 * (3 * 2 * activations + 3 * columns)


def _size(shape) -> int:
    return int(np.prod(shape))


def _machine_memory() -> Optional[int]:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):  # not a POSIX system that says
        return None


def check_limits(spec: NetworkSpec, batch: int, threads: int) -> None:
    """Refuse, before any work, a thread count over :data:`THREADS_PER_CORE` per logical core and a
    batch whose estimated memory (:func:`memory_per_image`) exceeds half the machine's memory.

    >>> check_limits(load_spec("digits"), batch=64, threads=2)
    >>> check_limits(load_spec("digits"), batch=64, threads=10**5)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: threads: must be at most ... (4 per logical core, ... here), got 100000
    """
    for name, value in (("batch", batch), ("threads", threads)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: must be an integer >= 1, got {value!r}")
    cores = os.cpu_count() or 1
    if threads > THREADS_PER_CORE * cores:
        raise ValueError(f"threads: must be at most {THREADS_PER_CORE * cores} ({THREADS_PER_CORE} per logical core, "
                         f"{cores} here), got {threads}")
    memory, per_image = _machine_memory(), memory_per_image(spec)
    if memory and batch * per_image > memory // 2:
        raise ValueError(f"batch: {batch} images of {spec.name} need about {batch * per_image / 2**30:,.1f} GiB "
                         f"(estimated), more than half this machine's {memory / 2**30:.1f} GiB; "
                         f"at most {memory // 2 // per_image}")


def machine_description() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} logical cores, Python {platform.python_version()}, NumPy {np.__version__}"


def sgemm_gflops(size: int = 1024, repeat: int = 5) -> float:
    """The machine's measured float32 matrix-multiply rate (NumPy's BLAS), median of ``repeat``."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    a @ b
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * size ** 3 / statistics.median(times) / 1e9


@dataclass
class BenchResult:
    spec: str
    batch: int
    threads: int
    repeat: int
    machine: str
    sgemm_gflops: float
    forward_flops_per_image: int
    train_step_flops_per_image: int  # train_step_flops: a forward pass, its weight gradients and its input gradients
    # implementation -> metric -> list of seconds
    seconds: dict = field(default_factory=dict)
    profile: dict = field(default_factory=dict)
    left_out: dict = field(default_factory=dict)  # implementation -> why it was not measured

    def median(self, implementation: str, metric: str) -> Optional[float]:
        values = self.seconds.get(implementation, {}).get(metric)
        return statistics.median(values) if values else None

    def gflops(self, implementation: str, metric: str) -> float:
        """``implementation``'s median rate in ``metric`` (``forward`` or ``train_step``): the products of its
        convolutions and dense layers, in GFLOP/s."""
        per_image = {"forward": self.forward_flops_per_image, "train_step": self.train_step_flops_per_image}[metric]
        return self.batch * per_image / self.median(implementation, metric) / 1e9

    def repeat_ratios(self, implementation: str, metric: str) -> list[float]:
        """``implementation``'s ratios to PyTorch repeat by repeat: PyTorch's seconds over its own in the same
        interleaved repeat (empty without PyTorch). A noisy neighbour that slows one repeat slows both sides of
        its ratio, so their range shows how far the machine let the ratio wander, which the ratio of the
        medians alone does not; that ratio always lies within their range.

        >>> result = BenchResult("net", 64, 2, 3, "cpu", 100.0, 10**6, 3 * 10**6)
        >>> result.seconds = {"generated": {"forward": [1.0, 1.0, 2.0]}, "pytorch": {"forward": [2.0, 3.0, 2.0]}}
        >>> result.repeat_ratios("generated", "forward")
        [2.0, 3.0, 1.0]
        """
        ours, theirs = (self.seconds.get(name, {}).get(metric) or [] for name in (implementation, "pytorch"))
        return [reference / own for own, reference in zip(ours, theirs)]

    def as_dict(self) -> dict:
        rows = {}
        for implementation in self.seconds:
            forward = self.median(implementation, "forward")
            step = self.median(implementation, "train_step")
            latency = self.median(implementation, "train_step_batch1")
            rows[implementation] = {
                "forward_images_per_second": self.batch / forward,
                "forward_gflops": self.gflops(implementation, "forward"),
                "train_step_images_per_second": self.batch / step,
                "train_step_gflops": self.gflops(implementation, "train_step"),
                "train_step_batch1_ms": 1000 * latency,
            }
        ratios = {}
        if "pytorch" in rows:
            for implementation, row in rows.items():
                ratios[implementation] = {
                    "forward": row["forward_images_per_second"] / rows["pytorch"]["forward_images_per_second"],
                    "train_step": row["train_step_images_per_second"] /
                    rows["pytorch"]["train_step_images_per_second"],
                    "train_step_batch1": rows["pytorch"]["train_step_batch1_ms"] / row["train_step_batch1_ms"],
                }
        # Each ratio's range over the repeats (repeat_ratios), beside the ratio of the medians above
        ranges = {}
        for implementation in ratios:
            each = {metric: self.repeat_ratios(implementation, metric) for metric in ratios[implementation]}
            ranges[implementation] = {metric: [min(values), max(values)] for metric, values in each.items()}
        # What running the kernels inside PyTorch costs over symcnn's own Network (above 0: slower)
        overhead = {metric: self.median("in-pytorch", metric) / self.median("generated", metric) - 1
                    for metric in ("forward", "train_step", "train_step_batch1")} if "in-pytorch" in rows else {}
        return {"spec": self.spec, "batch": self.batch, "threads": self.threads, "repeat": self.repeat,
                 "machine": self.machine, "sgemm_gflops": self.sgemm_gflops,
                 "forward_gflop_per_image": self.forward_flops_per_image / 1e9,
                 "train_step_gflop_per_image": self.train_step_flops_per_image / 1e9,
                 "results": rows, "ratios_to_pytorch": ratios, "ratio_ranges_to_pytorch": ranges,
                 "in_pytorch_overhead": overhead,
                 "left_out": self.left_out, "profile": self.profile}


def _implementations(spec_name: str, include_torch: bool, in_pytorch: bool = True, winograd: bool = False):
    """name -> (forward(x), train_step(x, labels)) closures over independent parameter copies, and
    implementation -> why it was left out."""
    net = Network.from_spec(spec_name, seed=0)
    # forward: inference, in evaluation mode (dropout the identity); the train step in training mode
    left_out = {}
    implementations = {"generated": _passes(net)}
    if winograd:
        variant = _winograd_network(net)
        if variant is None:
            left_out["winograd"] = ("no layer takes Winograd's F(4x4, 3x3) (3x3 stride-1 convolutions of 64 or more "
                                    "output channels: docs/kernels.md)")
        else:
            implementations["winograd"] = _passes(variant)
    reference = NumpyNetwork(net.spec, {name: value.copy() for name, value in net.params.items()})
    implementations["numpy"] = (reference.forward, lambda x, y: reference.train_step(x, y, lr=1e-4))
    if include_torch:
        model = torch_model(net.spec, {name: value.copy() for name, value in net.params.items()})
        implementations["pytorch"] = torch_passes(model)
        if in_pytorch:
            try:
                implementations["in-pytorch"] = _inside_pytorch(net)
            except ValueError as error:  # a layer symcnn.torch does not offer yet (batch norm, dropout)
                left_out["in-pytorch"] = str(error)
    return net, implementations, left_out


def _passes(net: Network):
    """``(forward(x), train_step(x, labels))`` of a generated network: inference in evaluation mode."""
    return (lambda x: net.forward(x, training=False), lambda x, y: net.train_step(x, y, lr=1e-4))


def _winograd_network(net: Network) -> Optional[Network]:
    """``net``'s spec with ``[kernels] winograd = true``, its parameters copied, or ``None`` where no kernel of
    it takes Winograd (the same kernels)."""
    spec = with_kernels(net.spec, winograd=True)
    package = load_kernels(spec)
    modules = (importlib.import_module(f"{package.__name__}.{module}") for module in package.MODULES)
    if not any(name.endswith("_winograd") for module in modules for name in vars(module)):
        return None
    variant = Network(spec, package, seed=0)
    for name, value in net.params.items():
        variant.params[name][...] = value
    return variant


def _inside_pytorch(net: Network):
    """The generated kernels inside PyTorch (:mod:`symcnn.torch`): ``from_spec``'s module, its forward and its
    train step with ``torch.optim.SGD``, as a PyTorch user would run them (each pass one autograd node:
    :mod:`symcnn.torch.whole_pass`)."""
    import torch

    from symcnn.torch import from_spec

    model = from_spec(net.spec, seed=0)
    # the parameters and batch norm's running statistics (buffers), so that both start from one state
    state = {**net.params, **net.buffers}
    model.load_state_dict({name: torch.from_numpy(np.array(value, copy=True)) for name, value in state.items()})
    return torch_passes(model)


def torch_passes(model, lr: float = 1e-4):
    """``(forward(x), train_step(x, labels))`` of a PyTorch module on NumPy arrays, as a PyTorch user runs
    them: inference in evaluation mode without autograd (as the others': batch norm's running statistics,
    no dropout); a train step with ``torch.optim.SGD`` (``zero_grad(set_to_none=True)``, cross-entropy,
    ``backward``, ``step``) in training mode, returning the loss.

    Example (needs torch)::

        forward, step = torch_passes(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3)))
        logits = forward(np.ones((2, 4), np.float32))       # shape (2, 3)
        loss = step(np.ones((2, 4), np.float32), np.array([0, 2]))
    """
    import torch

    optimizer = torch.optim.SGD(model.parameters(), lr=lr)

    def forward(x):
        model.eval()
        with torch.no_grad():
            logits = model(torch.from_numpy(x)).numpy()
        model.train()
        return logits

    def step(x, y):
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y))
        loss.backward()
        optimizer.step()
        return loss.item()

    return forward, step


#: Seconds of rest before each timed call. OpenMP and BLAS worker threads spin for a while after a
#: parallel region; without the rest, each implementation ran while the previous one's threads
#: still occupied the two cores (measured: the generated train step 3,683 images/s right after
#: PyTorch's, 4,209 after a pause; the NumPy baseline's BLAS threads slowed both).
SETTLE_SECONDS = 0.3


#: Each timing is this many back-to-back calls (their mean): the steady state a training loop sees,
#: its worker threads awake.
CALLS_PER_TIMING = 5


def mean_seconds(function: Callable, *arguments) -> float:
    """One timing: a rest of :data:`SETTLE_SECONDS`, one untimed call, then the mean of
    :data:`CALLS_PER_TIMING` back-to-back calls.

    The untimed call: after a rest of 50 ms or more, the first two parallel regions of a process on this
    machine class take 4-7 ms each whatever their work (measured with a bare numba ``prange`` loop, and
    gone when OpenMP binds its threads to cores: the woken worker waits on its master's core until the
    scheduler moves it; ``docs/bench/wake_penalty.py``). That is a cost of waking, not of the
    implementation's steady state, and it added about 2 ms to each of 5 calls of a 1 ms pass."""
    time.sleep(SETTLE_SECONDS)
    function(*arguments)
    start = time.perf_counter()
    for _ in range(CALLS_PER_TIMING):
        function(*arguments)
    return (time.perf_counter() - start) / CALLS_PER_TIMING


def median_seconds(function: Callable, *arguments, repeat: int = 5) -> float:
    """Seconds per call of ``function(*arguments)``, timed as ``symcnn bench`` times: the median of
    ``repeat`` timings, each after a rest (:data:`SETTLE_SECONDS`), each the mean of
    :data:`CALLS_PER_TIMING` back-to-back calls."""
    return statistics.median(mean_seconds(function, *arguments) for _ in range(repeat))


def run_benchmark(spec_name: str, batch: int = 64, threads: int = 2, repeat: int = 7,
                  profile: bool = False, include_torch: Optional[bool] = None,
                  progress: Optional[Callable[[str], None]] = None, in_pytorch: bool = True,
                  winograd: bool = False) -> BenchResult:
    """Measure forward and train-step throughput and batch-1 train-step latency of each implementation.
    ``progress``, when given, is told each phase as it starts (warming up, each repeat, profiling);
    ``in_pytorch=False`` leaves out the generated kernels run as PyTorch operators; ``winograd`` adds them with
    the spec's ``[kernels] winograd = true`` (a row of its own, the same parameters)."""
    say = progress or (lambda phase: None)
    check_limits(load_spec(spec_name), batch, threads)  # before any import or allocation
    import numba

    torch = None
    if include_torch is not False:
        try:
            import torch
        except ImportError:
            torch = None
    include_torch = torch is not None
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    if torch is not None:
        torch.set_num_threads(threads)
    net, implementations, left_out = _implementations(spec_name, include_torch, in_pytorch, winograd)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, *net.spec.input_shape)).astype(np.float32)
    labels = rng.integers(0, net.spec.classes, batch).astype(np.int64)
    x1, labels1 = np.ascontiguousarray(x[:1]), np.ascontiguousarray(labels[:1])
    say("warming up (compiles the kernels on first use)")
    for forward, step in implementations.values():  # warm-up: compilation, caches, allocator
        forward(x), step(x, labels), step(x1, labels1)
    result = BenchResult(net.spec.name, batch, threads, repeat, machine_description(), sgemm_gflops(),
                         forward_flops(net.spec), train_step_flops(net.spec), left_out=left_out)
    for name in implementations:
        result.seconds[name] = {"forward": [], "train_step": [], "train_step_batch1": []}
    for index in range(repeat):  # interleaved: each repeat times every implementation in turn
        say(f"timing, repeat {index + 1} of {repeat}")
        for name, (forward, step) in implementations.items():
            result.seconds[name]["forward"].append(mean_seconds(forward, x))
            result.seconds[name]["train_step"].append(mean_seconds(step, x, labels))
            result.seconds[name]["train_step_batch1"].append(mean_seconds(step, x1, labels1))
    if profile:
        say("profiling the train step's kernels")
        result.profile = profile_train_step(net, x, labels, repeat)
    return result


def profile_train_step(net: Network, x, labels, repeat: int) -> dict:
    """Seconds (median over repeats) and GFLOP/s of each generated kernel in one train step."""
    runs = []
    for _ in range(repeat):
        net.profile = {}
        net.loss_and_grads(x, labels, input_gradient=False)  # as a train step: no input gradient
        runs.append(net.profile)
    net.profile = None
    flops = _kernel_flops(net.spec, x.shape[0])
    # A fused kernel does its layer's multiply-adds (a convolution's storing the ReLU after it; an input gradient's)
    fused = [*((f"{layer}_forward", kernel) for layer, (_, kernel) in net._trainable[True].items()),
             *((f"{reader}_grad_input", kernel) for reader, (_, kernel) in net._fused.items())]
    flops |= {kernel: flops[own] for own, kernel in fused if own in flops}
    seconds = {kernel: statistics.median(run[kernel] for run in runs) for kernel in runs[0]}
    report = {kernel: {"ms": 1000 * spent, "gflops": flops[kernel] / spent / 1e9 if flops.get(kernel) else None}
              for kernel, spent in seconds.items()}
    # a view of its argument instead of a call: no time to measure
    return report | {kernel: {"ms": 0.0, "gflops": None, "view": True} for kernel in net.reshapes}


def _kernel_flops(spec: NetworkSpec, batch: int) -> dict:
    flops = {}
    for layer in spec.layers:
        count = batch * layer_flops(layer)
        if count:
            for kernel in ("forward", "grad_input", "grad_weight", "grad_weight_and_bias"):
                flops[f"{layer.label}_{kernel}"] = count
    return flops


def format_report(result: BenchResult) -> str:
    data = result.as_dict()
    lines = [f"symcnn bench {result.spec}: batch {result.batch}, {result.threads} threads, median of {result.repeat} "
             f"interleaved repeats",
             f"machine: {result.machine}; measured sgemm (NumPy, 1024^3, float32): {result.sgemm_gflops:.0f} GFLOP/s",
             f"forward pass: {result.forward_flops_per_image / 1e6:.3g} MFLOP per image, train step "
             f"{result.train_step_flops_per_image / 1e6:.3g} (the products of convolutions and dense layers; a train "
             "step's weight and input gradients each do a forward pass's, but none where no gradient of its input is "
             "needed)", "",
             f"{'':<10} {'forward img/s':>14} {'GFLOP/s':>8} {'train img/s':>12} {'GFLOP/s':>8} {'batch-1 ms':>11}"]
    for name, row in data["results"].items():
        lines.append(f"{name:<10} {row['forward_images_per_second']:>14,.0f} {row['forward_gflops']:>8.1f} "
                     f"{row['train_step_images_per_second']:>12,.0f} {row['train_step_gflops']:>8.1f} "
                     f"{row['train_step_batch1_ms']:>11.2f}")
    if data["ratios_to_pytorch"]:
        lines += ["", "ratio to PyTorch (above 1: faster than PyTorch; in brackets the lowest and highest of the "
                      "ratios repeat by repeat)"]
        for name, ratio in data["ratios_to_pytorch"].items():
            if name != "pytorch":
                ranges = data["ratio_ranges_to_pytorch"][name]
                lines.append(f"{name:<10} " + "  ".join(
                    f"{title} {ratio[metric]:.2f}x [{format_range(*ranges[metric])}]"
                    for metric, title in (("forward", "forward"), ("train_step", "train step"),
                                          ("train_step_batch1", "batch-1 train step"))))
    else:
        lines += ["", "PyTorch is not installed: no ratios (pip install torch==2.13.0)"]
    if data["in_pytorch_overhead"]:
        overhead = data["in_pytorch_overhead"]
        lines += ["", "in-pytorch: the generated kernels inside PyTorch (symcnn.torch.from_spec's module; train step "
                      "with torch.optim.SGD); time over the generated Network's: "
                      f"forward {overhead['forward']:+.0%}, train step {overhead['train_step']:+.0%}, "
                      f"batch-1 train step {overhead['train_step_batch1']:+.0%}"]
    for name, reason in result.left_out.items():
        lines += ["", f"{name}: not measured: {reason}"]
    if result.profile:
        lines += ["", "generated train step, per kernel (median):", format_profile(result.profile)]
    return "\n".join(lines)


def format_range(lower: float, upper: float) -> str:
    """Two ratios as a range, ``1.41-1.66``.

    >>> format_range(1.4123, 1.66)
    '1.41-1.66'
    """
    return f"{lower:.2f}-{upper:.2f}"


def format_profile(profile: dict) -> str:
    """A :func:`profile_train_step` report, one line per kernel, the slowest first."""
    lines = []
    for kernel, row in sorted(profile.items(), key=lambda item: -item[1]["ms"]):
        not_timed = "a view, not called" if row.get("view") else ""
        rate = f"{row['gflops']:.1f} GFLOP/s" if row["gflops"] else not_timed
        lines.append(f"  {kernel:<28} {row['ms']:>8.2f} ms  {rate}")
    return "\n".join(lines)


def as_json(result: BenchResult) -> str:
    return json.dumps(result.as_dict(), indent=2)
