"""A kernel for each vector width: lowered again by the narrow constants where they choose otherwise.

The schedule a kernel is fastest in depends on the CPU's vectors (:mod:`symcnn.codegen.cost_model`:
:data:`~symcnn.codegen.cost_model.WIDE` and :data:`~symcnn.codegen.cost_model.NARROW`). A lowering
wrapped in :func:`per_vector_width` is made by the wide constants, every choice compared with the narrow
ones; where one differs, it is made again by the narrow constants, and the kernel carries that variant
(:attr:`~symcnn.codegen.kernel_ir.Kernel.narrow`). Its module defines both and calls the one its CPU
suits (:func:`symcnn.runtime.vector_width.for_this_cpu`). Both compute the same formula; which one a
CPU runs does not depend on the machine that generated them: generation stays deterministic.

Example (suite-separable's first 1 x 1 convolution, 32 -> 64 channels at 32 x 32: the lanes schedule,
over output channels, on CPUs with 512-bit vectors; the columns one, over output columns, on those with
256-bit ones):

    >>> from symcnn.codegen.network import layer_kernels
    >>> from symcnn.spec import load_spec
    >>> pw1 = next(layer for layer in load_spec("suite-separable").layers if layer.label == "pw1")
    >>> forward = layer_kernels(pw1)[0]
    >>> forward.kind, forward.narrow.kind, forward.narrow.name
    ('lanes', 'columns', '')
"""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import Callable, Optional, TypeVar

from symcnn.codegen import cost_model
from symcnn.codegen.kernel_ir import Kernel

__all__ = ["per_vector_width"]

Lowering = TypeVar("Lowering", bound=Callable[..., Optional[Kernel]])


def per_vector_width(lower: Lowering) -> Lowering:
    """``lower`` (a function returning a :class:`Kernel`, or ``None``), returning its kernel with a
    ``narrow`` variant where the narrow constants choose otherwise. Within another such lowering, or
    while one is lowered narrow, it is called as it is."""
    @functools.wraps(lower)
    def lowered(*arguments, **keywords):
        if cost_model.narrowed() or cost_model.comparing():
            return lower(*arguments, **keywords)
        with cost_model.compared() as differing:
            wide = lower(*arguments, **keywords)
        if wide is None or not differing:
            return wide
        with cost_model.narrow():
            narrow = lower(*arguments, **keywords)
        if narrow.arguments != wide.arguments or narrow.output != wide.output:
            raise RuntimeError(f"{wide.name}: its narrow variant takes {narrow.arguments}, not {wide.arguments}")
        return replace(wide, narrow=replace(narrow, name=""))
    return lowered
