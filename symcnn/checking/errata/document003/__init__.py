"""Document 003's claims, transcribed by section (data only): convolution and pooling
(:mod:`~symcnn.checking.errata.document003.convolution`), normalization and initialization
(:mod:`~symcnn.checking.errata.document003.normalization`), the architectures' counts
(:mod:`~symcnn.checking.errata.document003.architectures`), the advanced concepts, regularization,
visualization and implementation (:mod:`~symcnn.checking.errata.document003.advanced`) and, between
these, optimization (:mod:`~symcnn.checking.errata.document003.optimization`), in the document's order.
"""

from __future__ import annotations

from symcnn.checking.errata.document003.advanced import ADVANCED, INTERPRETATION
from symcnn.checking.errata.document003.architectures import ARCHITECTURES
from symcnn.checking.errata.document003.convolution import CONVOLUTION
from symcnn.checking.errata.document003.normalization import NORMALIZATION
from symcnn.checking.errata.document003.optimization import OPTIMIZATION
from symcnn.checking.errata.model import Transcription
from symcnn.checking.examples import DOCUMENTS

__all__ = ["DOCUMENT_003", "NOT_CHECKED_003", "WAITING"]

D003 = DOCUMENTS["003"]

#: Every transcribed claim of document 003, in the document's order.
DOCUMENT_003: tuple[Transcription, ...] = (CONVOLUTION + NORMALIZATION + ARCHITECTURES + ADVANCED + OPTIMIZATION
                                           + INTERPRETATION)

#: How a reason says that a section waits for a part of symcnn being built (none does now).
WAITING = "waiting for "

#: Document 003's statements that symcnn does not check (yet), and why: (document, section, reason).
NOT_CHECKED_003: tuple[tuple[str, str, str], ...] = (
    (D003, "CNN Architectures / AlexNet (2012)",
     "its architecture line gives no count, and no size but its input: nothing to check the layer list against "
     "(symcnn's alexnet spec reads 227×227: on the document's 224×224 the first layer's 11×11 windows of stride 4 "
     "leave a row and a column unread, which symcnn summary marks); its innovations are prose"),
    (D003, "Advanced Pooling Variants / Fractional Max Pooling; Regularization in CNNs / Spatial Dropout; "
           "Guided Backpropagation; Mixed Precision Training; Scale and Rotation Invariance; Mathematical Summary",
     "prose: no formula"),
    (D003, "Regularization in CNNs / Data Augmentation; Cutout/Random Erasing",
     "definitions of input transformations (rotation R(θ), translation, scaling, shearing, I' = I + β, I' = αI, "
     "a masked rectangle): they change the data, not a layer, and symcnn has nothing to check them against"),
    (D003, "Loss Functions for CNNs / Focal Loss; Dice Loss; IoU Loss",
     "definitions of losses symcnn does not have: nothing to check them against"),
    (D003, "CNN Visualization and Interpretability / Gradient-Based Methods; Grad-CAM map; Saliency Maps",
     "∂L/∂I = ∇_I L, L_c^{Grad-CAM} = ReLU(∑_k α_k^c A^k) and S(i,j) = |∂L/∂I(i,j)| define new quantities from "
     "a gradient (the Grad-CAM weights they use are checked)"),
    (D003, "Memory Optimization / Gradient Checkpointing; Loss Scaling",
     "Memory_saved = O(√n) and one extra forward pass describe a training procedure symcnn does not have; the "
     "loss-scaling lines hold in exact arithmetic (a gradient is linear in the loss), and their point, FP16 "
     "rounding, is outside symcnn's exact derivations"),
    (D003, "Modern CNN Innovations / Residual Connections; Bottleneck Block; Attention Mechanisms",
     "definitions of blocks: y = F(x, W) + x and y = F_3(F_2(F_1(x))) + x, which symcnn's add layer builds "
     "(resnet-mini's blocks), claim nothing to check; spatial and channel attention (F' = A ⊙ F, F' = α ⊙ F) "
     "multiply two tensors element by element, which no layer of symcnn does (the dense block's feature count is "
     "checked)"),
    (D003, "Computational Efficiency / Quantization; Knowledge Distillation",
     "definitions of 8-bit quantization and of the distillation loss: nothing of symcnn's to check them against"),
    (D003, "Mathematical Properties / Translation Equivariance",
     "f(T_δ(x)) = T_δ(f(x)) with neither f nor T_δ defined (a layer or a network? what the shift brings in at "
     "the border?), so there is nothing to evaluate"),
    (D003, "Implementation Considerations / In-Place Operations; Gradient Accumulation",
     "code: x[x < 0] = 0 is ReLU's forward (checked as f(x) = max(0, x)); the accumulation loop reads a step "
     "counter it never defines"),
    (D003, "Performance Metrics / Computational Metrics: FLOPs",
     "FLOPs = ∑ (Operations per layer): a definition, a network's count as the sum of its layers', which leaves "
     "'Operations per layer' undefined but for the convolution's FLOPs (checked: Computational Complexity / "
     "Forward Pass); symcnn summary's total MACs sums its layers' so"),
    (D003, "Performance Metrics / Classification Metrics",
     "definitions of top-k accuracy, precision, recall and F1: symcnn's trainer reports the top-1 accuracy (the "
     "fraction of arg-max predictions that are right), Acc@1 by definition, and none of the others"),
)
