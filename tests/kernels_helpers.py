"""Helpers for the generated-kernel tests: small specs as TOML, PyTorch twins of networks."""

from __future__ import annotations

import fcntl
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from symcnn.bench.bench import torch_model
from symcnn.codegen.package import generate
from symcnn.runtime.loader import cache_entry
from symcnn.runtime.network import Network
from symcnn.spec import LayerSpec, NetworkSpec, load_spec, spec_toml


#: Marks a test that compiles a spec's kernels with numba (20-50 s each in a fresh environment): left out of
#: the default run, run by `pytest -m slow` (pyproject.toml).
COMPILES_KERNELS = pytest.mark.slow


def layer_labelled(spec: NetworkSpec, label: str) -> LayerSpec:
    """The layer of ``spec`` labelled ``label``."""
    return next(layer for layer in spec.layers if layer.label == label)


def conv_layer(name: str, channels: int, **settings) -> dict:
    """A spec's 3x3 convolution of padding 1 (``settings`` add to it or replace its own)."""
    return {"type": "conv2d", "name": name, "out_channels": channels, "kernel": 3, "padding": 1, **settings}


def toml_of(spec: dict) -> str:
    """A spec dict as TOML text (symcnn.spec.spec_toml)."""
    return spec_toml(spec)


def network_for(spec: dict, directory: Path, dtype: str = "float64", seed: int = 0) -> Network:
    """Write ``spec`` as TOML, generate its kernels in this process into the runtime's cache unless
    they are there, and load the network from the file as a user would.

    The cache entry is named by the spec's and the generator's digests, and the loader checks the
    package against the spec, so a package already there is this spec's. Generating it again would cost
    seconds and rewrite its files, which makes numba's cache of them stale for every other process: the
    test session's workers share the cache (tests/conftest.py), so one generates while the others wait."""
    path = Path(directory) / f"{spec['name']}.toml"
    path.write_text(toml_of(spec), encoding="utf-8")
    loaded = load_spec(path)
    entry = cache_entry(loaded)
    with _locked(entry.parent / f"{entry.name}.lock"):
        if not (entry / loaded.module_name / "__init__.py").is_file():
            generate([str(path)], entry)
    return Network.from_spec(path, dtype=dtype, seed=seed)


@contextmanager
def _locked(path: Path):
    """Hold an exclusive lock on the file ``path`` (made if missing) for the block, across processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def random_params(net: Network, rng) -> dict:
    return {name: rng.standard_normal(value.shape) * 0.5 for name, value in net.params.items()}


def torch_loss_and_grads(spec: NetworkSpec, params: dict, x: np.ndarray, labels: np.ndarray, torch_dtype,
                         masks=None):
    """The same network in PyTorch (symcnn.bench.bench.torch_model, weights copied by name): loss, logits,
    and every gradient, the input's included; dropout with symcnn's ``masks`` (by layer label), if given."""
    import torch
    import torch.nn.functional as F

    model = torch_model(spec, params, masks=masks).to(torch_dtype)
    tx = torch.tensor(x, dtype=torch_dtype, requires_grad=True)
    logits = model(tx)
    loss = F.cross_entropy(logits, torch.tensor(labels))
    loss.backward()
    parameters = dict(model.named_parameters())  # named as Network.params (children named by layer label)
    grads = {name: parameters[name].grad.numpy() for name in params}
    grads["input"] = tx.grad.numpy()
    return loss.item(), logits.detach().numpy(), grads


def assert_float64_equals_pytorch(net: Network, rng, labels: np.ndarray) -> None:
    """A float64 network's loss and every gradient (the input's included) on a random batch of
    ``len(labels)`` images, drawn from ``rng``, equal to PyTorch's to 1e-9 relative."""
    import torch

    x = rng.standard_normal((len(labels), *net.spec.input_shape))
    loss, grads = net.loss_and_grads(x, labels)
    expected_loss, _, expected = torch_loss_and_grads(net.spec, net.params, x, labels, torch.float64)
    assert loss == pytest.approx(expected_loss, rel=1e-10)
    for key, value in expected.items():
        np.testing.assert_allclose(grads[key], value, rtol=1e-9, atol=1e-12, err_msg=key)


def assert_central_differences(net: Network, x: np.ndarray, labels: np.ndarray, rng, step: float, samples: int,
                               rel: float, abs: float) -> None:
    """Each gradient of ``net.loss_and_grads`` at ``samples`` random coordinates of every parameter and of
    the input equals the central difference (L(v + step) - L(v - step)) / (2 step): error O(step^2),
    rounding O(1e-16 / step)."""
    import pytest

    _, grads = net.loss_and_grads(x, labels)
    arrays = dict(net.params, input=x)
    for key, array in arrays.items():
        for _ in range(samples):
            index = tuple(rng.integers(0, size) for size in array.shape)
            original = array[index]
            array[index] = original + step
            upper = net.loss_and_grads(x, labels)[0]
            array[index] = original - step
            lower = net.loss_and_grads(x, labels)[0]
            array[index] = original
            numeric = (upper - lower) / (2 * step)
            assert grads[key][index] == pytest.approx(numeric, rel=rel, abs=abs), (key, index)


def assert_same_gradients_on_one_and_two_threads(net: Network, x: np.ndarray, labels: np.ndarray) -> None:
    """``net``'s loss gradients with numba on 1 and on 2 threads are equal bit for bit (sums in a fixed
    order, whatever the thread count: a resumed run reproduces an uninterrupted one on any machine)."""
    import numba

    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        _, one = net.loss_and_grads(x, labels)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        _, two = net.loss_and_grads(x, labels)
    finally:
        numba.set_num_threads(before)
    for name in one:
        assert np.array_equal(one[name], two[name]), name
