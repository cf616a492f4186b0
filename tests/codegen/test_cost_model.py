"""The schedule cost model (symcnn/codegen/cost_model.py): properties of its choices over ranges of shapes,
not one spec's; its estimates; and that generation never times anything (regenerating is byte-identical)."""

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from symcnn.codegen import cost_model
from symcnn.codegen.cost_model import LoopNest, cheapest, estimate, scalar_nest, vector_nest
from symcnn.codegen.network import layer_kernels
from symcnn.codegen.package import render_package
from symcnn.spec import load_spec, spec_from_dict


def _conv_kernels(c_in, c_out, size, kernel, padding=0, stride=1) -> dict:
    spec = spec_from_dict({"name": "model", "input": [c_in, size, size], "loss": "softmax_cross_entropy",
                           "layers": [{"type": "conv2d", "name": "conv", "out_channels": c_out, "kernel": kernel,
                                       "padding": padding, "stride": stride},
                                      {"type": "flatten"}, {"type": "dense", "name": "fc", "out_features": 2}]})
    return {kernel.name.removeprefix("conv_"): kernel.kind for kernel in layer_kernels(spec.layers[0])}


@settings(max_examples=6, deadline=None)
@given(c_in=st.integers(1, 6), c_out=st.integers(1, 7), size=st.integers(12, 36), kernel=st.sampled_from([3, 5]),
       padding=st.integers(0, 2))
def test_few_channels_are_vectorized_over_columns(c_in, c_out, size, kernel, padding):
    """Fewer than a vector of output channels: the forward pass and the weight gradient take the columns
    schedule; fewer than a vector of input channels: the input gradient too."""
    kinds = _conv_kernels(c_in, c_out, size, kernel, padding)
    assert kinds["forward"] == "columns" and kinds["grad_weight"] == "columns"
    assert kinds["grad_input"] == "columns"


@settings(max_examples=4, deadline=None)
@given(c_in=st.sampled_from([16, 32]), c_out=st.sampled_from([32, 64]), size=st.integers(6, 12))
def test_many_channels_keep_the_lanes_schedule(c_in, c_out, size):
    """A few vectors of channels and small images: every convolution kernel vectorizes over channels."""
    kinds = _conv_kernels(c_in, c_out, size, 3, padding=1)
    assert kinds["forward"] == kinds["grad_input"] == kinds["grad_weight"] == "lanes"


def test_a_strided_convolution_keeps_its_schedules():
    """Columns read with a step of two are no vector: its forward pass and weight gradient keep the lanes
    schedule; its input gradient runs by phase (symcnn/codegen/phases.py)."""
    kinds = _conv_kernels(3, 16, 16, 3, padding=1, stride=2)
    assert kinds == {"forward": "lanes", "grad_input": "phases", "grad_weight": "lanes", "grad_bias": "sum",
                     "grad_weight_and_bias": "lanes"}


def _nest(**changes) -> LoopNest:
    shape = dict(multiply_adds=6 * 28 * 28 * 25, rows=(28,), outer=(6,), reduction=(1, 5, 5), lanes=32, useful=28,
                 block=3, unroll=5, streamed=5, hoisted=15, staged=1152, stored=6 * 28 * 28)
    return vector_nest("columns", **{**shape, **changes})


def test_estimates_grow_with_the_work():
    assert estimate(_nest(rows=(56,))) > estimate(_nest())
    assert estimate(_nest(staged=5000)) > estimate(_nest())
    accumulate = scalar_nest("accumulate", multiply_adds=1000, inner=16, stored=100)
    assert estimate(accumulate._replace(multiply_adds=2000, lane_loops=125)) > estimate(accumulate)
    gather = scalar_nest("gather", multiply_adds=1000, inner=1, stored=100)
    assert estimate(gather._replace(multiply_adds=2000)) > estimate(gather)


def test_a_scalar_remainder_costs_nearly_a_vector_iteration_per_lane():
    """29 lanes (three vectors and five scalar lanes) cost more than 32 (four vectors)."""
    assert estimate(_nest(lanes=29)) > estimate(_nest(lanes=32))


def test_the_lanes_schedule_comes_first_and_restricted_narrows_the_candidates():
    """The lanes candidate wherever there is one (it was the fastest wherever it fit); otherwise the
    cheapest estimate; restricted() narrows the candidates, and falls back to all when it allows none."""
    lanes, columns = _nest()._replace(schedule="lanes"), _nest(rows=(1,))
    assert cost_model.LANES_FIRST and estimate(columns) < estimate(lanes)
    assert cheapest([columns, lanes]) == lanes
    assert cheapest([_nest(), columns]) == columns
    with cost_model.restricted(lambda nest: nest.schedule == "columns"):
        assert cheapest([lanes, columns, _nest()]) == columns
    with cost_model.restricted(lambda nest: nest.schedule == "max"):
        assert cheapest([lanes, columns]) == lanes
    with cost_model.recorded() as choices:
        cheapest([lanes, columns])
    assert choices == [[lanes, columns]]


def test_generation_times_nothing_and_is_deterministic(monkeypatch):
    """The model's constants are in the code: lowering reads no clock, and two renderings are equal."""
    first = render_package(load_spec("digits"))

    def no_clock():
        raise AssertionError("generation read a clock")

    for name in ("perf_counter", "perf_counter_ns", "time", "monotonic", "process_time"):
        monkeypatch.setattr(time, name, no_clock)
    assert render_package(load_spec("digits")) == first


@pytest.mark.parametrize("spec, label", [("suite-lenet", "conv1"), ("seed004", "conv2")])
def test_every_candidate_is_estimated_from_its_shapes(spec, label):
    """Each kernel with a vector schedule had a choice among candidates, the chosen one the cheapest."""
    layer = next(layer for layer in load_spec(spec).layers if layer.label == label)
    with cost_model.recorded() as choices:
        kernels = layer_kernels(layer)
    assert len(choices) == 3  # forward, input gradient, weight gradient; the bias gradient has no choice
    for nests, kernel in zip(choices, kernels):
        best = next((nest for nest in nests if nest.schedule == "lanes"), None) or min(nests, key=estimate)
        assert best.schedule == {"sum": "gather"}.get(kernel.kind, kernel.kind)
        assert all(nest.multiply_adds == nests[0].multiply_adds for nest in nests)  # the same work, scheduled


def test_no_columns_candidate_runs_a_read_backwards_in_a_loop():
    """An input gradient reads its streamed operand backwards (``k - u``, ``l - v``): a candidate that
    left ``u`` or ``v`` a loop would keep numba's wraparound test in the lane loop (scalar, measured 4-10x
    slower), so only unrolls that take such loops whole are offered: LeNet-5's second input gradient
    (5 x 5 window) gets its 25 products per update."""
    layer = next(layer for layer in load_spec("suite-lenet").layers if layer.label == "conv2")
    with cost_model.recorded() as choices:
        kernels = {kernel.name: kernel for kernel in layer_kernels(layer)}
    grad_input = kernels["conv2_grad_input"]
    assert grad_input.kind == "columns"
    columns = [nest for nests in choices for nest in nests if nest.schedule == "columns"
               and nest.multiply_adds == choices[1][0].multiply_adds]
    assert columns and all(nest.products == 25 for nest in columns)
    assert all(re.search(r"grad_output_padded\[c_out, k \+ \d+, l \+ \d+\]", update)
               for update in grad_input.lanes.updates)


def test_the_wide_variant_suits_both_of_its_cpu_classes():
    """The wide variant runs on CPUs of two classes (WIDE, WIDE_256_LOOPS): the candidate whose estimate is
    nearest the least in the class where it is farthest. LeNet-5's first weight gradient: WIDE alone prices
    its 28 columns cheapest, WIDE_256_LOOPS (a dear scalar remainder) the loop padded to 32, and the padded
    loop, the nearer to each class's least, is chosen; within narrow(), NARROW's least estimate decides."""
    assert cost_model.WIDE_CLASSES == (cost_model.WIDE, cost_model.WIDE_256_LOOPS)
    with cost_model.recorded() as choices:
        layer_kernels(load_spec("suite-lenet").layers[0])
    weight = next(nests for nests in choices if nests[0].multiply_adds == 6 * 25 * 28 * 28
                  and nests[0].stored == 0)  # the weight gradient: no output stored per image
    by_class = {constants: min(weight, key=lambda nest: estimate(nest, constants))
                for constants in cost_model.WIDE_CLASSES}
    assert by_class[cost_model.WIDE].trips == 28 and by_class[cost_model.WIDE_256_LOOPS].trips == 32
    regret = {nest: max(estimate(nest, constants) / estimate(best, constants) for constants, best in by_class.items())
              for nest in weight}
    chosen = cheapest(weight)
    assert chosen.trips == 32 and regret[chosen] == min(regret.values())
    with cost_model.narrow():
        vector = [nest for nest in weight if nest.schedule in cost_model.NARROW.first]
        assert cheapest(weight) == min(vector, key=lambda nest: estimate(nest, cost_model.NARROW))


def test_a_class_never_chooses_outside_its_first_schedules():
    """WIDE_256_LOOPS chooses among the vector schedules wherever one fits: a scalar form however cheap its
    estimate there is not its choice, and the wide variant takes it only where no vector candidate fits."""
    columns = _nest()
    accumulate = scalar_nest("accumulate", multiply_adds=10, inner=28, stored=1)
    assert estimate(accumulate, cost_model.WIDE_256_LOOPS) < estimate(columns, cost_model.WIDE_256_LOOPS)
    assert cheapest([accumulate, columns]) == columns
    assert cheapest([accumulate]) == accumulate
