"""A whole network's pass as one autograd function: the module's fast path when nothing observes its layers.

Why: layer by layer, each of a module's layers is an operator call (PyTorch's dispatcher, an autograd
node, saved tensors, a thread choice, a check of every tensor) and each of its gradients another:
measured on ``seed004`` at batch 64, the module's forward pass took 10% longer than the Network's and
its train step 16% (CPU time; docs/torch.md, "Speed").
Here the module's whole forward pass is one ``torch.autograd.Function`` whose forward is the Network's
forward pass (:meth:`Network._forward`) and whose backward is the Network's backward pass
(:meth:`Network._backward`), run on views of the module's own parameters and buffers: the same kernels
in the same order on the same arrays, so the logits and every gradient are bit for bit the layer-by-layer
path's (tests/interop/test_torch_whole_pass.py checks it; where the Network fuses a tanh's or sigmoid's
gradient into the next layer's kernel, :mod:`symcnn.codegen.fusion`, or sums three readers' gradients or
more in one kernel, which autograd adds two at a time, equal to rounding), and PyTorch sees
one node. Inference (no
autograd) in evaluation mode folds batch norm into the convolution before it, as ``Network.forward`` does
(:mod:`symcnn.codegen.folding`): equal to rounding.

It is taken only where nothing could tell the difference: not while ``torch.compile`` traces, ``torch.jit``
traces or a dispatch or function mode is active (they see the layers' operators); not when a hook is
registered on a layer or globally (hooks on the whole module, and on parameters, run as usual); not when a
layer was replaced, or its mode differs from the module's; only on plain CPU tensors of one float dtype
and the expected shapes (anything else goes layer by layer, whose checks say what is wrong). PyTorch's
checks stay: the input, the parameters and the logits are saved for the backward pass, so an in-place
change to any of them before ``backward()`` raises as it would layer by layer.

Example:
    >>> import torch
    >>> from symcnn.torch import from_spec
    >>> model = from_spec("digits", dtype="float64")
    >>> x = torch.randn(4, 1, 8, 8, dtype=torch.float64)
    >>> logits = model(x)
    >>> type(logits.grad_fn).__name__          # one node for the whole pass
    'WholePassBackward'
    >>> model.conv1.register_forward_hook(lambda *args: None) is not None   # now a hook observes conv1
    True
    >>> type(model(x).grad_fn).__name__         # so the pass goes layer by layer
    'LayerFunctionBackward'
"""

from __future__ import annotations

import copy
import threading
from typing import Optional

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from symcnn import registry
from symcnn.runtime.masks import draw_mask
from symcnn.runtime.network import Network
from symcnn.runtime.threads import kernel_threads
from symcnn.spec import LayerSpec
from symcnn.torch.outputs import OUTPUTS

__all__ = ["FastPath", "WholePass"]

_NUMPY_DTYPES = {torch.float32: np.dtype(np.float32), torch.float64: np.dtype(np.float64)}


class _PoolNetwork(Network):
    """The Network that runs a module's whole passes: its parameters and buffers are set to views of the
    module's tensors before each pass, every array it hands out comes from the operators' output pool
    (a saved activation is never overwritten by a later pass while autograd holds it), and its dropout
    masks are the module's rows of the whole batch's (``first_image``, data-parallel training)."""

    first_image = 0

    def _buffer(self, purpose: str, shape: tuple, dtype) -> np.ndarray:
        return OUTPUTS.empty_array(shape, np.dtype(dtype))

    def _gradient_array(self, parameter: np.ndarray) -> np.ndarray:
        return OUTPUTS.empty_array(parameter.shape, parameter.dtype)

    def _backward_kernel(self, *arguments) -> None:
        """None: each gradient's own kernel, as the operators of the layer-by-layer pass call them, so that the
        two passes are equal bit for bit (a layer's ``<label>_backward`` sums the same values, equal to rounding:
        a sum's vectorized order may differ between kernels)."""
        return None

    def _saving_kernel(self, *arguments) -> None:
        """None: each layer's own forward and backward kernels, as the operators call them (a backward kernel reading
        the forward pass's statistics equals them to rounding, not bit for bit)."""
        return None

    def _weight_and_bias_kernel(self, *arguments) -> None:
        """None: the weight's and the bias's gradients each by its own kernel, as the operators compute them (the
        fused kernel sums the bias's in another order)."""
        return None

    def _draw(self, layer: LayerSpec, mask: np.ndarray, step: int) -> None:
        drop = layer.settings[registry.get(layer.kind).mask_drop]
        draw_mask(mask, self._mask_state["seed"], layer.index, step, drop, self.first_image)


class FastPath:
    """The fast path of a :class:`~symcnn.torch.modules.SymcnnNetwork` or ``SymcnnGraph``: ``run(module, x)``
    is its forward pass as one autograd function, or None where the pass must go layer by layer."""

    def __init__(self, module: torch.nn.Module, kernels):
        self.spec, self.kernels = module.spec, kernels
        # each layer's forward operator: a layer replaced by another module turns the path off
        self.operators = {label: layer.operators.forward for label, layer in module.named_children()}
        # (Network name, layer label, role): the Network's parameters and buffers, as the module holds them
        self.parameters = tuple((name, *name.rsplit(".", 1)) for name in self.spec.parameter_shapes())
        self.buffers = tuple((name, *name.rsplit(".", 1)) for name in self.spec.buffer_shapes())
        self.input_shape = tuple(self.spec.input_shape)
        self._networks: dict[tuple, _PoolNetwork] = {}  # by thread and dtype: a Network serves one thread at a time

    def __deepcopy__(self, memo) -> "FastPath":
        """A copy of the module gets a path of its own (its Networks are made again on first use)."""
        copied = copy.copy(self)
        copied._networks = {}
        return copied

    def network(self, dtype: torch.dtype) -> _PoolNetwork:
        """This thread's Network of this dtype (made once: its kernels are the module's)."""
        key = (threading.get_ident(), dtype)
        net = self._networks.get(key)
        if net is None:
            net = self._networks[key] = _PoolNetwork(self.spec, self.kernels, dtype=str(dtype).removeprefix("torch."))
        return net

    def _usable(self, module: torch.nn.Module, x) -> Optional[list[torch.Tensor]]:
        """The module's parameters in the Network's order when the whole pass may run on ``x``, else None."""
        if (type(x) is not torch.Tensor or x.dtype not in _NUMPY_DTYPES or not x.is_cpu
                or x.dim() != len(self.input_shape) + 1 or x.shape[0] < 1 or x.shape[1:] != self.input_shape
                or torch._C._functorch.is_functorch_wrapped_tensor(x)):
            return None
        if not self._quiet(module):
            return None
        parameters = []
        for _, label, role in self.parameters:
            tensor = getattr(module._modules[label], role)
            if type(tensor) is not torch.nn.Parameter and type(tensor) is not torch.Tensor:
                return None
            if tensor.dtype != x.dtype or not tensor.is_cpu or not tensor.is_contiguous():
                return None
            parameters.append(tensor)
        return parameters

    def _quiet(self, module: torch.nn.Module) -> bool:
        """Nothing traces the pass or observes a layer: not compiling or tracing, no function or dispatch mode
        (a flop counter, fake tensors), no global hook; no layer replaced, hooked, or in another mode."""
        if (torch._C._get_tracing_state() is not None or torch._C._is_torch_function_mode_enabled()
                or torch.utils._python_dispatch._get_current_dispatch_mode() is not None
                or torch.nn.modules.module._has_any_global_hook()):
            return False
        children = module._modules
        for label, operator in self.operators.items():
            layer = children.get(label)
            if getattr(getattr(layer, "operators", None), "forward", None) is not operator:
                return False
            if (layer.training != module.training or layer._forward_hooks or layer._forward_pre_hooks
                    or layer._backward_hooks or layer._backward_pre_hooks):
                return False
        return True

    def run(self, module: torch.nn.Module, x: torch.Tensor) -> Optional[torch.Tensor]:
        """The logits of ``x``, the whole pass one autograd node; None where the pass must go layer by layer."""
        if torch.compiler.is_compiling():  # first: what torch.compile traces is the layers' operators
            return None
        parameters = self._usable(module, x)
        if parameters is None:
            return None
        net = self.network(x.dtype)
        buffers = {name: getattr(module._modules[label], role) for name, label, role in self.buffers}
        if any(not tensor.is_cpu or not tensor.is_contiguous() for tensor in buffers.values()):
            return None
        net._buffers = {name: tensor.detach().numpy() for name, tensor in buffers.items()}  # updated in place
        net._mask_state = dict(module.masks.state)
        net.first_image = module.masks.first_image
        training = module.training
        net._params = self._views(parameters)
        if torch.is_grad_enabled() and (x.requires_grad or any(tensor.requires_grad for tensor in parameters)):
            _prepare(net, _array(x), training, gradients=True, input_gradient=x.requires_grad)
            return WholePass.apply(self, net, training, x, *parameters)
        _prepare(net, _array(x), training, gradients=False, input_gradient=False)
        with kernel_threads():  # on the CPUs free now, as a Network's passes
            logits, _, _ = net._forward(_array(x), training, fold=True)  # inference: evaluation mode's folds
        return torch.from_numpy(logits)

    def _views(self, parameters: list[torch.Tensor]) -> dict[str, np.ndarray]:
        return {name: tensor.detach().numpy() for (name, _, _), tensor in zip(self.parameters, parameters)}


def _prepare(net: Network, x: np.ndarray, training: bool, gradients: bool, input_gradient: bool) -> None:
    """Before the first pass of a kind, compile its kernels in worker processes with a progress display,
    or load them from numba's cache, as the Network's own passes do (:meth:`Network._prepare`)."""
    key = ("whole pass", training, gradients, input_gradient)
    if key in net._prepared:
        return

    def dry_run(shadow: Network) -> None:
        logits, values, saved = shadow._forward(x[:2], training, fold=not gradients)
        if gradients:
            shadow._backward(values, saved, np.zeros_like(logits), input_gradient, training)

    net._prepare(key, dry_run)


def _array(x: torch.Tensor) -> np.ndarray:
    """``x``'s memory as an array (a copy only when not C-contiguous)."""
    return (x if x.is_contiguous() else x.contiguous()).detach().numpy()


class WholePass(torch.autograd.Function):
    """The whole pass: forward the Network's, backward the Network's, on views of the module's tensors."""

    @staticmethod
    def forward(ctx, whole: FastPath, net: _PoolNetwork, training: bool, x: torch.Tensor,
                *parameters: torch.Tensor) -> torch.Tensor:
        # ``net``'s parameters and buffers are this call's views: FastPath.run set them just before
        with kernel_threads():
            logits, values, saved = net._forward(_array(x), training)
        out = torch.from_numpy(logits)
        # Everything the backward pass reads, saved through autograd: an in-place change to the input, a
        # parameter or the logits before backward() raises, and the activations are let go after it (unless
        # the graph is retained), as layer by layer. The activations as tensors on their arrays (no copy).
        ctx.keys, activations = [], []
        for label, value in values.items():
            if label != "input" and value is not logits:
                ctx.keys.append((label, None))
                activations.append(torch.from_numpy(value))
        for label, arrays in saved.items():
            for name, value in arrays.items():
                ctx.keys.append((label, name))
                activations.append(torch.from_numpy(value))
        ctx.save_for_backward(x, *parameters, out, *activations)
        ctx.whole, ctx.training, ctx.buffers = whole, training, net._buffers
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_logits: torch.Tensor):
        whole = ctx.whole
        x, *tensors = ctx.saved_tensors
        parameters, out, activations = tensors[:len(whole.parameters)], tensors[len(whole.parameters)], \
            tensors[len(whole.parameters) + 1:]
        values, saved = {"input": _array(x), whole.spec.layers[-1].label: out.numpy()}, {}
        for (label, name), tensor in zip(ctx.keys, activations):
            if name is None:
                values[label] = tensor.numpy()
            else:
                saved.setdefault(label, {})[name] = tensor.numpy()
        net = whole.network(x.dtype)  # this thread's (backward may run on another thread)
        net._params, net._buffers = whole._views(parameters), ctx.buffers  # those of this pass's forward
        needed = {name for (name, _, _), wanted in zip(whole.parameters, ctx.needs_input_grad[4:]) if wanted}
        upstream = _array(grad_logits.to(x.dtype))
        with kernel_threads():
            grads = net._backward(values, saved, upstream, bool(ctx.needs_input_grad[3]), ctx.training, needed)
        grad_x = torch.from_numpy(grads["input"]) if "input" in grads else None
        return (None, None, None, grad_x,
                *(torch.from_numpy(grads[name]) if name in grads else None for name, _, _ in whole.parameters))

