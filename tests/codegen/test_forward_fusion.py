"""Fusion across layers, forward: an element-wise layer's forward pass stored by the kernel of the layer it
reads (symcnn.codegen.forward_fusion), in evaluation passes that fold and, where no gradient reads the
skipped output, in passes with gradients.

Which pairs fuse, read off the formulas; each fused kernel against the unfused chain it replaces (the
layer's forward kernel, then the element-wise layer's) in float64 and float32; whole evaluation passes
against the unfused pass and PyTorch's; passes with gradients against the same passes unfused; which
kernels run.
"""

from __future__ import annotations

import types

import numpy as np
import pytest
from symcnn.codegen import forward_fusion
from symcnn.codegen.forward_fusion import forward_fused_kernels, forward_pairs, training_fused_kernels
from symcnn.codegen.package import render_package
from symcnn.runtime.evaluation import forward_fusions, trainable_fusions
from symcnn.runtime.network import Network, switch_dtype
from symcnn.spec import load_spec, parse_spec

from tests.kernels_helpers import conv_layer, network_for, toml_of


#: An element-wise layer after a layer of each schedule: lanes (a convolution over 8 channels, and one
#: with a batch norm folded into it), columns (a 1x1 and a depthwise convolution), max (a max pool),
#: accumulate (an average pool), gather (a dense layer, and a batch norm that does not fold, after a tanh:
#: its evaluation-mode kernel), phases (a transposed convolution's forward pass: strided views of its output).
FUSING = {
    "name": "forward-fusing",
    "input": [2, 8, 8],
    "layers": [
        conv_layer("c1", 8), {"type": "relu", "name": "r1"},
        conv_layer("c2", 8), {"type": "batchnorm2d", "name": "bn2"}, {"type": "leaky_relu", "alpha": 0.1, "name": "l2"},
        {"type": "conv2d", "name": "pw", "out_channels": 3, "kernel": 1}, {"type": "elu", "alpha": 0.5, "name": "e3"},
        conv_layer("dw", 3, groups=3), {"type": "sigmoid", "name": "s4"},
        {"type": "maxpool2d", "kernel": 2, "stride": 2, "name": "pool"}, {"type": "leaky_relu", "alpha": 0.1,
                                                                          "name": "l5"},
        {"type": "conv_transpose2d", "name": "up", "out_channels": 4, "kernel": 2, "stride": 2},
        {"type": "relu", "name": "r6"},
        {"type": "avgpool2d", "kernel": 2, "stride": 1, "name": "avg"}, {"type": "tanh", "name": "t7"},
        {"type": "batchnorm2d", "name": "bn8"}, {"type": "relu", "name": "r8"},
        {"type": "flatten", "name": "flat"},
        {"type": "dense", "name": "fc1", "out_features": 9}, {"type": "leaky_relu", "alpha": 0.1, "name": "l9"},
        {"type": "dense", "name": "fc2", "out_features": 3},
    ],
}


def _pairs(spec) -> list[tuple[str, str]]:
    return [(p.label, e.label) for p, e in forward_pairs(spec)]


def test_pairs_of_the_shipped_specs():
    pairs = {name: _pairs(load_spec(name))
             for name in ("seed004", "suite-vgg", "suite-lenet", "suite-batchnorm", "suite-residual")}
    assert pairs["seed004"] == [("conv1", "relu1")]
    assert pairs["suite-vgg"] == [("conv1", "relu1"), ("conv2", "relu3"), ("conv3", "relu6")]
    assert pairs["suite-lenet"] == [("conv1", "tanh1"), ("conv2", "tanh4"), ("fc1", "tanh8"), ("fc2", "tanh10")]
    # a batch norm folded into the convolution before it, then the ReLU: one kernel for the three
    assert pairs["suite-batchnorm"] == [("bn1", "relu2"), ("bn2", "relu6")]
    assert {e: fusion.kernel.name for e, fusion in forward_fused_kernels(load_spec("suite-batchnorm")).items()} == {
        "relu2": "conv1_with_relu2_folded_forward", "relu6": "conv2_with_relu6_folded_forward"}
    # a graph: the residual adds' ReLUs too; the block input that the shortcut also reads is not fused
    assert pairs["suite-residual"] == [("stem_bn", "stem_relu"), ("b1_bn1", "relu5"), ("b1_add", "b1_out"),
                                       ("b2_bn1", "relu12"), ("b2_add", "b2_out")]


def test_elementwise_layers_that_call_a_function_are_not_fused_by_default():
    """tanh's, the sigmoid's and ELU's ``exp`` in the producer's store loop measured slower than the two
    kernels (FUSE_FUNCTION_CALLS); ReLU and LeakyReLU (selections) fuse, a batch norm's in both modes."""
    spec = parse_spec(toml_of(FUSING))
    assert set(forward_fused_kernels(spec)) == {"r1", "l2", "l5", "r6", "r8", "l9"}
    assert set(training_fused_kernels(spec)) == {"l2", "r8"}
    assert forward_fused_kernels(load_spec("suite-lenet")) == {}


def test_each_schedule_takes_the_epilogue(monkeypatch):
    monkeypatch.setattr(forward_fusion, "FUSE_FUNCTION_CALLS", True)  # every epilogue, a function's too
    spec = parse_spec(toml_of(FUSING))
    assert _pairs(spec) == [("c1", "r1"), ("bn2", "l2"), ("pw", "e3"), ("dw", "s4"), ("pool", "l5"), ("up", "r6"),
                            ("avg", "t7"), ("bn8", "r8"), ("fc1", "l9")]
    fusions = forward_fused_kernels(spec)
    assert {e: fusion.kernel.kind for e, fusion in fusions.items()} == {
        "r1": "lanes", "l2": "lanes", "e3": "columns", "s4": "columns", "l5": "max", "r6": "phases", "t7": "accumulate",
        "r8": "sum", "l9": "sum"}
    assert fusions["l2"].kernel.name == "c2_with_l2_folded_forward" and fusions["l2"].layer == "bn2"
    namespace: dict = {}
    exec(render_package(spec)["__init__.py"], namespace)  # the package's tables (no kernels imported)
    assert namespace["FORWARD_FUSED"]["r1"] == ("c1", "c1_with_r1_forward")
    assert set(namespace["FORWARD_FUSED"]) == set(fusions)
    # a batch norm's pair: its evaluation formula's kernel (or the fold's) and, for training passes, its
    # training formula's, side by side in its module where it is not folded
    assert namespace["FORWARD_FUSED"]["r8"] == ("bn8", "bn8_with_r8_eval_forward")
    assert namespace["TRAINING_FORWARD_FUSED"] == {"l2": ("bn2", "bn2_with_l2_forward"),
                                                   "r8": ("bn8", "bn8_with_r8_forward")}
    assert namespace["MODULES"].count("bn8_with_r8") == 1 and "bn2_with_l2" in namespace["MODULES"]
    assert {"bn8_with_r8_forward", "bn8_with_r8_eval_forward"} <= set(namespace["ARGUMENTS"])


@pytest.mark.parametrize("layers, expected", [
    ([conv_layer("c", 2), {"type": "relu", "name": "r"}, {"type": "add", "name": "sum", "inputs": ["r", "c"]}], []),
    ([conv_layer("c", 2), {"type": "maxpool2d", "kernel": 2, "stride": 2}], []),  # not element-wise
    ([conv_layer("c", 2), {"type": "dropout", "p": 0.5, "name": "d"}, {"type": "relu", "name": "r"}], []),
    ([conv_layer("c", 2), {"type": "relu", "name": "a"}, {"type": "tanh", "name": "b"}], [("c", "a")]),  # once
    ([conv_layer("c", 2), {"type": "add", "name": "sum", "inputs": ["c", "input"]}, {"type": "relu", "name": "r"}],
     [("sum", "r")]),
])
def test_which_pairs_fuse(layers, expected):
    head = [{"type": "flatten"}, {"type": "dense", "name": "fc", "out_features": 2}]
    spec = parse_spec(toml_of({"name": "pairs", "input": [2, 4, 4], "layers": [*layers, *head]}))
    assert _pairs(spec) == expected


def test_a_fan_out_sum_that_reads_the_skipped_output_keeps_both_forward_kernels():
    """A pass with gradients lets c1's kernel store r's output (c1's own never written) only where no
    backward kernel reads c1's output: a FANOUT_FUSED kernel reading r's input (``fused_x``) does; one
    reading r's output (``fused_out``, ReLU's) does not."""
    spec = parse_spec(toml_of({"name": "fan", "input": [1, 4, 4], "layers": [
        conv_layer("c1", 2), {"type": "relu", "name": "r"}, conv_layer("c2", 2),
        {"type": "add", "name": "sum", "inputs": ["c2", "r"]}, {"type": "flatten"},
        {"type": "dense", "name": "fc", "out_features": 2}]}))
    layers = {layer.label: layer for layer in spec.layers}
    fusions = {"c1": (layers["r"], "c1_with_r_forward")}

    def kernels(reads: str):
        return types.SimpleNamespace(FANOUT_FUSED={"r": "fanout_r_with_r_grad_input"}, ARGUMENTS={
            "c1_forward": ("x", "weight", "bias", "out"), "c1_with_r_forward": ("x", "weight", "bias", "out"),
            "c1_grad_input": ("grad_output", "weight", "grad_input"),
            "c1_grad_weight": ("grad_output", "x", "grad_weight"), "r_grad_input": ("grad_output", "out", "grad_input"),
            "fanout_r_with_r_grad_input": ("x", "x2", reads, "out")})

    assert trainable_fusions(kernels("fused_out"), layers, fusions)[True] == fusions
    assert trainable_fusions(kernels("fused_x"), layers, fusions) == {True: {}, False: {}}


def test_a_package_without_the_table_fuses_nothing():
    assert forward_fusions(types.SimpleNamespace(), {}) == {}


def _randomized(net: Network, rng) -> Network:
    """``net`` in evaluation mode with random parameters and running statistics (variances positive)."""
    def drawn(name, value):
        if name.endswith("running_var"):
            return rng.uniform(0.2, 3.0, value.shape).astype(net.dtype)
        return rng.standard_normal(value.shape).astype(net.dtype) if name.endswith("running_mean") else value

    net.params = {name: (rng.standard_normal(value.shape) / 2).astype(net.dtype) for name, value in net.params.items()}
    net.buffers = {name: drawn(name, value) for name, value in net.buffers.items()}
    net.eval()
    return net


# this network compiles for about 80 s in each dtype: float64 (tighter tolerances) is slow, float32 heavy
@pytest.fixture(scope="module", params=[pytest.param("float64", marks=pytest.mark.slow),
                                        pytest.param("float32", marks=pytest.mark.heavy)])
def fusing(request, tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:  # every epilogue, a function's too (a name of its own: its cache entry)
        patch.setattr(forward_fusion, "FUSE_FUNCTION_CALLS", True)
        net = network_for({**FUSING, "name": "forward-fusing-every-epilogue"},
                          tmp_path_factory.mktemp("forward-fusing"), dtype=request.param)
    return _randomized(net, np.random.default_rng(2))


def _unfused(net: Network, x: np.ndarray) -> np.ndarray:
    """The evaluation pass with the folds but without the forward fusions."""
    fused, net._forward_fused = net._forward_fused, {}
    try:
        return net._forward(x, False, fold=True)[0].copy()
    finally:
        net._forward_fused = fused


def _tolerance(dtype) -> dict:
    return {"rtol": 1e-13, "atol": 1e-14} if dtype == np.float64 else {"rtol": 1e-6, "atol": 1e-6}


def test_fused_kernels_equal_the_unfused_chain(fusing):
    """Each fused kernel against the layer's forward kernel (its folded one for a folded batch norm) then
    the element-wise layer's, on random arrays: ReLU and LeakyReLU bit for bit (the same float operations),
    the others to rounding."""
    net, rng, batch = fusing, np.random.default_rng(3), 3
    layers = {layer.label: layer for layer in net.spec.layers}
    producers = {fold[0].label: (layers[producer], fold[3]) for producer, fold in net._folds.items()}
    for p, (e, kernel) in net._forward_fused.items():
        layer, unfused_kernel = producers.get(p) or (layers[p], net._kernel(layers[p], "forward", False))
        arrays = {"x": rng.standard_normal((batch, *layer.input_shape)).astype(net.dtype),
                  **{role: rng.standard_normal(value.shape).astype(net.dtype)
                     for role, value in net._layer_arrays(layer).items()}}
        arrays = {role: np.abs(value) if role == "running_var" else value for role, value in arrays.items()}
        if "bias" in net.kernels.ARGUMENTS[unfused_kernel] and "bias" not in arrays:  # a fold's bias
            arrays["bias"] = rng.standard_normal(layer.output_shape[0]).astype(net.dtype)
        arrays["switch"] = np.empty((batch, *layer.output_shape), dtype=switch_dtype(layer))  # a max pool's argmax
        chained = _call(net, e.label + "_forward", {"x": _call(net, unfused_kernel, arrays, layer)}, e)
        fused = _call(net, kernel, arrays, e)
        if e.kind in ("relu", "leaky_relu"):
            np.testing.assert_array_equal(fused, chained, err_msg=kernel)
        else:
            np.testing.assert_allclose(fused, chained, err_msg=kernel, **_tolerance(net.dtype))


def _call(net: Network, kernel: str, arrays: dict, output) -> np.ndarray:
    """``kernel`` on ``arrays``, its output allocated for ``output``'s shape (and a switch if none is given)."""
    batch = arrays["x"].shape[0]
    arrays = {"switch": np.empty((batch, *output.output_shape), dtype=np.int8), **arrays,
              "out": np.empty((batch, *output.output_shape), dtype=net.dtype)}
    net.kernel(kernel)(*[arrays[name] for name in net.kernels.ARGUMENTS[kernel]])
    return arrays["out"]


@pytest.mark.slow  # the network's every pass compiled (57 s); the chain test above (heavy) and the shipped specs' stay
def test_the_evaluation_pass_runs_the_fused_kernels_and_equals_the_unfused_one(fusing):
    net = fusing
    x = np.random.default_rng(4).standard_normal((3, *net.spec.input_shape)).astype(net.dtype)
    net.profile = {}
    fused = net.forward(x)
    ran, net.profile = set(net.profile), None
    assert {"c1_with_r1_forward", "c2_with_l2_folded_forward", "pool_with_l5_forward", "fc1_with_l9_forward"} <= ran
    assert not {"c1_forward", "r1_forward", "c2_folded_forward", "l2_forward", "pool_forward", "l5_forward"} & ran
    assert "up_with_r6_forward" in ran and "r6_forward" not in ran  # the transposed convolution's phases store r6
    np.testing.assert_allclose(fused, _unfused(net, x), **_tolerance(net.dtype))
    # Training mode, and evaluation passes whose gradients are taken, run the fusions whose skipped output no
    # gradient reads (every gradient here reads E's output); not the folds, nor batch norm's (two modes)
    # a batch norm's training kernel storing E's output too, in training passes
    trainable = {"c1_with_r1_forward", "pw_with_e3_forward", "dw_with_s4_forward", "pool_with_l5_forward",
                 "up_with_r6_forward", "avg_with_t7_forward", "fc1_with_l9_forward"}
    normalizations = {"bn2_with_l2_forward", "bn8_with_r8_forward"}
    assert {kernel for _, kernel in net._trainable[False].values()} == trainable
    assert {kernel for _, kernel in net._trainable[True].values()} == trainable | normalizations
    for training in (True, False):
        net.profile = {}
        net.loss_and_grads(x, np.array([0, 2, 1]), training=training)
        ran = set(net.profile)
        # in training passes, the batch norms' kernels keeping their statistics (codegen.saved_statistics)
        kept = {f"{kernel}_saving" for kernel in normalizations}
        assert {kernel for kernel in ran if "_forward" in kernel and "_with_" in kernel} == (
            trainable | kept if training else trainable)
        assert not {"c1_forward", "r1_forward", "pool_forward", "l5_forward"} & ran
        assert "c2_forward" in ran and "r6_forward" not in ran  # before a batch norm (folded in evaluation only)
        assert ({"l2_forward", "r8_forward", "bn2_forward"} & ran) == (set() if training else {"l2_forward",
                                                                                               "r8_forward"})
    net.profile = None


@pytest.mark.slow  # as the test above (test_fusion's networks run their trainable fusions against PyTorch)
def test_a_pass_with_gradients_equals_the_one_without_its_forward_fusions(fusing):
    """The loss, every gradient and the running statistics, with the fusions and with each layer's own forward
    kernel, in both modes: the same operations (a kernel storing E's value where it stored its own), so equal
    to rounding."""
    net, rng = fusing, np.random.default_rng(8)
    x, labels = rng.standard_normal((3, *net.spec.input_shape)).astype(net.dtype), np.array([2, 0, 1])
    before = {name: value.copy() for name, value in net.buffers.items()}
    try:
        for training in (True, False):
            results = []
            for fuse in (True, False):
                net.buffers = {name: value.copy() for name, value in before.items()}  # the same running statistics
                net.fuse_with_gradients = fuse
                loss, grads = net.loss_and_grads(x, labels, training=training)
                results.append((loss, {name: gradient.copy() for name, gradient in grads.items()},
                                {name: value.copy() for name, value in net.buffers.items()}))
            _assert_equal_passes(*results, net.dtype)
    finally:
        net.buffers, net.fuse_with_gradients = before, True


def _assert_equal_passes(with_fusions: tuple, without: tuple, dtype) -> None:
    """Two passes' (loss, gradients, buffers), equal to rounding."""
    (fused_loss, fused, fused_buffers), (loss, unfused, buffers) = with_fusions, without
    assert fused.keys() == unfused.keys() and fused_loss == pytest.approx(loss, rel=1e-6)
    for name in unfused:
        np.testing.assert_allclose(fused[name], unfused[name], err_msg=name, **_tolerance(dtype))
    for name in buffers:
        np.testing.assert_allclose(fused_buffers[name], buffers[name], err_msg=name, **_tolerance(dtype))


# suite-batchnorm (26 s to compile) and suite-residual (80 s) are slow: the module's own network folds and fuses
# every kind of pair, batch norm's too
@pytest.mark.parametrize("name", ["seed004", "digits", pytest.param("suite-batchnorm", marks=pytest.mark.slow),
                                  pytest.param("suite-residual", marks=pytest.mark.slow)])
def test_the_evaluation_pass_of_shipped_specs_equals_the_unfused_one_and_pytorch(name):
    torch = pytest.importorskip("torch")
    from symcnn.bench.bench import torch_model

    net = _randomized(Network.from_spec(name, dtype="float64", seed=1), np.random.default_rng(5))
    x = np.random.default_rng(6).standard_normal((4, *net.spec.input_shape))
    net.profile = {}
    fused = net.forward(x)
    ran, net.profile = set(net.profile), None
    fused_kernels = {kernel for _, kernel in net._forward_fused.values()}
    skipped = {f"{e.label}_forward" for e, _ in net._forward_fused.values()}
    assert fused_kernels and fused_kernels <= ran and not skipped & ran
    unfused = _unfused(net, x)
    if all(e.kind == "relu" for e, _ in net._forward_fused.values()):
        np.testing.assert_array_equal(fused, unfused)  # ReLU: the same float operations
    else:
        np.testing.assert_allclose(fused, unfused, rtol=1e-13, atol=1e-14)
    twin = torch_model(net.spec, net.params, buffers=net.buffers).eval()
    with torch.no_grad():
        expected = twin(torch.tensor(x)).numpy()
    np.testing.assert_allclose(fused, expected, rtol=1e-12, atol=1e-12)
