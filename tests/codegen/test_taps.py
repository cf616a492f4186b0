"""One tap per output element (symcnn.codegen.taps): an element-wise gather without its divisibility tests."""

from __future__ import annotations

import numpy as np
import pytest
from symcnn.codegen.network import layer_kernels
from symcnn.spec import load_spec, parse_spec

from tests.kernels_helpers import COMPILES_KERNELS, network_for, random_params, toml_of, torch_loss_and_grads


def _pool_spec(kind: str, kernel: int, stride: int, size: int) -> dict:
    return {"name": f"taps-{kind}-{kernel}-{stride}-{size}", "input": [2, size, size], "layers": [
        {"type": "conv2d", "name": "c", "out_channels": 2, "kernel": 1},
        {"type": kind, "kernel": kernel, "stride": stride, "name": "pool"},
        {"type": "flatten"}, {"type": "dense", "name": "fc", "out_features": 3}]}


def _grad_input(spec: dict):
    layer = next(layer for layer in parse_spec(toml_of(spec)).layers if layer.label == "pool")
    return next(kernel for kernel in layer_kernels(layer) if kernel.name == "pool_grad_input")


def test_seed004s_max_pool_gradient_reads_its_one_tap():
    (layer,) = [layer for layer in load_spec("seed004").layers if layer.kind == "maxpool2d"]
    (term,) = next(kernel for kernel in layer_kernels(layer) if kernel.name.endswith("grad_input")).terms
    assert term.loops == () and term.condition is None
    assert term.update == ("acc += ((1) if (switch[n, c, (k) // 2, (l) // 2] == 2*k + l - 4*((k) // 2) - "
                           "2*((l) // 2)) else (0))*grad_output[n, c, (k) // 2, (l) // 2]")


def test_a_window_wider_than_its_stride_keeps_its_taps():
    (term,) = _grad_input(_pool_spec("maxpool2d", 2, 1, 5)).terms  # overlapping windows: 4 taps may land
    assert {"u", "v"} <= {loop.variable for loop in term.loops}


def test_rows_beyond_the_last_window_keep_their_range_test():
    (term,) = _grad_input(_pool_spec("avgpool2d", 3, 3, 8)).terms  # rows 6 and 7 lie in no window
    assert term.loops == () and "% 3" not in term.condition and "<= 1" in term.condition


# each a spec compiled (7-10 s): by default one pool of each kind, one with a row beyond its last window
@pytest.mark.heavy
@pytest.mark.parametrize("kind, kernel, size", [
    pytest.param(kind, kernel, size, id=f"{kernel}-{size}-{kind}",
                 marks=() if (kind, kernel) in (("maxpool2d", 2), ("avgpool2d", 3)) and size != 6 else COMPILES_KERNELS)
    for kernel, size in ((2, 6), (3, 8), (2, 7)) for kind in ("maxpool2d", "avgpool2d")])
def test_one_tap_pools_equal_pytorch(kind, kernel, size, tmp_path, torch):
    spec = _pool_spec(kind, kernel, kernel, size)
    net = network_for(spec, tmp_path)
    rng = np.random.default_rng(kernel * size)
    net.load_params(random_params(net, rng))
    x = rng.standard_normal((3, *net.spec.input_shape))
    labels = np.array([0, 2, 1])
    loss, grads = net.loss_and_grads(x, labels)
    expected_loss, _, expected = torch_loss_and_grads(net.spec, net.params, x, labels, torch.float64)
    assert loss == pytest.approx(expected_loss, rel=1e-10)
    for key, value in expected.items():
        np.testing.assert_allclose(grads[key], value, rtol=1e-9, atol=1e-12, err_msg=key)
