"""Fusion across layers: an element-wise layer's input gradient stored by its reader's gradient kernel.

Each fused kernel is checked against the unfused chain it replaces (the reader's input-gradient kernel,
then the element-wise layer's), and whole networks against PyTorch; pairs that must not fuse (two
readers) are not.
"""

from __future__ import annotations

import numpy as np
import pytest
from symcnn.codegen.fusion import elementwise_gradient, fanout_fused_kernels, fused_kernels, fusion_pairs
from symcnn.codegen.package import render_package
from symcnn.registry import names as op_names
from symcnn.spec import LayerSpec, load_spec, parse_spec

from tests.graphs.graph_specs import GRAPH
from tests.kernels_helpers import assert_float64_equals_pytorch, conv_layer, network_for, random_params, toml_of


#: Every activation before a reader of every schedule: lanes (a convolution over 8 channels), columns
#: (a 1x1 convolution), accumulate (a depthwise convolution), gather (the pools, global pooling, a dense
#: layer), a flatten (a reshape when unfused), and phases (the strided convolution's input gradient, which
#: stores strided views of its output).
FUSING = {
    "name": "fusing",
    "input": [2, 8, 8],
    "layers": [
        conv_layer("c1", 8), {"type": "relu", "name": "r1"},
        conv_layer("c2", 8), {"type": "tanh", "name": "t2"},
        {"type": "conv2d", "name": "pw", "out_channels": 3, "kernel": 1}, {"type": "elu", "alpha": 0.5, "name": "e3"},
        conv_layer("dw", 3, groups=3), {"type": "sigmoid", "name": "s4"},
        {"type": "maxpool2d", "kernel": 2, "stride": 2, "name": "pool"},
        {"type": "leaky_relu", "alpha": 0.1, "name": "l5"},
        conv_layer("strided", 4, stride=2), {"type": "relu", "name": "r6"},
        {"type": "avgpool2d", "kernel": 2, "stride": 1, "name": "avg"}, {"type": "tanh", "name": "t7"},
        {"type": "flatten", "name": "flat"},
        {"type": "dense", "name": "fc1", "out_features": 9}, {"type": "relu", "name": "r8"},
        {"type": "dense", "name": "fc2", "out_features": 3},
    ],
}


def test_elementwise_ops_are_told_by_their_formulas():
    element_wise = set()
    for kind in op_names():
        try:
            spec = parse_spec(toml_of({"name": "one", "input": [2, 4, 4], "layers": [
                {"type": kind, "name": "e"}, {"type": "flatten"}, {"type": "dense", "name": "fc", "out_features": 2}]}))
        except ValueError:  # needs settings of its own, or another input: not an activation
            continue
        if elementwise_gradient(spec.layers[0]) is not None:
            element_wise.add(kind)
    assert {"relu", "leaky_relu", "elu", "sigmoid", "tanh"} <= element_wise
    assert not element_wise & {"conv2d", "maxpool2d", "avgpool2d", "flatten", "dropout", "batchnorm2d", "dense"}


def test_pairs_of_the_shipped_specs():
    pairs = {name: [(e.label, q.label) for e, q in fusion_pairs(load_spec(name))]
             for name in ("seed004", "suite-lenet", "suite-vgg")}
    assert pairs["seed004"] == [("relu1", "maxpool2d2")]
    assert pairs["suite-lenet"] == [("tanh1", "avgpool2d2"), ("tanh4", "avgpool2d5"), ("tanh8", "fc2"),
                                    ("tanh10", "fc3")]
    assert pairs["suite-vgg"] == [("relu1", "conv2"), ("relu3", "maxpool2d4"), ("relu6", "maxpool2d7")]


def test_each_schedule_takes_the_epilogue():
    spec = parse_spec(toml_of(FUSING))
    kinds = {e: kernel.kind for e, kernel in fused_kernels(spec).items()}
    assert kinds == {"r1": "lanes", "t2": "columns", "e3": "accumulate", "s4": "sum", "l5": "phases", "r6": "sum",
                     "t7": "sum", "r8": "sum"}
    namespace: dict = {}
    exec(render_package(spec)["__init__.py"], namespace)  # the package's tables (no kernels imported)
    assert namespace["FUSED"]["t2"] == ("pw", "pw_with_t2_grad_input")
    assert set(namespace["FUSED"]) == set(kinds)
    # Every gradient here reads E's output: tanh's, the sigmoid's and ELU's (1 - Y^2, Y (1 - Y), Y + alpha),
    # and ReLU's mask [Y > 0]
    arguments = namespace["ARGUMENTS"]
    assert {f"{reader}_grad_input" for reader in ("c2_with_r1", "pw_with_t2", "pool_with_s4", "dw_with_e3",
                                                  "strided_with_l5", "flat_with_t7", "avg_with_r6", "fc2_with_r8")} == {
        kernel for kernel, names in arguments.items() if "fused_out" in names}
    assert not any("fused_x" in names for names in arguments.values())


def test_two_readers_are_not_fused():
    spec = parse_spec(toml_of({"name": "fan", "input": [1, 4, 4], "layers": [
        conv_layer("c1", 2), {"type": "relu", "name": "r"},
        conv_layer("c2", 2), {"type": "add", "name": "sum", "inputs": ["c2", "r"]},
        {"type": "flatten"}, {"type": "dense", "name": "fc", "out_features": 2}]}))
    assert [e.label for e, _ in fusion_pairs(spec)] == []  # r: read by c2 and the add
    assert "FUSED = {\n}" in render_package(spec)["__init__.py"]


def test_an_activation_read_by_several_layers_is_fused_into_their_gradients_sum():
    spec = parse_spec(toml_of(GRAPH))  # the stem (a convolution) fans out too: not element-wise
    kernels = fanout_fused_kernels(spec)
    assert list(kernels) == ["a"] and kernels["a"].name == "fanout_a_with_a_grad_input"
    assert kernels["a"].arguments == ("x", "x2", "x3", "fused_out", "out")  # c2's, the add's and the concat's
    assert "dL/dX_E[n, c, i, j] = [0 < Y_E[n, c, i, j]] * dL/dX[n, c, i, j]" in kernels["a"].formula
    files = render_package(spec)
    assert "def fanout_a_with_a_grad_input(x, x2, x3, fused_out, out):" in files["fanout.py"]
    assert "def fanout_a(x, x2, x3, out):" in files["fanout.py"]  # the plain sum stays, for other runtimes
    namespace: dict = {}
    exec(files["__init__.py"], namespace)  # the package's tables (no kernels imported)
    assert namespace["FANOUT_FUSED"] == {"a": "fanout_a_with_a_grad_input"}


def test_what_a_fan_out_does_not_fuse():
    tail = [{"type": "add", "name": "sum", "inputs": ["c", "r"]}, {"type": "flatten"},
            {"type": "dense", "name": "fc", "out_features": 2}]
    on_input = [{"type": "relu", "name": "r"}, conv_layer("c", 2), *tail]  # r reads the network's input
    assert fanout_fused_kernels(parse_spec(toml_of({"name": "fan", "input": [2, 4, 4], "layers": on_input}))) == {}
    taken = [conv_layer("c0", 2), {"type": "relu", "name": "r"}, conv_layer("c1", 2),
             {"type": "relu", "name": "fanout_r_with_r"}, {**tail[0], "inputs": ["fanout_r_with_r", "r"]},
             *tail[1:]]  # the fused kernel's name would be a layer's kernel's
    spec = parse_spec(toml_of({"name": "fan", "input": [2, 4, 4], "layers": taken}))
    assert fanout_fused_kernels(spec) == {}
    assert "FANOUT_FUSED = {\n}" in render_package(spec)["__init__.py"]


def test_a_chain_of_activations_fuses_each_layer_once():
    spec = parse_spec(toml_of({"name": "chain", "input": [1, 4, 4], "layers": [
        conv_layer("c1", 2), {"type": "relu", "name": "a"}, {"type": "tanh", "name": "b"},
        {"type": "maxpool2d", "kernel": 2, "stride": 2}, {"type": "flatten"},
        {"type": "dense", "name": "fc", "out_features": 2}]}))
    assert [(e.label, q.label) for e, q in fusion_pairs(spec)] == [("a", "b")]


@pytest.fixture(scope="module")
def fusing(tmp_path_factory):
    return network_for({**FUSING, "name": "fusing-every-schedule"}, tmp_path_factory.mktemp("fusing"))  # lanes too


@pytest.mark.slow  # compiles the unfused kernels too (about a minute on 2 cores); the fused network vs PyTorch below
def test_fused_kernels_equal_the_unfused_chain(fusing):
    """Each fused kernel against the reader's input-gradient kernel then the element-wise layer's, on
    random arrays: the same multiplications (ReLU's mask) bit for bit, the others to rounding."""
    _assert_fused_kernels_equal_the_unfused_chain(fusing)


#: A 1x1 convolution at stride 2 reads one input element in four: its input gradient's phases but the first
#: have no term and store 0, through the epilogue too (E's gradient of 0).
ONE_TAP_STRIDED = {
    "name": "one-tap-strided",
    "input": [2, 6, 6],
    "layers": [
        conv_layer("c1", 4), {"type": "leaky_relu", "alpha": 0.1, "name": "l1"},
        {"type": "conv2d", "name": "down", "out_channels": 3, "kernel": 1, "stride": 2},
        {"type": "flatten", "name": "flat"}, {"type": "dense", "name": "fc", "out_features": 2},
    ],
}


@pytest.mark.heavy
def test_phases_without_terms_store_through_the_epilogue(tmp_path_factory):
    spec = parse_spec(toml_of(ONE_TAP_STRIDED))
    (kernel,) = fused_kernels(spec).values()
    assert kernel.kind == "phases" and [phase.kind for phase in kernel.phases] == ["columns", "sum", "sum", "sum"]
    assert not any(phase.terms for phase in kernel.phases[1:])  # nothing to sum: 0, through the epilogue
    assert all(phase.epilogue is not None for phase in kernel.phases[1:])  # the first: in its columns schedule
    source = render_package(spec)["down_with_l1.py"]
    for phase in ("p00", "p01", "p10", "p11"):
        assert f"fused_out_{phase} = fused_out[" in source and f"fused0 = fused_out_{phase}[" in source
    _assert_fused_kernels_equal_the_unfused_chain(network_for(ONE_TAP_STRIDED, tmp_path_factory.mktemp("one-tap")))


def _assert_fused_kernels_equal_the_unfused_chain(net) -> None:
    rng = np.random.default_rng(3)
    layers = {layer.label: layer for layer in net.spec.layers}
    batch = 3
    for elementwise, (reader, kernel) in net.kernels.FUSED.items():
        e, q = layers[elementwise], layers[reader]
        arrays = {"grad_output": rng.standard_normal((batch, *q.output_shape)),
                  "x": rng.standard_normal((batch, *q.input_shape)),
                  "fused_x": rng.standard_normal((batch, *e.input_shape)),
                  "fused_out": rng.standard_normal((batch, *e.output_shape))}
        arrays.update({role: value for role, value in _parameters(net, q).items()})
        if "switch" in net.kernels.ARGUMENTS[f"{reader}_grad_input"]:
            arrays["switch"] = rng.integers(0, 4, (batch, *q.output_shape)).astype(np.int8)
        unfused = np.empty((batch, *q.input_shape))
        net.kernel(f"{reader}_grad_input")(*[arrays[a] for a in net.kernels.ARGUMENTS[f"{reader}_grad_input"][:-1]],
                                           unfused)
        chained = np.empty_like(unfused)
        # E's own kernel reads its input (ReLU's mask) or its output (tanh's 1 - Y^2), as the fused one does
        own = {"grad_output": unfused, "x": arrays["fused_x"], "out": arrays["fused_out"]}
        own_kernel = f"{elementwise}_grad_input"
        net.kernel(own_kernel)(*[own[a] for a in net.kernels.ARGUMENTS[own_kernel][:-1]], chained)
        fused = np.empty_like(unfused)
        net.kernel(kernel)(*[arrays[a] for a in net.kernels.ARGUMENTS[kernel][:-1]], fused)
        if e.kind in ("relu", "leaky_relu"):
            np.testing.assert_array_equal(fused, chained, err_msg=elementwise)
        else:
            np.testing.assert_allclose(fused, chained, rtol=1e-13, atol=1e-15, err_msg=elementwise)


def _parameters(net, layer: LayerSpec) -> dict:
    return {name.split(".")[-1]: value for name, value in net.params.items() if name.startswith(f"{layer.name}.")}


@pytest.mark.heavy
def test_fused_networks_equal_pytorch(fusing, torch):
    net = fusing
    net.load_params(random_params(net, np.random.default_rng(5)))
    assert_float64_equals_pytorch(net, np.random.default_rng(7), np.array([0, 2, 1]))
