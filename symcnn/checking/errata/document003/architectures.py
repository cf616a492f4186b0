"""Document 003's counts for its named architectures ("CNN Architectures"): LeNet-5's and VGG-16's
parameters, checked against the networks symcnn builds from the document's layer lists (the shipped
``lenet5`` and ``vgg16`` specs; their comments say where the document is silent). Data only, as
:mod:`symcnn.checking.errata.transcriptions`.
"""

from __future__ import annotations

from symcnn.checking.errata.model import Transcription
from symcnn.checking.examples import DOCUMENTS

__all__ = ["ARCHITECTURES"]

D003 = DOCUMENTS["003"]

#: "CNN Architectures", in the document's order (AlexNet's lines give no count).
ARCHITECTURES: tuple[Transcription, ...] = (
    Transcription(
        D003, "CNN Architectures / LeNet-5 (1998): Parameter Count",
        "Input(32×32) → Conv(6@5×5) → Pool(2×2) → Conv(16@5×5) → Pool(2×2) → FC(120) → FC(84) → FC(10): ≈ 60,000 "
        "parameters",
        formula="parameters = 60000", probe="parameters", options={"network": "lenet5", "precision": 10_000},
        note="≈ read at the document's precision, one significant figure (from 55,000 to 65,000: a round figure); "
             "the network as the document lists it, every connection and bias (the lenet5 spec: conv2 reads all 6 "
             "maps, the pools learn nothing, FC(120) is dense on the 16×5×5 maps)"),
    Transcription(
        D003, "CNN Architectures / VGG-16: Parameter Count",
        "[Conv(64@3×3)]×2 → Pool → [Conv(128@3×3)]×2 → Pool → [Conv(256@3×3)]×3 → Pool → [Conv(512@3×3)]×3 → Pool → "
        "[Conv(512@3×3)]×3 → Pool → FC(4096) → FC(4096) → FC(1000): ≈ 138 million parameters",
        formula="parameters = 138000000", probe="parameters", options={"network": "vgg16", "precision": 1_000_000},
        note="≈ read at the document's precision, three significant figures (from 137.5 to 138.5 million); the "
             "network as the document lists it on Simonyan and Zisserman's 3×224×224 input (the vgg16 spec: the "
             "document gives no input size, and the first dense layer's 25,088 inputs are 512 maps of 7×7)"),
)
