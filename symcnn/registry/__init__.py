"""The op registry: every op symcnn knows, registered once, read by every stage.

An :class:`Op` entry holds everything about an op that is not its mathematics: its name, where its
index formula is defined, the keys a network spec gives it (with defaults and constraints, and the
formula parameters each key sets), the input ranks it accepts, its output shape and parameter
shapes, its multiply-accumulates and windows (for model summaries: :mod:`symcnn.registry.costs`),
its rule at non-differentiable points and its display names. The mathematics is the index
formula itself (:mod:`symcnn.symbolic.ops`), named here by ``"module:function"`` and imported only
when a stage asks for it: spec validation and the runtime read this package and never load SymPy.

- :mod:`symcnn.registry.core`: :class:`Op`, :class:`Setting`, :func:`register`, :func:`get`, :func:`names`;
- :mod:`symcnn.registry.roles`: how an op's inputs and parameters are named (``input``, ``input2``, ...);
- :mod:`symcnn.registry.builtin`, :mod:`symcnn.registry.normalization` and :mod:`symcnn.registry.merge`
  (add, concat): the built-in ops' entries,
  registered on import, in the order every listing shows them.

Derivations (``symcnn derive``, ``symcnn formula``), spec validation, code generation, the
kernel-vs-symbolic check, the checker, the reports and the command line's choices all read
:func:`get` and :func:`names`. Adding an op is its formula, one :func:`register` call and its tests
(``docs/adding-an-op.md``).

Example:
    >>> conv = get("conv2d")
    >>> conv.output_shape((3, 32, 32), conv.settings_of({"out_channels": 16, "kernel": 3, "padding": 1}))
    (16, 32, 32)
    >>> conv.parameter_shapes((3, 32, 32), conv.settings_of({"out_channels": 16, "kernel": 3}))
    {'weight': (16, 3, 3, 3), 'bias': (16,)}
    >>> names(layer=True)[:4]
    ('conv2d', 'maxpool2d', 'avgpool2d', 'global_avgpool')
"""

from symcnn.registry.core import MAX_SIZE, REQUIRED, Op, Setting, Shape, Window, get, input_roles, names, ops, register
from symcnn.registry.core import unregister
from symcnn.registry.roles import MAX_MERGED, array_name, differentiable, input_number, input_role, is_input_role
from symcnn.registry import builtin, normalization, merge  # noqa: E402,F401  (registers the built-in ops, in order)

__all__ = ["REQUIRED", "MAX_SIZE", "Setting", "Window", "Op", "Shape", "register", "unregister", "get", "names", "ops",
           "input_roles", "MAX_MERGED", "input_role", "is_input_role", "input_number", "differentiable", "array_name"]
