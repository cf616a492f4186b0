"""Document 003's claims about convolution and pooling: the discrete convolution and cross-correlation,
multi-channel convolution, output sizes and padding, the receptive field and jump, pooling (adaptive
pooling too), parameter counts, activation memory and operation counts, backpropagation through a
convolution, the unfolded input of im2col, and the activations' derivatives. Data only, as :mod:`symcnn.checking.errata.transcriptions`.
"""

from __future__ import annotations

from symcnn.checking.errata.model import (FROM_ONE, SAME, Condition, Convention, Transcription, channels_last,
                                          from_one, no_dilation, output_divides_input, true_convolution,
                                          windows_disjoint)
from symcnn.checking.examples import DOCUMENTS

__all__ = ["CONVOLUTION"]

D003 = DOCUMENTS["003"]

#: From "Discrete Convolution Operation" to "Activation Functions in CNNs", in the document's order.
CONVOLUTION: tuple[Transcription, ...] = (
    Transcription(
        D003, "Discrete Convolution Operation / 2D Convolution",
        "(I * K)(i,j) = ∑∑ I(m,n) · K(i-m, j-n)",
        formula=r"Y(i, j) = \sum_{m} \sum_{n} I(m, n) K(i - m, j - n)", against="conv2d",
        conventions=(true_convolution("K", "Y", zero_kernel=True),)),
    Transcription(
        D003, "Discrete Convolution Operation / Cross-Correlation",
        "(I ⊗ K)(i,j) = ∑∑ I(i+m, j+n) · K(m,n)",
        formula=r"Y(i, j) = \sum_{m} \sum_{n} I(i + m, j + n) K(m, n)", against="conv2d"),
    Transcription(
        D003, "Discrete Convolution Operation / Valid Convolution",
        "Output size: (H - K_h + 1) × (W - K_w + 1)",
        formula=r"H_{out} = H - K_h + 1 \\ W_{out} = W - K_w + 1", against="conv2d"),
    Transcription(
        D003, "Multi-Channel Convolution / 3D Convolution",
        "Y(i,j) = ∑∑∑ X(i+u, j+v, c) · W(u,v,c) + b",
        formula=r"Y(i, j) = \sum_{u}\sum_{v}\sum_{c} X(i+u, j+v, c) \cdot W(u, v, c) + b", against="conv2d",
        conventions=(channels_last({"X": "HWC", "W": "HWI"}),)),
    Transcription(
        D003, "Multi-Channel Convolution / Multiple Output Channels",
        "Y^{(k)}(i,j) = ∑∑∑ X(i+u, j+v, c) · W^{(k)}(u,v,c) + b^{(k)}, for k = 1, 2, ..., K",
        formula=r"Y^{(k)}(i, j) = \sum_{u}\sum_{v}\sum_{c} X(i+u, j+v, c) \cdot W^{(k)}(u, v, c) + b^{(k)}",
        against="conv2d",
        conventions=(channels_last({"X": "HWC", "W": "OHWI"}),
                     from_one("output channels k", {"Y": (FROM_ONE, SAME, SAME), "W": (FROM_ONE, SAME, SAME, SAME),
                                                     "b": (FROM_ONE,)}))),
    Transcription(
        D003, "Convolutional Layer Mathematics / Forward Pass",
        "Y[n,i,j,k] = ∑∑∑ X[n, i·s+u, j·s+v, c] · W[u,v,c,k] + b[k]",
        formula=r"Y[n, i, j, k] = \sum_{u}\sum_{v}\sum_{c} X[n, i \cdot s + u, j \cdot s + v, c] \cdot W[u, v, c, k] + b[k]",
        against="conv2d",
        conventions=(channels_last({"X": "NHWC", "Y": "NHWC", "W": "HWIO"}),)),
    Transcription(
        D003, "Output Size Calculation / With Padding and Stride",
        "H_out = ⌊(H_in + 2p - K_h)/s⌋ + 1, W_out = ⌊(W_in + 2p - K_w)/s⌋ + 1",
        formula=r"H_{out} = \lfloor \frac{H_{in} + 2p - K_h}{s} \rfloor + 1 \\ "
                r"W_{out} = \lfloor \frac{W_{in} + 2p - K_w}{s} \rfloor + 1",
        against="conv2d"),
    Transcription(
        D003, "Output Size Calculation / Padding Types",
        "Valid: p = 0",
        formula=r"H_{out} = H_{in} - K_h + 1 \text{ where } p = 0", against="conv2d"),
    Transcription(
        D003, "Output Size Calculation / Padding Types",
        "Same: p = (K-1)/2 (for odd K)",
        formula=r"H_{out} = H_{in} \text{ where } p = \frac{K - 1}{2}", against="conv2d"),
    Transcription(
        D003, "Output Size Calculation / Padding Types",
        "Full: p = K-1",
        formula=r"H_{out} = H_{in} + K_h - 1 \text{ where } p = K_h - 1", against="conv2d"),
    Transcription(
        D003, "Receptive Field Analysis / Receptive Field Size",
        "RF_l = RF_{l-1} + (K_l - 1) · ∏_{i=1}^{l-1} s_i, RF_0 = 1 (input pixel)",
        formula="P[0] = 1\n"
                "P[l] = P[l - 1]*s[l]\n"
                "RF[0] = 1\n"
                "RF[l] = RF[l - 1] + (K[l] - 1)*P[l - 1]",
        probe="receptive_field",
        conditions=(Condition("no layer is dilated: a dilated kernel of K taps spans (K − 1)·r + 1 input positions, "
                              "as the document's own dilated convolution has it (RF = 1 + (K-1) × r)",
                              {"constraint": no_dilation}),),
        note="∏_{i=1}^{l-1} s_i written P[l - 1], with P[0] = 1 and P[l] = P[l - 1]·s[l]; a layer is a convolution "
             "or a pool (an activation reads one element)"),
    Transcription(
        D003, "Receptive Field Analysis / Jump",
        "J_l = J_{l-1} · s_l, J_0 = 1",
        formula="J[0] = 1\n"
                "J[l] = J[l - 1]*s[l]",
        probe="receptive_field", note="the initial term read first"),
    Transcription(
        D003, "Pooling Operations / Max Pooling",
        "Y(i,j) = max{X(i·s+u, j·s+v) : 0 ≤ u,v < K}",
        formula=r"Y(i, j) = \max_{u=0}^{K-1} \max_{v=0}^{K-1} X(i \cdot s + u, j \cdot s + v)", against="maxpool2d"),
    Transcription(
        D003, "Pooling Operations / Max Pooling gradient",
        "∂L/∂X(m,n) = {∂L/∂Y(i,j) if (m,n) = argmax, 0 otherwise}",
        formula=r"\frac{\partial L}{\partial X_{i s + u, j s + v}} = \frac{\partial L}{\partial Y_{i,j}} "
                r"\mathbf{1}(X_{i s + u, j s + v} = Y_{i,j}) \text{ where } u, v \in \{0, 1\}",
        against="maxpool2d", options={"kernel": 2},
        conditions=(Condition("the windows do not overlap (stride = window): with overlapping windows an element "
                              "can be the maximum of several, and gathers each one's gradient",
                              {"constraint": windows_disjoint}),)),
    Transcription(
        D003, "Pooling Operations / Average Pooling",
        "Y(i,j) = (1/K²) ∑∑ X(i·s+u, j·s+v)",
        formula=r"Y(i, j) = \frac{1}{K^2} \sum_{u=0}^{K-1}\sum_{v=0}^{K-1} X(i \cdot s + u, j \cdot s + v)",
        against="avgpool2d"),
    Transcription(
        D003, "Pooling Operations / Average Pooling gradient",
        "∂L/∂X(m,n) = (1/K²) ∑_{(i,j): (m,n) in pooling region} ∂L/∂Y(i,j)",
        formula=r"\frac{\partial L}{\partial X_{m,n}} = \frac{1}{K^2} \sum_{i}\sum_{j} \mathbf{1}(0 \le m - s i \le K-1, "
                r"0 \le n - s j \le K-1) \frac{\partial L}{\partial Y_{i,j}}",
        against="avgpool2d"),
    Transcription(
        D003, "Pooling Operations / Global Average Pooling",
        "Y_c = (1/HW) ∑∑ X(i,j,c)",
        formula=r"Y_c = \frac{1}{H W} \sum_{i}\sum_{j} X(i, j, c)", against="global_avgpool",
        options={"layouts": {"Y": "C"}},
        conventions=(channels_last({"X": "HWC"}),)),
    Transcription(
        D003, "Advanced Pooling Variants / Adaptive Average Pooling",
        "kernel_size = ⌈input_size / output_size⌉, stride = ⌊input_size / output_size⌋",
        formula="kernel = ceiling(n_in/n_out)\n"
                "stride = floor(n_in/n_out)\n"
                "outputs = floor((n_in - kernel)/stride) + 1\n"
                "Y[i] = Sum(x[i*stride + u], (u, 0, kernel - 1))/kernel",
        probe="adaptive_pooling",
        conditions=(Condition("the output size divides the input size (then kernel = stride = input/output); "
                              "symcnn's windows, PyTorch's, run from ⌊i·in/out⌋ to ⌈(i+1)·in/out⌉ − 1",
                              {"constraint": output_divides_input}),),
        note="an average pool of that kernel and stride, along one axis, for every output size up to the input size"),
    Transcription(D003, "Parameter Calculation / Convolutional Layer",
                  "Parameters = K_h × K_w × C_in × C_out + C_out", example="conv_parameter_count"),
    Transcription(
        D003, "Parameter Calculation / Memory for Activations",
        "Memory = N × H_out × W_out × C_out × sizeof(float)",
        formula="Memory = N*H_out*W_out*C_out*sizeof_float", probe="activation_memory",
        conventions=(Convention("sizeof(float) read as the size of the network's element: 4 bytes in float32, 8 in "
                                "float64 (C's float is float32)", {"sizeof_float": "dtype"}),),
        note="checked against the bytes of the output that a Network keeps for its backward pass, at each layer "
             "with feature-map outputs (convolutions, their ReLUs and pools) of the shipped digits and seed004 "
             "networks in float32 and float64, batches of 1 and 2; a max pool keeps besides its switches (the "
             "arg-max offsets, one integer per output) and a dropout layer its mask, which are no activations"),
    Transcription(
        D003, "Computational Complexity / Forward Pass",
        "FLOPs = N × H_out × W_out × C_out × (K_h × K_w × C_in + 1)",
        formula="FLOPs = N*H_out*W_out*C_out*(K_h*K_w*C_in + 1)", probe="forward_flops",
        conventions=(Convention("a FLOP read as a multiply-add (MAC): each product summed into an output is one, and "
                                "so is the bias's add (the floating-point operations, a multiplication and an "
                                "addition each, are 2 × K_h × K_w × C_in per output)", {"flop": "multiply-add"}),
                     Convention("the products with the zero padding counted, as an unfolded-matrix product (the "
                                "document's im2col) computes them (symcnn's expanded formula drops them)",
                                {"padded_products": "counted"})),
        note="checked against the multiply-adds counted on symcnn's expanded formula and the op registry's macs "
             "(symcnn summary's MACs) at small convolutions, strided, padded and dilated ones among them (the "
             "document's formula has no dilation: a dilated kernel has as many taps)"),
    Transcription(
        D003, "Computational Complexity / Backward Pass",
        "FLOPs_backward ≈ 2 × FLOPs_forward",
        formula="FLOPs_backward = 2*FLOPs_forward", probe="backward_flops",
        note="≈ read at the document's precision, one significant figure (the ratio rounds to 2); both passes' "
             "multiply-adds counted on symcnn's expanded formulas, the backward pass's being the input, weight and "
             "bias gradients (a network's first layer needs no input gradient)"),
    Transcription(
        D003, "Backpropagation in CNNs / Loss w.r.t. Feature Map",
        "∂L/∂X[i,j,c] = ∑∑∑ ∂L/∂Y[u,v,k] · W[i-u·s, j-v·s, c, k]",
        formula=r"\frac{\partial L}{\partial X[i, j, c]} = \sum_{u}\sum_{v}\sum_{k} \frac{\partial L}{\partial Y[u, v, k]} "
                r"\cdot W[i - u \cdot s, j - v \cdot s, c, k]",
        against="conv2d",
        conventions=(channels_last({"X": "HWC", "dL/dX": "HWC", "dL/dY": "HWC", "W": "HWIO"}),
                     Convention("W zero outside its shape (the sum runs over every output position)",
                                {"zero_outside": frozenset({"W"})}))),
    Transcription(
        D003, "Backpropagation in CNNs / Loss w.r.t. Weights",
        "∂L/∂W[u,v,c,k] = ∑∑∑ ∂L/∂Y[i,j,k] · X[i·s+u, j·s+v, c], summed over n, i, j",
        formula=r"\frac{\partial L}{\partial W[u, v, c, k]} = \sum_{n=0}^{N-1}\sum_{i}\sum_{j} "
                r"\frac{\partial L}{\partial Y[i, j, k]} \cdot X[i \cdot s + u, j \cdot s + v, c]",
        against="conv2d",
        conventions=(channels_last({"X": "HWC", "dL/dY": "HWC", "W": "HWIO", "dL/dW": "HWIO"}),)),
    Transcription(
        D003, "Backpropagation in CNNs / Loss w.r.t. Bias",
        "∂L/∂b[k] = ∑∑∑ ∂L/∂Y[n,i,j,k]",
        formula=r"\frac{\partial L}{\partial b[k]} = \sum_{n}\sum_{i}\sum_{j} \frac{\partial L}{\partial Y[n, i, j, k]}",
        against="conv2d",
        conventions=(channels_last({"dL/dY": "NHWC"}),)),
    Transcription(
        D003, "Efficient Convolution Implementation / im2col Transformation",
        "Y = X_unfolded · W_reshaped, where X_unfolded ∈ ℝ^{(H_out×W_out)×(K_h×K_w×C_in)}",
        formula="columns[r] = K_h*K_w*C_in", probe="im2col",
        note="X_unfolded's size: a row r for each of the H_out × W_out output positions, of the input entries that "
             "the outputs there read, over every output channel (the padding's zeros included); the product itself "
             "is not evaluated: the unfolding is named and sized, not defined (which patch entry goes in which "
             "column)"),
    Transcription(D003, "Activation Functions in CNNs / ReLU", "f(x) = max(0, x)",
                  formula="f = Max(0, x)", probe="activation", options={"op": "relu"}),
    Transcription(D003, "Activation Functions in CNNs / ReLU", "f'(x) = {1 if x > 0, 0 if x ≤ 0}",
                  example="relu_derivative"),
    Transcription(D003, "Activation Functions in CNNs / Leaky ReLU", "f(x) = {x if x > 0, αx if x ≤ 0}",
                  formula="f = Piecewise((x, x > 0), (alpha*x, True))", probe="activation",
                  options={"op": "leaky_relu"}),
    Transcription(D003, "Activation Functions in CNNs / Leaky ReLU", "f'(x) = {1 if x > 0, α if x ≤ 0}",
                  example="leaky_relu_derivative"),
    Transcription(D003, "Activation Functions in CNNs / ELU", "f(x) = {x if x > 0, α(e^x - 1) if x ≤ 0}",
                  formula="f = Piecewise((x, x > 0), (alpha*(exp(x) - 1), True))", probe="activation",
                  options={"op": "elu"}),
    Transcription(D003, "Activation Functions in CNNs / ELU", "f'(x) = {1 if x > 0, f(x) + α if x ≤ 0}",
                  example="elu_derivative"),
)
