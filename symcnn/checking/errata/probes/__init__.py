"""The probes: claims checked by code against symcnn (:mod:`~symcnn.checking.errata.probes.core`), for what
the index checker cannot read. A transcription names its probe (``probe="batchnorm"``); :func:`check`
runs it on the transcription's formula, as :func:`symcnn.checking.checker.check` runs the checker.

Example:
    >>> check("dropout", "kept_value = x/p", {"p": "keep"}).correct
    True
"""

from __future__ import annotations

from typing import Mapping

from symcnn.checking.errata.probes.architectures import DENSE_GROWTH, PARAMETERS
from symcnn.checking.errata.probes.core import Probe, search
from symcnn.checking.errata.probes.costs import ACTIVATION_MEMORY, BACKWARD_FLOPS, FORWARD_FLOPS, MODEL_SIZE, UNFOLDED
from symcnn.checking.errata.probes.geometry import DILATED_FIELD, RECEPTIVE_FIELD
from symcnn.checking.errata.probes.layers import ACTIVATION, ADAPTIVE_POOLING, DROPOUT, SEPARABLE
from symcnn.checking.errata.probes.normalization import BATCHNORM, LAYERNORM
from symcnn.checking.errata.probes.optimization import ADAM, COSINE_ANNEALING, SGD_MOMENTUM, STEP_DECAY
from symcnn.checking.errata.probes.training import GRAD_CAM, GRADIENT_CLIPPING, INITIALIZATION, STABLE_SOFTMAX
from symcnn.checking.result import CheckResult

__all__ = ["PROBES", "check"]

#: Every probe by the name a transcription gives.
PROBES: dict[str, Probe] = {
    "batchnorm": BATCHNORM,
    "layernorm": LAYERNORM,
    "activation": ACTIVATION,
    "dropout": DROPOUT,
    "adaptive_pooling": ADAPTIVE_POOLING,
    "separable": SEPARABLE,
    "initialization": INITIALIZATION,
    "stable_softmax": STABLE_SOFTMAX,
    "gradient_clipping": GRADIENT_CLIPPING,
    "grad_cam": GRAD_CAM,
    "sgd_momentum": SGD_MOMENTUM,
    "adam": ADAM,
    "step_decay": STEP_DECAY,
    "cosine_annealing": COSINE_ANNEALING,
    "receptive_field": RECEPTIVE_FIELD,
    "dilated_field": DILATED_FIELD,
    "forward_flops": FORWARD_FLOPS,
    "backward_flops": BACKWARD_FLOPS,
    "im2col": UNFOLDED,
    "model_size": MODEL_SIZE,
    "activation_memory": ACTIVATION_MEMORY,
    "parameters": PARAMETERS,
    "dense_growth": DENSE_GROWTH,
}


def check(probe: str, formula: str, options: Mapping = {}) -> CheckResult:
    """``formula`` checked by the probe named ``probe`` with ``options`` (a reading, a constraint)."""
    if probe not in PROBES:
        raise ValueError(f"probe: must be one of {', '.join(PROBES)}, got {probe!r}")
    return search(PROBES[probe], formula, options)
