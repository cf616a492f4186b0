"""A dense layer's forward pass in two forms by batch size (symcnn.codegen.small_batches): which kernels take
them, how their module calls them, and their numbers against PyTorch's on either side of the threshold."""

from __future__ import annotations

import numpy as np
import pytest

from symcnn.codegen.network import layer_kernels
from symcnn.codegen.package import render_package
from symcnn.spec import load_spec, spec_from_dict
from tests.kernels_helpers import (assert_float64_equals_pytorch, assert_same_gradients_on_one_and_two_threads,
                                   layer_labelled, network_for, random_params, torch_loss_and_grads)

#: 48 features to 40: the lanes schedule over the 40, the images in groups of 4, its weight copied transposed.
DENSE = {"name": "small-batches", "input": [2, 4, 6], "layers": [
    {"type": "flatten"},
    {"type": "dense", "name": "fc", "out_features": 40},
    {"type": "relu"},
    {"type": "dense", "name": "out", "out_features": 3},
]}


def test_a_dense_forward_in_groups_of_images_takes_a_rows_form_below_two_groups():
    forward, *gradients = layer_kernels(layer_labelled(spec_from_dict(DENSE), "fc"))
    assert forward.kind == "lanes" and forward.lanes.images.size == 4
    assert forward.small_batch.below == 8
    rows = forward.small_batch.kernel
    assert rows.kind == "sum" and rows.lanes is None and rows.name == ""
    assert [(loop.variable, loop.stop, loop.parallel) for loop in rows.output_loops] == [
        ("i", "40", True), ("n", "N", False)]
    assert rows.output_index == ("n", "i")  # stored at out[n, i], whatever the loops' order
    assert "'reassoc'" in rows.fastmath  # each dot product vectorized by LLVM
    assert rows.arguments == forward.arguments and rows.output == forward.output
    assert all(gradient.small_batch is None for gradient in gradients)


def test_other_kernels_keep_one_form():
    """Convolutions, dense layers' gradients, and a dense forward pass in the scalar form already."""
    spec = load_spec("suite-mlp-head")
    kernels = {kernel.name: kernel for layer in spec.layers for kernel in layer_kernels(layer)}
    assert {name for name, kernel in kernels.items() if kernel.small_batch} == {"fc1_forward", "fc2_forward"}
    assert kernels["fc3_forward"].kind == "sum"  # 10 features: no groups to split


def test_the_module_calls_the_form_the_batch_suits():
    files = render_package(spec_from_dict(DENSE))
    for module, kernel in (("fc.py", "fc_forward"), ("fc_with_relu2.py", "fc_with_relu2_forward")):
        source = files[module]
        assert f"def {kernel}_groups(x, weight, bias, out):" in source
        assert f"def {kernel}_rows(x, weight, bias, out):" in source
        assert (f"def {kernel}(x, weight, bias, out):" in source
                and f"    if x.shape[0] < 8:\n        {kernel}_rows(x, weight, bias, out)\n"
                    f"    else:\n        {kernel}_groups(x, weight, bias, out)\n" in source)
        assert "for i in prange(40):" in source.split(f"def {kernel}_rows")[1].split("\n\n\n")[0]
    assert "_rows" not in files["out.py"]


@pytest.mark.heavy
def test_both_forms_equal_pytorch_on_either_side_of_the_threshold(torch, tmp_path):
    """float64: the loss and every gradient at batches taking the rows form (1, 3, 7) and the groups form (8, 9),
    the evaluation pass's outputs too; each form on 1 and 2 threads bit for bit; the two forms on one batch equal
    to rounding."""
    net = network_for(DENSE, tmp_path)
    rng = np.random.default_rng(4)
    net.load_params(random_params(net, rng))
    for batch in (1, 3, 7, 8, 9):
        labels = rng.integers(0, 3, batch)
        assert_float64_equals_pytorch(net, rng, labels)
        x = rng.standard_normal((batch, *net.spec.input_shape))
        _, logits, _ = torch_loss_and_grads(net.spec, net.params, x, labels, torch.float64)
        np.testing.assert_allclose(net.forward(x), logits, rtol=1e-12, atol=1e-12)
    for batch in (5, 9):
        assert_same_gradients_on_one_and_two_threads(net, rng.standard_normal((batch, 2, 4, 6)),
                                                     rng.integers(0, 3, batch))
    module = net.kernel("fc_forward").py_func.__globals__
    x = rng.standard_normal((9, 48))
    outputs = {form: np.empty((9, 40)) for form in ("rows", "groups")}
    for form, out in outputs.items():
        module[f"fc_forward_{form}"](x, net.params["fc.weight"], net.params["fc.bias"], out)
    np.testing.assert_allclose(outputs["rows"], outputs["groups"], rtol=1e-13, atol=1e-13)
