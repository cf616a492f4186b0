"""Document 003's claims from "Advanced CNN Concepts" on: dilated, depthwise separable and transposed
convolution, dropout and the cross-entropy loss (:data:`ADVANCED`), then, after "Optimization for CNNs"
(:mod:`~symcnn.checking.errata.document003.optimization`), Grad-CAM's weights, a dense block's growth,
the stable softmax, gradient clipping and the model size (:data:`INTERPRETATION`). Data only, as
:mod:`symcnn.checking.errata.transcriptions`.
"""

from __future__ import annotations

from symcnn.checking.errata.model import Condition, Convention, Transcription, no_output_padding, without_bias
from symcnn.checking.examples import DOCUMENTS

__all__ = ["ADVANCED", "INTERPRETATION"]

D003 = DOCUMENTS["003"]

_NO_BIAS = Condition("the convolutions have no bias (the document's own parameter count, K_h × K_w × C_in × "
                     "C_out + C_out, has one)", {"constraint": without_bias})

#: From "Advanced CNN Concepts" to "Loss Functions for CNNs", in the document's order.
ADVANCED: tuple[Transcription, ...] = (
    Transcription(
        D003, "Advanced CNN Concepts / Dilated Convolution",
        "Y(i,j) = ∑∑ X(i + r·u, j + r·v) · W(u,v)",
        formula=r"Y(i, j) = \sum_{u}\sum_{v} X(i + r \cdot u, j + r \cdot v) \cdot W(u, v)", against="conv2d"),
    Transcription(
        D003, "Advanced CNN Concepts / Dilated Convolution: Receptive Field",
        "RF = 1 + (K-1) × r",
        formula="RF = 1 + (K - 1)*r", probe="dilated_field", note="one layer's field, in input positions"),
    Transcription(
        D003, "Advanced CNN Concepts / Separable Convolution: parameters",
        "Standard: K × K × C_in × C_out, Separable: K × K × C_in + C_in × C_out",
        formula="standard = K*K*C_in*C_out\n"
                "separable = K*K*C_in + C_in*C_out",
        probe="separable", conditions=(_NO_BIAS,)),
    Transcription(
        D003, "Advanced CNN Concepts / Separable Convolution: ratio",
        "Ratio: (K × K × C_in × C_out)/(K × K × C_in + C_in × C_out)",
        formula="ratio = (K*K*C_in*C_out)/(K*K*C_in + C_in*C_out)",
        probe="separable", conditions=(_NO_BIAS,)),
    Transcription(
        D003, "Advanced CNN Concepts / Transposed Convolution",
        "Y[i,j] = ∑∑ X[⌊i/s⌋ - u, ⌊j/s⌋ - v] · W[u,v]",
        formula=r"Y[i, j] = \sum_{u}\sum_{v} X[\lfloor i/s \rfloor - u, \lfloor j/s \rfloor - v] \cdot W[u, v]",
        against="conv_transpose2d", options={"zero_outside": frozenset({"X"})}),
    Transcription(
        D003, "Advanced CNN Concepts / Transposed Convolution output size",
        "H_out = (H_in - 1) × s - 2p + K",
        formula=r"H_{out} = (H_{in} - 1) \times s - 2p + K_h", against="conv_transpose2d",
        note="output padding 0 and dilation 1: the document has neither"),
    Transcription(
        D003, "Advanced CNN Concepts / Transposed Convolution output size, undoing a convolution",
        "H_out = (H_in - 1) × s - 2p + K (the transposed convolution gives back the size of the convolution's "
        "input)",
        formula=r"H_{in} = (H_{out} - 1) \times s - 2p + K_h", against="conv2d",
        conditions=(Condition("s divides H_in + 2p - K_h: else s input sizes share one output size, and the "
                              "transposed convolution needs an output padding of (H_in + 2p - K_h) mod s",
                              {"constraint": no_output_padding}),)),
    Transcription(
        D003, "Regularization in CNNs / Dropout",
        "y = {x/p with probability p, 0 with probability 1-p}",
        formula="kept_value = x/p\n"
                "keep_probability = p\n"
                "dropped_value = 0\n"
                "expectation = keep_probability*kept_value + (1 - keep_probability)*dropped_value",
        probe="dropout",
        conventions=(Convention("p is the keep probability (symcnn's p, as PyTorch's, is the drop probability: "
                                "the document's p is 1 − p)", {"p": "keep"}),),
        note="its expectation, x, is symcnn's formula's over the mask: evaluation mode passes x on"),
    Transcription(
        D003, "Loss Functions for CNNs / Cross-Entropy",
        "L = -∑ y_i log(ŷ_i)",
        formula=r"L = -\sum_{i} y_i \log(\hat{y}_i)", against="cross_entropy"),
)

#: From "CNN Visualization and Interpretability" to "Performance Metrics", in the document's order.
INTERPRETATION: tuple[Transcription, ...] = (
    Transcription(
        D003, "CNN Visualization and Interpretability / Grad-CAM weights",
        "α_k^c = (1/Z) ∑∑ ∂y^c/∂A_{i,j}^k",
        formula="alpha[k] = Sum(Sum(dyc_dA[k, i, j], (i, 0, H - 1)), (j, 0, W - 1))/Z",
        probe="grad_cam", note="Z read as H·W, the number of positions (the document does not define Z)"),
    Transcription(
        D003, "Modern CNN Innovations / Dense Connections (DenseNet): Growth Rate",
        "x_l = H_l([x_0, x_1, ..., x_{l-1}]); Feature maps per layer = k (growth rate), Total features in layer l = "
        "k_0 + k × l",
        formula="features[l] = k_0 + k*l", probe="dense_growth",
        conventions=(Convention("the features in layer l read as those of [x_0, ..., x_l], once H_l has added its k "
                                "maps (H_l itself reads k_0 + k × (l − 1))", {"layer_features": "after"}),),
        note="dense blocks of symcnn's conv2d and concat layers, H_l a 3×3 convolution of k maps reading the "
             "concatenation of x_0 (k_0 maps) and every earlier H's output"),
    Transcription(
        D003, "Implementation Considerations / Numerical Stability: softmax",
        "def stable_softmax(x): return exp(x - max(x)) / sum(exp(x - max(x)))",
        formula="M = MaxOver(x[k], (k, 0, F - 1))\n"
                "p[i] = exp(x[i] - M)/Sum(exp(x[k] - M), (k, 0, F - 1))",
        probe="stable_softmax", note="max(x) kept symbolic: the shift leaves every probability as it is"),
    Transcription(
        D003, "Implementation Considerations / Gradient Clipping",
        "if ||∇|| > threshold: ∇ = ∇ × threshold/||∇||",
        formula="norm = sqrt(Sum(g[k]**2, (k, 0, P - 1)))\n"
                "clipped[k] = Piecewise((g[k]*threshold/norm, norm > threshold), (g[k], True))\n"
                "clipped_norm = sqrt(Sum(clipped[k]**2, (k, 0, P - 1)))\n"
                "direction[k] = clipped[k]/clipped_norm",
        probe="gradient_clipping",
        note="||∇|| read as the L2 norm of all the parameter gradients together (PyTorch's clip_grad_norm_)"),
    Transcription(
        D003, "Performance Metrics / Computational Metrics: Model Size",
        "Size = ∑ (Parameters per layer × bits per parameter)/8",
        formula="Size = Sum(n[l]*bits, (l, 0, L - 1))/8", probe="model_size",
        note="in bytes, of the parameters a network learns (a batch norm's running statistics are buffers)"),
)
