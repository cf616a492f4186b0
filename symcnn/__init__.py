"""symcnn: derive and run the mathematics of convolutional networks, from one definition per layer.

- :mod:`symcnn.symbolic.ops`: each op's forward pass as a SymPy index formula (the single definition);
- :mod:`symcnn.symbolic.layers`: those formulas expanded at small shapes, on arrays of symbols or numbers;
- :mod:`symcnn.symbolic.derive`: gradients by differentiation (the vector-Jacobian product) and
  :func:`~symcnn.symbolic.derive.derive` for one op at a small configuration;
- :mod:`symcnn.checking.examples`: the reference documents' worked examples, reproduced and checked;
- :mod:`symcnn.symbolic.adjoint`: general gradient formulas in index notation, derived;
- :mod:`symcnn.codegen.package` and :mod:`symcnn.runtime.network`: numba kernels from templates, and
  :class:`~symcnn.runtime.network.Network`, which runs them (without SymPy);
- :func:`symcnn.summary` (:mod:`symcnn.network_summary`): a spec's shapes, parameters,
  multiply-accumulates, memory and receptive fields, without SymPy.

Names are imported lazily, so that ``import symcnn`` stays cheap and a numeric runtime that
needs no SymPy does not load it.

Example:
    >>> from symcnn.symbolic.derive import LayerConfig, derive
    >>> derive(LayerConfig("conv2d", input_size=3, kernel=2, bias=False)).gradients["grad_input"][0, 0, 0, 1]
    a*w01 + b*w00
"""

from importlib import import_module

__version__ = "0.1.0"

# (``derive`` the function is not re-exported: the submodule ``symcnn.symbolic.derive`` has that name.)
_LAZY = {"LayerConfig": "symcnn.symbolic.derive", "vjp": "symcnn.symbolic.derive", "Network": "symcnn.runtime.network",
         "summary": "symcnn.network_summary"}

__all__ = ["LayerConfig", "vjp", "Network", "summary", "__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'symcnn' has no attribute {name!r}")
