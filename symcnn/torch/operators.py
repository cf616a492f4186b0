"""A network's generated kernels as PyTorch operators (``torch.library.custom_op``, CPU).

Every kernel of a layer becomes one operator, named after the spec, its digest and the kernel
(``symcnn::digits_dd56dcf3dbd32cc8_conv1_forward``): its inputs are the kernel's input arrays, its
outputs the arrays the kernel writes (``kernels.ARGUMENTS`` lists both, outputs last). A layer's
forward operator carries the gradient (``register_autograd``), made of its gradient operators, and
every operator a fake implementation (``register_fake``) for ``torch.compile`` and ``opcheck``. A layer
that joins several tensors (a graph spec's add or concat) takes them as ``x, x2, ...`` and has a
gradient operator for each (``grad_input``, ``grad_input2``, ...).

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
from symcnn.runtime.network import Network, switch_dtype
from symcnn.runtime.threads import kernel_threads
from symcnn.spec import LayerSpec

__all__ = ["LayerOperators", "KernelSignature", "layer_operators", "FLOAT_DTYPES"]

NAMESPACE = "symcnn"
FLOAT_DTYPES = (torch.float32, torch.float64)
_TORCH_DTYPES = {np.dtype(np.int8): torch.int8, np.dtype(np.int32): torch.int32}

#: Each kernel argument: whether it has the batch axis, and which shape it has. One entry per name that
#: generated kernels use; an op whose kernels take another array (a buffer, ...) adds its entry here.
#: (An add's or concat's further inputs, ``x2``, ``grad_input2``, ..., are shaped like their input:
#: :func:`_input_number`.)
BATCHED_LIKE_INPUT = ("x", "grad_input")
BATCHED_LIKE_OUTPUT = ("out", "grad_output", "switch")
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
    return name in BATCHED_LIKE_OUTPUT or _input_number(name) is not None


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

    def __call__(self, *tensors: torch.Tensor) -> torch.Tensor:
        """The layer's output from its input (or an add's or concat's inputs) and its parameters, without
        what its forward operator saves for the gradient. A layer whose kernel only reshapes
        (``kernels.RESHAPES``, a flatten) is a view, as in the Network: no copy."""
        if self.reshape:
            _check(self.layer, self.signatures[f"{self.layer.label}_forward"], tensors)
            return tensors[0].reshape(tensors[0].shape[0], *self.layer.output_shape)
        result = self.forward(*tensors)
        return result[0] if isinstance(result, tuple) else result

    def gradient_signature(self, name: str) -> KernelSignature:
        """The kernel behind ``gradients[name]`` (``x``: ``conv1_grad_input``; ``weight``: ``conv1_grad_weight``;
        an add's ``x2``: ``sum_grad_input2``)."""
        return self.signatures[_gradient_kernel(self.layer.label, name)]

    @property
    def parameters(self) -> tuple[str, ...]:
        """The forward operator's inputs after the layer's input tensors: ``("weight", "bias")`` or none."""
        return tuple(name for name in self.signatures[f"{self.layer.label}_forward"].inputs
                     if _input_number(name) is None)


_OPERATORS: dict[str, Callable] = {}  # qualified name -> operator: torch.library registers a name once
_LAYERS: dict[str, "LayerOperators"] = {}  # qualified forward name -> its layer's operators, autograd registered


def _shape_of(layer: LayerSpec, name: str, batch) -> tuple:
    number = _input_number(name)
    if number is not None:
        return (batch, *layer.input_shapes[number - 1])
    if name in BATCHED_LIKE_OUTPUT:
        return (batch, *layer.output_shape)
    role = name.removeprefix("grad_")
    shapes = layer.parameter_shapes()
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


def _register(net: Network, layer: LayerSpec, signature: KernelSignature) -> Callable:
    qualified = f"{NAMESPACE}::{net.spec.module_name}_{net.spec.digest()}_{signature.kernel}"
    if qualified in _OPERATORS:
        return _OPERATORS[qualified]
    function = net.kernel(signature.kernel)
    arguments = net.kernels.ARGUMENTS[signature.kernel]
    results = ", ".join("Tensor" for _ in signature.outputs)
    schema = (f"({', '.join(f'Tensor {name}' for name in signature.inputs)}) -> "
              + (results if len(signature.outputs) == 1 else f"({results})"))

    def allocate(tensors: tuple, empty: Callable) -> tuple[dict, tuple]:
        float_dtype, batch = _check(layer, signature, tensors)
        outputs = tuple(empty(_shape_of(layer, name, batch), dtype=_dtype_of(layer, name, float_dtype))
                        for name in signature.outputs)
        return dict(zip(signature.inputs, tensors)), outputs

    def run(*tensors):
        inputs, outputs = allocate(tensors, torch.empty)
        arrays = {name: tensor.contiguous().numpy() for name, tensor in inputs.items()}  # no copy if contiguous
        arrays.update((name, tensor.numpy()) for name, tensor in zip(signature.outputs, outputs))
        with kernel_threads():  # on the CPUs free now, as a Network's passes
            function(*(arrays[name] for name in arguments))
        return outputs[0] if len(outputs) == 1 else outputs

    def fake(*tensors):
        _, outputs = allocate(tensors, _new_empty(tensors[0]))
        return outputs[0] if len(outputs) == 1 else outputs

    operator = torch.library.custom_op(qualified, run, mutates_args=(), device_types="cpu", schema=schema)
    operator.register_fake(fake)
    _OPERATORS[qualified] = operator
    return operator


def _new_empty(like: torch.Tensor) -> Callable:
    """``torch.empty`` on ``like``'s device and mode (a fake tensor under torch.compile)."""
    return lambda shape, dtype: like.new_empty(shape, dtype=dtype)


def _gradient_kernel(label: str, name: str) -> str:
    """The kernel of the gradient with respect to the forward argument ``name``: ``x`` -> ``grad_input``,
    ``x2`` -> ``grad_input2``, ``weight`` -> ``grad_weight``."""
    number = _input_number(name)
    return f"{label}_grad_{input_role(number) if number is not None else name}"


def layer_operators(net: Network, layer: LayerSpec) -> LayerOperators:
    """The operators of ``layer`` (one of ``net.spec.layers``), registered once per process."""
    inputs = tuple(f"grad_{input_role(number)}" for number in range(1, len(layer.input_shapes) + 1))
    signatures = {kernel: KernelSignature.of(kernel, arguments) for kernel, arguments in net.kernels.ARGUMENTS.items()
                  if kernel.startswith(f"{layer.label}_") and kernel.removeprefix(f"{layer.label}_") in
                  ("forward",) + inputs + tuple(f"grad_{name.split('.')[-1]}" for name in layer.parameter_shapes())}
    operators = {kernel: _register(net, layer, signature) for kernel, signature in signatures.items()}
    forward_signature = signatures[f"{layer.label}_forward"]
    forward = operators[forward_signature.kernel]
    if forward._qualname in _LAYERS:
        return _LAYERS[forward._qualname]
    gradients = {name: operators[_gradient_kernel(layer.label, name)] for name in forward_signature.inputs
                 if _gradient_kernel(layer.label, name) in operators}

    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs, *output)

    def backward(ctx, grad_output, *unused):
        saved = dict(zip(forward_signature.inputs + forward_signature.outputs, ctx.saved_tensors))
        saved["grad_output"] = grad_output.contiguous()
        grads = []
        for name, needed in zip(forward_signature.inputs, ctx.needs_input_grad):
            if not needed:
                grads.append(None)
                continue
            kernel = _gradient_kernel(layer.label, name)
            if kernel not in operators:
                raise ValueError(f"{layer.label}: {name}: the generated kernels have no gradient for it")
            grads.append(operators[kernel](*(saved[argument] for argument in signatures[kernel].inputs)))
        return tuple(grads)

    forward.register_autograd(backward, setup_context=setup_context)
    reshape = f"{layer.label}_forward" in getattr(net.kernels, "RESHAPES", {})
    _LAYERS[forward._qualname] = LayerOperators(layer, forward, gradients, signatures, reshape)
    return _LAYERS[forward._qualname]
