r"""The names a piece of generated code reads from around it: its arguments, as a function of its own.

The template makes a kernel's register blocks (:mod:`~symcnn.codegen.backends.numba_cpu.registers`)
functions of their own, since numba's parallel passes copy every statement of a ``prange`` body
(measured on seed004's conv2 forward pass: 6.1 s to compile, 3.0 s with its blocks apart); what such
a function needs passed in is found here, in the printed code itself.

Example:
    >>> free_names(["for n in range(lo, hi):\n    tile[n] = tile[n] + x[n]*np.float32(2)"])
    ('hi', 'lo', 'tile', 'x')
"""

from __future__ import annotations

import ast
from typing import Iterable

__all__ = ["free_names"]


def free_names(code: Iterable[str], bound: Iterable[str] = ()) -> tuple[str, ...]:
    """The names that the printed statements and expressions ``code`` read, apart from those they
    assign, those in ``bound`` (loops around them, say) and those only called or looked into (a
    function, a module), in sorted order.

    >>> free_names(["acc0_0 = acc0_0 + x_padded[c_in, i + u, j]"], {"acc0_0", "c_in", "u", "j"})
    ('i', 'x_padded')
    """
    # one parse of every distinct text (a block repeats many reads): parsing each apart took seconds a package
    tree = ast.parse("\n".join(dict.fromkeys(code)))
    names, outside = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            names.append(node)
        elif isinstance(node, ast.Attribute):
            outside.add(id(node.value))
        elif isinstance(node, ast.Call):
            outside.add(id(node.func))
    read: set[str] = set()
    assigned = set(bound)
    for node in names:
        if id(node) not in outside:
            (assigned if isinstance(node.ctx, ast.Store) else read).add(node.id)
    return tuple(sorted(read - assigned))
