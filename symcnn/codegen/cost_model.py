"""Which schedule a kernel gets: a cost model over its candidate loop nests, from its shapes only.

A sum kernel can be scheduled several ways (:mod:`symcnn.codegen.lower`): vectorized over an output
axis that only one operand indexes (the *lanes* schedule, :mod:`~symcnn.codegen.backends.numba_cpu.lanes`:
output channels), vectorized over output columns (the *columns* schedule,
:mod:`~symcnn.codegen.backends.numba_cpu.columns`: when channels are few), each with its register
blocking; or left scalar (the *accumulate* or *gather* form). Each candidate describes itself as a
:class:`LoopNest` (how many lane loops it enters per image, how long they run, how many tile
elements and products each iteration updates, what it copies), and :func:`estimate` prices it in
nanoseconds per image from constants measured on this machine class (2-core AMD EPYC, AVX-512,
numba 0.6x, one thread: the model compares work per core). The lanes schedule is taken wherever it
fits (:data:`LANES_FIRST`); elsewhere the cheapest candidate is generated. The constants live here,
in the code, so that generation is deterministic: regenerating is byte-identical on any machine,
whatever it would time. ``docs/bench/schedule_costs.py`` times the candidates of a range of layer
shapes and fits these constants (its timings: ``docs/bench/schedule_costs.json``; its fit:
``docs/bench/schedule_costs.txt``; summarized in docs/performance.md, "Schedules from shapes");
no schedule names a spec.

Example: LeNet-5's first convolution (1 input channel, 6 output channels, 28 x 28 outputs) has no
vector of channels; its columns, 28 of them, padded to 32, make two vectors:

    >>> columns = vector_nest("columns", multiply_adds=6 * 28 * 28 * 25, rows=(28,), outer=(6,),
    ...                       reduction=(1, 5, 5), lanes=32, useful=28, block=3, unroll=5,
    ...                       streamed=5, hoisted=15, staged=32 * 36, stored=6 * 28 * 28)
    >>> accumulate = scalar_nest("accumulate", multiply_adds=6 * 28 * 28 * 25, inner=28, stored=6 * 28 * 28)
    >>> cheapest([accumulate, columns]).schedule
    'columns'
"""

from __future__ import annotations

import contextlib
import math
from contextvars import ContextVar
from typing import Callable, Iterator, NamedTuple, Optional, Sequence, TypeVar

__all__ = ["LANES_FIRST", "VECTOR", "LoopNest", "vector_nest", "scalar_nest", "spilled", "estimate", "cheapest",
           "restricted", "recorded"]

#: The lanes schedule, wherever it fits, without an estimate: in the calibration it was the fastest
#: candidate of every kernel it fit (9 of 9; one tie, 8 lanes against columns), so the constants below are
#: fitted to, and decide among, the columns candidates and the scalar form of the kernels it does not fit.
LANES_FIRST = True

#: float32 values per vector the lane loops are vectorized to: LLVM's choice for this machine's
#: ``znver4`` target is 512-bit vectors (``zmm`` multiply-adds in the compiled lane loops), its
#: remainder vectorized by four, then scalar.
VECTOR = 16

# --- the constants, in nanoseconds (fitted by docs/bench/schedule_costs.py; see its output) -------

#: A vector schedule's lane loop: entering it (the runtime overlap checks LLVM places before it,
#: the loop's set-up), per value read before it (a broadcast), per vector iteration and product,
#: per distinct lane-dependent read in an iteration, per tile element loaded and stored, and a scalar
#: remainder iteration (lanes beyond the last whole vector) as a fraction of a vector iteration.
LANE_LOOP = 0.793
HOISTED = 0.0999
PRODUCT = 0.356
STREAMED = 0.246
TILE = 0.184
REMAINDER = 0.1
#: Per vector iteration and broadcast value that does not fit the vector registers (``REGISTERS``,
#: the tile elements' included) and is read again from the stack.
SPILLED = 0.712
REGISTERS = 32
#: Per element copied into a staging copy, and per output element initialized and stored.
STAGED = 0.399
STORED = 0.567
#: The accumulate form: per row loop entered, per vector iteration of it (an output element loaded,
#: a product added, stored).
ROW_LOOP = 0.0
ROW_ITERATION = 3.27
#: The gather form: per product (scalar: a window's read and its bounds), per output element.
GATHER_PRODUCT = 0.428
GATHER_OUTPUT = 0.0


class LoopNest(NamedTuple):
    """One candidate schedule of one kernel, in the numbers its cost depends on, per image.

    ``schedule``: ``"lanes"``, ``"columns"``, ``"accumulate"`` or ``"gather"``; ``multiply_adds``:
    the products the formula sums (the same for every candidate of a kernel); ``lane_loops``: the
    innermost loops entered (lane loops, or an accumulate kernel's rows); ``trips``: each one's
    iterations as run (padding included); ``useful``: of which the output needs; ``updates``: tile
    elements updated per iteration (the register block); ``products``: per update (the unrolled
    reduction); ``streamed``: distinct lane-dependent reads per iteration; ``hoisted``: values read
    before each lane loop; ``staged``: elements copied per image; ``stored``: output elements
    initialized and stored per image. ``detail``: what the schedule chose, for reading (``block=3``).
    """

    schedule: str
    multiply_adds: int
    lane_loops: float = 0.0
    trips: int = 0
    useful: int = 0
    updates: int = 1
    products: int = 1
    streamed: int = 1
    hoisted: int = 0
    staged: int = 0
    stored: int = 0
    detail: str = ""


def vector_nest(schedule: str, *, multiply_adds: int, rows: Sequence[int], outer: Sequence[int],
                reduction: Sequence[int], lanes: int, useful: int, block: int, unroll: int, streamed: int,
                hoisted: int, staged: int, stored: int, repeats: int = 1, detail: str = "") -> LoopNest:
    """The :class:`LoopNest` of a lanes or columns schedule: ``rows`` are the loops around the tile (per
    image), ``outer`` the tile's axes before the lane, ``reduction`` the summed loops (per image: the
    batch excluded), blocked by ``block`` (the innermost tile axis) and unrolled by ``unroll`` (the
    innermost reduction loop); ``repeats``: the lane axis in that many blocks."""
    loops = math.prod(rows) * math.prod(outer) * math.prod(reduction) * repeats / (block * unroll)
    return LoopNest(schedule, multiply_adds, loops, lanes, useful, block, unroll, streamed, hoisted, staged,
                    stored, detail or f"block={block}, unroll={unroll}, lanes={lanes}")


def scalar_nest(schedule: str, *, multiply_adds: int, inner: int, stored: int) -> LoopNest:
    """The :class:`LoopNest` of the accumulate form (``inner``: its rows' length) or the gather form."""
    return LoopNest(schedule, multiply_adds, multiply_adds / max(inner, 1), inner, inner, stored=stored)


def _iterations(trips: int) -> float:
    """A loop of ``trips`` as vector iterations: whole vectors, then the remainder's scalar ones."""
    return trips // VECTOR + REMAINDER * (trips % VECTOR)


def spilled(nest: LoopNest) -> int:
    """Broadcast values of ``nest`` beyond the vector registers, with its tile elements."""
    return max(0, nest.hoisted + nest.updates - REGISTERS)


def estimate(nest: LoopNest) -> float:
    """Nanoseconds per image the constants above predict for ``nest`` (batch 64, one thread)."""
    if nest.schedule == "gather":
        return GATHER_PRODUCT * nest.multiply_adds + GATHER_OUTPUT * nest.stored
    if nest.schedule == "accumulate":
        return nest.lane_loops * (ROW_LOOP + _iterations(nest.trips) * ROW_ITERATION) + STORED * nest.stored
    iteration = (PRODUCT * nest.updates * nest.products + STREAMED * nest.streamed + TILE * nest.updates
                 + SPILLED * spilled(nest))
    per_loop = LANE_LOOP + HOISTED * nest.hoisted + _iterations(nest.trips) * iteration
    return nest.lane_loops * per_loop + STAGED * nest.staged + STORED * nest.stored


Candidate = TypeVar("Candidate")

#: Calibration and tests narrow the candidates (:func:`restricted`); generation never does.
_ALLOWED: ContextVar[Callable[[LoopNest], bool]] = ContextVar("allowed_schedules", default=lambda nest: True)


@contextlib.contextmanager
def restricted(allowed: Callable[[LoopNest], bool]) -> Iterator[None]:
    """Within the block, only candidates whose :class:`LoopNest` ``allowed`` accepts are generated
    (all of them when it accepts none): to time or test one schedule on shapes the model would give
    another. ``with restricted(lambda nest: nest.schedule == "columns"): ...``"""
    token = _ALLOWED.set(allowed)
    try:
        yield
    finally:
        _ALLOWED.reset(token)


#: Calibration lists the candidates each choice was made among (:func:`recorded`).
_RECORD: ContextVar[Optional[list]] = ContextVar("recorded_choices", default=None)


@contextlib.contextmanager
def recorded() -> Iterator[list[list[LoopNest]]]:
    """Within the block, every choice's candidates are appended to the list it yields, one list of
    :class:`LoopNest` per kernel that had a choice, in the order the kernels were lowered."""
    choices: list[list[LoopNest]] = []
    token = _RECORD.set(choices)
    try:
        yield choices
    finally:
        _RECORD.reset(token)


def cheapest(candidates: Sequence[Candidate], nest_of: Callable[[Candidate], LoopNest] = lambda c: c) -> Candidate:
    """The lanes candidate when there is one (:data:`LANES_FIRST`), else the candidate of least
    :func:`estimate` (the first of equals), among those :func:`restricted` allows."""
    record = _RECORD.get()
    if record is not None:
        record.append([nest_of(candidate) for candidate in candidates])
    allowed = [candidate for candidate in candidates if _ALLOWED.get()(nest_of(candidate))] or list(candidates)
    lanes = [candidate for candidate in allowed if nest_of(candidate).schedule == "lanes"]
    if LANES_FIRST and lanes:
        return lanes[0]
    return min(allowed, key=lambda candidate: estimate(nest_of(candidate)))
