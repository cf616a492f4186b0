"""Graph specs refused in one line naming the layer and the field: an unknown input, a later layer (a
cycle), the layer itself, shapes that do not add or concatenate, an output nobody reads, the wrong
number of inputs, ``inputs`` that is not a list; and what a valid graph spec records."""

from __future__ import annotations

import copy

import pytest

from symcnn.spec import parse_spec, spec_toml
from tests.graphs.graph_specs import GRAPH

def _changed(index: int, **changes) -> str:
    """The example's TOML with layer ``index``'s keys changed (a value None removes the key)."""
    spec = copy.deepcopy(GRAPH)
    for key, value in changes.items():
        if value is None:
            spec["layers"][index].pop(key, None)
        else:
            spec["layers"][index][key] = value
    return spec_toml(spec)


def test_the_example_is_a_graph():
    spec = parse_spec(spec_toml(GRAPH))
    assert not spec.sequential
    assert spec.consumers() == {"input": ("stem",), "stem": ("a", "concat4"), "a": ("c2", "sum", "concat4"),
                                "c2": ("sum",), "sum": ("concat4",), "concat4": ("flatten5",), "flatten5": ("fc",),
                                "fc": ()}
    concat = spec.layers[4]
    assert concat.inputs == ("sum", "stem", "a") and concat.input_shapes == ((4, 8, 8),) * 3
    assert concat.output_shape == (12, 8, 8) and spec.layers[5].output_shape == (768,)
    assert spec.layers[2].inputs == ("a",)  # the default: the layer just above


@pytest.mark.parametrize("text, message", [
    (_changed(3, inputs=["c2", "nope"]),
     "[[layers]] table 4 (add 'sum'): inputs: no layer above is named 'nope'"),
    (_changed(2, inputs=["sum"]),
     "[[layers]] table 3 (conv2d 'c2'): inputs: 'sum' comes later: a layer reads only the network's input and "
     "layers above it (a graph without cycles)"),
    (_changed(3, inputs=["c2", "sum"]),
     "[[layers]] table 4 (add 'sum'): inputs: 'sum' is this layer: a layer reads only the network's input"),
    (_changed(3, inputs=["c2", "input"]),
     "[[layers]] table 4 (add 'sum'): inputs: add needs inputs of one shape, got (4, 8, 8) and (1, 8, 8) "
     "(from 'c2', 'input')"),
    (_changed(4, inputs=["sum", "input"]).replace("padding = 1\n", "", 1),  # the stem without padding: 6x6
     "[[layers]] table 5 (concat): inputs: concat joins along channels and needs one height and width, got "
     "(4, 6, 6) and (1, 8, 8) (from 'sum', 'input')"),
    (_changed(4, inputs=["a", "stem"]),
     "[[layers]] table 4 (add 'sum'): output: the output of 'sum' is read by no layer"),
    (_changed(1, inputs=["stem", "input"]),
     "[[layers]] table 2 (relu 'a'): inputs: relu takes one input, got 2"),
    (_changed(3, inputs=["c2"]),
     "[[layers]] table 4 (add 'sum'): inputs: add takes 2 to 64 inputs, got 1"),
    (_changed(3, inputs=None),
     "[[layers]] table 4 (add 'sum'): inputs: missing (required: add joins two or more layers"),
    (_changed(3, inputs="c2"),
     "[[layers]] table 4 (add 'sum'): inputs: must be a list of layer names, got 'c2'"),
    (_changed(3, inputs=["c2", 3]),
     "[[layers]] table 4 (add 'sum'): inputs: must be a list of layer names, got ['c2', 3]"),
])
def test_a_bad_graph_is_refused_in_one_line_naming_the_layer_and_field(text, message):
    with pytest.raises(ValueError) as error:
        parse_spec(text)
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


def test_a_cycle_through_the_default_input_is_refused_too():
    spec = copy.deepcopy(GRAPH)
    spec["layers"][1]["inputs"] = ["c2"]  # a reads c2, which reads a by default
    with pytest.raises(ValueError, match=r"^\[\[layers\]\] table 2 \(relu 'a'\): inputs: 'c2' comes later"):
        parse_spec(spec_toml(spec))
