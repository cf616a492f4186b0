"""An independent plain-NumPy reference for the layers, written from the math with explicit loops.

Nothing here imports symcnn: every function is the textbook definition, float64, so that the
tests can compare symcnn's symbolic expansions against a second implementation.

Conventions: cross-correlation, NCHW, conv weights ``(C_out, C_in, K_h, K_w)``, dense weights
``(out, in)``, zero padding, flatten in CHW order, ReLU'(0) = 0, max-pooling ties route the
gradient to the first maximum of the window in row-major order, cross-entropy is the batch mean.

Gradients are written in scatter form: for each output element, add its contributions to the
gradients of everything it read.

Example (document 002's convolution at numbers):
    >>> import numpy as np
    >>> x = np.arange(9.0).reshape(1, 1, 3, 3)
    >>> w = np.array([[[[1.0, 0.0], [0.0, -1.0]]]])
    >>> conv2d(x, w).tolist()
    [[[[-4.0, -4.0], [-4.0, -4.0]]]]
    >>> maxpool2d(np.array([[[[1.0, 5.0, 4.0], [9.0, 2.0, 1.0], [6.0, 3.0, 2.0]]]]), 2, 1).tolist()
    [[[[9.0, 5.0], [9.0, 3.0]]]]
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "as_pair",
    "out_size",
    "conv2d",
    "conv2d_backward",
    "maxpool2d",
    "maxpool2d_backward",
    "avgpool2d",
    "avgpool2d_backward",
    "global_avgpool",
    "global_avgpool_backward",
    "flatten",
    "flatten_backward",
    "dense",
    "dense_backward",
    "relu",
    "relu_grad",
    "leaky_relu",
    "leaky_relu_grad",
    "elu",
    "elu_grad",
    "softmax",
    "softmax_cross_entropy",
    "softmax_cross_entropy_grad",
]


def as_pair(value) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        return int(value[0]), int(value[1])
    return int(value), int(value)


def out_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """Number of window positions along one axis: the last window must end inside the padded input."""
    span = dilation * (kernel - 1) + 1
    return (size + 2 * padding - span) // stride + 1


# --- convolution --------------------------------------------------------------------------------


def _padded(x: np.ndarray, ph: int, pw: int) -> np.ndarray:
    n, c, h, w = x.shape
    out = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=np.float64)
    out[:, :, ph:ph + h, pw:pw + w] = x
    return out


def conv2d(x, w, b=None, stride=1, padding=0, dilation=1) -> np.ndarray:
    """``y[n, o, i, j] = b[o] + sum_{c, u, v} w[o, c, u, v] * xpad[n, c, i*s + u*d, j*s + v*d]``."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    (sh, sw), (ph, pw), (dh, dw) = as_pair(stride), as_pair(padding), as_pair(dilation)
    n_batch, c_in, h, wd = x.shape
    c_out, c_in_w, kh, kw = w.shape
    assert c_in == c_in_w
    oh, ow = out_size(h, kh, sh, ph, dh), out_size(wd, kw, sw, pw, dw)
    xp = _padded(x, ph, pw)
    y = np.zeros((n_batch, c_out, oh, ow), dtype=np.float64)
    for n in range(n_batch):
        for o in range(c_out):
            for i in range(oh):
                for j in range(ow):
                    total = 0.0 if b is None else float(b[o])
                    for c in range(c_in):
                        for u in range(kh):
                            for v in range(kw):
                                total += w[o, c, u, v] * xp[n, c, i * sh + u * dh, j * sw + v * dw]
                    y[n, o, i, j] = total
    return y


def conv2d_backward(x, w, g, stride=1, padding=0, dilation=1):
    """``(dL/dx, dL/dw, dL/db)`` for upstream ``g = dL/dy``, by scattering each output's contributions."""
    x, w, g = (np.asarray(a, np.float64) for a in (x, w, g))
    (sh, sw), (ph, pw), (dh, dw) = as_pair(stride), as_pair(padding), as_pair(dilation)
    n_batch, c_in, h, wd = x.shape
    c_out, _, kh, kw = w.shape
    xp = _padded(x, ph, pw)
    gxp = np.zeros_like(xp)
    gw = np.zeros_like(w)
    gb = np.zeros(c_out, dtype=np.float64)
    for n in range(n_batch):
        for o in range(c_out):
            for i in range(g.shape[2]):
                for j in range(g.shape[3]):
                    up = g[n, o, i, j]
                    gb[o] += up
                    for c in range(c_in):
                        for u in range(kh):
                            for v in range(kw):
                                r, s = i * sh + u * dh, j * sw + v * dw
                                gw[o, c, u, v] += up * xp[n, c, r, s]
                                gxp[n, c, r, s] += up * w[o, c, u, v]
    gx = gxp[:, :, ph:ph + h, pw:pw + wd]
    return gx, gw, gb


# --- pooling ------------------------------------------------------------------------------------


def _pool_params(kernel, stride):
    kh, kw = as_pair(kernel)
    sh, sw = (kh, kw) if stride is None else as_pair(stride)
    return kh, kw, sh, sw


def _first_argmax(window: np.ndarray) -> tuple[int, int]:
    """Row-major scan keeping the first of equal maxima (strictly greater replaces)."""
    best, where = None, (0, 0)
    for u in range(window.shape[0]):
        for v in range(window.shape[1]):
            if best is None or window[u, v] > best:
                best, where = window[u, v], (u, v)
    return where


def maxpool2d(x, kernel, stride=None) -> np.ndarray:
    x = np.asarray(x, np.float64)
    kh, kw, sh, sw = _pool_params(kernel, stride)
    n_batch, chans, h, wd = x.shape
    oh, ow = out_size(h, kh, sh, 0, 1), out_size(wd, kw, sw, 0, 1)
    y = np.zeros((n_batch, chans, oh, ow))
    for n in range(n_batch):
        for c in range(chans):
            for i in range(oh):
                for j in range(ow):
                    best = -math.inf
                    for u in range(kh):
                        for v in range(kw):
                            best = max(best, x[n, c, i * sh + u, j * sw + v])
                    y[n, c, i, j] = best
    return y


def maxpool2d_backward(x, g, kernel, stride=None) -> np.ndarray:
    x, g = np.asarray(x, np.float64), np.asarray(g, np.float64)
    kh, kw, sh, sw = _pool_params(kernel, stride)
    gx = np.zeros_like(x)
    for n in range(g.shape[0]):
        for c in range(g.shape[1]):
            for i in range(g.shape[2]):
                for j in range(g.shape[3]):
                    window = x[n, c, i * sh:i * sh + kh, j * sw:j * sw + kw]
                    u, v = _first_argmax(window)
                    gx[n, c, i * sh + u, j * sw + v] += g[n, c, i, j]
    return gx


def avgpool2d(x, kernel, stride=None) -> np.ndarray:
    x = np.asarray(x, np.float64)
    kh, kw, sh, sw = _pool_params(kernel, stride)
    n_batch, chans, h, wd = x.shape
    oh, ow = out_size(h, kh, sh, 0, 1), out_size(wd, kw, sw, 0, 1)
    y = np.zeros((n_batch, chans, oh, ow))
    for n in range(n_batch):
        for c in range(chans):
            for i in range(oh):
                for j in range(ow):
                    total = 0.0
                    for u in range(kh):
                        for v in range(kw):
                            total += x[n, c, i * sh + u, j * sw + v]
                    y[n, c, i, j] = total / (kh * kw)
    return y


def avgpool2d_backward(x, g, kernel, stride=None) -> np.ndarray:
    x, g = np.asarray(x, np.float64), np.asarray(g, np.float64)
    kh, kw, sh, sw = _pool_params(kernel, stride)
    gx = np.zeros_like(x)
    for n in range(g.shape[0]):
        for c in range(g.shape[1]):
            for i in range(g.shape[2]):
                for j in range(g.shape[3]):
                    for u in range(kh):
                        for v in range(kw):
                            gx[n, c, i * sh + u, j * sw + v] += g[n, c, i, j] / (kh * kw)
    return gx


def global_avgpool(x) -> np.ndarray:
    x = np.asarray(x, np.float64)
    n_batch, chans, h, wd = x.shape
    y = np.zeros((n_batch, chans, 1, 1))
    for n in range(n_batch):
        for c in range(chans):
            y[n, c, 0, 0] = sum(x[n, c, i, j] for i in range(h) for j in range(wd)) / (h * wd)
    return y


def global_avgpool_backward(x, g) -> np.ndarray:
    x, g = np.asarray(x, np.float64), np.asarray(g, np.float64)
    n_batch, chans, h, wd = x.shape
    gx = np.zeros_like(x)
    for n in range(n_batch):
        for c in range(chans):
            for i in range(h):
                for j in range(wd):
                    gx[n, c, i, j] = g[n, c, 0, 0] / (h * wd)
    return gx


# --- flatten and dense --------------------------------------------------------------------------


def flatten(x) -> np.ndarray:
    """``y[n, c*H*W + i*W + j] = x[n, c, i, j]``."""
    x = np.asarray(x, np.float64)
    n_batch, chans, h, wd = x.shape
    y = np.zeros((n_batch, chans * h * wd))
    for n in range(n_batch):
        for c in range(chans):
            for i in range(h):
                for j in range(wd):
                    y[n, c * h * wd + i * wd + j] = x[n, c, i, j]
    return y


def flatten_backward(x_shape, g) -> np.ndarray:
    g = np.asarray(g, np.float64)
    n_batch, chans, h, wd = x_shape
    gx = np.zeros(x_shape)
    for n in range(n_batch):
        for c in range(chans):
            for i in range(h):
                for j in range(wd):
                    gx[n, c, i, j] = g[n, c * h * wd + i * wd + j]
    return gx


def dense(x, w, b=None) -> np.ndarray:
    """``y[n, o] = b[o] + sum_k w[o, k] x[n, k]``."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    y = np.zeros((x.shape[0], w.shape[0]))
    for n in range(x.shape[0]):
        for o in range(w.shape[0]):
            total = 0.0 if b is None else float(b[o])
            for k in range(x.shape[1]):
                total += w[o, k] * x[n, k]
            y[n, o] = total
    return y


def dense_backward(x, w, g):
    x, w, g = (np.asarray(a, np.float64) for a in (x, w, g))
    gx, gw, gb = np.zeros_like(x), np.zeros_like(w), np.zeros(w.shape[0])
    for n in range(x.shape[0]):
        for o in range(w.shape[0]):
            gb[o] += g[n, o]
            for k in range(x.shape[1]):
                gw[o, k] += g[n, o] * x[n, k]
                gx[n, k] += g[n, o] * w[o, k]
    return gx, gw, gb


# --- activations --------------------------------------------------------------------------------


def _elementwise(function, x) -> np.ndarray:
    x = np.asarray(x, np.float64)
    out = np.empty_like(x)
    for index in np.ndindex(x.shape):
        out[index] = function(float(x[index]))
    return out


def relu(x) -> np.ndarray:
    return _elementwise(lambda t: t if t > 0 else 0.0, x)


def relu_grad(x) -> np.ndarray:
    """1 where x > 0, else 0 (ReLU'(0) = 0)."""
    return _elementwise(lambda t: 1.0 if t > 0 else 0.0, x)


def leaky_relu(x, alpha=0.01) -> np.ndarray:
    return _elementwise(lambda t: t if t > 0 else alpha * t, x)


def leaky_relu_grad(x, alpha=0.01) -> np.ndarray:
    return _elementwise(lambda t: 1.0 if t > 0 else alpha, x)


def elu(x, alpha=1.0) -> np.ndarray:
    return _elementwise(lambda t: t if t > 0 else alpha * (math.exp(t) - 1.0), x)


def elu_grad(x, alpha=1.0) -> np.ndarray:
    return _elementwise(lambda t: 1.0 if t > 0 else alpha * math.exp(t), x)


# --- softmax and cross-entropy ------------------------------------------------------------------


def softmax(z) -> np.ndarray:
    """Row-wise softmax of ``z (N, classes)``, shifted by the row maximum for stability."""
    z = np.asarray(z, np.float64)
    p = np.zeros_like(z)
    for n in range(z.shape[0]):
        top = max(z[n])
        exps = [math.exp(value - top) for value in z[n]]
        total = sum(exps)
        for k in range(z.shape[1]):
            p[n, k] = exps[k] / total
    return p


def softmax_cross_entropy(z, labels) -> float:
    """``-(1/N) sum_n log softmax(z)[n, labels[n]]``."""
    p = softmax(z)
    return -sum(math.log(p[n, int(labels[n])]) for n in range(p.shape[0])) / p.shape[0]


def softmax_cross_entropy_grad(z, labels) -> np.ndarray:
    """``(p - y) / N`` with one-hot ``y``."""
    p = softmax(z)
    grad = p.copy()
    for n in range(p.shape[0]):
        grad[n, int(labels[n])] -= 1.0
    return grad / p.shape[0]
