"""A network's summary: each layer's output shape, parameters, multiply-accumulates, activation memory,
receptive field and jump, and the totals (``symcnn summary``, :func:`summary`, ``Network.summary()``).

SymPy-free (the runtime calls it): every figure is an integer from the spec's shapes and the op
registry's ``macs`` and ``window`` (:mod:`symcnn.registry.costs`). The conventions, document 003's,
are stated in the output (:data:`CONVENTIONS`).

Example:
    >>> result = summary("lenet5")
    >>> result.totals.parameters, result.layers[0].macs, result.layers[2].receptive_field
    (61706, 122304, (6, 6))
"""

from __future__ import annotations

import json
import math
import os
import textwrap
from dataclasses import dataclass
from typing import Optional, Union

from symcnn import registry
from symcnn.spec import LayerSpec, NetworkSpec, load_spec
from symcnn.validation import integer

__all__ = ["LayerSummary", "Totals", "NetworkSummary", "summary", "CONVENTIONS", "BYTES_PER_ELEMENT"]

BYTES_PER_ELEMENT = {"float32": 4, "float64": 8}

Pair = tuple[int, int]

CONVENTIONS = {
    "macs": "multiply-accumulates of one forward pass (evaluation mode), as document 003 counts a convolution's "
            "FLOPs, N·H_out·W_out·C_out·(K_h·K_w·C_in/groups + 1): one FLOP = one multiply-add, a bias's add one "
            "more. Dense: N·out·(in + 1); average pooling: K_h·K_w per output; batch norm: 2 per element (scale, "
            "shift); layer norm: 4 (mean, variance, scale, shift); ReLU (no multiplication), the other activations, "
            "max pooling (comparisons), dropout (the identity), flatten, add, concat: 0.",
    "memory": "document 003's N·H_out·W_out·C_out·sizeof(dtype) of each layer's output; the total sums them (what "
              "a training pass keeps for its backward pass; symcnn's flatten is a view).",
    "receptive_field": "document 003's recurrence per axis, in input pixels (padding included, so it may exceed "
                       "the input): r = r_in + (k − 1)·d·j_in, jump j = j_in·s, from r = j = 1 at the input. A dense "
                       "layer reads its whole input map, as global pooling does; activations and normalization one "
                       "element (statistics are no window); an add or concat: the largest r and j of its inputs. "
                       "'≤': a bound, from an adaptive pool with overlapping windows on (its largest window and "
                       "step); '-': after a transposed convolution (outputs 1/stride apart) the recurrence fails.",
    "tiling": "the window does not tile its padded input: (H + 2p − d·(k − 1) − 1) mod s = r > 0, so the floor in "
              "the output size drops the last r rows or columns (padding included).",
}


@dataclass(frozen=True)
class LayerSummary:
    """One layer's figures, for the whole batch. ``receptive_field`` and ``jump`` are ``(height,
    width)`` in input pixels (``None`` after a transposed convolution), ``field_exact`` False where
    they are bounds; ``dropped`` the rows and columns the floor drops (``(0, 0)``: the windows tile)."""

    label: str
    kind: str
    inputs: tuple[str, ...]
    output_shape: tuple[int, ...]
    parameters: int
    macs: int
    activation_bytes: int
    receptive_field: Optional[Pair]
    jump: Optional[Pair]
    field_exact: bool
    dropped: Pair

    @property
    def tiles(self) -> bool:
        return self.dropped == (0, 0)


@dataclass(frozen=True)
class Totals:
    parameters: int
    macs: int
    activation_bytes: int
    parameter_bytes: int  # document 003's model size: parameters × bytes per parameter
    input_bytes: int


@dataclass(frozen=True)
class NetworkSummary:
    spec: str
    input_shape: tuple[int, int, int]
    batch: int
    dtype: str
    layers: tuple[LayerSummary, ...]
    totals: Totals

    @property
    def bytes_per_element(self) -> int:
        return BYTES_PER_ELEMENT[self.dtype]

    def as_dict(self) -> dict:
        """The summary as JSON-ready data, with stable field names (``symcnn summary --json``)."""
        layers = [{"label": layer.label, "type": layer.kind, "inputs": list(layer.inputs),
                   "output_shape": list(layer.output_shape), "parameters": layer.parameters, "macs": layer.macs,
                   "activation_bytes": layer.activation_bytes,
                   "receptive_field": list(layer.receptive_field) if layer.receptive_field else None,
                   "jump": list(layer.jump) if layer.jump else None, "receptive_field_exact": layer.field_exact,
                   "tiles": layer.tiles, "dropped": list(layer.dropped)} for layer in self.layers]
        return {"spec": self.spec, "input_shape": list(self.input_shape), "batch": self.batch, "dtype": self.dtype,
                "bytes_per_element": self.bytes_per_element, "layers": layers, "totals": vars(self.totals),
                "conventions": dict(CONVENTIONS)}

    def json(self) -> str:
        return json.dumps(self.as_dict(), indent=2)

    def text(self) -> str:
        """A table, a layer a row, the totals, and the conventions as footnotes."""
        return _table(self)

    def __str__(self) -> str:
        return self.text()


@dataclass(frozen=True)
class _Geometry:
    """Where a tensor's elements lie in the input: each one's receptive field, the jump between
    neighbours, and the grid they form (``extent``: a flattened vector keeps its map's)."""

    field: Pair
    jump: Pair
    extent: Pair
    exact: bool = True


def _sources(layer: LayerSpec, previous: str) -> tuple[str, ...]:
    """The labels of the tensors a layer reads: its ``inputs``, by default the layer above."""
    return tuple(layer.inputs) or (previous,)


def _merged(geometries: list[Optional[_Geometry]]) -> Optional[_Geometry]:
    """At a join: the largest field and jump over the inputs (an upper bound when the jumps differ)."""
    if any(geometry is None for geometry in geometries):
        return None
    if len(geometries) == 1:
        return geometries[0]
    largest = [tuple(max(values) for values in zip(*(getattr(g, name) for g in geometries)))
               for name in ("field", "jump", "extent")]
    same_jumps = len({geometry.jump for geometry in geometries}) == 1
    return _Geometry(*largest, exact=same_jumps and all(geometry.exact for geometry in geometries))


def _through(geometry: Optional[_Geometry], layer: LayerSpec) -> tuple[Optional[_Geometry], Pair]:
    """The geometry of the layer's output, and the rows and columns its floor drops."""
    op = registry.get(layer.kind)
    if geometry is None or op.window is None:  # element-wise, flatten, add, concat: one element each
        return geometry, (0, 0)
    windows = op.window(geometry.extent, layer.settings)
    if windows is None:
        return None, (0, 0)
    fields, jumps, extents, dropped = [], [], [], []
    for window, field, jump, extent in zip(windows, geometry.field, geometry.jump, geometry.extent):
        span = extent + 2 * window.padding - window.dilation * (window.kernel - 1) - 1
        fields.append(field + (window.kernel - 1) * window.dilation * jump)
        jumps.append(jump * window.stride)
        extents.append(span // window.stride + 1)
        dropped.append(span % window.stride if window.exact else 0)
    exact = geometry.exact and all(window.exact for window in windows)
    return _Geometry(tuple(fields), tuple(jumps), tuple(extents), exact), tuple(dropped)


def summary(spec: Union[NetworkSpec, str, os.PathLike], batch: int = 1, dtype: str = "float32") -> NetworkSummary:
    """The summary of a spec (a :class:`NetworkSpec`, a shipped name or a ``.toml`` path) for ``batch``
    images in ``dtype`` (``float32`` or ``float64``).

    >>> for line in summary("digits").text().splitlines()[1:4]:
    ...     print(line)
    layer       type       output  params    MACs    memory  RF  jump
    input                  1×8×8                      256 B  1   1
    conv1       conv2d     16×8×8     160  10,240   4.0 KiB  3   1
    """
    batch = integer(batch, "batch", 1, 2**31)
    if dtype not in BYTES_PER_ELEMENT:
        raise ValueError(f"dtype: must be one of {', '.join(BYTES_PER_ELEMENT)}, got {dtype!r}")
    spec = spec if isinstance(spec, NetworkSpec) else load_spec(spec)
    size = BYTES_PER_ELEMENT[dtype]
    geometries: dict[str, Optional[_Geometry]] = {"input": _Geometry((1, 1), (1, 1), spec.input_shape[1:])}
    layers, previous = [], "input"
    for layer in spec.layers:
        sources = _sources(layer, previous)
        geometry, dropped = _through(_merged([geometries[source] for source in sources]), layer)
        geometries[layer.label] = geometry
        previous = layer.label
        parameters = sum(math.prod(shape) for shape in layer.parameter_shapes().values())
        macs = registry.get(layer.kind).macs(layer.formula_shape, layer.settings)
        layers.append(LayerSummary(
            layer.label, layer.kind, sources, layer.output_shape, parameters, batch * macs,
            batch * math.prod(layer.output_shape) * size, geometry.field if geometry else None,
            geometry.jump if geometry else None, geometry.exact if geometry else False, dropped))
    parameters = sum(layer.parameters for layer in layers)
    totals = Totals(parameters, sum(layer.macs for layer in layers), sum(layer.activation_bytes for layer in layers),
                    parameters * size, batch * math.prod(spec.input_shape) * size)
    return NetworkSummary(spec.name, spec.input_shape, batch, dtype, tuple(layers), totals)


def _size(count: int) -> str:
    """Bytes as people read them: ``512 B``, ``18.4 KiB``, ``527.8 MiB``."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"


def _pair(values: Optional[Pair], exact: bool = True) -> str:
    if values is None:
        return "-"
    text = str(values[0]) if values[0] == values[1] else f"{values[0]}×{values[1]}"
    return text if exact else f"≤{text}"


def _dropped(dropped: Pair) -> str:
    """``1 row and 2 columns``, ``3 rows``."""
    words = [f"{count} {noun}{'' if count == 1 else 's'}" for count, noun in zip(dropped, ("row", "column")) if count]
    return " and ".join(words)


def _table(result: NetworkSummary) -> str:
    graph = any(layer.inputs != (previous,) for layer, previous in
                zip(result.layers, ["input"] + [layer.label for layer in result.layers]))
    header = ["layer", "type"] + (["inputs"] if graph else []) + ["output", "params", "MACs", "memory", "RF", "jump"]
    shape = "×".join(map(str, result.input_shape))
    rows = [["input", "", *([""] if graph else []), shape, "", "", _size(result.totals.input_bytes), "1", "1"]]
    for layer in result.layers:
        rows.append([layer.label + ("" if layer.tiles else " *"), layer.kind,
                     *([", ".join(layer.inputs)] if graph else []), "×".join(map(str, layer.output_shape)),
                     f"{layer.parameters:,}", f"{layer.macs:,}", _size(layer.activation_bytes),
                     _pair(layer.receptive_field, layer.field_exact), _pair(layer.jump, layer.field_exact)])
    totals = result.totals
    rows.append(["total", "", *([""] if graph else []), "", f"{totals.parameters:,}", f"{totals.macs:,}",
                 _size(totals.activation_bytes), "", ""])
    widths = [max(len(row[column]) for row in rows + [header]) for column in range(len(header))]
    numeric = {"params", "MACs", "memory"}
    lines = [f"{result.spec}: input {shape}, batch {result.batch}, {result.dtype} "
             f"({result.bytes_per_element} bytes per element)"]
    for row in [header] + rows:
        cells = [cell.rjust(width) if name in numeric else cell.ljust(width)
                 for cell, width, name in zip(row, widths, header)]
        lines.append("  ".join(cells).rstrip())
    lines.append(f"parameters: {totals.parameters:,} ({_size(totals.parameter_bytes)} in {result.dtype}); "
                 f"MACs: {totals.macs:,}; activations: {_size(totals.activation_bytes)}")
    notes = [f"{name}: {CONVENTIONS[key]}" for name, key in
             (("MACs", "macs"), ("memory", "memory"), ("RF, jump", "receptive_field"))]
    marked = [f"{layer.label} drops {_dropped(layer.dropped)}" for layer in result.layers if not layer.tiles]
    if marked:
        notes.append(f"*: {CONVENTIONS['tiling']} Here: {'; '.join(marked)}.")
    for note in notes:
        lines += textwrap.wrap(note, width=110, subsequent_indent="  ")
    return "\n".join(lines)
