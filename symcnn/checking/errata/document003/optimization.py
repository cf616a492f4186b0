"""Document 003's optimization claims: SGD with momentum, Adam, step decay and cosine annealing. Data
only: each claim as the document writes it, with its update in SymPy syntax for its probe
(:mod:`symcnn.checking.errata.probes.optimization`): the names ``theta``, ``v_prev``, ``m_prev`` and ``t``
are the state before a step and its number, ``dL/dtheta`` is ``∇L``, ``theta_next`` is ``θ_{t+1}``.
"""

from __future__ import annotations

from symcnn.checking.errata.model import Transcription
from symcnn.checking.examples import DOCUMENTS

__all__ = ["OPTIMIZATION"]

D003 = DOCUMENTS["003"]

_ADAM_MOMENTS = ("m[i] = beta1*m_prev[i] + (1 - beta1)*dL/dtheta[i]\n"
                 "v[i] = beta2*v_prev[i] + (1 - beta2)*dL/dtheta[i]**2")
_NO_DECAY = "weight decay 0: the document has none (symcnn's adds λθ to ∇L, the gradient of an L2 penalty)"

#: "Optimization for CNNs", in the document's order.
OPTIMIZATION: tuple[Transcription, ...] = (
    Transcription(
        D003, "Optimization for CNNs / SGD with Momentum",
        "v_t = μv_{t-1} + ∇L, θ_{t+1} = θ_t - ηv_t",
        formula="v[i] = mu*v_prev[i] + dL/dtheta[i]\n"
                "theta_next[i] = theta[i] - eta*v[i]",
        probe="sgd_momentum",
        note=f"v_0 read as 0 (PyTorch's first step sets v_1 = ∇L, the same); {_NO_DECAY}; not Nesterov's"),
    Transcription(
        D003, "Optimization for CNNs / Adam: moments",
        "m_t = β_1m_{t-1} + (1-β_1)∇L, v_t = β_2v_{t-1} + (1-β_2)(∇L)²",
        formula=_ADAM_MOMENTS, probe="adam", note=f"m_0 = v_0 = 0; {_NO_DECAY}"),
    Transcription(
        D003, "Optimization for CNNs / Adam: update",
        "θ_{t+1} = θ_t - η(m̂_t)/(√v̂_t + ε)",
        formula=f"{_ADAM_MOMENTS}\n"
                "mhat[i] = m[i]/(1 - beta1**t)\n"
                "vhat[i] = v[i]/(1 - beta2**t)\n"
                "theta_next[i] = theta[i] - eta*mhat[i]/(sqrt(vhat[i]) + epsilon)",
        probe="adam",
        note="m̂_t and v̂_t, which the document uses without defining, read as Kingma and Ba's bias-corrected "
             "moments m_t/(1 - β_1^t) and v_t/(1 - β_2^t) (PyTorch's and symcnn's), t counted from 1"),
    Transcription(
        D003, "Optimization for CNNs / Step Decay",
        "η_t = η_0 × γ^⌊t/step_size⌋",
        formula="eta_t = eta_0*gamma**floor(t/step_size)",
        probe="step_decay",
        note="t read as the epoch (the document does not say): symcnn's step schedule, as PyTorch's StepLR "
             "stepped once an epoch, decays at epoch boundaries"),
    Transcription(
        D003, "Optimization for CNNs / Cosine Annealing",
        "η_t = η_min + (η_max - η_min)(1 + cos(πt/T))/2",
        formula="eta_t = eta_min + (eta_max - eta_min)*(1 + cos(pi*t/T))/2",
        probe="cosine_annealing",
        note="symcnn's training runs anneal to η_min = 0, t and T counted in steps from the warm-up's end "
             "(cosine_annealing takes any η_min)"),
)
