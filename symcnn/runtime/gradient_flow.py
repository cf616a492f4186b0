"""Which tensors of a network a backward pass needs the gradient of (PyTorch's ``requires_grad``, for a spec).

A gradient flows back into a tensor only to reach a parameter, or the input when the caller asks for its
gradient. So ``dL/dT`` is needed exactly where ``T`` depends on a parameter or on an input whose gradient is
wanted: the output of a layer with parameters, or of a layer reading such a tensor. A train step asks for no
input gradient, so the layers between the input and the first layer with parameters (a flatten before a dense
layer, a pooling, a dropout) send no gradient back, and the first layer with parameters computes only its
parameters' gradients.

Example:
    >>> from symcnn.spec import load_spec
    >>> spec = load_spec("digits")
    >>> [layer.label for layer in spec.layers][:2]
    ['conv1', 'relu1']
    >>> needed = tensors_needing_gradients(spec, input_gradient=False)
    >>> "input" in needed, "conv1" in needed, "relu1" in needed
    (False, True, True)
    >>> "input" in tensors_needing_gradients(spec, input_gradient=True)
    True
"""

from __future__ import annotations

from symcnn.spec import NetworkSpec

__all__ = ["tensors_needing_gradients"]


def tensors_needing_gradients(spec: NetworkSpec, input_gradient: bool) -> frozenset[str]:
    """The labels of the tensors (``"input"`` and layer outputs) whose gradient a backward pass of ``spec``
    needs, with or without the input's own."""
    needed = {"input"} if input_gradient else set()
    for layer in spec.layers:  # in order: each layer after the tensors it reads
        if layer.parameter_shapes() or any(source in needed for source in layer.inputs):
            needed.add(layer.label)
    return frozenset(needed)
