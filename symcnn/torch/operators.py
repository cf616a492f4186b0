"""A network's generated kernels as PyTorch operators (``torch.library``: a schema, a CPU kernel, a fake one).

Every kernel of a layer becomes one operator, named after the spec, its digest and the kernel
(``symcnn::digits_dd56dcf3dbd32cc8_conv1_forward``): its inputs are the kernel's input arrays, its
outputs the arrays the kernel writes (``kernels.ARGUMENTS`` lists both, outputs last). A layer's
forward operator carries the gradient (an autograd kernel made of its gradient operators); a gradient
operator's autograd kernel refuses to be differentiated (symcnn differentiates once); every operator has
a fake implementation (``register_fake``) for ``torch.compile`` and ``opcheck``. A layer that joins
several tensors (a graph spec's add or concat) takes them as ``x, x2, ...`` and has a gradient operator
for each (``grad_input``, ``grad_input2``, ...).

Why not ``torch.library.custom_op``: its Python layers (an autograd kernel on every operator, a
redispatch, output checks) cost 20-30 microseconds a call, more than many kernels at small batches; the
lower-level registration here costs a third of that (measured: ``seed004``'s batch-1 train step inside
PyTorch took 2.1 ms of CPU time with custom_op, 1.3 ms now, the Network's 0.45 ms). What a call checks is
worked out once per kernel (:class:`_KernelCall`), and outputs come from :data:`symcnn.torch.outputs.OUTPUTS`,
which reuses an output's memory once no tensor refers to it.

A layer with an evaluation-mode formula (batch norm) has a second set, of its ``_eval_`` kernels
(``layer_operators(net, layer, evaluation=True)``), which read the running statistics; its training
mode's running-statistics update is an operator too (:func:`running_statistics_operator`, PyTorch's
rule, mutating the buffers). A dropout's operators take its mask as an argument (``x, mask``), drawn
by :func:`draw_mask`, symcnn's counter-based generator (:mod:`symcnn.runtime.masks`) as an operator.

Tensors reach the kernels without a copy (``tensor.numpy()`` shares the memory); a non-contiguous
tensor is made contiguous first. A tensor that is not on the CPU, not of the layer's shape or not of
one float dtype is refused with a ``ValueError`` before any kernel runs: numba does not bounds-check.

Example:
    >>> import torch
    >>> from symcnn.runtime.network import Network
    >>> net = Network.from_spec("digits")
    >>> conv1 = layer_operators(net, net.spec.layers[0])
    >>> x, weight, bias = torch.zeros(2, 1, 8, 8), torch.zeros(16, 1, 3, 3), torch.ones(16)
    >>> conv1(x, weight, bias).shape
    torch.Size([2, 16, 8, 8])
    >>> conv1(torch.zeros(2, 1, 9, 9), weight, bias)
    Traceback (most recent call last):
    ...
    ValueError: conv1: x: expected a tensor of shape (N, 1, 8, 8), got (2, 1, 9, 9)
"""

from __future__ import annotations

import re
from typing import Callable, NamedTuple, Optional

import numpy as np
import torch

from symcnn.registry import input_role
from symcnn.runtime.buffers import update_running_statistics
from symcnn.runtime.masks import draw_mask as draw_mask_array
from symcnn.runtime.network import Network, switch_dtype
from symcnn.runtime.threads import kernel_threads
from symcnn.spec import LayerSpec
from symcnn.torch.autograd import differentiable_kernel, not_differentiable_kernel
from symcnn.torch.outputs import OUTPUTS

__all__ = ["LayerOperators", "KernelSignature", "layer_operators", "running_statistics_operator", "draw_mask",
           "FLOAT_DTYPES"]

NAMESPACE = "symcnn"
FLOAT_DTYPES = (torch.float32, torch.float64)
_TORCH_DTYPES = {np.dtype(np.int8): torch.int8, np.dtype(np.int32): torch.int32}
_NUMPY_DTYPES = {torch.float32: np.dtype(np.float32), torch.float64: np.dtype(np.float64),
                 torch.int8: np.dtype(np.int8), torch.int32: np.dtype(np.int32)}

#: Each kernel argument: whether it has the batch axis, and which shape it has. One entry per name that
#: generated kernels use; an op whose kernels take another array (a buffer, ...) adds its entry here.
#: (An add's or concat's further inputs, ``x2``, ``grad_input2``, ..., are shaped like their input:
#: :func:`_input_number`.)
BATCHED_LIKE_INPUT = ("x", "grad_input")
BATCHED_LIKE_OUTPUT = ("out", "grad_output", "switch")
MASKS = ("mask",)  # a dropout's mask: shaped like its input, never differentiated
_FURTHER_INPUT = re.compile(r"(?:x|grad_input)([2-9]|[1-9][0-9]+)\Z")


def _input_number(name: str) -> Optional[int]:
    """Which of the layer's inputs a kernel argument is, or its gradient (from 1), else None.

    >>> _input_number("x"), _input_number("grad_input3"), _input_number("weight")
    (1, 3, None)
    """
    if name in BATCHED_LIKE_INPUT:
        return 1
    further = _FURTHER_INPUT.match(name)
    return int(further.group(1)) if further else None


def _batched(name: str) -> bool:
    return name in BATCHED_LIKE_OUTPUT or name in MASKS or _input_number(name) is not None


class KernelSignature(NamedTuple):
    """One kernel's arrays: the ones it reads, then the ones it writes."""

    kernel: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    @classmethod
    def of(cls, kernel: str, arguments: tuple[str, ...]) -> "KernelSignature":
        """A forward kernel writes ``out`` and what follows it (a pool's ``switch``); a gradient
        kernel its last argument."""
        cut = arguments.index("out") if kernel.endswith("_forward") else len(arguments) - 1
        return cls(kernel, tuple(arguments[:cut]), tuple(arguments[cut:]))


class LayerOperators(NamedTuple):
    """A layer's operators: ``forward(x, *parameters) -> out`` or ``(out, *saved)`` (a pool's switch),
    differentiable in ``x`` and the parameters, and its gradient operators by what they differentiate
    (``x``, ``weight``, ...). Calling it gives the output alone."""

    layer: LayerSpec
    forward: Callable
    gradients: dict[str, Callable]
    signatures: dict[str, KernelSignature]  # by kernel name
    reshape: bool = False  # the forward kernel copies its input in row-major order (checked when generated)
    evaluation: bool = False  # the layer's evaluation-mode kernels (``bn1_eval_forward``, ...)

    @property
    def prefix(self) -> str:
        """What the names of these operators' kernels start with: ``bn1_``, or ``bn1_eval_``."""
        return _prefix(self.layer.label, self.evaluation)

    def __call__(self, *tensors: torch.Tensor) -> torch.Tensor:
        """The layer's output from its input (or an add's or concat's inputs) and its parameters, without
        what its forward operator saves for the gradient. A layer whose kernel only reshapes
        (``kernels.RESHAPES``, a flatten) is a view, as in the Network: no copy."""
        if self.reshape:
            self.check(*tensors)
            return tensors[0].reshape(tensors[0].shape[0], *self.layer.output_shape)
        result = self.forward(*tensors)
        return result[0] if isinstance(result, tuple) else result

    def check(self, *tensors: torch.Tensor) -> None:
        """The checks of a call on these tensors (the first arguments of the forward operator: shape, dtype,
        device), without running a kernel: for a layer that passes its input on (a dropout in evaluation mode)."""
        _CALLS[self.forward.name()].check(tensors)

    def gradient_signature(self, name: str) -> KernelSignature:
        """The kernel behind ``gradients[name]`` (``x``: ``conv1_grad_input``; ``weight``: ``conv1_grad_weight``;
        an add's ``x2``: ``sum_grad_input2``)."""
        return self.signatures[_gradient_kernel(self.prefix, name)]

    @property
    def parameters(self) -> tuple[str, ...]:
        """The forward operator's inputs after the layer's input tensors: ``("weight", "bias")``, none, a
        dropout's ``("mask",)``, or in evaluation mode a batch norm's ``(..., "running_mean", "running_var")``."""
        return tuple(name for name in self.signatures[f"{self.prefix}forward"].inputs
                     if _input_number(name) is None)


_LIBRARY = torch.library.Library(NAMESPACE, "FRAGMENT")  # the kernels' operators (kept: dropping it unregisters them)
_OPERATORS: dict[str, Callable] = {}  # qualified name -> operator: torch.library registers a name once
_CALLS: dict[str, "_KernelCall"] = {}  # qualified name -> its CPU implementation
_LAYERS: dict[str, "LayerOperators"] = {}  # qualified forward name -> its layer's operators, autograd registered


def _shape_of(layer: LayerSpec, name: str, batch) -> tuple:
    number = 1 if name in MASKS else _input_number(name)
    if number is not None:
        return (batch, *layer.input_shapes[number - 1])
    if name in BATCHED_LIKE_OUTPUT:
        return (batch, *layer.output_shape)
    role = name.removeprefix("grad_")
    shapes = {**layer.parameter_shapes(), **layer.buffer_shapes()}  # a buffer: the running statistics
    if f"{layer.name}.{role}" not in shapes:
        raise ValueError(f"{layer.label}: no PyTorch operator for a kernel argument named {name!r}")
    return shapes[f"{layer.name}.{role}"]


def _dtype_of(layer: LayerSpec, name: str, float_dtype: torch.dtype) -> torch.dtype:
    return _TORCH_DTYPES[switch_dtype(layer)] if name == "switch" else float_dtype


def _check(layer: LayerSpec, signature: KernelSignature, tensors: tuple) -> tuple:
    """The float dtype and batch size of a call, after checking every input tensor."""
    first = signature.inputs[0]
    float_dtype = tensors[0].dtype if first != "switch" else tensors[1].dtype
    if float_dtype not in FLOAT_DTYPES:
        raise ValueError(f"{layer.label}: {first}: expected a float32 or float64 tensor, "
                         f"got {str(float_dtype).removeprefix('torch.')}")
    batched = [tensor for name, tensor in zip(signature.inputs, tensors) if _batched(name)]
    batch = batched[0].shape[0] if batched and batched[0].dim() > 0 else 0
    for name, tensor in zip(signature.inputs, tensors):
        if not isinstance(tensor, torch.Tensor):
            raise ValueError(f"{layer.label}: {name}: expected a tensor, got {type(tensor).__name__}")
        if tensor.device.type != "cpu":
            raise ValueError(f"{layer.label}: {name}: the generated kernels run on the CPU, got a tensor on "
                             f"{tensor.device} (move it with .cpu())")
        expected = _dtype_of(layer, name, float_dtype)
        if tensor.dtype != expected:
            raise ValueError(f"{layer.label}: {name}: expected a {str(expected).removeprefix('torch.')} tensor "
                             f"(as {first}), got {str(tensor.dtype).removeprefix('torch.')}")
        shape = _shape_of(layer, name, batch)
        batch_axis = _batched(name)
        if tuple(tensor.shape) != tuple(shape) or (batch_axis and tensor.shape[0] < 1):
            shown = ", ".join(map(str, ("N", *shape[1:]) if batch_axis else shape))
            raise ValueError(f"{layer.label}: {name}: expected a tensor of shape ({shown}"
                             f"{',' if len(shape) == 1 else ''}), got {tuple(tensor.shape)}")
    return float_dtype, batch


class _KernelCall:
    """One kernel as its operator's CPU implementation, with what a call checks worked out once: each tensor's
    shape (after the batch axis where it has one) and dtype, and the order of the kernel's arguments. A call
    on tensors that do not fit goes through :func:`_check`, which says what is wrong."""

    def __init__(self, net: Network, layer: LayerSpec, signature: KernelSignature):
        self.layer, self.signature, self.function = layer, signature, net.kernel(signature.kernel)
        # per input and output: (has the batch axis, its shape without it (else the whole shape), is a switch)
        self.inputs = tuple(self._expected(name) for name in signature.inputs)
        self.outputs = tuple(self._expected(name) for name in signature.outputs)
        self.float_input = 1 if signature.inputs[0] == "switch" else 0
        self.batch_input = next((index for index, name in enumerate(signature.inputs) if _batched(name)), None)
        self.switch_dtype = _TORCH_DTYPES[switch_dtype(layer)]
        position = {name: index for index, name in enumerate(signature.inputs + signature.outputs)}
        self.order = tuple(position[name] for name in net.kernels.ARGUMENTS[signature.kernel])

    def _expected(self, name: str) -> tuple[bool, tuple, bool]:
        batched = _batched(name)
        shape = tuple(_shape_of(self.layer, name, 0))
        return batched, shape[1:] if batched else shape, name == "switch"

    def _fits(self, tensors: tuple, float_dtype: torch.dtype, batch: int) -> bool:
        if float_dtype not in FLOAT_DTYPES or (self.batch_input is not None and batch < 1):
            return False
        for tensor, (batched, shape, switch) in zip(tensors, self.inputs):
            if (not isinstance(tensor, torch.Tensor) or not tensor.is_cpu
                    or tensor.dtype != (self.switch_dtype if switch else float_dtype)):
                return False
            if tensor.shape != ((batch, *shape) if batched else shape):
                return False
        return True

    def check(self, tensors: tuple) -> tuple[torch.dtype, int]:
        """The float dtype and batch size of a call on ``tensors``, or the one-line error of :func:`_check`."""
        float_dtype = tensors[self.float_input].dtype
        batch = tensors[self.batch_input].shape[0] if self.batch_input is not None and tensors[
            self.batch_input].dim() > 0 else 0
        if not self._fits(tensors, float_dtype, batch):
            _check(self.layer, self.signature, tensors)  # raises the one-line error
            raise ValueError(f"{self.layer.label}: {self.signature.kernel}: tensors of unexpected shapes or dtypes")
        return float_dtype, batch

    def __call__(self, *tensors: torch.Tensor):
        float_dtype, batch = self.check(tensors)
        outputs = [OUTPUTS.empty((batch, *shape) if batched else shape,
                                 _NUMPY_DTYPES[self.switch_dtype if switch else float_dtype])
                   for batched, shape, switch in self.outputs]
        arrays = [tensor.numpy() if tensor.is_contiguous() else tensor.contiguous().numpy() for tensor in tensors]
        arrays += [output.numpy() for output in outputs]
        with kernel_threads():  # on the CPUs free now, as a Network's passes
            self.function(*[arrays[index] for index in self.order])
        return outputs[0] if len(outputs) == 1 else tuple(outputs)


def _register(net: Network, layer: LayerSpec, signature: KernelSignature) -> torch._ops.OpOverload:
    """The kernel's operator, defined once per process: its schema, CPU implementation, fake implementation,
    and an autograd kernel that refuses to differentiate it (the forward operators get theirs in
    :func:`layer_operators`)."""
    name = f"{net.spec.module_name}_{net.spec.digest()}_{signature.kernel}"
    qualified = f"{NAMESPACE}::{name}"
    if qualified in _OPERATORS:
        return _OPERATORS[qualified]
    results = ", ".join("Tensor" for _ in signature.outputs)
    _LIBRARY.define(f"{name}({', '.join(f'Tensor {argument}' for argument in signature.inputs)}) -> "
                    + (results if len(signature.outputs) == 1 else f"({results})"))
    _CALLS[qualified] = _KernelCall(net, layer, signature)
    _LIBRARY.impl(name, _CALLS[qualified], "CPU")

    def fake(*tensors):
        float_dtype, batch = _check(layer, signature, tensors)
        outputs = tuple(tensors[0].new_empty(_shape_of(layer, output, batch),
                                             dtype=_dtype_of(layer, output, float_dtype))
                        for output in signature.outputs)
        return outputs[0] if len(outputs) == 1 else outputs

    torch.library.register_fake(qualified, fake, lib=_LIBRARY)
    operator = getattr(getattr(torch.ops, NAMESPACE), name).default
    if not signature.kernel.endswith("_forward"):  # a forward operator's is its layer's gradient (layer_operators)
        _LIBRARY.impl(name, not_differentiable_kernel(operator), "Autograd", with_keyset=True)
    _OPERATORS[qualified] = operator
    return operator


def _prefix(label: str, evaluation: bool) -> str:
    return f"{label}_eval_" if evaluation else f"{label}_"


def _gradient_kernel(prefix: str, name: str) -> str:
    """The kernel of the gradient with respect to the forward argument ``name``: ``x`` -> ``grad_input``,
    ``x2`` -> ``grad_input2``, ``weight`` -> ``grad_weight`` (after ``prefix``: ``conv1_``, ``bn1_eval_``)."""
    number = _input_number(name)
    return f"{prefix}grad_{input_role(number) if number is not None else name}"


def has_evaluation_kernels(net: Network, layer: LayerSpec) -> bool:
    """Whether ``layer`` has kernels of its own in evaluation mode (batch norm: the running statistics)."""
    return f"{_prefix(layer.label, True)}forward" in net.kernels.ARGUMENTS


def layer_operators(net: Network, layer: LayerSpec, evaluation: bool = False) -> LayerOperators:
    """The operators of ``layer`` (one of ``net.spec.layers``), registered once per process; with
    ``evaluation``, of its evaluation-mode kernels (:func:`has_evaluation_kernels`)."""
    if evaluation and not has_evaluation_kernels(net, layer):
        raise ValueError(f"{layer.label}: has no evaluation-mode kernels ({layer.kind} is the same in both modes)")
    prefix = _prefix(layer.label, evaluation)
    inputs = tuple(f"grad_{input_role(number)}" for number in range(1, len(layer.input_shapes) + 1))
    signatures = {kernel: KernelSignature.of(kernel, arguments) for kernel, arguments in net.kernels.ARGUMENTS.items()
                  if kernel.startswith(prefix) and kernel.removeprefix(prefix) in
                  ("forward",) + inputs + tuple(f"grad_{name.split('.')[-1]}" for name in layer.parameter_shapes())}
    operators = {kernel: _register(net, layer, signature) for kernel, signature in signatures.items()}
    forward_signature = signatures[f"{prefix}forward"]
    forward = operators[forward_signature.kernel]
    if forward.name() in _LAYERS:
        return _LAYERS[forward.name()]
    gradients = {name: operators[_gradient_kernel(prefix, name)] for name in forward_signature.inputs
                 if _gradient_kernel(prefix, name) in operators}
    reads = {name: signatures[_gradient_kernel(prefix, name)].inputs for name in gradients}

    def gradient(name: str, saved: dict) -> torch.Tensor:
        if name not in gradients:
            raise ValueError(f"{layer.label}: {name}: the generated kernels have no gradient for it")
        return gradients[name](*(saved[argument] for argument in reads[name]))

    read = {argument for arguments in reads.values() for argument in arguments}
    _LIBRARY.impl(forward.name().split("::", 1)[1],
                  differentiable_kernel(forward, forward_signature.inputs, forward_signature.outputs, read, gradient),
                  "Autograd", with_keyset=True)
    reshape = f"{prefix}forward" in getattr(net.kernels, "RESHAPES", {})
    _LAYERS[forward.name()] = LayerOperators(layer, forward, gradients, signatures, reshape, evaluation)
    return _LAYERS[forward.name()]


_BUFFER_ROLES = ("running_mean", "running_var", "num_batches_tracked")


def running_statistics_operator(net: Network, layer: LayerSpec) -> Callable:
    """A batch-norm layer's running-statistics update after a training-mode forward pass, as an operator
    that mutates its buffers: ``update(x, running_mean, running_var, num_batches_tracked)``, PyTorch's rule
    with the layer's momentum and the batch's unbiased variance (:func:`symcnn.runtime.buffers.
    update_running_statistics`, the Network's own). Registered once per process."""
    qualified = f"{NAMESPACE}::{net.spec.module_name}_{net.spec.digest()}_{layer.label}_update_running_statistics"
    if qualified in _OPERATORS:
        return _OPERATORS[qualified]
    if set(_BUFFER_ROLES) != {name.rsplit(".", 1)[1] for name in layer.buffer_shapes()}:
        raise ValueError(f"{layer.label}: keeps no running statistics ({layer.kind})")
    signature = KernelSignature("update_running_statistics", ("x", "running_mean", "running_var"), ())

    def run(x, running_mean, running_var, num_batches_tracked):
        _check(layer, signature, (x, running_mean, running_var))
        if num_batches_tracked.dtype != torch.int64 or num_batches_tracked.dim() != 0:
            raise ValueError(f"{layer.label}: num_batches_tracked: expected a 0-d int64 tensor, got "
                             f"{str(num_batches_tracked.dtype).removeprefix('torch.')} of shape "
                             f"{tuple(num_batches_tracked.shape)}")
        buffers = {f"{layer.name}.{role}": tensor.numpy()  # views: updated in place
                   for role, tensor in zip(_BUFFER_ROLES, (running_mean, running_var, num_batches_tracked))}
        update_running_statistics(layer, x.contiguous().numpy(), buffers)

    schema = "(Tensor x, Tensor(a!) running_mean, Tensor(b!) running_var, Tensor(c!) num_batches_tracked) -> ()"
    operator = torch.library.custom_op(qualified, run, mutates_args=_BUFFER_ROLES, device_types="cpu",
                                       schema=schema)
    operator.register_fake(lambda x, running_mean, running_var, num_batches_tracked: None)
    _OPERATORS[qualified] = operator
    return operator


def _signed(word: int) -> int:
    """A 64-bit word as an int64 (an operator's ``int``); the mask generator reads it modulo 2**64 again."""
    word %= 2**64
    return word - 2**64 if word >= 2**63 else word


@torch.library.custom_op(f"{NAMESPACE}::draw_mask", mutates_args=(), device_types="cpu")
def _draw_mask(x: torch.Tensor, seed: int, layer: int, step: int, first_image: int, drop: float) -> torch.Tensor:
    mask = torch.empty_like(x, memory_format=torch.contiguous_format)
    draw_mask_array(mask.numpy(), seed, layer, step, drop, first_image)
    return mask


@_draw_mask.register_fake
def _(x, seed, layer, step, first_image, drop):
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def draw_mask(x: torch.Tensor, seed: int, layer: int, step: int, drop: float, first_image: int = 0) -> torch.Tensor:
    """A dropout mask shaped and typed like ``x`` (0 dropped, 1 kept): layer ``layer``'s at training pass
    ``step`` from ``seed``, the rows from ``first_image`` on of the whole batch's, exactly the Network's
    (:func:`symcnn.runtime.masks.draw_mask`); an operator (``symcnn::draw_mask``).

    >>> from symcnn.runtime.masks import reference_mask
    >>> mask = draw_mask(torch.zeros(2, 3, dtype=torch.float64), seed=0, layer=1, step=0, drop=0.5)
    >>> mask.tolist() == reference_mask((2, 3), 0, 1, 0, 0.5).tolist()
    True
    """
    if not isinstance(x, torch.Tensor) or x.dtype not in FLOAT_DTYPES or x.device.type != "cpu" or x.dim() < 1:
        raise ValueError(f"x: expected a float32 or float64 CPU tensor with a batch axis, got {_describe(x)}")
    if not 0 <= drop <= 1:
        raise ValueError(f"drop: must lie in [0, 1], got {drop!r}")
    return _draw_mask(x.detach(), _signed(seed), layer, _signed(step), first_image, float(drop))


def _describe(value) -> str:
    if not isinstance(value, torch.Tensor):
        return f"a {type(value).__name__}"
    return f"a {str(value.dtype).removeprefix('torch.')} tensor of shape {tuple(value.shape)} on {value.device}"
