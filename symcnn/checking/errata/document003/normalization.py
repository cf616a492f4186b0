"""Document 003's normalization and initialization claims: batch normalization forward and backward,
layer normalization, Xavier and He initialization. Data only: each claim as the document writes it,
with its chain in SymPy syntax for its probe (:mod:`symcnn.checking.errata.probes`).
"""

from __future__ import annotations

from symcnn.checking.errata.model import Condition, Transcription, features_differ
from symcnn.checking.examples import DOCUMENTS

__all__ = ["NORMALIZATION"]

D003 = DOCUMENTS["003"]

_ONE_CHANNEL = "x_i read as one channel's m = N·H·W values (BatchNorm2d's)"
# The intermediate lines name nodes of the forward chain: checked with the nodes mu_B and sigma2_B free,
# so that every term counts (one that vanishes at the batch's statistics too).
_FREE = {"statistics": "free"}
_HE_NETWORK = "symcnn's Network draws every weight from He's N(0, 2/n_in) instead (for ReLU networks)"

#: "Normalization Techniques" and "Weight Initialization", in the document's order.
NORMALIZATION: tuple[Transcription, ...] = (
    Transcription(
        D003, "Normalization Techniques / Batch Normalization: Forward Pass",
        "μ_B = (1/m) ∑ x_i, σ²_B = (1/m) ∑ (x_i - μ_B)², x̂_i = (x_i - μ_B)/√(σ²_B + ε), y_i = γx̂_i + β",
        formula="mu = Sum(x[k], (k, 0, m - 1))/m\n"
                "sigma2 = Sum((x[k] - mu)**2, (k, 0, m - 1))/m\n"
                "xhat[i] = (x[i] - mu)/sqrt(sigma2 + epsilon)\n"
                "y[i] = gamma*xhat[i] + beta",
        probe="batchnorm", options={"statistics": "batch"}, note=_ONE_CHANNEL),
    Transcription(
        D003, "Normalization Techniques / Batch Normalization: Backward Pass, dL/dx̂",
        "∂L/∂x̂_i = ∂L/∂y_i · γ",
        formula="dL/dxhat[i] = dL/dy[i]*gamma",
        probe="batchnorm", options=_FREE, note=_ONE_CHANNEL),
    Transcription(
        D003, "Normalization Techniques / Batch Normalization: Backward Pass, dL/dσ²",
        "∂L/∂σ²_B = ∑ ∂L/∂x̂_i · (x_i - μ_B) · (-1/2)(σ²_B + ε)^{-3/2}",
        formula="dL/dsigma2 = Sum(dL/dxhat[k]*(x[k] - mu)*(-1/2)*(sigma2 + epsilon)**(-3/2), (k, 0, m - 1))",
        probe="batchnorm", options=_FREE, note=_ONE_CHANNEL),
    Transcription(
        D003, "Normalization Techniques / Batch Normalization: Backward Pass, dL/dμ",
        "∂L/∂μ_B = ∑ ∂L/∂x̂_i · (-1/√(σ²_B + ε)) + ∂L/∂σ²_B · (-2/m)∑(x_i - μ_B)",
        formula="dL/dmu = Sum(dL/dxhat[k]*(-1/sqrt(sigma2 + epsilon)), (k, 0, m - 1)) "
                "+ dL/dsigma2*(-2/m)*Sum(x[k] - mu, (k, 0, m - 1))",
        probe="batchnorm", options=_FREE, note=_ONE_CHANNEL),
    Transcription(
        D003, "Normalization Techniques / Batch Normalization: Backward Pass, dL/dx",
        "∂L/∂x_i = ∂L/∂x̂_i/√(σ²_B + ε) + ∂L/∂σ²_B · 2(x_i - μ_B)/m + ∂L/∂μ_B/m",
        formula="dL/dx[i] = dL/dxhat[i]/sqrt(sigma2 + epsilon) + dL/dsigma2*2*(x[i] - mu)/m + dL/dmu/m",
        probe="batchnorm", options={"statistics": "batch"}, note=_ONE_CHANNEL),
    Transcription(
        D003, "Normalization Techniques / Layer Normalization",
        "LN(x) = γ ⊙ (x - μ)/σ + β, where μ and σ are computed across features (not batch)",
        formula="mu = Sum(x[k], (k, 0, F - 1))/F\n"
                "sigma = sqrt(Sum((x[k] - mu)**2, (k, 0, F - 1))/F)\n"
                "LN[i] = gamma[i]*(x[i] - mu)/sigma + beta[i]",
        probe="layernorm",
        conditions=(Condition("a sample's features are not all equal (σ ≠ 0): symcnn, as PyTorch, divides by "
                              "√(σ² + ε), which the document writes for batch normalization but not here",
                              {"constraint": features_differ}),),
        note="σ read as the biased standard deviation, as the document's batch variance; each sample's features "
             "are its C·H·W values or its F features"),
    Transcription(
        D003, "Weight Initialization / Xavier/Glorot (uniform)",
        "W ~ U[-√(6/(n_in + n_out)), √(6/(n_in + n_out))]",
        formula="bound = sqrt(6/(n_in + n_out))", probe="initialization", options={"rule": "xavier"},
        note=_HE_NETWORK),
    Transcription(
        D003, "Weight Initialization / Xavier/Glorot (Gaussian)",
        "W ~ N(0, 2/(n_in + n_out))",
        formula="variance = 2/(n_in + n_out)", probe="initialization", options={"rule": "xavier"},
        note=f"N(0, v) read with v the variance; {_HE_NETWORK}"),
    Transcription(
        D003, "Weight Initialization / He (Gaussian)",
        "W ~ N(0, 2/n_in)",
        formula="variance = 2/n_in", probe="initialization", options={"rule": "he"},
        note="N(0, v) read with v the variance"),
    Transcription(
        D003, "Weight Initialization / He (uniform)",
        "W ~ U[-√(6/n_in), √(6/n_in)]",
        formula="bound = sqrt(6/n_in)", probe="initialization", options={"rule": "he"}),
)
