"""The classic baseline: a spec's network in NumPy, convolutions as im2col + matrix multiply.

What a careful engineer writes without a code generator: every convolution unfolded into columns
and handed to BLAS (a grouped one group by group), a transposed convolution scattered tap by tap,
pooling by reshaping or by window loops over the kernel offsets. Float32 (or
the parameters' dtype), batch-first NCHW, the same parameter names as :class:`symcnn.Network`.
A graph spec runs layer by layer on the tensors each names (``inputs``): an add sums them, a concat
joins them along axis 1; going back, a concat splits the gradient into its inputs' blocks and a
tensor read by several layers gets the sum of their gradients.
Dropout is inverted dropout, ``x * mask / (1 - p)``: a forward pass without masks is an evaluation
pass (dropout is the identity); a training pass takes each dropout layer's mask by label, or draws
its own from NumPy's generator.
Used by ``symcnn bench`` as the NumPy side of the comparison, and checked against the generated
kernels by the tests.

Example:
    >>> import numpy as np
    >>> from symcnn.spec import load_spec
    >>> net = NumpyNetwork(load_spec("digits"), {"conv1.weight": np.zeros((16, 1, 3, 3), np.float32),
    ...     "conv1.bias": np.zeros(16, np.float32), "fc1.weight": np.zeros((10, 256), np.float32),
    ...     "fc1.bias": np.zeros(10, np.float32)})
    >>> net.forward(np.zeros((2, 1, 8, 8), np.float32)).shape
    (2, 10)
"""

from __future__ import annotations

import functools
from typing import Optional

import numpy as np

from symcnn.spec import LayerSpec, NetworkSpec

__all__ = ["NumpyNetwork"]


def _im2col_indices(layer: LayerSpec):
    """Row and column gather indices of the padded input for every (kernel offset, output pixel)."""
    channels, height, width = layer.input_shape
    _, out_height, out_width = layer.output_shape
    (kernel_h, kernel_w), (stride_h, stride_w) = layer.settings["kernel"], layer.settings["stride"]
    dilation_h, dilation_w = layer.settings.get("dilation", (1, 1))
    rows = (np.arange(kernel_h) * dilation_h)[:, None] + (np.arange(out_height) * stride_h)[None, :]
    cols = (np.arange(kernel_w) * dilation_w)[:, None] + (np.arange(out_width) * stride_w)[None, :]
    return rows, cols


def _adaptive_windows(size: int, out: int) -> list[slice]:
    """PyTorch's adaptive windows along one axis: output ``i`` pools ``floor(i*size/out)`` up to
    ``ceil((i + 1)*size/out)`` (exclusive), in integers.

    >>> _adaptive_windows(5, 3)
    [slice(0, 2, None), slice(1, 4, None), slice(3, 5, None)]
    """
    return [slice(i * size // out, -(-(i + 1) * size // out)) for i in range(out)]


def _adaptive_cells(layer: LayerSpec):
    """Each output position ``(i, j)`` of an adaptive pool with its window's row and column slices."""
    _, height, width = layer.input_shape
    _, out_height, out_width = layer.output_shape
    for i, rows in enumerate(_adaptive_windows(height, out_height)):
        for j, cols in enumerate(_adaptive_windows(width, out_width)):
            yield i, j, rows, cols


class NumpyNetwork:
    """Forward pass, loss and gradients of a spec's network in NumPy (im2col + BLAS).

    Normalizations as the textbooks write them (``x̂ = (x - mean) / sqrt(var + eps)``, and the
    backward pass of x̂): batch norm in training mode (``training``, the default) with the batch's
    statistics, updating ``buffers`` (running mean and unbiased variance) when given; in evaluation
    mode with them.
    """

    def __init__(self, spec: NetworkSpec, params: dict, buffers: Optional[dict] = None, training: bool = True,
                 seed: int = 0):
        self.spec = spec
        self.params = params
        self.buffers = buffers
        self.training = training
        self.rng = np.random.default_rng(seed)  # its own dropout masks (not symcnn's generator)

    def draw_masks(self, batch: int, dtype=np.float32) -> dict:
        """A mask of 0s and 1s for each dropout layer, by label: each element 0 with probability p."""
        return {layer.label: (self.rng.random((batch, *layer.input_shape)) >= layer.settings["p"]).astype(dtype)
                for layer in self.spec.layers if layer.kind == "dropout"}

    def _normalize(self, layer, x):
        """(output, cache) of batch norm (statistics over N, H, W) or layer norm (over all but N)."""
        eps, name = layer.settings["eps"], layer.name
        axes = (0, 2, 3) if layer.kind == "batchnorm2d" else tuple(range(1, x.ndim))
        shape = (1, -1, 1, 1) if layer.kind == "batchnorm2d" else (1, *x.shape[1:])
        if layer.kind == "batchnorm2d" and not self.training:
            mean = self.buffers[f"{name}.running_mean"].reshape(shape)
            variance = self.buffers[f"{name}.running_var"].reshape(shape)
        else:
            mean, variance = x.mean(axis=axes, keepdims=True), x.var(axis=axes, keepdims=True)
            if layer.kind == "batchnorm2d" and self.buffers is not None:
                momentum, count = layer.settings["momentum"], x.size // x.shape[1]
                for buffer, value in (("running_mean", mean), ("running_var", variance * count / (count - 1))):
                    running = self.buffers[f"{name}.{buffer}"]
                    running[...] = (1 - momentum) * running + momentum * value.reshape(-1)
                self.buffers[f"{name}.num_batches_tracked"] += 1
        root = np.sqrt(variance + eps)
        normalized = (x - mean) / root
        weight, bias = self.params[f"{name}.weight"], self.params[f"{name}.bias"]
        if layer.kind == "batchnorm2d":
            weight, bias = weight.reshape(shape), bias.reshape(shape)
        return weight * normalized + bias, (normalized, root, axes, shape)

    def _normalize_backward(self, layer, cache, upstream, grads):
        normalized, root, axes, shape = cache
        name = layer.name
        weight = self.params[f"{name}.weight"].reshape(shape) if layer.kind == "batchnorm2d" \
            else self.params[f"{name}.weight"]
        parameter_axes = (0, 2, 3) if layer.kind == "batchnorm2d" else (0,)
        grads[f"{name}.weight"] = (upstream * normalized).sum(axis=parameter_axes)
        grads[f"{name}.bias"] = upstream.sum(axis=parameter_axes)
        grad_normalized = upstream * weight
        if layer.kind == "batchnorm2d" and not self.training:  # the statistics are constants
            return grad_normalized / root
        count = normalized.size // np.prod([normalized.shape[a] for a in range(normalized.ndim) if a not in axes])
        return (count * grad_normalized - grad_normalized.sum(axis=axes, keepdims=True)
                - normalized * (grad_normalized * normalized).sum(axis=axes, keepdims=True)) / (count * root)

    # --- layers ---------------------------------------------------------------------------

    def _columns(self, layer: LayerSpec, x: np.ndarray) -> np.ndarray:
        """(N, C*K_h*K_w, H_out*W_out) columns of the zero-padded input."""
        pad_h, pad_w = layer.settings["padding"]
        padded = np.pad(x, ((0, 0), (0, 0), (pad_h, pad_h), (pad_w, pad_w))) if pad_h or pad_w else x
        rows, cols = _im2col_indices(layer)
        # (N, C, K_h, H_out, K_w, W_out) by fancy indexing, then reorder to (N, C, K_h, K_w, H_out, W_out)
        patches = padded[:, :, rows[:, :, None, None], cols[None, None, :, :]]
        batch = x.shape[0]
        return patches.transpose(0, 1, 2, 4, 3, 5).reshape(batch, -1, rows.shape[1] * cols.shape[1])

    def _conv_forward(self, layer, x):
        weight = self.params[f"{layer.name}.weight"]
        columns = self._columns(layer, x)
        groups = layer.settings.get("groups", 1)
        if groups == 1:
            out = np.matmul(weight.reshape(weight.shape[0], -1), columns)
        else:  # each group's outputs from its own channels' columns (the columns are channel-major)
            grouped = columns.reshape(x.shape[0], groups, -1, columns.shape[-1])
            out = np.einsum("gok,ngkp->ngop", weight.reshape(groups, weight.shape[0] // groups, -1), grouped)
            out = out.reshape(x.shape[0], weight.shape[0], -1)
        if f"{layer.name}.bias" in self.params:
            out += self.params[f"{layer.name}.bias"][None, :, None]
        return out.reshape(x.shape[0], *layer.output_shape), columns

    def _conv_backward(self, layer, x, columns, grad_out, grads):
        weight = self.params[f"{layer.name}.weight"]
        batch = x.shape[0]
        grad_matrix = grad_out.reshape(batch, weight.shape[0], -1)
        if f"{layer.name}.bias" in self.params:
            grads[f"{layer.name}.bias"] = grad_matrix.sum(axis=(0, 2))
        groups = layer.settings.get("groups", 1)
        if groups == 1:
            grads[f"{layer.name}.weight"] = np.einsum("nop,nkp->ok", grad_matrix, columns).reshape(weight.shape)
            grad_columns = np.matmul(weight.reshape(weight.shape[0], -1).T, grad_matrix)  # (N, C*K*K, P)
        else:
            grouped_grad = grad_matrix.reshape(batch, groups, -1, grad_matrix.shape[-1])
            grouped = columns.reshape(batch, groups, -1, columns.shape[-1])
            grads[f"{layer.name}.weight"] = np.einsum("ngop,ngkp->gok", grouped_grad, grouped).reshape(weight.shape)
            grouped_weight = weight.reshape(groups, weight.shape[0] // groups, -1)
            grad_columns = np.einsum("gok,ngop->ngkp", grouped_weight, grouped_grad).reshape(columns.shape)
        # col2im: scatter-add the columns back onto the padded input
        channels, height, width = layer.input_shape
        pad_h, pad_w = layer.settings["padding"]
        rows, cols = _im2col_indices(layer)
        kernel_h, kernel_w = layer.settings["kernel"]
        grad_padded = np.zeros((batch, channels, height + 2 * pad_h, width + 2 * pad_w), dtype=x.dtype)
        grad_columns = grad_columns.reshape(batch, channels, kernel_h, kernel_w, rows.shape[1], cols.shape[1])
        for u in range(kernel_h):
            for v in range(kernel_w):
                np.add.at(grad_padded, (slice(None), slice(None), rows[u][:, None], cols[v][None, :]),
                          grad_columns[:, :, u, v])
        return grad_padded[:, :, pad_h:pad_h + height, pad_w:pad_w + width]

    def _transposed_extent(self, layer, x):
        """The rows and columns every tap of every input element reaches, ``(H - 1)s + d(K - 1) + 1``, plus
        the output padding: the output is this extent with ``padding`` cut from each side."""
        (kernel_h, kernel_w), (stride_h, stride_w) = layer.settings["kernel"], layer.settings["stride"]
        (dilation_h, dilation_w), (extra_h, extra_w) = layer.settings["dilation"], layer.settings["output_padding"]
        height, width = x.shape[2:]
        return ((height - 1) * stride_h + dilation_h * (kernel_h - 1) + 1 + extra_h,
                (width - 1) * stride_w + dilation_w * (kernel_w - 1) + 1 + extra_w)

    def _taps(self, layer, x):
        """Each tap ``(u, v)`` and the strided slice of the uncropped output its input elements land on."""
        (kernel_h, kernel_w), (stride_h, stride_w) = layer.settings["kernel"], layer.settings["stride"]
        dilation_h, dilation_w = layer.settings["dilation"]
        height, width = x.shape[2:]
        for u in range(kernel_h):
            for v in range(kernel_w):
                rows = slice(u * dilation_h, u * dilation_h + (height - 1) * stride_h + 1, stride_h)
                cols = slice(v * dilation_w, v * dilation_w + (width - 1) * stride_w + 1, stride_w)
                yield u, v, (slice(None), slice(None), rows, cols)

    def _transposed_forward(self, layer, x):
        """Scatter: each input element adds its weighted kernel onto the output (PyTorch's ConvTranspose2d)."""
        weight = self.params[f"{layer.name}.weight"]  # (C_in, C_out, K_h, K_w)
        full = np.zeros((x.shape[0], weight.shape[1], *self._transposed_extent(layer, x)), dtype=x.dtype)
        for u, v, where in self._taps(layer, x):
            full[where] += np.einsum("nchw,co->nohw", x, weight[:, :, u, v])
        (pad_h, pad_w), (_, out_h, out_w) = layer.settings["padding"], layer.output_shape
        out = full[:, :, pad_h:pad_h + out_h, pad_w:pad_w + out_w]
        if f"{layer.name}.bias" in self.params:
            out = out + self.params[f"{layer.name}.bias"][None, :, None, None]
        return np.ascontiguousarray(out)

    def _transposed_backward(self, layer, x, grad_out, grads):
        weight = self.params[f"{layer.name}.weight"]
        full = np.zeros((x.shape[0], weight.shape[1], *self._transposed_extent(layer, x)), dtype=x.dtype)
        (pad_h, pad_w), (_, out_h, out_w) = layer.settings["padding"], layer.output_shape
        full[:, :, pad_h:pad_h + out_h, pad_w:pad_w + out_w] = grad_out
        grad_x, grad_weight = np.zeros_like(x), np.zeros_like(weight)
        for u, v, where in self._taps(layer, x):
            grad_x += np.einsum("nohw,co->nchw", full[where], weight[:, :, u, v])
            grad_weight[:, :, u, v] = np.einsum("nchw,nohw->co", x, full[where])
        grads[f"{layer.name}.weight"] = grad_weight
        if f"{layer.name}.bias" in self.params:
            grads[f"{layer.name}.bias"] = grad_out.sum(axis=(0, 2, 3))
        return grad_x

    def _pool_windows(self, layer, x):
        rows, cols = _im2col_indices(layer)
        windows = x[:, :, rows[:, :, None, None], cols[None, None, :, :]]  # (N, C, K_h, H_out, K_w, W_out)
        return windows.transpose(0, 1, 3, 5, 2, 4).reshape(*x.shape[:2], rows.shape[1], cols.shape[1], -1)

    def _adaptive_forward(self, layer, x):
        """An adaptive pool window by window; for max pooling also each window's first argmax (flat)."""
        output = np.empty((x.shape[0], *layer.output_shape), dtype=x.dtype)
        argmax = np.zeros(output.shape, dtype=np.int64)
        for i, j, rows, cols in _adaptive_cells(layer):
            window = x[:, :, rows, cols].reshape(*x.shape[:2], -1)
            if layer.kind == "adaptive_maxpool2d":
                argmax[:, :, i, j] = window.argmax(axis=-1)  # the first maximum in row-major order
                output[:, :, i, j] = np.take_along_axis(window, argmax[:, :, i, j, None], axis=-1)[..., 0]
            else:
                output[:, :, i, j] = window.mean(axis=-1)
        return output, argmax

    def _adaptive_backward(self, layer, x, argmax, upstream):
        grad = np.zeros_like(x)
        for i, j, rows, cols in _adaptive_cells(layer):
            window = grad[:, :, rows, cols]  # a view: overlapping windows add up
            if layer.kind == "adaptive_maxpool2d":
                share = np.zeros((*x.shape[:2], window.shape[2] * window.shape[3]), dtype=x.dtype)
                np.put_along_axis(share, argmax[:, :, i, j, None], upstream[:, :, i, j, None], axis=-1)
                window += share.reshape(window.shape)
            else:
                window += upstream[:, :, i, j, None, None] / (window.shape[2] * window.shape[3])
        return grad

    # --- passes ---------------------------------------------------------------------------

    def _layer_forward(self, layer: LayerSpec, sources: list, masks):
        """(output, cache) of one layer on the tensors its ``inputs`` name (one, or an add's or
        concat's several)."""
        value, cache = sources[0], None
        if layer.kind == "add":
            output = np.sum(sources, axis=0)
        elif layer.kind == "concat":
            output = np.concatenate(sources, axis=1)
        elif layer.kind == "dropout":  # masks None: evaluation, the identity
            cache = None if masks is None else masks[layer.label]
            output = value if cache is None else value * cache / (1 - layer.settings["p"])
        elif layer.kind == "conv2d":
            output, cache = self._conv_forward(layer, value)
        elif layer.kind == "conv_transpose2d":
            output = self._transposed_forward(layer, value)
        elif layer.kind == "relu":
            output = np.maximum(value, 0)
        elif layer.kind == "leaky_relu":
            output = np.where(value > 0, value, value * layer.settings["alpha"])
        elif layer.kind == "elu":
            output = np.where(value > 0, value, layer.settings["alpha"] * np.expm1(np.minimum(value, 0)))
        elif layer.kind in ("maxpool2d", "avgpool2d"):
            windows = self._pool_windows(layer, value)
            if layer.kind == "maxpool2d":
                cache = windows.argmax(axis=-1)  # the first maximum, as the generated kernels
                output = np.take_along_axis(windows, cache[..., None], axis=-1)[..., 0]
            else:
                output = windows.mean(axis=-1)
        elif layer.kind in ("adaptive_avgpool2d", "adaptive_maxpool2d"):
            output, cache = self._adaptive_forward(layer, value)
        elif layer.kind == "global_avgpool":
            output = value.mean(axis=(2, 3), keepdims=True)
        elif layer.kind == "sigmoid":
            output = cache = 1 / (1 + np.exp(-value))
        elif layer.kind == "tanh":
            output = cache = np.tanh(value)
        elif layer.kind == "flatten":
            output = value.reshape(value.shape[0], -1)
        elif layer.kind in ("batchnorm2d", "layernorm"):
            output, cache = self._normalize(layer, value)
        elif layer.kind == "dense":
            output = value @ self.params[f"{layer.name}.weight"].T
            if f"{layer.name}.bias" in self.params:
                output = output + self.params[f"{layer.name}.bias"]
        else:  # an op registered from a user's own code has no NumPy twin here
            raise ValueError(f"{layer.kind}: no NumPy reference for this op")
        return output, cache

    def _forward(self, x, masks=None):
        """The logits, every tensor by label (``"input"``: ``x``; each layer's output) and each layer's
        cache by label: the layers in the spec's order, each on the tensors its ``inputs`` name."""
        values, caches = {"input": x}, {}
        for layer in self.spec.layers:
            sources = [values[source] for source in layer.inputs]
            values[layer.label], caches[layer.label] = self._layer_forward(layer, sources, masks)
        return values[self.spec.layers[-1].label], values, caches

    def forward(self, x: np.ndarray, masks=None) -> np.ndarray:
        """The logits; an evaluation pass unless ``masks`` (dropout's, by layer label) are given."""
        return self._forward(x, masks)[0]

    def _layer_backward(self, layer: LayerSpec, sources: list, cache, upstream, grads) -> list:
        """The gradients with respect to the layer's inputs (one per entry of its ``inputs``), from the
        gradient of its output; its parameters' gradients into ``grads``."""
        layer_input = sources[0]
        if layer.kind == "add":  # each summand's gradient is the sum's
            return [upstream] * len(sources)
        if layer.kind == "concat":  # each input's gradient is its block of channels
            return np.split(upstream, np.cumsum([source.shape[1] for source in sources])[:-1], axis=1)
        if layer.kind == "dropout":
            upstream = upstream * cache / (1 - layer.settings["p"])
        elif layer.kind == "conv2d":
            upstream = self._conv_backward(layer, layer_input, cache, upstream, grads)
        elif layer.kind == "conv_transpose2d":
            upstream = self._transposed_backward(layer, layer_input, upstream, grads)
        elif layer.kind == "relu":
            upstream = upstream * (layer_input > 0)
        elif layer.kind == "leaky_relu":
            upstream = np.where(layer_input > 0, upstream, upstream * layer.settings["alpha"])
        elif layer.kind == "elu":
            upstream = np.where(layer_input > 0, upstream,
                                upstream * layer.settings["alpha"] * np.exp(np.minimum(layer_input, 0)))
        elif layer.kind in ("maxpool2d", "avgpool2d"):
            kernel_h, kernel_w = layer.settings["kernel"]
            rows, cols = _im2col_indices(layer)
            grad = np.zeros_like(layer_input)
            for u in range(kernel_h):
                for v in range(kernel_w):
                    share = (cache == u * kernel_w + v) * upstream if layer.kind == "maxpool2d" \
                        else upstream / (kernel_h * kernel_w)
                    np.add.at(grad, (slice(None), slice(None), rows[u][:, None], cols[v][None, :]), share)
            upstream = grad
        elif layer.kind in ("adaptive_avgpool2d", "adaptive_maxpool2d"):
            upstream = self._adaptive_backward(layer, layer_input, cache, upstream)
        elif layer.kind == "global_avgpool":
            upstream = np.broadcast_to(upstream / (layer_input.shape[2] * layer_input.shape[3]),
                                       layer_input.shape).copy()
        elif layer.kind == "sigmoid":
            upstream = upstream * cache * (1 - cache)
        elif layer.kind == "tanh":
            upstream = upstream * (1 - cache * cache)
        elif layer.kind == "flatten":
            upstream = upstream.reshape(layer_input.shape)
        elif layer.kind in ("batchnorm2d", "layernorm"):
            upstream = self._normalize_backward(layer, cache, upstream, grads)
        else:  # dense
            weight = self.params[f"{layer.name}.weight"]
            grads[f"{layer.name}.weight"] = upstream.T @ layer_input
            if f"{layer.name}.bias" in self.params:
                grads[f"{layer.name}.bias"] = upstream.sum(axis=0)
            upstream = upstream @ weight
        return [upstream]

    def loss_and_grads(self, x: np.ndarray, labels: np.ndarray, masks=None):
        """A training pass: with ``masks`` (dropout's, by layer label), else masks of its own.

        Backward, the layers in reverse order: a tensor that several layers read (a fan-out: a
        residual block's input) gets the sum of the gradients they send back (the multivariable chain
        rule), complete once its last reader has sent its part, before its own layer runs."""
        if masks is None:
            masks = self.draw_masks(x.shape[0], x.dtype)
        logits, values, caches = self._forward(x, masks)
        batch = x.shape[0]
        shifted = logits - logits.max(axis=1, keepdims=True)
        exponentials = np.exp(shifted)
        probabilities = exponentials / exponentials.sum(axis=1, keepdims=True)
        loss = float(-np.log(probabilities[np.arange(batch), labels]).mean())
        upstream = probabilities
        upstream[np.arange(batch), labels] -= 1
        upstream /= batch
        grads: dict = {}
        sent: dict[str, list] = {self.spec.layers[-1].label: [upstream]}  # by tensor: what its readers sent
        for layer in reversed(self.spec.layers):
            upstream = functools.reduce(np.add, sent.pop(layer.label))
            sources = [values[source] for source in layer.inputs]
            gradients = self._layer_backward(layer, sources, caches[layer.label], upstream, grads)
            for source, gradient in zip(layer.inputs, gradients):
                sent.setdefault(source, []).append(gradient)
        grads["input"] = functools.reduce(np.add, sent["input"])
        return loss, grads

    def train_step(self, x, labels, lr: float = 0.01) -> float:
        loss, grads = self.loss_and_grads(x, labels)
        for name, parameter in self.params.items():
            parameter -= parameter.dtype.type(lr) * grads[name]
        return loss
