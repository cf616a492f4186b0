"""The autograd kernels of symcnn's operators (the ``Autograd`` dispatch key of :mod:`symcnn.torch.operators`).

A forward operator's kernel records a ``torch.autograd.Function`` whose backward calls the layer's
gradient operators; a gradient operator's kernel refuses to be differentiated (symcnn differentiates
each layer once). Both pass the call on below autograd (``redispatch``): to the CPU kernel in eager
mode, to the fake one under ``torch.compile``, as ``torch.library.register_autograd`` does, without its
per-call layers (argument defaults, keyword arguments, metadata objects) that these operators do not need.

Example:
    >>> import torch
    >>> from symcnn.runtime.network import Network
    >>> from symcnn.torch.operators import layer_operators
    >>> net = Network.from_spec("digits", dtype="float64")
    >>> conv1 = layer_operators(net, net.spec.layers[0])
    >>> weight = torch.zeros(16, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    >>> out = conv1(torch.ones(2, 1, 8, 8, dtype=torch.float64), weight, torch.zeros(16, dtype=torch.float64))
    >>> type(out.grad_fn).__name__   # the layer's gradient function (backward: conv1_grad_weight, ...)
    'LayerFunctionBackward'
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch

from symcnn.runtime.threads import kernel_threads

__all__ = ["differentiable_kernel", "not_differentiable_kernel"]

_BELOW_AUTOGRAD = torch._C._after_autograd_keyset


def _below_autograd(operator, keyset, arguments: tuple):
    """The operator's next kernel after autograd's (the CPU implementation; the fake one under torch.compile)."""
    with torch._C._AutoDispatchBelowAutograd():
        return operator.redispatch(keyset & _BELOW_AUTOGRAD, *arguments)


def differentiable_kernel(forward, inputs: tuple[str, ...], outputs: tuple[str, ...], read: set[str],
                          gradient: Callable[[str, dict], torch.Tensor]) -> Callable:
    """The autograd kernel of the forward operator ``forward`` whose arguments are named ``inputs`` and results
    ``outputs``: its output's gradient function calls ``gradient(name, saved)`` for each input that needs one,
    ``saved`` being the call's tensors that the gradients ``read``, by name (of its inputs and outputs), and
    ``grad_output``. Register it with ``Library.impl(name, kernel, "Autograd", with_keyset=True)``."""
    # only what a gradient reads is kept for the backward pass (an output that none reads is not held)
    kept = [index for index, name in enumerate(inputs + outputs) if name in read]
    names = [(inputs + outputs)[index] for index in kept]

    class LayerFunction(torch.autograd.Function):
        @staticmethod
        def forward(ctx, keyset, *tensors):
            result = _below_autograd(forward, keyset, tensors)
            everything = (*tensors, *(result if isinstance(result, tuple) else (result,)))
            ctx.save_for_backward(*(everything[index] for index in kept))
            return result

        @staticmethod
        def backward(ctx, grad_output, *unused):
            saved = dict(zip(names, ctx.saved_tensors))
            saved["grad_output"] = grad_output.contiguous()
            # Not differentiating the gradient (no create_graph): the gradient operators straight to their
            # kernels, past their autograd kernels (which would only pass the call on); the kernels' thread
            # count chosen once for the layer's gradients
            with contextlib.nullcontext() if torch.is_grad_enabled() else torch._C._AutoDispatchBelowAutograd(), \
                    kernel_threads():
                return (None, *(gradient(name, saved) if needed else None
                                for name, needed in zip(inputs, ctx.needs_input_grad[1:])))

    def autograd_kernel(keyset, *tensors):
        if torch.is_grad_enabled() and torch._C._any_requires_grad(*tensors):
            return LayerFunction.apply(keyset, *tensors)
        return _below_autograd(forward, keyset, tensors)

    return autograd_kernel


class _NotDifferentiable(torch.autograd.Function):
    """A gradient operator called on tensors that require grad: its output's gradient function refuses."""

    @staticmethod
    def forward(ctx, operator, keyset, *arguments):
        ctx.operator = operator
        return _below_autograd(operator, keyset, arguments)

    @staticmethod
    def backward(ctx, *grads):
        raise RuntimeError(f"{ctx.operator.name()}: a gradient operator of the generated kernels has no gradient "
                           "itself (symcnn differentiates each layer once)")


def not_differentiable_kernel(operator) -> Callable:
    """The autograd kernel of a gradient operator: the call passed on; on tensors that require grad, an output
    whose backward raises (rather than PyTorch's fallback, which would warn and go on without a gradient)."""
    def autograd_kernel(keyset, *arguments):
        if torch.is_grad_enabled() and torch._C._any_requires_grad(*arguments):
            return _NotDifferentiable.apply(operator, keyset, *arguments)
        return _below_autograd(operator, keyset, arguments)
    return autograd_kernel
