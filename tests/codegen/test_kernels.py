"""Generated numba kernels (symcnn generate + symcnn.runtime.network): rungs 3 to 5 of the verification ladder.

- small specs: the kernels equal the symbolic expansion with random values substituted (float64);
- full size: seed004 and seed004-text equal PyTorch autograd (float32 and float64) and central
  finite differences (float64);
- property tests over random small specs against PyTorch;
- boundary validation, and the runtime never imports SymPy.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.kernels_helpers import (COMPILES_KERNELS, assert_central_differences, assert_float64_equals_pytorch,
                                   network_for, random_params, torch_loss_and_grads)
from symcnn.symbolic.verify import symbolic_network_gradients as symbolic_values
from symcnn.runtime.network import Network
from symcnn.spec import spec_from_dict


SMALL_SPECS = [
    {
        "name": "small-conv",
        "input": [2, 5, 6],
        "layers": [
            {"type": "conv2d", "name": "conv", "out_channels": 2, "kernel": [2, 3], "stride": [2, 1],
             "padding": [1, 0], "dilation": [1, 2]},
            {"type": "leaky_relu", "alpha": 0.25},
            {"type": "avgpool2d", "kernel": 2, "stride": 1},
            {"type": "flatten"},
            {"type": "dense", "name": "fc", "out_features": 3},
        ],
    },
    {
        "name": "small-pool",
        "input": [1, 5, 5],
        "layers": [
            {"type": "conv2d", "name": "c1", "out_channels": 2, "kernel": 2, "padding": 1, "bias": False},
            {"type": "relu"},
            {"type": "maxpool2d", "kernel": 2, "stride": 1},
            {"type": "elu", "alpha": 1.0},
            {"type": "global_avgpool"},
            {"type": "flatten"},
            {"type": "dense", "name": "out", "out_features": 3, "bias": False},
        ],
    },
    {
        "name": "small-smooth",
        "input": [2, 4, 5],
        "layers": [
            {"type": "conv2d", "name": "conv", "out_channels": 2, "kernel": 2},
            {"type": "tanh"},
            {"type": "avgpool2d", "kernel": 2, "stride": 1},
            {"type": "sigmoid"},
            {"type": "flatten"},
            {"type": "dense", "name": "hidden", "out_features": 4},
            {"type": "tanh"},
            {"type": "dense", "name": "fc", "out_features": 3},
        ],
    },
    {   # a graph: fan-outs (r is read by c2 and the add, c1 by the ReLU and the concat), add, concat
        "name": "small-graph",
        "input": [1, 3, 3],
        "layers": [
            {"type": "conv2d", "name": "c1", "out_channels": 2, "kernel": 2},
            {"type": "relu", "name": "r"},
            {"type": "conv2d", "name": "c2", "out_channels": 2, "kernel": 1},
            {"type": "add", "name": "sum", "inputs": ["c2", "r"]},
            {"type": "concat", "inputs": ["sum", "c1"]},
            {"type": "flatten"},
            {"type": "dense", "name": "fc", "out_features": 3},
        ],
    },
]


#: The small specs whose kernels the default run compiles (10-35 s each on 2 cores); the others', the smooth
#: activations and a graph, are heavy (pyproject.toml): CI runs them
_DEFAULT_SMALL_SPECS = ("small-conv", "small-pool")


def _heavy_unless_default(name: str):
    return () if name in _DEFAULT_SMALL_SPECS else pytest.mark.heavy


@pytest.mark.parametrize("spec", [pytest.param(spec, id=spec["name"], marks=_heavy_unless_default(spec["name"]))
                                  for spec in SMALL_SPECS])
def test_small_spec_kernels_equal_the_symbolic_expansion(spec, tmp_path):
    net = network_for(spec, tmp_path)
    rng = np.random.default_rng(7)
    params = random_params(net, rng)
    net.load_params(params)
    x = rng.standard_normal((2, *net.spec.input_shape))
    labels = np.array([0, 2])
    loss, grads = net.loss_and_grads(x, labels)
    expected = symbolic_values(net.spec, params, x, labels)
    assert loss == pytest.approx(expected["loss"], rel=1e-12, abs=1e-12)
    for name in list(params) + ["input"]:
        np.testing.assert_allclose(grads[name], expected[name], rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


# seed004-text is seed004 written in the text format: CI checks it in float32 (heavy), which
# test_torch_modules.py compiles too (into numba's cache beside the shipped package); its float64 twin adds a
# compile of about 30 s and nothing else
@pytest.mark.parametrize("dtype, tolerance, name", [
    ("float64", 1e-10, "seed004"), *[pytest.param("float32", 2e-4, name, marks=pytest.mark.heavy)
                                     for name in ("seed004", "seed004-text")],
    pytest.param("float64", 1e-10, "seed004-text", marks=COMPILES_KERNELS)])
def test_full_size_networks_equal_pytorch(torch, name, dtype, tolerance):
    net = Network.from_spec(name, dtype=dtype, seed=3)
    rng = np.random.default_rng(11)
    x = rng.standard_normal((4, *net.spec.input_shape)).astype(dtype)
    labels = np.array([3, 0, 9, 3])
    loss, grads = net.loss_and_grads(x, labels)
    torch_dtype = torch.float64 if dtype == "float64" else torch.float32
    expected_loss, expected_logits, expected = torch_loss_and_grads(net.spec, net.params, x, labels, torch_dtype)
    assert loss == pytest.approx(expected_loss, rel=tolerance)
    np.testing.assert_allclose(net.forward(x), expected_logits, rtol=tolerance, atol=tolerance)
    assert set(grads) == set(expected)
    for key, value in expected.items():
        scale = np.abs(value).max()
        np.testing.assert_allclose(grads[key], value, rtol=tolerance, atol=tolerance * scale, err_msg=key)


# Every small spec in float64; in float32 (a compile of 10-35 s each) the one whose layers (the smooth activations'
# float32 arithmetic) no other float32 network has. The specs not in _DEFAULT_SMALL_SPECS are heavy in either dtype.
_FLOAT32_ALSO = ("small-smooth",)


@pytest.mark.parametrize("spec, dtype, tolerance", [
    pytest.param(spec, dtype, tolerance, id=f"{dtype}-{spec['name']}",
                 marks=_heavy_unless_default(spec["name"]) if dtype == "float64" or spec["name"] in _FLOAT32_ALSO
                 else COMPILES_KERNELS)
    for dtype, tolerance in (("float64", 1e-10), ("float32", 2e-4)) for spec in SMALL_SPECS])
def test_small_specs_equal_pytorch(torch, spec, dtype, tolerance, tmp_path):
    net = network_for(spec, tmp_path, dtype=dtype)
    rng = np.random.default_rng(17)
    net.load_params({name: value.astype(dtype) for name, value in random_params(net, rng).items()})
    x = rng.standard_normal((3, *net.spec.input_shape)).astype(dtype)
    labels = np.array([2, 0, 1])
    loss, grads = net.loss_and_grads(x, labels)
    torch_dtype = torch.float64 if dtype == "float64" else torch.float32
    expected_loss, expected_logits, expected = torch_loss_and_grads(net.spec, net.params, x, labels, torch_dtype)
    assert loss == pytest.approx(expected_loss, rel=tolerance)
    np.testing.assert_allclose(net.forward(x), expected_logits, rtol=tolerance, atol=tolerance)
    for key, value in expected.items():
        scale = np.abs(value).max()
        np.testing.assert_allclose(grads[key], value, rtol=tolerance, atol=tolerance * scale, err_msg=key)


@pytest.mark.parametrize("name", ["seed004", pytest.param("seed004-text", marks=COMPILES_KERNELS),
                                  *[pytest.param(name, marks=_heavy_unless_default(name))
                                    for name in ("small-smooth", "small-graph")]])  # seed004-text: slow above
def test_full_size_gradients_equal_central_finite_differences(name, tmp_path):
    small = {spec["name"]: spec for spec in SMALL_SPECS}
    net = network_for(small[name], tmp_path) if name in small else Network.from_spec(name, dtype="float64", seed=5)
    rng = np.random.default_rng(13)
    x = rng.standard_normal((2, *net.spec.input_shape))
    assert_central_differences(net, x, np.array([2, 1]), rng, step=1e-5, samples=4, rel=1e-6, abs=1e-9)


@st.composite
def small_specs(draw):
    """Random small specs: stride 1-3, padding 0-2, dilation 1-2, non-square, both pool types."""
    height, width = draw(st.integers(4, 7)), draw(st.integers(4, 7))
    kernel = [draw(st.integers(1, 3)), draw(st.integers(1, 3))]
    dilation = [draw(st.integers(1, 2)), draw(st.integers(1, 2))]
    padding = [draw(st.integers(0, 2)), draw(st.integers(0, 2))]
    stride = [draw(st.integers(1, 3)), draw(st.integers(1, 3))]
    sizes = [(size + 2 * p - d * (k - 1) - 1) // s + 1
             for size, k, s, p, d in zip((height, width), kernel, stride, padding, dilation)]
    if min(sizes) < 2:
        padding = [2, 2]
        kernel, dilation, stride = [2, 2], [1, 1], [1, 1]
        sizes = [height + 3, width + 3]
    pool = draw(st.sampled_from(["maxpool2d", "avgpool2d"]))
    pool_kernel = [draw(st.integers(1, min(2, sizes[0]))), draw(st.integers(1, min(2, sizes[1])))]
    layers = [
        {"type": "conv2d", "name": "conv", "out_channels": draw(st.integers(1, 3)), "kernel": kernel,
         "stride": stride, "padding": padding, "dilation": dilation},
        {"type": draw(st.sampled_from(["relu", "leaky_relu", "elu", "sigmoid", "tanh"]))},
        {"type": pool, "kernel": pool_kernel, "stride": [draw(st.integers(1, 2)), draw(st.integers(1, 2))]},
        {"type": "flatten"},
        {"type": "dense", "name": "fc", "out_features": 4},
    ]
    channels = draw(st.integers(1, 2))
    digest = hashlib.sha256(repr((layers, channels, height, width)).encode()).hexdigest()[:10]
    return {"name": f"prop-{digest}",
            "input": [channels, height, width], "layers": layers}


# each example a spec compiled (about 25 s on 2 cores)
@pytest.mark.heavy
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=small_specs())
def test_random_small_specs_equal_pytorch(torch, tmp_path_factory, spec):
    net = network_for(spec, tmp_path_factory.mktemp("spec"))
    rng = np.random.default_rng(0)
    net.load_params(random_params(net, rng))
    assert_float64_equals_pytorch(net, rng, np.array([1, 3]))


# --- the boundary --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    return Network.from_spec("digits", seed=0)


@pytest.mark.parametrize("make, message", [
    (lambda: np.zeros((2, 1, 8, 8), np.float64), "expected a C-contiguous float32 array of shape (2, 1, 8, 8), "
                                                 "got a float64 array of shape (2, 1, 8, 8)"),
    (lambda: np.zeros((2, 1, 8, 9), np.float32), "got a float32 array of shape (2, 1, 8, 9)"),
    (lambda: np.zeros((2, 8, 8), np.float32), "shape (N, 1, 8, 8)"),
    (lambda: np.zeros((0, 1, 8, 8), np.float32), "shape (N, 1, 8, 8)"),
    (lambda: np.zeros((2, 1, 8, 16), np.float32)[:, :, :, ::2], "got a non-contiguous float32 array"),
    (lambda: [[0.0]], "got a list"),
])
def test_bad_inputs_raise_naming_expected_and_actual(digits, make, message):
    with pytest.raises(ValueError, match="^x: ") as error:
        digits.forward(make())
    assert message in str(error.value)


def test_bad_labels_raise(digits):
    x = np.zeros((2, 1, 8, 8), np.float32)
    with pytest.raises(ValueError, match=r"labels: must lie in \[0, 9\]"):
        digits.loss_and_grads(x, np.array([0, 10]))
    with pytest.raises(ValueError, match=r"labels: expected an integer array of shape \(2,\)"):
        digits.loss_and_grads(x, np.array([0.0, 1.0]))


def test_replaced_parameters_are_checked_before_any_kernel_runs(digits):
    x = np.zeros((1, 1, 8, 8), np.float32)
    saved = digits.params["fc1.weight"]
    try:
        digits.params["fc1.weight"] = np.zeros((10, 255), np.float32)
        with pytest.raises(ValueError, match=r"fc1.weight: expected a C-contiguous float32 array of shape \(10, 256\)"):
            digits.forward(x)
    finally:
        digits.params["fc1.weight"] = saved
    with pytest.raises(ValueError, match="fc1.bias"):
        digits.load_params({**digits.params, "fc1.bias": np.zeros(11)})
    assert digits.params["fc1.weight"] is saved


def test_train_step_lowers_the_loss_on_a_fixed_batch(digits):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 1, 8, 8)).astype(np.float32)
    labels = rng.integers(0, 10, 8)
    losses = [digits.train_step(x, labels, lr=0.05) for _ in range(15)]
    assert losses[-1] < 0.5 * losses[0]
    with pytest.raises(ValueError, match="lr: must be a positive number"):
        digits.train_step(x, labels, lr=-1.0)


def test_any_batch_size(digits):
    for batch in (1, 3, 17):
        assert digits.forward(np.zeros((batch, 1, 8, 8), np.float32)).shape == (batch, 10)


def test_params_have_pytorch_names_and_he_initialization():
    net = Network.from_spec("seed004", seed=0)
    shapes = {name: value.shape for name, value in net.params.items()}
    assert shapes == {"conv1.weight": (16, 3, 3, 3), "conv1.bias": (16,), "conv2.weight": (32, 16, 3, 3),
                      "conv2.bias": (32,), "fc1.weight": (10, 8192), "fc1.bias": (10,)}
    assert net.params["fc1.weight"].std() == pytest.approx(np.sqrt(2 / 8192), rel=0.05)
    assert not net.params["conv1.bias"].any()
    again = Network.from_spec("seed004", seed=0)
    assert all(np.array_equal(net.params[k], again.params[k]) for k in net.params)


def test_the_runtime_never_imports_sympy():
    code = ("import sys, numpy as np\n"
            "from symcnn import Network\n"
            "net = Network.from_spec('digits')\n"
            "net.loss_and_grads(np.zeros((2, 1, 8, 8), np.float32), np.array([1, 2]))\n"
            "assert 'sympy' not in sys.modules, 'sympy was imported'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_a_spec_file_is_generated_on_demand_in_a_subprocess(tmp_path):
    from tests.kernels_helpers import toml_of

    spec = {"name": "on-demand", "input": [1, 4, 4],
            "layers": [{"type": "flatten"}, {"type": "dense", "name": "fc", "out_features": 2}]}
    path = tmp_path / "on-demand.toml"
    path.write_text(toml_of(spec))
    net = Network.from_spec(path, dtype="float64")
    assert net.forward(np.ones((1, 1, 4, 4))).shape == (1, 2)


@pytest.mark.parametrize("name", ["seed004", "digits"])
def test_kernels_run_as_views_give_what_the_kernels_give(name):
    """RESHAPES: instead of flatten's kernels the runtime passes a view of their input; the kernels
    themselves, called, give the same arrays exactly."""
    net = Network.from_spec(name)
    flatten = next(layer for layer in net.spec.layers if layer.kind == "flatten")
    assert net.kernels.RESHAPES == {f"{flatten.label}_forward": "x", f"{flatten.label}_grad_input": "grad_output"}
    rng = np.random.default_rng(3)
    for kernel_name, (source_shape, out_shape) in {
            f"{flatten.label}_forward": (flatten.input_shape, flatten.output_shape),
            f"{flatten.label}_grad_input": (flatten.output_shape, flatten.input_shape)}.items():
        source = rng.standard_normal((5, *source_shape)).astype(np.float32)
        out = np.full((5, *out_shape), np.nan, dtype=np.float32)
        net._functions[kernel_name](source, out)
        np.testing.assert_array_equal(out, source.reshape(out.shape))


REPEATED = {
    "name": "repeated",
    "input": [2, 6, 6],
    "layers": [
        {"type": "conv2d", "name": "a", "out_channels": 2, "kernel": 3, "padding": 1},
        {"type": "relu"},
        {"type": "conv2d", "name": "b", "out_channels": 2, "kernel": 3, "padding": 1},  # a's configuration
        {"type": "relu"},
        {"type": "conv2d", "name": "c", "out_channels": 2, "kernel": 3, "padding": 1, "bias": False},  # not
        {"type": "relu"},
        {"type": "maxpool2d", "kernel": 2},
        {"type": "relu"},  # on a smaller map: its own kernels
        {"type": "flatten"},
        {"type": "dense", "name": "fc", "out_features": 3},
    ],
}


@pytest.mark.heavy
def test_layers_of_one_configuration_share_one_kernel_module_and_still_equal_pytorch(torch, tmp_path):
    from symcnn.codegen.package import render_package

    files = render_package(spec_from_dict(REPEATED))
    # each ReLU's input gradient fused into its reader's (symcnn.codegen.fusion): b's and c's alike; each
    # ReLU's forward pass into the kernel before it (symcnn.codegen.forward_fusion): a's and b's alike
    assert sorted(files) == ["__init__.py", "a.py", "a_with_relu1.py", "b_with_relu1.py", "c.py", "c_with_relu5.py",
                             "fc.py", "flatten8.py", "flatten8_with_relu7.py", "loss.py", "maxpool2d6.py",
                             "maxpool2d6_with_relu5.py", "maxpool2d6_with_relu7.py", "relu1.py", "relu7.py"]
    assert "'b_grad_weight': 'a_grad_weight'," in files["__init__.py"]
    assert "'c_with_relu3_grad_input': 'b_with_relu1_grad_input'," in files["__init__.py"]
    assert "'b_with_relu3_forward': 'a_with_relu1_forward'," in files["__init__.py"]
    assert "'relu5_forward': 'relu1_forward'," in files["__init__.py"]
    net = network_for(REPEATED, tmp_path)
    rng = np.random.default_rng(5)
    net.load_params(random_params(net, rng))
    x = rng.standard_normal((2, *net.spec.input_shape))
    labels = np.array([2, 0])
    loss, grads = net.loss_and_grads(x, labels)
    expected_loss, _, expected = torch_loss_and_grads(net.spec, net.params, x, labels, torch.float64)
    assert loss == pytest.approx(expected_loss, rel=1e-10)
    for key, value in expected.items():
        np.testing.assert_allclose(grads[key], value, rtol=1e-9, atol=1e-12, err_msg=key)


@pytest.mark.heavy
@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
@pytest.mark.parametrize("dtype, limit", [("float32", 120.0), ("float64", 800.0)])
def test_saturated_activations_have_pytorchs_finite_gradients(torch, activation, dtype, limit, tmp_path):
    """Inputs far beyond exp's overflow (float32: 88.7, float64: 709.8): the gradients stay finite and
    equal PyTorch's (the sigmoid's derivative as exp(-x)/(1 + exp(-x))**2 was inf/inf there)."""
    spec = {"name": f"saturated-{activation}-{dtype}", "input": [1, 2, 5],
            "layers": [{"type": activation}, {"type": "flatten"}, {"type": "dense", "name": "fc", "out_features": 3}]}
    net = network_for(spec, tmp_path, dtype=dtype)
    x = np.linspace(-limit, limit, 10).reshape(1, 1, 2, 5).astype(dtype)
    x = np.concatenate([x, x / limit * 3, x / limit * 1e-6])  # saturated, moderate, and tiny inputs
    labels = np.array([0, 1, 2])
    loss, grads = net.loss_and_grads(x, labels)
    torch_dtype = torch.float64 if dtype == "float64" else torch.float32
    expected_loss, _, expected = torch_loss_and_grads(net.spec, net.params, x, labels, torch_dtype)
    assert np.isfinite(loss) and all(np.isfinite(value).all() for value in grads.values())
    tolerance = 1e-5 if dtype == "float32" else 1e-12
    assert loss == pytest.approx(expected_loss, rel=tolerance)
    for key, value in expected.items():
        np.testing.assert_allclose(grads[key], value, rtol=tolerance, atol=tolerance * np.abs(value).max(),
                                   err_msg=key)
