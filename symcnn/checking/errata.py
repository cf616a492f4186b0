"""The reference documents' formulas and claims, transcribed, each checked at run time.

Each :class:`Transcription` holds a claim as its document writes it (``claim``), with the
document's file name and section, and how symcnn checks it: a formula in the checker's notation
(:mod:`symcnn.checking.checker`) against an op or a worked example, with the document's own settings
(its kernel, padding, sizes), or a worked example of :mod:`symcnn.checking.examples`. Where a document
uses another convention than symcnn's (a flipped kernel, channels last, indices from 1, a padded
gradient), the transcription names it, with the options that express it.

:func:`collect` runs every check and returns :class:`Erratum` entries; nothing is hard-coded:

- ``verified``: the claim holds in symcnn's conventions;
- ``convention``: it is wrong in symcnn's conventions but holds under the document's, named in
  ``detail``;
- ``wrong``: it fails even so; ``detail`` is the smallest counter-example.

Example:
    >>> entry = run(TRANSCRIPTIONS[0])
    >>> entry.document, entry.status
    ('000_0ff4e6a12fbebc4a.txt', 'verified')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional

from symcnn.checking.checker import CheckOptions, _count, check
from symcnn.checking.documents import reference
from symcnn.checking.examples import DOCUMENTS, EXAMPLES
from symcnn.checking.examples import check as check_example

__all__ = ["Convention", "Transcription", "Erratum", "TRANSCRIPTIONS", "NOT_CHECKED", "run", "collect",
           "errata_text", "errata_markdown", "summary", "STATUSES"]

STATUSES = ("verified", "convention", "wrong")


@dataclass(frozen=True)
class Convention:
    """A document's convention, and the checker options that read a claim under it."""

    name: str
    options: Mapping = field(default_factory=dict)


@dataclass(frozen=True)
class Transcription:
    """One claim of a document and how to check it: ``formula`` against ``against`` (an op or a
    worked example) with the document's ``options``, or a worked ``example``."""

    document: str
    section: str
    claim: str
    formula: Optional[str] = None
    against: Optional[str] = None
    options: Mapping = field(default_factory=dict)
    conventions: tuple[Convention, ...] = ()
    example: Optional[str] = None


@dataclass(frozen=True)
class Erratum:
    """A checked claim: ``status`` is ``verified``, ``convention`` or ``wrong``; ``detail`` names the
    convention or gives the counter-example."""

    document: str
    section: str
    claim: str
    status: str
    detail: str

    def as_dict(self) -> dict:
        return {"document": self.document, "section": self.section, "claim": self.claim, "status": self.status,
                "detail": self.detail}


# --- conventions ---------------------------------------------------------------------------------------

# Index maps, per axis: symcnn's index = sign * the document's index + offset.
SAME = (1, 0)
FROM_ONE = (1, -1)


def true_convolution(kernel: str, output: str, rank: int = 2, zero_kernel: bool = False) -> Convention:
    """The textbook convolution: the kernel flipped, and the output counted from the kernel's last tap.

    ``sum_m X(i - m) K(m)`` is symcnn's cross-correlation ``sum_u X(i' + u) K'(u)`` with
    ``K'(u) = K(K_h - 1 - u)`` and ``i = i' + K_h - 1``.
    """
    lead = (SAME,) * (rank - 2)
    options = {"index_maps": {kernel: lead + ((-1, "K_h - 1"), (-1, "K_w - 1")),
                              output: lead + ((1, "1 - K_h"), (1, "1 - K_w"))}}
    if zero_kernel:
        options["zero_outside"] = frozenset({kernel})
    return Convention("true convolution: the kernel flipped (rotated 180°), output positions counted from the "
                      "kernel's last tap" + (", the kernel zero outside its shape" if zero_kernel else ""), options)


def from_one(what: str, maps: Mapping[str, tuple]) -> Convention:
    return Convention(f"{what} counted from 1", {"index_maps": dict(maps)})


def channels_last(layouts: Mapping[str, str]) -> Convention:
    shown = ", ".join(f"{name} as {layout}" for name, layout in layouts.items())
    return Convention(f"channels last ({shown})", {"layouts": dict(layouts)})


def padded(name: str, why: str) -> Convention:
    return Convention(f"{name} zero outside its shape ({why})", {"zero_outside": frozenset({name})})


def merge(conventions) -> Convention:
    """Several conventions at once."""
    options: dict = {}
    for convention in conventions:
        for key, value in convention.options.items():
            if isinstance(value, frozenset):
                options[key] = options.get(key, frozenset()) | value
            elif isinstance(value, Mapping):
                options[key] = {**options.get(key, {}), **value}
            else:
                options[key] = value
    return Convention("; ".join(convention.name for convention in conventions), options)


def _windows_tile(config) -> bool:
    """Every input element in exactly one pooling window."""
    return all(config[f"in_{side}"] % config[f"kernel_{side}"] == 0 and config[f"stride_{axis}"] == config[
        f"kernel_{side}"] for side, axis in (("height", "h"), ("width", "w")))


def _no_output_padding(config) -> bool:
    return all((config[f"in_{side}"] + 2 * config[f"padding_{axis}"] - config[f"dilation_{axis}"] * (
        config[f"kernel_{side}"] - 1) - 1) % config[f"stride_{axis}"] == 0
        for side, axis in (("height", "h"), ("width", "w")))


def _square(config) -> bool:
    return config["in_height"] == config["in_width"]


D000, D001, D002, D003, D004 = (DOCUMENTS[key] for key in ("000", "001", "002", "003", "004"))
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
        conventions=(Convention("windows that tile the input: stride F and input sizes multiples of F",
                                {"constraint": _windows_tile}),)),
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
        conventions=(Convention("2 × 2 windows with stride 1 (overlapping; the document gives only the kernel "
                                "size, and a pool's stride is usually its window)", {"stride": 1}),))
      for title, op, claim in (
          ("Max Pooling output", "maxpool2d", r"Y = \begin{bmatrix} 9 & 5 \\ 9 & 3 \end{bmatrix}"),
          ("Max Pooling gradient", "maxpool2d",
           r"\frac{\partial L}{\partial X} = \begin{bmatrix} 0 & b & 0 \\ a + c & 0 & 0 \\ 0 & d & 0 \end{bmatrix}"),
          ("Average Pooling output", "avgpool2d", r"Y = \begin{bmatrix} 4.25 & 3 \\ 5 & 2 \end{bmatrix}"),
          ("Average Pooling gradient", "avgpool2d",
           r"\frac{\partial L}{\partial X} = \begin{bmatrix} \frac{a}{4} & \frac{a}{4} + \frac{b}{4} & \frac{b}{4} \\ "
           r"\frac{a}{4} + \frac{c}{4} & \frac{a}{4} + \frac{b}{4} + \frac{c}{4} + \frac{d}{4} & \frac{b}{4} + "
           r"\frac{d}{4} \\ \frac{c}{4} & \frac{c}{4} + \frac{d}{4} & \frac{d}{4} \end{bmatrix}"))),
    # ---- document 003: the mathematics of CNNs ----------------------------------------------------------------------
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
        "Same: p = (K-1)/2 (for odd K)",
        formula=r"H_{out} = H_{in} \text{ where } p = \frac{K - 1}{2}", against="conv2d"),
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
        conventions=(Convention("windows that do not overlap (stride = window)",
                                {"constraint": lambda config: config["stride_h"] == config["kernel_height"]
                                 and config["stride_w"] == config["kernel_width"]}),)),
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
    Transcription(D003, "Parameter Calculation / Convolutional Layer",
                  "Parameters = K_h × K_w × C_in × C_out + C_out", example="conv_parameter_count"),
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
    Transcription(D003, "Activation Functions in CNNs / ReLU", "f'(x) = {1 if x > 0, 0 if x ≤ 0}",
                  example="relu_derivative"),
    Transcription(D003, "Activation Functions in CNNs / Leaky ReLU", "f'(x) = {1 if x > 0, α if x ≤ 0}",
                  example="leaky_relu_derivative"),
    Transcription(D003, "Activation Functions in CNNs / ELU", "f'(x) = {1 if x > 0, f(x) + α if x ≤ 0}",
                  example="elu_derivative"),
    Transcription(
        D003, "Loss Functions for CNNs / Cross-Entropy",
        "L = -∑ y_i log(ŷ_i)",
        formula=r"L = -\sum_{i} y_i \log(\hat{y}_i)", against="cross_entropy"),
    Transcription(
        D003, "Advanced CNN Concepts / Dilated Convolution",
        "Y(i,j) = ∑∑ X(i + r·u, j + r·v) · W(u,v)",
        formula=r"Y(i, j) = \sum_{u}\sum_{v} X(i + r \cdot u, j + r \cdot v) \cdot W(u, v)", against="conv2d"),
    Transcription(
        D003, "Advanced CNN Concepts / Transposed Convolution",
        "Y[i,j] = ∑∑ X[⌊i/s⌋ - u, ⌊j/s⌋ - v] · W[u,v] (the gradient of a convolution with respect to its input)",
        formula=r"Y[i, j] = \sum_{u}\sum_{v} X[\lfloor i/s \rfloor - u, \lfloor j/s \rfloor - v] \cdot W[u, v]",
        against="conv2d", options={"tensors": {"Y": "grad_input", "X": "grad_output"},
                                   "zero_outside": frozenset({"X"})}),
    Transcription(
        D003, "Advanced CNN Concepts / Transposed Convolution output size",
        "H_out = (H_in - 1) × s - 2p + K (the transposed convolution's output is the convolution's input)",
        formula=r"H_{in} = (H_{out} - 1) \times s - 2p + K_h", against="conv2d",
        conventions=(Convention("no output padding: s divides H_in + 2p - K_h (else s input sizes share one "
                                "output size)", {"constraint": _no_output_padding}),)),
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
        against="conv2d", options={**_CONV3_P1, "sizes": {32: "H_out"}, "constraint": _square},
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

#: Statements of the documents that symcnn does not check, and why (shown in docs/errata.md).
NOT_CHECKED: tuple[tuple[str, str, str], ...] = (
    (D000, "Backward Pass", "For pooling, backward pass upsamples the gradient (place gradient only at max position): "
                            "prose; document 004's routing formula and document 002's example are checked"),
    (D001, "4.1 Max Pooling", r"A^{pooled}_{i,j,d} = \max_{u=1}^{F} \max_{v=1}^{F} A^{prev}_{local}: the window "
                              "A_local is not defined, so there is nothing to evaluate"),
    (D001, "5. Forwardpropagation; 6.3 Parameter Update", "Z = Conv(A, W) + b, A = g(Z), W = W - η ∂L/∂W: "
                                                          "definitions, not claims"),
    (D003, "Receptive Field Analysis; Adaptive Pooling; Memory; Computational Complexity",
     "RF_l = RF_{l-1} + (K_l - 1)·∏ s_i, adaptive kernel and stride, memory and FLOP counts: no op of symcnn "
     "defines them"),
    (D003, "Normalization Techniques; Weight Initialization; Regularization; Optimization; Architectures; "
           "Visualization; Quantization; Attention",
     "batch and layer normalization, initializations, dropout, focal/Dice/IoU losses, SGD and Adam, learning-rate "
     "schedules, Grad-CAM, parameter counts of published networks: outside symcnn's ops"),
    (D003, "Implementation Considerations", "the stable softmax and in-place ReLU are code, not formulas"),
)


# --- running ---------------------------------------------------------------------------------------------


def _options(base: Mapping, extra: Mapping = {}) -> CheckOptions:
    options = CheckOptions()
    merged = {**base}
    for key, value in extra.items():
        current = merged.get(key)
        if isinstance(value, frozenset):
            merged[key] = (current or frozenset()) | value
        elif isinstance(value, Mapping):
            merged[key] = {**(current or {}), **value}
        else:
            merged[key] = value
    return options.merged(**merged) if merged else options


def run(transcription: Transcription) -> Erratum:
    """Check one transcription: the status and detail are whatever the checker finds now."""
    def entry(status: str, detail: str) -> Erratum:
        return Erratum(transcription.document, transcription.section, transcription.claim, status, detail)

    if transcription.example is not None:
        result = check_example(EXAMPLES[transcription.example])
        if result.status == "ok":
            values = "1 value" if result.checked == 1 else f"{result.checked} values"
            return entry("verified", f"worked example {transcription.example}: {values} reproduced")
        return entry("wrong", "; ".join(result.mismatches))
    sizes = transcription.options.get("sizes", {})
    # The document's network sizes in sum bounds are read as parameters, and said so.
    as_parameters = "; ".join(f"{number} read as {name}" for number, name in sizes.items())
    result = check(transcription.formula, transcription.against, _options(transcription.options))
    if result.correct:
        return entry("verified", "; ".join(filter(None, [_verified_detail(result), as_parameters])))
    if transcription.conventions:
        convention = merge(transcription.conventions)
        under = check(transcription.formula, transcription.against, _options(transcription.options, convention.options))
        if under.correct:
            return entry("convention", "; ".join(filter(None, [convention.name, as_parameters])))
        return entry("wrong", f"even with {convention.name}: {under.counterexample(limit=2)}")
    return entry("wrong", result.counterexample(limit=2))


def _verified_detail(result) -> str:
    return f"checked against {result.against} at {_count(result.checked, result.kind)}"


def collect() -> list[Erratum]:
    """Every transcribed claim of the five documents, checked now, in document order."""
    return [run(transcription) for transcription in TRANSCRIPTIONS]


def summary(entries) -> str:
    """``70 claims: 39 verified, 29 verified under the document's convention, 2 wrong``."""
    counts = {status: sum(entry.status == status for entry in entries) for status in STATUSES}
    return (f"{len(entries)} claims: {counts['verified']} verified, {counts['convention']} verified under the "
            f"document's convention, {counts['wrong']} wrong")


def errata_text(entries) -> str:
    """The entries as plain text, grouped by document."""
    lines, document = [], None
    for entry in entries:
        if entry.document != document:
            document = entry.document
            heading = reference(document).heading
            lines.append(f"\n{heading}" if lines else heading)
        lines.append(f"  [{entry.status}] {entry.section}: {entry.claim}")
        lines.append(f"      {entry.detail}")
    lines.append("")
    lines.append(summary(entries))
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def errata_markdown(entries=None) -> str:
    """docs/errata.md: every entry of :func:`collect` as a table per document, and what is not checked."""
    entries = collect() if entries is None else entries
    lines = [
        "# Errata of the reference documents",
        "",
        "Generated by `symcnn errata` (`symcnn.checking.errata.errata_markdown`); do not edit by hand. Each claim of the",
        "five reference documents (tutorials on the mathematics of CNNs, not distributed with symcnn: each claim is",
        "quoted below as its document writes it) is transcribed in `symcnn/checking/errata.py` with its section, and",
        "checked when the command runs: by `symcnn check` against the derivation of its op (index notation, at small",
        "configurations of increasing size) or of a worked example (exactly, entry by entry).",
        "",
        "- **verified**: the claim holds in symcnn's conventions (docs/conventions.md);",
        "- **convention**: it holds only under the document's own convention, named in the detail;",
        "- **wrong**: it fails; the detail is the smallest counter-example found.",
        "",
        summary(entries) + ".",
    ]
    document = None
    for entry in entries:
        if entry.document != document:
            document = entry.document
            cited = reference(document)
            lines += ["", f"## Document {cited.number}: {cited.title}", "", f"File `{cited.file_name}`: {cited.covers}.",
                      "", "| Section | Claim | Status | Detail |", "|---|---|---|---|"]
        lines.append(f"| {_cell(entry.section)} | `{_cell(entry.claim)}` | {entry.status} | {_cell(entry.detail)} |")
    lines += ["", "## Not checked", "", "| Document | Section | Why |", "|---|---|---|"]
    for document, section, reason in NOT_CHECKED:
        lines.append(f"| {reference(document).number}: {reference(document).title} | {_cell(section)} | {_cell(reason)} |")
    lines += ["", "## How claims are read", "", *_VOCABULARY]
    return "\n".join(lines) + "\n"


_VOCABULARY = [
    "The checker (`symcnn check FORMULA --against NAME`) reads LaTeX as the documents write it, or SymPy syntax.",
    "",
    "- **Element-wise claims** name entries as document 002 does (`y_{01}`, `\\frac{\\partial L}{\\partial w_{00}}`,",
    "  a whole `\\frac{\\partial L}{\\partial X}` as a `bmatrix`), with the symbols `x00`, `w01`, `a b c d`, and are",
    "  compared exactly with a worked example's entries (`--against conv_3x3_2x2`) or an op's at one",
    "  configuration (`--against maxpool2d --input 3x3 --kernel 2 --stride 1 --values '1,5,4;9,2,1;6,3,2'`).",
    "- **Index-notation claims** are compared with an op's derivation at small configurations in increasing",
    "  size; the first that differs is the counter-example. Tensors: `X` `I` (input), `W` `K` (weight), `b`",
    "  (bias), `Y` `S` (output), per op the documents' names (`A`, `P`, `h`, `z`, `p`, `y`, `\\hat{y}`), or any",
    "  name with `--tensor NAME=ROLE`; read as `X_{n,c,i,j}`, `X(i, j)`, `X_c(i, j)`, `X[i, j, c]`,",
    "  `Y^{(k)}(i, j)`, `W^{[1]}_{c,c',u,v}`, `W_{\\mathrm{fc},i,k}`. Gradients: `\\frac{\\partial L}{\\partial X_{k,l}}`,",
    "  `\\delta^{[X]}_{k,l}`, and a bare `\\delta_{i,j}` for the upstream `dL/dY`. A tensor read with fewer",
    "  indices than its rank drops its leading axes (batch, then channels), which are then 1; `--layout NHWC`",
    "  or `--layout X=HWC` reorders them.",
    "- **Parameters**: `s` `S` (stride), `p` `P` (padding), `d` `r` (dilation), `K` `F` `K_h` `K_w` (kernel),",
    "  `N` `B` (batch), `C` `C_in` `C_out`, `H` `H_in` `W_in` `N_in` `I` (input size), `H_out` `W_out` `N_out` `O`,",
    "  `F_in` `F_out`. One the claim does not mention keeps its neutral value (stride 1, padding 0,",
    "  dilation 1; a pool's stride is its window): a formula without it claims nothing about it.",
    "- **Sums** `\\sum_{m=0}^{K_h-1}`, or without bounds `\\sum_{m}` / `\\sum_{u,v}`: then the index runs over",
    "  the axis it indexes on its own. `\\max_{u=0}^{K-1}` and `\\max_{u,v \\in \\{0,1\\}}` are window maxima;",
    "  `\\mathbf{1}(cond)` an indicator, with `s \\mid a` for divisibility; `\\text{where}` adds definitions",
    "  (`i = \\lfloor (k+p-m)/s \\rfloor`), parameter conditions (`p = (K-1)/2`) or ranges (`u, v \\in \\{0, 1\\}`).",
    "- **Reads outside a tensor are errors**: the claim is wrong there, as a formula must keep its reads in",
    "  range (symcnn's derived formulas carry their range conditions). Exceptions: the convolution's input,",
    "  zero-padded by definition, and tensors named with `--zero-outside` (\"pad the output gradient\").",
    "  `--one-based NAME` counts NAME's indices from 1. Max pooling is checked at inputs with distinct values.",
]
