"""The reference documents' claims, transcribed: data only (the checking is :mod:`symcnn.checking.errata.run`).

Each :class:`~symcnn.checking.errata.model.Transcription` holds a claim as its document writes it
(``claim``), with the document's file name and section, and how symcnn checks it: a formula in the
checker's notation (:mod:`symcnn.checking.checker`) against an op or a worked example, with the
document's own settings (its kernel, padding, sizes), a worked example of
:mod:`symcnn.checking.examples`, or a formula in SymPy syntax for a probe
(:mod:`symcnn.checking.errata.probes`). Where a document uses another notation than symcnn's (a flipped
kernel, channels last, indices from 1, a padded gradient), the transcription names it as a convention;
where a claim needs a condition on the setting that its document does not state, as a condition; each
with the options that express it. Document 003's claims are in
:mod:`symcnn.checking.errata.document003`, by section. :data:`NOT_CHECKED` lists the statements symcnn
does not check, and why.
"""

from __future__ import annotations

from symcnn.checking.errata.document003 import DOCUMENT_003, NOT_CHECKED_003
from symcnn.checking.errata.model import (FROM_ONE, SAME, Condition, Transcription, channels_last, from_one, padded,
                                          square_input, true_convolution, windows_tile)
from symcnn.checking.examples import DOCUMENTS

__all__ = ["TRANSCRIPTIONS", "NOT_CHECKED"]

D000, D001, D002, D004 = (DOCUMENTS[key] for key in ("000", "001", "002", "004"))
_CONV3_P1 = {"kernel": 3, "padding": 1, "stride": 1}

TRANSCRIPTIONS: tuple[Transcription, ...] = (
    # ---- document 000: the convolutional layer, forward and backward ----------------------------------------
    Transcription(
        D000, "Forward Pass / Key Notations",
        r"H_{out} = \lfloor \frac{H_{in} + 2p - K_h}{s} \rfloor + 1, similarly for W_{out}",
        formula=r"H_{out} = \lfloor \frac{H_{in} + 2p - K_h}{s} \rfloor + 1 \\ "
                r"W_{out} = \lfloor \frac{W_{in} + 2p - K_w}{s} \rfloor + 1",
        against="conv2d"),
    Transcription(
        D000, "Forward Pass / Convolution Operation",
        r"Y_{b, c_{out}, i, j} = \sum_{c_{in}=0}^{C_{in}-1} \sum_{m=0}^{K_h-1} \sum_{n=0}^{K_w-1} W_{c_{out}, c_{in}, m, n}"
        r" \cdot X_{b, c_{in}, s \cdot i + m - p, s \cdot j + n - p} + b_{c_{out}}",
        formula=r"Y_{b, c_{out}, i, j} = \sum_{c_{in}=0}^{C_{in}-1} \sum_{m=0}^{K_h-1} \sum_{n=0}^{K_w-1} "
                r"W_{c_{out}, c_{in}, m, n} \cdot X_{b, c_{in}, s \cdot i + m - p, s \cdot j + n - p} + b_{c_{out}}",
        against="conv2d"),
    Transcription(
        D000, "Forward Pass / How to arrive at this",
        r"for same padding, p = \lfloor \frac{K-1}{2} \rfloor keeps size",
        formula=r"H_{out} = H_{in} \text{ where } p = \lfloor \frac{K-1}{2} \rfloor", against="conv2d"),
    Transcription(
        D000, "Forward Pass / activation",
        r"Y' = f(Y), e.g. ReLU: f(x) = \max(0, x)",
        formula=r"Y_{n,c,i,j} = \max(0, X_{n,c,i,j})", against="relu"),
    Transcription(
        D000, "Backward Pass / Bias Gradient",
        r"\frac{\partial L}{\partial b_{c_{out}}} = \sum_{b=0}^{B-1} \sum_{i=0}^{H_{out}-1} \sum_{j=0}^{W_{out}-1} "
        r"\frac{\partial L}{\partial Y_{b, c_{out}, i, j}}",
        formula=r"\frac{\partial L}{\partial b_{c_{out}}} = \sum_{b=0}^{B-1} \sum_{i=0}^{H_{out}-1} "
                r"\sum_{j=0}^{W_{out}-1} \frac{\partial L}{\partial Y_{b, c_{out}, i, j}}",
        against="conv2d"),
    Transcription(
        D000, "Backward Pass / Weight Gradient",
        r"\frac{\partial L}{\partial W_{c_{out}, c_{in}, m, n}} = \sum_{b=0}^{B-1} \sum_{i=0}^{H_{out}-1} "
        r"\sum_{j=0}^{W_{out}-1} \frac{\partial L}{\partial Y_{b, c_{out}, i, j}} \cdot X_{b, c_{in}, s \cdot i + m - p, "
        r"s \cdot j + n - p}",
        formula=r"\frac{\partial L}{\partial W_{c_{out}, c_{in}, m, n}} = \sum_{b=0}^{B-1} \sum_{i=0}^{H_{out}-1} "
                r"\sum_{j=0}^{W_{out}-1} \frac{\partial L}{\partial Y_{b, c_{out}, i, j}} \cdot "
                r"X_{b, c_{in}, s \cdot i + m - p, s \cdot j + n - p}",
        against="conv2d"),
    Transcription(
        D000, "Backward Pass / Input Gradient",
        r"\frac{\partial L}{\partial X_{b, c_{in}, k, l}} = \sum_{c_{out}=0}^{C_{out}-1} \sum_{m=0}^{K_h-1} "
        r"\sum_{n=0}^{K_w-1} \frac{\partial L}{\partial Y_{b, c_{out}, i, j}} \cdot W_{c_{out}, c_{in}, m, n}, where "
        r"i = \lfloor \frac{k + p - m}{s} \rfloor, j = \lfloor \frac{l + p - n}{s} \rfloor, and only if the division "
        r"is integer (i.e., aligns with stride)",
        formula=r"\frac{\partial L}{\partial X_{b, c_{in}, k, l}} = \sum_{c_{out}=0}^{C_{out}-1} \sum_{m=0}^{K_h-1} "
                r"\sum_{n=0}^{K_w-1} \mathbf{1}(s \mid k + p - m) \mathbf{1}(s \mid l + p - n) "
                r"\frac{\partial L}{\partial Y_{b, c_{out}, i, j}} \cdot W_{c_{out}, c_{in}, m, n} \text{ where } "
                r"i = \lfloor \frac{k + p - m}{s} \rfloor, j = \lfloor \frac{l + p - n}{s} \rfloor",
        against="conv2d",
        conventions=(padded("dL/dY", "'First, pad the output gradient if needed': the range condition "
                                     "0 <= i <= H_out - 1 is left to the padding"),)),
    Transcription(
        D000, "Backward Pass / activation",
        "If there's activation, multiply by its derivative (e.g., ReLU derivative: 1 if >0, else 0)",
        formula=r"\frac{\partial L}{\partial X_{n,c,i,j}} = \frac{\partial L}{\partial Y_{n,c,i,j}} "
                r"\mathbf{1}(X_{n,c,i,j} > 0)",
        against="relu"),
    # ---- document 001: theoretical foundation ---------------------------------------------------------------------------
    Transcription(D001, "1. Why CNNs for Images?",
                  "a 200 × 200 × 3 image into a fully connected layer of 1,000 neurons: 120 million weights",
                  example="dense_weight_count"),
    Transcription(
        D001, "3.1 The Convolution Operation",
        r"S(i, j) = (\mathbf{I} * \mathbf{K})(i, j) + b = \sum_{u} \sum_{v} I(i-u, j-v) K(u, v) + b",
        formula=r"S(i, j) = \sum_{u} \sum_{v} I(i-u, j-v) K(u, v) + b", against="conv2d",
        conventions=(true_convolution("K", "S"),)),
    Transcription(
        D001, "3.2 Hyperparameters and Output Size Calculation",
        r"N_{\text{out}} = \left\lfloor \frac{N_{\text{in}} + 2P - F}{S} \right\rfloor + 1",
        formula=r"N_{\text{out}} = \left\lfloor \frac{N_{\text{in}} + 2P - F}{S} \right\rfloor + 1", against="conv2d"),
    Transcription(D001, "3.2 Example: CONV Layer Output",
                  r"N_{\text{out}} = \left\lfloor \frac{6 + 2(0) - 3}{1} \right\rfloor + 1 = 4: a 4 × 4 feature map",
                  example="conv_output_size_6x6"),
    Transcription(
        D001, "4.2 Output Size Calculation",
        r"N_{\text{out}} = \left\lfloor \frac{N_{\text{in}} - F}{S} \right\rfloor + 1",
        formula=r"N_{\text{out}} = \left\lfloor \frac{N_{\text{in}} - F}{S} \right\rfloor + 1", against="maxpool2d"),
    Transcription(D001, "4.2 Example: Max Pooling Output",
                  r"N_{\text{out}} = \left\lfloor \frac{4 - 2}{2} \right\rfloor + 1 = 2: a 2 × 2 pooled map",
                  example="maxpool_output_size_4x4"),
    Transcription(
        D001, "6.1 Backpropagating Through the POOL Layer / Average Pooling",
        r"\frac{\partial \mathcal{L}}{\partial \mathbf{A}^{[l]}} \leftarrow "
        r"\frac{\partial \mathcal{L}}{\partial \mathbf{A}_{\text{pooled}}^{[l]}} / F^2 (distributed equally among "
        r"all neurons in the pooling window)",
        formula=r"\frac{\partial L}{\partial A_{i,j}} = \frac{1}{F^2} \frac{\partial L}{\partial P_{\lfloor i/F \rfloor, "
                r"\lfloor j/F \rfloor}}",
        against="avgpool2d",
        conditions=(Condition("the windows tile the input: stride F and input sizes multiples of F (section 4.2 "
                              "allows any stride S)", {"constraint": windows_tile}),)),
    Transcription(
        D001, "6.2 a. Gradient with Respect to Weights",
        r"\frac{\partial \mathcal{L}}{\partial \mathbf{W}^{[l]}} = \sum_{\text{locations}} \left( \text{Input Patch} "
        r"\odot \delta^{[l]} \right), a valid convolution between A^{[l-1]} and \delta^{[l]}",
        formula=r"\frac{\partial L}{\partial W_{u,v}} = \sum_{i}\sum_{j} A_{i+u, j+v} \delta_{i,j}", against="conv2d"),
    Transcription(
        D001, "6.2 b. Gradient with Respect to Input",
        r"\frac{\partial \mathcal{L}}{\partial \mathbf{A}^{[l-1]}} = \text{Full Convolution}\left( "
        r"\text{Pad}(\delta^{[l]}), \text{Rotated } \mathbf{W}^{[l]} \right)",
        formula=r"\frac{\partial L}{\partial A_{k,l}} = \sum_{u=0}^{K_h-1}\sum_{v=0}^{K_w-1} "
                r"\delta_{k-(K_h-1)+u,\, l-(K_w-1)+v} W_{K_h-1-u,\, K_w-1-v}",
        against="conv2d",
        conventions=(padded("dL/dY", "the document's Pad(δ)"),)),
    # ---- document 002: convolution and pooling, with worked examples -------------------------------------------
    Transcription(
        D002, "Convolution Operation",
        r"Y(i, j) = \sum_{m} \sum_{n} X(i - m, j - n) \cdot K(m, n)",
        formula=r"Y(i, j) = \sum_{m} \sum_{n} X(i - m, j - n) \cdot K(m, n)", against="conv2d",
        conventions=(true_convolution("K", "Y"),)),
    Transcription(
        D002, "Multiple Channels",
        r"Y(i, j) = \sum_{c=1}^{C} \sum_{m} \sum_{n} X_c(i - m, j - n) \cdot K_c(m, n)",
        formula=r"Y(i, j) = \sum_{c=1}^{C} \sum_{m} \sum_{n} X_c(i - m, j - n) \cdot K_c(m, n)", against="conv2d",
        conventions=(true_convolution("K", "Y"),
                     from_one("channels", {"X": (FROM_ONE, SAME, SAME),
                                           "K": (FROM_ONE, (-1, "K_h - 1"), (-1, "K_w - 1"))}))),
    Transcription(
        D002, "Output Dimensions",
        r"O = \left\lfloor \frac{I + 2P - K}{S} \right\rfloor + 1",
        formula=r"O = \left\lfloor \frac{I + 2P - K}{S} \right\rfloor + 1", against="conv2d"),
    Transcription(
        D002, "Backprop Through Convolution Layer / outputs",
        r"y_{00} = x_{00} \cdot w_{00} + x_{01} \cdot w_{01} + x_{10} \cdot w_{10} + x_{11} \cdot w_{11}, ... (y_{01}, "
        r"y_{10}, y_{11})",
        formula=r"\begin{aligned} y_{00} &= x_{00} \cdot w_{00} + x_{01} \cdot w_{01} + x_{10} \cdot w_{10} + x_{11} "
                r"\cdot w_{11} \\ y_{01} &= x_{01} \cdot w_{00} + x_{02} \cdot w_{01} + x_{11} \cdot w_{10} + x_{12} "
                r"\cdot w_{11} \\ y_{10} &= x_{10} \cdot w_{00} + x_{11} \cdot w_{01} + x_{20} \cdot w_{10} + x_{21} "
                r"\cdot w_{11} \\ y_{11} &= x_{11} \cdot w_{00} + x_{12} \cdot w_{01} + x_{21} \cdot w_{10} + x_{22} "
                r"\cdot w_{11} \end{aligned}",
        against="conv_3x3_2x2"),
    Transcription(
        D002, "Backprop Through Convolution Layer / weight gradients",
        r"\frac{\partial L}{\partial w_{00}} = a \cdot x_{00} + b \cdot x_{01} + c \cdot x_{10} + d \cdot x_{11}, ... "
        r"(w_{01}, w_{10}, w_{11})",
        formula=r"\begin{aligned} \frac{\partial L}{\partial w_{00}} &= a \cdot x_{00} + b \cdot x_{01} + c \cdot x_{10}"
                r" + d \cdot x_{11} \\ \frac{\partial L}{\partial w_{01}} &= a \cdot x_{01} + b \cdot x_{02} + c \cdot "
                r"x_{11} + d \cdot x_{12} \\ \frac{\partial L}{\partial w_{10}} &= a \cdot x_{10} + b \cdot x_{11} + c "
                r"\cdot x_{20} + d \cdot x_{21} \\ \frac{\partial L}{\partial w_{11}} &= a \cdot x_{11} + b \cdot x_{12}"
                r" + c \cdot x_{21} + d \cdot x_{22} \end{aligned}",
        against="conv_3x3_2x2"),
    Transcription(
        D002, "Backprop Through Convolution Layer / input gradients",
        r"\frac{\partial L}{\partial x_{00}} = a \cdot w_{00}, \frac{\partial L}{\partial x_{01}} = a \cdot w_{01} + b "
        r"\cdot w_{00}, \frac{\partial L}{\partial x_{10}} = a \cdot w_{10} + c \cdot w_{00}, "
        r"\frac{\partial L}{\partial x_{11}} = a \cdot w_{11} + b \cdot w_{10} + c \cdot w_{01} + d \cdot w_{00}",
        formula=r"\begin{aligned} \frac{\partial L}{\partial x_{00}} &= a \cdot w_{00} \\ \frac{\partial L}{\partial "
                r"x_{01}} &= a \cdot w_{01} + b \cdot w_{00} \\ \frac{\partial L}{\partial x_{10}} &= a \cdot w_{10} + "
                r"c \cdot w_{00} \\ \frac{\partial L}{\partial x_{11}} &= a \cdot w_{11} + b \cdot w_{10} + c \cdot "
                r"w_{01} + d \cdot w_{00} \end{aligned}",
        against="conv_3x3_2x2"),
    Transcription(
        D002, "Global Pooling (e.g., Global Average Pooling)",
        r"output\_c = \frac{1}{H \times W} \sum_{i=1}^{H} \sum_{j=1}^{W} X_c(i, j)",
        formula=r"\text{output}_c = \frac{1}{H \times W} \sum_{i=1}^{H} \sum_{j=1}^{W} X_c(i, j)",
        against="global_avgpool", options={"layouts": {"output": "C"}},
        conventions=(from_one("positions i, j", {"X": (SAME, FROM_ONE, FROM_ONE)}),)),
    *(Transcription(
        D002, f"Backprop Through Pooling Layer / {title}", claim, formula=claim, against=op,
        options={"input_size": (3, 3), "kernel": 2, "values": [1, 5, 4, 9, 2, 1, 6, 3, 2]},
        conditions=(Condition("the stride is 1, so that the 2 × 2 windows overlap: the document gives only the "
                              "kernel size, and a pool's stride is usually its window", {"stride": 1}),))
      for title, op, claim in (
          ("Max Pooling output", "maxpool2d", r"Y = \begin{bmatrix} 9 & 5 \\ 9 & 3 \end{bmatrix}"),
          ("Max Pooling gradient", "maxpool2d",
           r"\frac{\partial L}{\partial X} = \begin{bmatrix} 0 & b & 0 \\ a + c & 0 & 0 \\ 0 & d & 0 \end{bmatrix}"),
          ("Average Pooling output", "avgpool2d", r"Y = \begin{bmatrix} 4.25 & 3 \\ 5 & 2 \end{bmatrix}"),
          ("Average Pooling gradient", "avgpool2d",
           r"\frac{\partial L}{\partial X} = \begin{bmatrix} \frac{a}{4} & \frac{a}{4} + \frac{b}{4} & \frac{b}{4} \\ "
           r"\frac{a}{4} + \frac{c}{4} & \frac{a}{4} + \frac{b}{4} + \frac{c}{4} + \frac{d}{4} & \frac{b}{4} + "
           r"\frac{d}{4} \\ \frac{c}{4} & \frac{c}{4} + \frac{d}{4} & \frac{d}{4} \end{bmatrix}"))),
    # ---- document 003: a collection of CNN formulas (symcnn/checking/errata/document003/) -------------------------
    *DOCUMENT_003,
    # ---- document 004: a small CNN, forward and backward ----------------------------------------------------------
    Transcription(D004, "CNN Architecture; Forward Pass",
                  "the shapes of the network: its diagram (conv1, pool1, conv2, flatten 16×16×32, FC 10) and its "
                  "text (conv1, pool1, flatten to 4096, FC 10)", example="seed004_shapes"),
    Transcription(
        D004, "Forward Pass / 2. Convolutional 1 layer",
        r"S^{[1]}_{c,i,j} = \sum_{c'=1}^{3}\sum_{u=0}^{2}\sum_{v=0}^{2} W^{[1]}_{c,c',u,v}\; X_{c',\,i+u-1,\,j+v-1} "
        r"\;+\;b^{[1]}_{c}",
        formula=r"S^{[1]}_{c,i,j} = \sum_{c'=1}^{3}\sum_{u=0}^{2}\sum_{v=0}^{2} W^{[1]}_{c,c',u,v}\; "
                r"X_{c',\,i+u-1,\,j+v-1} \;+\;b^{[1]}_{c}",
        against="conv2d", options={**_CONV3_P1, "channels_in": 3},
        conventions=(from_one("input channels c'", {"W^1": (SAME, FROM_ONE, SAME, SAME), "X": (FROM_ONE, SAME, SAME)}),)),
    Transcription(
        D004, "Forward Pass / 3. ReLU Activation",
        r"A^{[1]}_{c,i,j} = \max\bigl(0,\;S^{[1]}_{c,i,j}\bigr)",
        formula=r"A^{[1]}_{c,i,j} = \max\bigl(0,\;S^{[1]}_{c,i,j}\bigr)", against="relu"),
    Transcription(
        D004, "Forward Pass / 4. Max-Pooling Layer",
        r"P^{[1]}_{c,p,q} = \max_{u,v\in\{0,1\}} A^{[1]}_{c,\,2p+u,\,2q+v}",
        formula=r"P^{[1]}_{c,p,q} = \max_{u,v\in\{0,1\}} A^{[1]}_{c,\,2p+u,\,2q+v}", against="maxpool2d",
        options={"kernel": 2}),
    Transcription(D004, "Forward Pass / 5. Flattening; Backpropagation / 3. Flatten",
                  r"h = \mathrm{flatten}(P^{[1]}), and back by the inverse of k = c\cdot16\cdot16 + i\cdot16 + j",
                  example="flatten_index"),
    Transcription(
        D004, "Forward Pass / 6. Fully Connected Layer",
        r"z_i = \sum_{k=1}^{4096} W_{\mathrm{fc},\,i,k}\,h_k \;+\; b_{\mathrm{fc},\,i}, where i = 1,....,10",
        formula=r"z_i = \sum_{k=1}^{4096} W_{\mathrm{fc},\,i,k}\,h_k \;+\; b_{\mathrm{fc},\,i}", against="dense",
        options={"sizes": {4096: "F_in"}},
        conventions=(from_one("indices i and k", {"z": (FROM_ONE,), "W_fc": (FROM_ONE, FROM_ONE), "h": (FROM_ONE,),
                                                   "b_fc": (FROM_ONE,)}),)),
    Transcription(
        D004, "Forward Pass / 7. Softmax",
        r"p_i = \frac{e^{z_i}}{\sum_{j=1}^{10}e^{z_j}}",
        formula=r"p_i = \frac{e^{z_i}}{\sum_{j=1}^{10}e^{z_j}}", against="softmax", options={"sizes": {10: "F_in"}},
        conventions=(from_one("classes i, j", {"p": (FROM_ONE,), "z": (FROM_ONE,)}),)),
    Transcription(
        D004, "Forward Pass / 7. Cross-Entropy Loss",
        r"\mathcal L = -\sum_{i=1}^{10} y_i\,\log p_i",
        formula=r"\mathcal L = -\sum_{i=1}^{10} y_i\,\log p_i", against="cross_entropy",
        options={"sizes": {10: "F_in"}},
        conventions=(from_one("classes i", {"p": (FROM_ONE,), "y": (FROM_ONE,)}),)),
    Transcription(
        D004, "Backpropagation / 1. Softmax and Cross-Entropy",
        r"\delta^{[z]}_i = \frac{\partial\mathcal L}{\partial z_i} = p_i - y_i",
        formula=r"\delta^{[z]}_i = \frac{\partial\mathcal L}{\partial z_i} = p_i - y_i",
        against="softmax_cross_entropy"),
    Transcription(
        D004, "Backpropagation / 2. Fully-Connected: bias gradient",
        r"\delta^{[b_{\mathrm{fc}}]}_i = \frac{\partial\mathcal L}{\partial b_{\mathrm{fc},\,i}} = \delta^{[z]}_i",
        formula=r"\delta^{[b_{\mathrm{fc}}]}_i = \frac{\partial\mathcal L}{\partial b_{\mathrm{fc},\,i}} = \delta^{[z]}_i",
        against="dense"),
    Transcription(
        D004, "Backpropagation / 2. Fully-Connected: weight gradient",
        r"\delta^{[W_{\mathrm{fc}}]}_{i,k} = \frac{\partial\mathcal L}{\partial W_{\mathrm{fc},\,i,k}} = "
        r"\delta^{[z]}_i \;\times\; h_k",
        formula=r"\delta^{[W_{\mathrm{fc}}]}_{i,k} = \frac{\partial\mathcal L}{\partial W_{\mathrm{fc},\,i,k}} = "
                r"\delta^{[z]}_i \;\times\; h_k",
        against="dense"),
    Transcription(
        D004, "Backpropagation / 2. Fully-Connected: back-prop to h",
        r"\delta^{[h]}_k = \frac{\partial\mathcal L}{\partial h_k} = \sum_{i=1}^{10} W_{\mathrm{fc},\,i,k}\;\delta^{[z]}_i",
        formula=r"\delta^{[h]}_k = \frac{\partial\mathcal L}{\partial h_k} = \sum_{i=1}^{10} W_{\mathrm{fc},\,i,k}\;"
                r"\delta^{[z]}_i",
        against="dense", options={"sizes": {10: "F_out"}},
        conventions=(from_one("classes i", {"W_fc": (FROM_ONE, SAME), "dL/dz": (FROM_ONE,)}),)),
    Transcription(
        D004, "Backpropagation / 4. MaxPool",
        r"\delta^{[A^{1}]}_{c,\,2p+u,\,2q+v} = \delta^{[P^{1}]}_{c,p,q} if (u,v) is the arg-max in that 2×2 window, "
        r"0 otherwise",
        formula=r"\delta^{[A^{1}]}_{c,\,2p+u,\,2q+v} = \delta^{[P^{1}]}_{c,p,q} \mathbf{1}(A^{[1]}_{c,2p+u,2q+v} = "
                r"P^{[1]}_{c,p,q}) \text{ where } u, v \in \{0, 1\}",
        against="maxpool2d", options={"kernel": 2}),
    Transcription(
        D004, "Backpropagation / 5. ReLU1",
        r"\delta^{[S^{1}]}_{c,i,j} = \delta^{[A^{1}]}_{c,i,j} \;\times\; \mathbf{1}\bigl(S^{[1]}_{c,i,j}>0\bigr)",
        formula=r"\delta^{[S^{1}]}_{c,i,j} = \delta^{[A^{1}]}_{c,i,j} \;\times\; \mathbf{1}\bigl(S^{[1]}_{c,i,j}>0\bigr)",
        against="relu"),
    Transcription(
        D004, "Backpropagation / 6. Conv1",
        r"S^{[1]}_{c,i,j} = \sum_{c'=1}^{3}\sum_{u=0}^{2}\sum_{v=0}^{2} W^{[1]}_{c,c',u,v}\; X_{\,i+u-1,\,j+v-1,\,c'} "
        r"\;+\;b^{[1]}_{c}",
        formula=r"S^{[1]}_{c,i,j} = \sum_{c'=1}^{3}\sum_{u=0}^{2}\sum_{v=0}^{2} W^{[1]}_{c,c',u,v}\; "
                r"X_{\,i+u-1,\,j+v-1,\,c'} \;+\;b^{[1]}_{c}",
        against="conv2d", options={**_CONV3_P1, "channels_in": 3},
        conventions=(from_one("input channels c'", {"W^1": (SAME, FROM_ONE, SAME, SAME), "X": (SAME, SAME, FROM_ONE)}),
                     channels_last({"X": "HWC"}))),
    Transcription(
        D004, "Backpropagation / 6. Conv1: bias gradient",
        r"\delta^{[b^{1}]}_{c} = \sum_{i,j}\delta^{[S^{1}]}_{c,i,j}",
        formula=r"\delta^{[b^{1}]}_{c} = \sum_{i,j}\delta^{[S^{1}]}_{c,i,j}", against="conv2d", options=_CONV3_P1),
    Transcription(
        D004, "Backpropagation / 6. Conv1: weight gradient",
        r"\delta^{[W^{1}]}_{c,c',u,v} = \sum_{i=1}^{32}\sum_{j=1}^{32} \delta^{[S^{1}]}_{c,i,j} \;\times\; "
        r"X_{c',\,i+u-1,\,j+v-1}",
        formula=r"\delta^{[W^{1}]}_{c,c',u,v} = \sum_{i=1}^{32}\sum_{j=1}^{32} \delta^{[S^{1}]}_{c,i,j} \;\times\; "
                r"X_{c',\,i+u-1,\,j+v-1}",
        against="conv2d", options={**_CONV3_P1, "sizes": {32: "H_out"}, "constraint": square_input},
        conventions=(from_one("positions i, j", {"dL/dS^1": (SAME, FROM_ONE, FROM_ONE), "X": (SAME, FROM_ONE, FROM_ONE)}),)),
    Transcription(
        D004, "Backpropagation / 6. Conv1: back-prop to input",
        r"\delta^{[X]}_{c',x,y} = \sum_{c=1}^{16}\sum_{u=0}^{2}\sum_{v=0}^{2} W^{[1]}_{c,c',u,v} \;\times\; "
        r"\delta^{[S^{1}]}_{c,\,x-u+1,\,y-v+1}",
        formula=r"\delta^{[X]}_{c',x,y} = \sum_{c=1}^{16}\sum_{u=0}^{2}\sum_{v=0}^{2} W^{[1]}_{c,c',u,v} \;\times\; "
                r"\delta^{[S^{1}]}_{c,\,x-u+1,\,y-v+1}",
        against="conv2d", options={**_CONV3_P1, "sizes": {16: "C_out"}},
        conventions=(from_one("output channels c", {"W^1": (FROM_ONE, SAME, SAME, SAME),
                                                     "dL/dS^1": (FROM_ONE, SAME, SAME)}),
                     padded("dL/dS^1", "no range condition on x - u + 1: the gradient of the padded convolution"))),
)

#: Statements of the documents that symcnn does not check, and why (shown in docs/errata.md): prose, a formula
#: with nothing to evaluate, and (for now) what waits for the model summary and the optimizers.
NOT_CHECKED: tuple[tuple[str, str, str], ...] = (
    (D000, "Backward Pass", "For pooling, backward pass upsamples the gradient (place gradient only at max position): "
                            "prose; document 004's routing formula and document 002's example are checked"),
    (D001, "4.1 Max Pooling", r"A^{pooled}_{i,j,d} = \max_{u=1}^{F} \max_{v=1}^{F} A^{prev}_{local}: the window "
                              "A_local is not defined, so there is nothing to evaluate"),
    (D001, "5. Forwardpropagation; 6.3 Parameter Update", "Z = Conv(A, W) + b, A = g(Z), W = W - η ∂L/∂W: "
                                                          "definitions, not claims"),
    *NOT_CHECKED_003,
)
