"""Which schedule a kernel gets: a cost model over its candidate loop nests, from its shapes only.

A sum kernel can be scheduled several ways (:mod:`symcnn.codegen.lower`): vectorized over an output
axis that only one operand indexes (the *lanes* schedule, :mod:`~symcnn.codegen.backends.numba_cpu.lanes`:
output channels), vectorized over output columns (the *columns* schedule,
:mod:`~symcnn.codegen.backends.numba_cpu.columns`: when channels are few), each with its register
blocking; or left scalar (the *accumulate* or *gather* form). Each candidate describes itself as a
:class:`LoopNest` (how many lane loops it enters per image, how long they run, how many tile
elements and products each iteration updates, what it copies), and :func:`estimate` prices it in
nanoseconds per image from constants measured on one CPU class (one thread: the model compares work
per core).

The fastest schedule depends on the vector width: on an AVX-512 CPU the lanes schedule was the
fastest candidate wherever it fit; on an AVX2 one the columns schedule beat it by 1.1-1.4x on 1 x 1
and few-channel convolutions. So there are sets of constants for each class of CPU, and a kernel whose
choices differ between the wide and the narrow variant is generated twice, the module calling the one
its CPU suits (:func:`symcnn.codegen.widths.per_vector_width`, :mod:`symcnn.runtime.vector_width`), as
the register blocks are. The narrow variant is chosen by :data:`NARROW`'s constants. The wide one runs on
two classes that LLVM treats differently, :data:`WIDE` (AMD's Zen 4: lane loops in 512-bit vectors, a
cheap remainder) and :data:`WIDE_256_LOOPS` (Intel's: lane loops in 256-bit vectors, a dear scalar
remainder), and is chosen by both (:func:`choose`): the candidate whose estimate is nearest each class's
least where it is farthest from it. The constants live here, in the code, so that generation is deterministic:
regenerating is byte-identical on any machine, whatever it would time. ``docs/bench/schedule_costs.py``
times the candidates of a range of layer shapes and fits the constants of the CPU it runs on (its
timings and fits: ``docs/bench/schedule_costs*.json`` and ``.txt``; summarized in docs/performance.md,
"Schedules from shapes"); no schedule names a spec.

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

__all__ = ["Constants", "WIDE", "WIDE_256_LOOPS", "NARROW", "WIDE_CLASSES", "NARROW_CLASSES", "LANES_FIRST", "VECTOR",
           "LoopNest", "vector_nest", "scalar_nest", "iterations", "spilled", "estimate", "cheapest", "choose",
           "restricted", "recorded", "compared", "comparing", "differs", "narrow", "narrowed", "scalar_only"]

#: The unit the columns schedule pads its lane loops to (a whole number of vectors, no scalar remainder):
#: 16 float32, one 512-bit vector or two 256-bit ones, so that one generated kernel suits both widths.
VECTOR = 16

# --- the constants, in nanoseconds (fitted by docs/bench/schedule_costs.py; see its output) -------


class Constants(NamedTuple):
    """One CPU class's constants, in nanoseconds.

    A vector schedule's lane loop: entering it (``lane_loop``: the runtime overlap checks LLVM places
    before it, the loop's set-up), per value read before it (``hoisted``: a broadcast), per vector
    iteration and product (``product``), per distinct lane-dependent read in an iteration
    (``streamed``), per tile element loaded and stored (``tile``), and a scalar remainder iteration
    (lanes beyond the last whole vector) as a fraction of a vector iteration (``remainder``); per
    vector iteration and broadcast value that does not fit the ``registers`` (the tile elements'
    included) and is read again from the stack (``spilled``). Per element copied into a staging copy
    (``staged``), per output element initialized and stored (``stored``). The accumulate form: per
    row loop entered and per vector iteration of it (``row_loop``, ``row_iteration``: an output
    element loaded, a product added, stored). The gather form: per product (``gather_product``: a
    scalar window read and its bounds) and output element (``gather_output``). ``vector``: float32
    values per vector; ``first``: the schedules chosen among first, wherever one of them fits (the scalar
    form, an estimate's extrapolation, only where none does).
    """

    vector: int
    registers: int
    first: tuple[str, ...]
    lane_loop: float
    hoisted: float
    product: float
    streamed: float
    tile: float
    remainder: float
    spilled: float
    staged: float
    stored: float
    row_loop: float
    row_iteration: float
    gather_product: float
    gather_output: float


#: CPUs with 512-bit vectors (AVX-512), fitted on a 2-core AMD EPYC (Zen 4) with numba 0.6x, one
#: thread (``docs/bench/schedule_costs.txt``): LLVM's choice for its ``znver4`` target is 512-bit
#: vectors in the lane loops, their remainder vectorized by four, then scalar. There the lanes schedule
#: was the fastest candidate of every kernel it fit (9 of 9; one tie, 8 lanes against columns), so these
#: constants decide among the columns candidates and the scalar form of the kernels it does not fit.
WIDE = Constants(vector=16, registers=32, first=("lanes",), lane_loop=0.793, hoisted=0.0999, product=0.356,
                 streamed=0.246, tile=0.184, remainder=0.1, spilled=0.712, staged=0.399, stored=0.567,
                 row_loop=0.0, row_iteration=3.27, gather_product=0.428, gather_output=0.0)

#: CPUs with 256-bit vectors (AVX2: 8 float32 in each of 16 registers), fitted on a 2-core AMD EPYC
#: (Zen 2), one thread. There the lanes schedule was fastest in 22 of the 33 kernels it fits: the columns
#: schedule with one product per update beat it on 1 x 1 and few-channel forward passes by 1.1-1.5x, so
#: both vector schedules are estimated. The scalar form only where neither fits: it was fastest in 4 of
#: 55 kernels, all of them small (at most 1.4x the vector schedule's time), while an estimate of it
#: beyond the timed shapes chose it for AlexNet's 11 x 11 stride-4 convolution, 6x slower than the lanes
#: schedule. Least squares on the timings, then searched for the constants whose choices are fastest
#: (``docs/bench/schedule_picks.py``; timings and output: ``docs/bench/schedule_costs_avx2.json``,
#: ``.txt``): over the 39 kernels with a choice to make, the fastest candidate in 29, the picks 1.042x
#: the fastest (geometric mean, the scalar form's wins included) and 1.80x at worst; 1.048x for each
#: shape held out of the search.
NARROW = Constants(vector=8, registers=16, first=("lanes", "columns"), lane_loop=0.0918, hoisted=0.0,
                   product=0.122, streamed=0.192, tile=0.023, remainder=1.3, spilled=0.249, staged=0.311,
                   stored=0.398, row_loop=0.0, row_iteration=0.29, gather_product=0.0, gather_output=0.188)

#: CPUs with 512-bit vectors whose lane loops LLVM vectorizes 256 bits at a time (its tuning for Intel's
#: AVX-512 cores, ``prefer-vector-width=256``; the register blocks, packed by the SLP vectorizer, still use
#: 512-bit ones), fitted on a 2-core Intel Xeon (LLVM target ``rocketlake``), one thread
#: (``docs/bench/schedule_costs_rocketlake.txt``). There a lane loop that does not fill its vectors could
#: run scalar through and through: LeNet-5's first weight gradient, 28 columns, took 2.5x as long as the
#: same loop padded to 32, where on the Zen 4 of :data:`WIDE` the 28-column loop was its fastest candidate.
#: The wide variant runs on both classes, so it is chosen by both (:data:`WIDE_CLASSES`).
WIDE_256_LOOPS = Constants(vector=8, registers=32, first=("lanes", "columns"), lane_loop=0.305, hoisted=0.253,
                           product=0.0807, streamed=0.238, tile=0.0114, remainder=1.2, spilled=0.487, staged=0.288,
                           stored=0.798, row_loop=1.85, row_iteration=0.13, gather_product=0.136, gather_output=0.175)

#: The lanes schedule wherever it fits on wide-vector CPUs (:data:`WIDE`); docs and tests read it here.
LANES_FIRST = WIDE.first == ("lanes",)

#: The CPU classes a kernel variant runs on, whose constants :func:`cheapest` decides by: the wide
#: variant (called on CPUs with 512-bit vectors) runs on both :data:`WIDE` and :data:`WIDE_256_LOOPS`
#: CPUs, the narrow one on :data:`NARROW` ones.
WIDE_CLASSES, NARROW_CLASSES = (WIDE, WIDE_256_LOOPS), (NARROW,)

#: Which classes :func:`cheapest` decides by: ``WIDE_CLASSES`` for the kernels a generated module calls on
#: CPUs with 512-bit vectors; ``NARROW_CLASSES`` while a kernel's other variant is lowered (:func:`narrow`).
_WIDTH: ContextVar[tuple[Constants, ...]] = ContextVar("vector_width", default=WIDE_CLASSES)

#: Set by :func:`compared`: whether a choice made within it would differ under the other constants.
_DIFFERS: ContextVar[Optional[list]] = ContextVar("widths_differ", default=None)  # LoopNests, or what differs


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


def iterations(trips: int, constants: Constants = WIDE) -> float:
    """A loop of ``trips`` as vector iterations: whole vectors, then the remainder's scalar ones."""
    return trips // constants.vector + constants.remainder * (trips % constants.vector)


def spilled(nest: LoopNest, constants: Constants = WIDE) -> int:
    """Broadcast values of ``nest`` beyond the vector registers, with its tile elements."""
    return max(0, nest.hoisted + nest.updates - constants.registers)


def estimate(nest: LoopNest, constants: Constants = WIDE) -> float:
    """Nanoseconds per image ``constants`` predict for ``nest`` (batch 64, one thread)."""
    c = constants
    if nest.schedule == "gather":
        return c.gather_product * nest.multiply_adds + c.gather_output * nest.stored
    trips = iterations(nest.trips, c)
    if nest.schedule == "accumulate":
        return nest.lane_loops * (c.row_loop + trips * c.row_iteration) + c.stored * nest.stored
    iteration = (c.product * nest.updates * nest.products + c.streamed * nest.streamed + c.tile * nest.updates
                 + c.spilled * spilled(nest, c))
    per_loop = c.lane_loop + c.hoisted * nest.hoisted + trips * iteration
    return nest.lane_loops * per_loop + c.staged * nest.staged + c.stored * nest.stored


Candidate = TypeVar("Candidate")

#: Calibration and tests narrow the candidates (:func:`restricted`); generation only for a small batch's
#: variant (:func:`scalar_only`).
_ALLOWED: ContextVar[Callable[[LoopNest], bool]] = ContextVar("allowed_schedules", default=lambda nest: True)


@contextlib.contextmanager
def restricted(allowed: Callable[[LoopNest], bool]) -> Iterator[None]:
    """Within the block, only candidates whose :class:`LoopNest` ``allowed`` accepts are generated
    (all of them when it accepts none): to time or test one schedule on shapes the model would give
    another. ``with restricted(lambda nest: nest.schedule == "columns"): ...``"""
    with _settings((_ALLOWED, allowed)):
        yield


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
    """By the CPU classes in force (:data:`WIDE_CLASSES`, or :data:`NARROW_CLASSES` within :func:`narrow`),
    among the candidates :func:`restricted` allows: the one :func:`choose` picks."""
    record = _RECORD.get()
    if record is not None:
        record.append([nest_of(candidate) for candidate in candidates])
    allowed = [candidate for candidate in candidates if _ALLOWED.get()(nest_of(candidate))] or list(candidates)
    choice = choose(allowed, nest_of, _WIDTH.get())
    differs = _DIFFERS.get()
    if differs is not None and choose(allowed, nest_of, NARROW_CLASSES if _WIDTH.get() is WIDE_CLASSES
                                       else WIDE_CLASSES) is not choice:
        differs.append(nest_of(choice))
    return choice


def choose(allowed: Sequence[Candidate], nest_of: Callable[[Candidate], LoopNest], classes: tuple[Constants, ...]):
    """The candidate whose estimate is nearest the least in the class where it is farthest (one class: the
    least estimate; the first of equals). The first class's schedules chosen among first (``first``) are
    the candidates, where there are any; each class compares only those in its own ``first``, where there
    are any (a candidate outside them is never its choice).

    >>> small, large = (scalar_nest("gather", multiply_adds=products, inner=1, stored=0) for products in (10, 20))
    >>> choose([large, small], lambda nest: nest, WIDE_CLASSES) is small
    True
    """
    candidates = [candidate for candidate in allowed if nest_of(candidate).schedule in classes[0].first] or allowed
    worst = [0.0] * len(candidates)
    for constants in classes:
        own = [nest_of(candidate).schedule in constants.first for candidate in candidates]
        own = own if any(own) else [True] * len(candidates)
        estimates = [estimate(nest_of(candidate), constants) for candidate in candidates]
        least = min(value for value, eligible in zip(estimates, own) if eligible)
        for position, (value, eligible) in enumerate(zip(estimates, own)):
            # how many times its class's least; an estimate of 0 (a degenerate fit) is the least or infinitely far
            regret = (value / least if least > 0 else 1.0 if value <= 0 else math.inf) if eligible else math.inf
            worst[position] = max(worst[position], regret)
    return candidates[worst.index(min(worst))]


@contextlib.contextmanager
def compared() -> Iterator[list[LoopNest]]:
    """Within the block, every choice that :data:`NARROW`'s constants would make differently appends
    the choice made to the list it yields: empty when one kernel suits both vector widths."""
    differs: list[LoopNest] = []
    token = _DIFFERS.set(differs)
    try:
        yield differs
    finally:
        _DIFFERS.reset(token)


def differs(choice: str) -> None:
    """Within :func:`compared`, note a choice made other than by the estimates (``choice``, what
    :data:`NARROW`'s constants would take instead) that gives the kernel a variant for 256-bit vectors:
    the register blocks' group of lanes (:func:`~symcnn.codegen.backends.numba_cpu.registers.register_tile`)."""
    noted = _DIFFERS.get()
    if noted is not None:
        noted.append(choice)


@contextlib.contextmanager
def narrow() -> Iterator[None]:
    """Within the block, choices are made by :data:`NARROW`'s constants (a kernel's variant for CPUs with
    256-bit vectors), neither compared nor recorded (:func:`recorded` lists each kernel's candidates once,
    as its first lowering met them)."""
    with _settings((_WIDTH, NARROW_CLASSES), (_DIFFERS, None), (_RECORD, None)):
        yield


@contextlib.contextmanager
def scalar_only() -> Iterator[None]:
    """Within the block, every kernel takes its scalar form (gather or accumulate) where it has one, neither
    compared nor recorded: a kernel's variant for small batches (:mod:`symcnn.codegen.small_batches`)."""
    with _settings((_ALLOWED, lambda nest: nest.schedule in ("gather", "accumulate")), (_DIFFERS, None),
                   (_RECORD, None)):
        yield


@contextlib.contextmanager
def _settings(*settings: tuple[ContextVar, object]) -> Iterator[None]:
    """Within the block, each context variable of ``settings`` holds its value."""
    tokens = [(variable, variable.set(value)) for variable, value in settings]
    try:
        yield
    finally:
        for variable, token in reversed(tokens):
            variable.reset(token)


def comparing() -> bool:
    """Whether choices are being compared (within :func:`compared`)."""
    return _DIFFERS.get() is not None


def narrowed() -> bool:
    """Whether choices are being made by :data:`NARROW`'s constants (within :func:`narrow`)."""
    return _WIDTH.get() is NARROW_CLASSES
