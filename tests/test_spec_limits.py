"""Hostile specs: every one refused in one line naming the field and the limit, before any work.

A table of hand-written cases (each a finding of the reliability review), then hypothesis-generated
specs of arbitrary structure: parsing never raises anything but ``ValueError``, never takes long,
and an accepted spec is within the limits.
"""

from __future__ import annotations

import math
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from symcnn import registry
from symcnn.spec import MAX_LAYERS, MAX_PARAMETERS, MAX_SPEC_BYTES, MAX_TENSOR_ELEMENTS, load_spec, parse_spec, \
    spec_from_dict

CONV = '[[layers]]\ntype = "conv2d"\nname = "c"\nout_channels = 4\nkernel = 3\n'
TAIL = '[[layers]]\ntype = "flatten"\n\n[[layers]]\ntype = "dense"\nname = "fc"\nout_features = 2\n'


def spec_text(input_shape="[3, 8, 8]", layers=CONV + TAIL, extra=""):
    return f'name = "hostile"\ninput = {input_shape}\n{extra}\n{layers}'


CASES = {
    "layer type a list": (spec_text(layers='[[layers]]\ntype = ["conv2d"]\n'), "type: must be one of", "a list"),
    "layer type a table": (spec_text(layers='[[layers]]\ntype = { a = 1 }\n'), "type: must be one of", "a dict"),
    "deeply nested TOML": (spec_text(extra="x = " + "[" * 5000 + "]" * 5000), "nested too deeply"),
    "a billion channels": (spec_text(layers=CONV.replace("= 4", "= 1000000000") + TAIL), "out_channels: at most"),
    "an input of 10^10 pixels": (spec_text("[3, 100000, 100000]"), "input: at most"),
    "an input of 10^10 elements": (spec_text("[3, 60000, 60000]"), "elements per image"),
    "padding 100000": (spec_text(layers=CONV + "padding = 100000\n" + TAIL), "padding: at most"),
    "stride 2^64": (spec_text(layers=CONV + "stride = 18446744073709551616\n" + TAIL), "stride: at most"),
    "a layer named __init__": (spec_text(layers=CONV.replace('"c"', '"__init__"') + TAIL), "name: must be"),
    "a layer named ARGUMENTS": (spec_text(layers=CONV.replace('"c"', '"ARGUMENTS"') + TAIL), "reserved"),
    "a layer named Loss": (spec_text(layers=CONV.replace('"c"', '"Loss"') + TAIL), "reserved"),
    "a 241-character name": (spec_text(layers=CONV.replace('"c"', '"' + "c" * 241 + '"') + TAIL), "at most 64"),
    "names equal but for case": (spec_text(layers=CONV + CONV.replace('"c"', '"C"').replace("kernel = 3",
                                 "kernel = 1") + TAIL), "is used by another layer"),
    "too many layers": (spec_text(layers='[[layers]]\ntype = "relu"\n' * (MAX_LAYERS + 1) + TAIL), "at most 512"),
    "too many parameters": (spec_text("[64, 256, 256]", TAIL.replace("= 2", "= 65536")), "parameters"),
    "a megabyte of spec": ("# " + "x" * MAX_SPEC_BYTES + "\n" + spec_text(), "characters"),
}


@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
def test_a_hostile_spec_is_refused_in_one_line(case):
    text, *fragments = case
    start = time.perf_counter()
    with pytest.raises(ValueError) as error:
        parse_spec(text)
    message = str(error.value)
    assert "\n" not in message and len(message) < 400, message
    for fragment in fragments:
        assert fragment in message
    assert time.perf_counter() - start < 30  # a bound on runaway work, not a speed test


def test_limits_are_above_the_shipped_networks():
    for name in ("seed004", "seed004-text", "digits"):
        spec = load_spec(name)
        assert sum(math.prod(s) for s in spec.parameter_shapes().values()) < MAX_PARAMETERS
        assert all(math.prod(layer.output_shape) < MAX_TENSOR_ELEMENTS for layer in spec.layers)


def test_a_large_spec_file_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "big.toml"
    path.write_text("#" * (MAX_SPEC_BYTES + 1))
    with pytest.raises(ValueError, match="larger than"):
        load_spec(path)


_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
                     st.text(max_size=12), st.sampled_from(["conv2d", "relu", "dense", "flatten", "maxpool2d"]))
_VALUES = st.recursive(_SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                           st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                       max_leaves=12)
_KEYS = st.sampled_from(["type", "name", "out_channels", "out_features", "kernel", "stride", "padding",
                         "dilation", "bias", "alpha", "extra"])
_LAYER = st.dictionaries(_KEYS, _VALUES, max_size=6)


@settings(max_examples=150)
@given(name=_VALUES, input_shape=_VALUES, layers=st.one_of(_VALUES, st.lists(_LAYER, max_size=5)))
def test_any_spec_structure_gives_a_spec_or_a_value_error(name, input_shape, layers):
    data = {"name": name, "input": input_shape, "layers": layers}
    try:
        spec = spec_from_dict(data)
    except ValueError as error:
        assert "\n" not in str(error)
        return
    assert len(spec.layers) <= MAX_LAYERS
    for layer in spec.layers:
        assert layer.kind in registry.names(layer=True)
