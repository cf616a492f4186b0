"""The built-in ops' registry entries (all but normalization's): convolutions, pools, flatten, dense,
activations, softmax and the losses, in the order every listing shows them.

SymPy-free: the formulas are named as ``"symcnn.symbolic.ops:function"``; the integer shapes are
:mod:`symcnn.shapes`'.

Example:
    >>> from symcnn import registry
    >>> registry.get("conv_transpose2d").title
    '2-D transposed convolution'
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from symcnn import shapes
from symcnn.registry import costs
from symcnn.registry.core import Op, Setting, in_words, register
from symcnn.validation import check_adaptive_output

__all__: list[str] = []


def _conv_phrase(settings: Mapping[str, Any]) -> str:
    count = settings["out_channels"]
    text = (f"{count} kernel{'' if count == 1 else 's'} of size {in_words(settings['kernel'])}, "
            f"stride {in_words(settings['stride'])}, padding {in_words(settings['padding'])}")
    text += f", output padding {in_words(settings['output_padding'])}" if "output_padding" in settings else ""
    text += f", {settings['groups']} groups" if settings.get("groups", 1) != 1 else ""
    return text + (f", dilation {in_words(settings['dilation'])}" if settings["dilation"] != (1, 1) else "")


def _pool_phrase(settings: Mapping[str, Any]) -> str:
    return f"window {in_words(settings['kernel'])}, stride {in_words(settings['stride'])}"


def _alpha_phrase(settings: Mapping[str, Any]) -> str:
    return f"alpha = {settings['alpha']}"


_KERNEL = Setting("kernel", "pair", roles=("kernel_height", "kernel_width"), help="window size")
_OUT_CHANNELS = Setting("out_channels", "count", roles=("out_channels",), help="output channels")
_STRIDE = Setting("stride", "pair", default=1, roles=("stride_h", "stride_w"), help="step between windows")
_DILATION = Setting("dilation", "pair", default=1, roles=("dilation_h", "dilation_w"), help="spacing of kernel taps")
_BIAS = Setting("bias", "flag", default=True, option=True, help="whether the layer adds a learned bias")


def _pool_stride(what: str) -> Setting:
    return Setting("stride", "pair", default_from="kernel", roles=("stride_h", "stride_w"),
                   help=f"step between {what} windows; default: the kernel size (PyTorch's default)")


def _alpha(default: float, what: str) -> Setting:
    return Setting("alpha", "number", default=default, roles=("alpha",), help=what)


_FORMULAS = "symcnn.symbolic.ops"

register(Op(
    "conv2d", f"{_FORMULAS}:conv2d", "2-D convolution",
    settings=(
        _OUT_CHANNELS,
        _KERNEL,
        _STRIDE,
        Setting("padding", "pair", default=0, minimum=0, roles=("padding_h", "padding_w"), help="zero padding"),
        _DILATION,
        _BIAS,
        Setting("groups", "count", default=1, option=True,
                help="channel groups (PyTorch's): each output channel reads the C_in/groups inputs of its group"),
    ),
    output_shape=shapes.conv_output, parameter_shapes=shapes.conv_parameters,
    macs=costs.conv_macs, window=costs.setting_windows,
    summary="a 2-D convolution as deep-learning frameworks compute it (cross-correlation), with stride, zero "
            "padding and dilation",
    description="a convolution (cross-correlation) over the zero-padded input",
    gradient_note="The convolution is linear in its weight, its bias and its input. By the chain rule each "
                  "gradient sums the upstream gradient over the outputs that the element touched: the bias over "
                  "every position, the weight correlates the input with the upstream gradient, and the input "
                  "gathers the upstream gradient through the kernel (document 000's “full” convolution, with its "
                  "range condition).",
    letter="S",
    phrase=_conv_phrase,
))
register(Op(
    "maxpool2d", f"{_FORMULAS}:maxpool2d", "max pooling",
    settings=(_KERNEL, _pool_stride("pooling")),
    output_shape=shapes.pool_output, window=costs.setting_windows,
    nondifferentiable="a tie routes the gradient to the first maximum of the window in row-major order",
    summary="max pooling over windows of the input; a tie routes the gradient to the first maximum in "
            "row-major order",
    description="max pooling",
    gradient_note="Max pooling routes each upstream gradient to the position of its window's maximum (the first "
                  "one in row-major order on a tie); every other position gets 0. The sum runs over the windows "
                  "that contain the element.",
    letter="P",
    phrase=_pool_phrase,
))
register(Op(
    "avgpool2d", f"{_FORMULAS}:avgpool2d", "average pooling",
    settings=(_KERNEL, _pool_stride("pooling")),
    output_shape=shapes.pool_output, macs=costs.avgpool_macs, window=costs.setting_windows,
    summary="average pooling over windows of the input",
    description="average pooling",
    gradient_note="Average pooling spreads each upstream gradient evenly over its window.",
    letter="P",
    phrase=_pool_phrase,
))
register(Op(
    "global_avgpool", f"{_FORMULAS}:global_avgpool", "global average pooling",
    output_shape=lambda shape, settings: (shape[0], 1, 1),
    macs=costs.global_avgpool_macs, window=costs.global_windows,
    summary="the mean of each channel over the whole map (document 002)",
    description="global average pooling",
    gradient_note="Global average pooling spreads each upstream gradient evenly over its whole map.",
    letter="P",
))
register(Op(
    "flatten", f"{_FORMULAS}:flatten", "flatten",
    output_shape=lambda shape, settings: (math.prod(shape),),
    summary="a (C, H, W) map read out as a vector in C, H, W order (document 004)",
    description="the map read out as a vector, in C, H, W order",
    gradient_note="Flatten only moves entries: its gradient is the upstream gradient read back at each element's "
                  "position in the vector (the inverse of flatten's index map).",
    letter="h",
))
register(Op(
    "dense", f"{_FORMULAS}:dense", "dense (fully connected)", inputs=(1,),
    settings=(Setting("out_features", "count", roles=("out_features",), help="output features"), _BIAS),
    output_shape=lambda shape, settings: (settings["out_features"],), parameter_shapes=shapes.dense_parameters,
    macs=costs.dense_macs, window=costs.global_windows,  # it reads the whole map it was flattened from
    summary="a fully connected layer, weights of shape (out, in) (document 004)",
    description="a fully connected layer",
    gradient_note="The dense layer is linear: by the chain rule the bias gradient is the upstream gradient summed "
                  "over the batch, the weight gradient the outer product of the upstream gradient with the layer's "
                  "input, and the input gradient the upstream gradient through the transposed weight.",
    letter="z",
    phrase=lambda settings: f"{settings['out_features']} outputs",
))
register(Op(
    "relu", f"{_FORMULAS}:relu", "ReLU", inputs=(3, 1),
    nondifferentiable="ReLU'(0) = 0",
    summary="the rectifier, element-wise; its derivative at 0 is taken as 0",
    description="ReLU, element-wise",
    gradient_note="ReLU's derivative is a mask: 1 where its input is positive, 0 elsewhere (ReLU'(0) = 0).",
))
register(Op(
    "leaky_relu", f"{_FORMULAS}:leaky_relu", "LeakyReLU", inputs=(3, 1),
    settings=(_alpha(0.01, "the slope for negative inputs"),),
    nondifferentiable="LeakyReLU'(0) = alpha",
    summary="the leaky rectifier, element-wise, slope alpha for x <= 0",
    description="leaky ReLU, element-wise",
    gradient_note="Leaky ReLU's derivative: 1 where its input is positive, alpha elsewhere.",
    phrase=_alpha_phrase,
))
register(Op(
    "elu", f"{_FORMULAS}:elu", "ELU", inputs=(3, 1),
    settings=(_alpha(1.0, "the scale of the negative side"),),
    nondifferentiable="ELU'(0) = alpha e^0 = alpha",
    summary="the exponential linear unit, element-wise, scale alpha for x <= 0",
    description="ELU, element-wise",
    gradient_note="ELU's derivative: 1 where its input is positive, alpha times the exponential elsewhere.",
    phrase=_alpha_phrase,
))
register(Op(
    "sigmoid", f"{_FORMULAS}:sigmoid", "sigmoid", inputs=(3, 1),
    summary="the logistic function 1/(1 + e^(-x)), element-wise",
    description="the sigmoid, element-wise",
    gradient_note="The sigmoid's derivative is σ(x)(1 − σ(x)): at most 1/4, which is why deep stacks of sigmoids "
                  "pass small gradients back.",
    letter="a",
))
register(Op(
    "tanh", f"{_FORMULAS}:tanh", "tanh", inputs=(3, 1),
    summary="the hyperbolic tangent, element-wise",
    description="tanh, element-wise",
    gradient_note="tanh's derivative is 1 − tanh²(x): at most 1, at x = 0.",
    letter="a",
))
_ADAPTIVE = dict(  # PyTorch's windows: floor(i·in/out) to ceil((i + 1)·in/out) − 1, overlapping where out ∤ in
    settings=(Setting("output", "pair", roles=("out_height", "out_width"), help="output size, at most the input's"),),
    output_shape=lambda shape, settings: (shape[0], *check_adaptive_output(shape[1:], settings["output"])), letter="P",
    window=costs.adaptive_windows)
register(Op(
    "adaptive_avgpool2d", f"{_FORMULAS}:adaptive_avgpool2d", "adaptive average pooling", **_ADAPTIVE,
    macs=costs.adaptive_avgpool_macs,
    summary="average pooling to a given output size over PyTorch's adaptive windows, which may overlap",
    gradient_note="Adaptive average pooling spreads each upstream gradient evenly over its window (they may overlap).",
))
register(Op(
    "adaptive_maxpool2d", f"{_FORMULAS}:adaptive_maxpool2d", "adaptive max pooling", **_ADAPTIVE,
    nondifferentiable="a tie routes the gradient to the first maximum of the window in row-major order",
    summary="max pooling to a given output size over PyTorch's adaptive windows; a tie routes to the first maximum",
    gradient_note="Adaptive max pooling routes each upstream gradient to its window's first maximum (row-major).",
))
register(Op(
    "dropout", f"{_FORMULAS}:dropout", "dropout", inputs=(3, 1), mask_drop="p",
    settings=(Setting("p", "number", default=0.5, roles=("p",), interval=(0, 1), help="drop probability (PyTorch's)"),),
    summary="inverted dropout: in training each element is dropped with probability p and the others scaled by "
            "1/(1 − p); the identity in evaluation", description="dropout", letter="d",
    gradient_note="Dropout's gradient is the upstream gradient through the same mask, scaled by 1/(1 − p).",
))
register(Op(
    "conv_transpose2d", f"{_FORMULAS}:conv_transpose2d", "2-D transposed convolution",
    settings=(
        _OUT_CHANNELS,
        _KERNEL,
        _STRIDE,
        Setting("padding", "pair", default=0, minimum=0, roles=("padding_h", "padding_w"),
                help="rows and columns cut from each side of the output (PyTorch's padding)"),
        Setting("output_padding", "pair", default=0, minimum=0, roles=("output_padding_h", "output_padding_w"),
                help="rows and columns added at the end of the output, which only the bias reaches"),
        _DILATION,
        _BIAS,
    ),
    output_shape=shapes.conv_transpose_output, parameter_shapes=shapes.conv_transpose_parameters,
    macs=costs.conv_transpose_macs, window=costs.no_integer_windows,
    summary="the transposed convolution (PyTorch's ConvTranspose2d), the adjoint of the convolution: each input "
            "element spreads over a window of the output; weights (C_in, C_out, K_h, K_w)",
    description="a transposed convolution (the adjoint of a convolution)",
    gradient_note="The transposed convolution is linear in its weight, its bias and its input. Its input gradient is "
                  "a convolution of the upstream gradient (the transposed convolution is the convolution's input "
                  "gradient, so its own is the convolution), the weight gradient correlates the upstream gradient "
                  "with the input where the taps land, and the bias sums the upstream gradient.",
    letter="S",
    phrase=_conv_phrase,
))
register(Op(
    "softmax", f"{_FORMULAS}:softmax", "softmax", inputs=(1,), layer=False,
    summary="softmax over the classes of each sample",
))
register(Op(
    "softmax_cross_entropy", f"{_FORMULAS}:softmax_cross_entropy", "softmax cross-entropy", inputs=(1,),
    layer=False, loss=True, output_shape=lambda shape, settings: (),
    summary="softmax followed by cross-entropy in one stable formula, averaged over the batch; for one "
            "sample it is document 004's loss",
))
register(Op(
    "cross_entropy", f"{_FORMULAS}:cross_entropy", "cross-entropy", inputs=(1,), layer=False, loss=True,
    output_shape=lambda shape, settings: (),
    summary="the cross-entropy of probabilities with one-hot labels, averaged over the batch",
))
# Document 003's normalization layers, registered by a module of their own (this one's line budget).
