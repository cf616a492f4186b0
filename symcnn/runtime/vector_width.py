"""The vector width of the generated register blocks: 512-bit vectors on CPUs with AVX-512.

Why: numba's LLVM tunes code for AVX-512 CPUs to 256-bit vectors (the ``prefer-256-bit`` tuning of
their CPU models), which halves the multiply-adds per instruction. A convolution's register block
(:mod:`symcnn.codegen.backends.numba_cpu.registers`) is the code that gains from wider ones: on
seed004's conv2 forward pass (batch 64, one thread, a 2-core Intel Xeon with AVX-512) 94 GFLOP/s in
64-value blocks of 256-bit vectors, 128-145 in 128-value blocks of 512-bit ones.

How: each block function calls :func:`wide_vectors`, which sets LLVM's ``prefer-vector-width``
attribute on that function alone (as clang's ``-mprefer-vector-width=512`` does), rather than
numba's process-wide CPU features (``NUMBA_CPU_FEATURES``), which would have to be set before numba
starts and would change the user's other numba functions. The function is kept out of line
(``noinline``): inlined into its kernel, it would be compiled under the kernel's attributes. A
generated kernel carries its blocks in two sizes, and :func:`for_this_cpu` picks the one its CPU
suits when the module is imported: 128 or 256 values (8 or 16 of AVX-512's 32 vector registers), or 64 (8 of
AVX2's 16; 128 there spill: 66 against 92 GFLOP/s on the same pass, numba told
``NUMBA_CPU_NAME=haswell``). Both sum the same products in the same order: the same numbers.

numba's on-disk cache of a kernel does not notice a change here: this file is one of the generator's
sources (:data:`symcnn.runtime.loader.GENERATOR_SOURCES`), so a change makes new packages.

Example:
    >>> has_wide_vectors("+avx2,+fma,+avx512f,+avx512vl")  # numba compiling for these features
    True
"""

from __future__ import annotations

import llvmlite.binding
import numba
from numba.core import types
from numba.extending import intrinsic

__all__ = ["wide_vectors", "has_wide_vectors", "for_this_cpu", "WIDE_VECTORS"]


@intrinsic
def wide_vectors(typingctx):
    """Compile the calling numba function with 512-bit vectors where the CPU has them, and out of line."""
    def codegen(context, builder, signature, args):
        attributes = builder.function.attributes
        attributes.add("noinline")
        # a string attribute, "name"="value": llvmlite's list of known attributes has only named ones
        set.add(attributes, '"prefer-vector-width"="512"')
        return context.get_dummy_value()

    return types.none(), codegen


def has_wide_vectors(features: str | None = None) -> bool:
    """Whether numba compiles for a CPU with 512-bit vectors (AVX-512F): the CPU features it is told
    (``NUMBA_CPU_FEATURES``), else the host's, as numba itself chooses.

    >>> has_wide_vectors("+avx2,+fma,-avx512f"), has_wide_vectors("+avx2,+avx512f")
    (False, True)
    """
    if features is None:
        features = numba.config.CPU_FEATURES
    if features is None:
        try:
            features = llvmlite.binding.get_host_cpu_features().flatten()
        except RuntimeError:  # numba then compiles with no features named
            features = ""
    return "+avx512f" in features.split(",")


#: Which register blocks the kernels of this process call: those for 512-bit vectors, or for 256-bit ones.
WIDE_VECTORS = has_wide_vectors()


def for_this_cpu(wide, narrow):
    """``wide`` (a kernel's register blocks for 512-bit vectors) on a CPU with them, else ``narrow``."""
    return wide if WIDE_VECTORS else narrow
