"""The model summary against the tools people use, on every spec file shipped in symcnn/specs (the
PyTorch twin of symcnn/bench, with PyTorch's own initialization: no symcnn kernel is generated or
compiled):

- torchinfo: each layer's output shape and parameter count, and the totals. Its "Mult-Adds" of a
  convolution or a dense layer are document 003's count too (weights and biases times output
  positions): equal to ours layer by layer (its batch norm count, N·2·C, is no per-element count:
  not compared).
- fvcore: one multiply-add is one flop, as ours, but it counts no bias (its convolution: "only
  multiplication is counted"), no average or max pooling and no activation: ours less one add per
  output of a biased layer, layer by layer, and 0 where fvcore has no handle.
- ptflops: convolutions and dense layers as document 003 (with the bias add); it also counts ReLU (one
  per element) and max pooling (one per input element), which are not multiply-adds, so those
  modules are left out; its average pooling is one per input element, ours K_h·K_w per output: the
  same where the windows tile the input without overlap (LeNet-5's). Totals compared.

Each tool is optional (``pytest.importorskip``): torchinfo and fvcore are in the ``test`` extra,
ptflops (which requires torch) in ``oracle``.
"""

from __future__ import annotations

import math
from functools import lru_cache

import pytest

from symcnn.bench.torch_twin import torch_model
from symcnn.network_summary import summary
from symcnn.spec import SPEC_DIR, load_spec

torch = pytest.importorskip("torch")

SPECS = sorted(str(path) for path in SPEC_DIR.glob("*.toml"))
IDS = [path.rsplit("/", 1)[-1] for path in SPECS]


@lru_cache(maxsize=1)  # one spec's model at a time: VGG-16's weights are 553 MB
def _model(name: str):
    torch.manual_seed(0)
    return torch_model(load_spec(name), {}).eval()


@pytest.fixture(scope="module", autouse=True)
def _release_the_last_model():
    yield
    _model.cache_clear()


def _input(name: str):
    return torch.zeros((1, *load_spec(name).input_shape))


def _bias_adds(layer) -> int:
    """The adds of a spec layer's bias: one per output element (fvcore counts none)."""
    return math.prod(layer.output_shape) if layer.settings.get("bias") else 0


@pytest.mark.parametrize("name", SPECS, ids=IDS)
def test_shapes_parameters_and_mult_adds_equal_torchinfo(name):
    torchinfo = pytest.importorskip("torchinfo")
    result = summary(name)
    with torch.no_grad():
        stats = torchinfo.summary(_model(name), input_data=_input(name), verbose=0)
    theirs = {layer.var_name: layer for layer in stats.summary_list if layer.depth == 1}
    assert list(theirs) == [layer.label for layer in result.layers]
    for layer in result.layers:
        assert tuple(theirs[layer.label].output_size) == (1, *layer.output_shape), layer.label
        assert theirs[layer.label].num_params == layer.parameters, layer.label
        if layer.kind in ("conv2d", "dense"):  # torchinfo's Mult-Adds: parameters × output positions
            assert theirs[layer.label].macs == layer.macs, layer.label
    assert stats.total_params == result.totals.parameters


# What fvcore counts of each op: its flops are multiply-adds without the bias, and it has no handle
# for average or max pooling, activations, dropout or flatten (counted 0).
_FVCORE = {"conv2d": "without bias", "dense": "without bias", "batchnorm2d": "same", "global_avgpool": "same"}


@pytest.mark.parametrize("name", SPECS, ids=IDS)
def test_multiply_adds_equal_fvcores_without_the_bias(name):
    fvcore = pytest.importorskip("fvcore.nn")
    result = summary(name)
    analysis = fvcore.FlopCountAnalysis(_model(name), (_input(name),))
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    theirs = analysis.by_module()
    expected = {}
    for spec_layer, layer in zip(load_spec(name).layers, result.layers):
        rule = _FVCORE.get(layer.kind)
        expected[layer.label] = (layer.macs - _bias_adds(spec_layer) if rule == "without bias" else
                                 layer.macs if rule == "same" else 0)
        assert theirs[layer.label] == expected[layer.label], layer.label
    assert analysis.total() == sum(expected.values())


@pytest.mark.parametrize("name", SPECS, ids=IDS)
def test_multiply_adds_equal_ptflops(name):
    ptflops = pytest.importorskip("ptflops")
    result = summary(name)
    spec = load_spec(name)
    for layer in spec.layers:  # ptflops' average pooling is one per input element: ours where windows tile
        if layer.kind == "avgpool2d":
            assert layer.settings["kernel"] == layer.settings["stride"]
            assert all(size % kernel == 0 for size, kernel in zip(layer.input_shape[1:], layer.settings["kernel"]))
    with torch.no_grad():
        macs, parameters = ptflops.get_model_complexity_info(
            _model(name), tuple(spec.input_shape), as_strings=False, print_per_layer_stat=False,
            ignore_modules=[torch.nn.ReLU, torch.nn.MaxPool2d], backend="pytorch",
            backend_specific_config={"count_functional": False})  # else F.relu inside nn.ReLU is counted
    assert (macs, parameters) == (result.totals.macs, result.totals.parameters)
