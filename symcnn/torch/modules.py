"""A spec as a ``torch.nn.Module``, and a single generated layer for any PyTorch model.

:func:`from_spec` gives a module whose children are the spec's layers by label (``conv1``,
``relu1``, ...), so its parameters carry the names and shapes of :attr:`Network.params`
(``conv1.weight``, ...): its ``state_dict()`` loads into the plain PyTorch twin
(:func:`symcnn.bench.bench.torch_model`) and back. A graph spec's module runs each layer on the
outputs its ``inputs`` name; where several layers read one tensor, autograd sums their gradients.
:func:`layer` gives one layer, specialized to an input shape (``weight`` and ``bias`` as ``nn.Conv2d``
and ``nn.Linear`` name them), checked at call time.

Modes are PyTorch's (``train()``, ``eval()``). A batch norm keeps ``running_mean``, ``running_var`` and
``num_batches_tracked`` as buffers (``nn.BatchNorm2d``'s names): in training mode it normalizes with the
batch's statistics and updates the running ones, in evaluation mode it uses them. A dropout multiplies
by a mask of symcnn's counter-based generator in training mode (the Network's masks: a function of the
seed, the layer, the count of training passes and the element, :attr:`SymcnnNetwork.mask_state`) and
passes its input on in evaluation mode.

Example:
    >>> import torch
    >>> model = from_spec("digits", seed=0)
    >>> [name for name, _ in model.named_parameters()]
    ['conv1.weight', 'conv1.bias', 'fc1.weight', 'fc1.bias']
    >>> model(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 10])
    >>> conv = layer("conv2d", (3, 16, 16), out_channels=8, kernel=3, padding=1)
    >>> conv(torch.zeros(4, 3, 16, 16)).shape
    torch.Size([4, 8, 16, 16])
"""

from __future__ import annotations

import contextlib
import os
from collections import OrderedDict
from typing import Any, Callable, Optional, Union

import numpy as np
import torch

from symcnn import registry
from symcnn.runtime.loader import load_kernels
from symcnn.runtime.network import Network
from symcnn.runtime.threads import kernel_threads
from symcnn.spec import LayerSpec, NetworkSpec, load_spec, parse_spec, spec_toml
from symcnn.torch.operators import (
    LayerOperators,
    draw_mask,
    has_evaluation_kernels,
    layer_operators,
    running_statistics_operator,
)
from symcnn.torch.whole_pass import FastPath

__all__ = ["SymcnnLayer", "SymcnnNetwork", "SymcnnGraph", "MaskGenerator", "from_spec", "layer"]


class MaskGenerator:
    """The dropout generator's state that a module's dropout layers share: ``seed`` and ``step`` (the count
    of training passes so far; the next pass draws the masks of ``step``), as :attr:`Network.mask_state`;
    and ``first_image``, the row of the whole batch this process's inputs start at (data-parallel
    training: each process draws its rows of the whole batch's masks)."""

    def __init__(self, seed: int):
        self.seed, self.step, self.first_image = int(seed) % 2**64, 0, 0

    @property
    def state(self) -> dict:
        return {"seed": self.seed, "step": self.step}

    @state.setter
    def state(self, state) -> None:
        if not isinstance(state, dict) or set(state) != {"seed", "step"} or not all(
                isinstance(state[key], (int, np.integer)) and not isinstance(state[key], (bool, np.bool_))
                and 0 <= state[key] < 2**64 for key in state):
            raise ValueError(f"mask_state: must be {{'seed': s, 'step': t}}, integers in [0, 2**64), got {state!r}")
        self.seed, self.step = int(state["seed"]), int(state["step"])

    def set_first_image(self, first_image) -> None:
        if isinstance(first_image, bool) or not isinstance(first_image, (int, np.integer)) or first_image < 0:
            raise ValueError(f"first_image: must be an integer >= 0 (a row of the whole batch), got {first_image!r}")
        self.first_image = int(first_image)


class _SharedOperator:
    """An operator a module calls, shared by its copies: ``copy.deepcopy(module)`` keeps it (operators are
    registered once per process; a ``custom_op``'s own library handle cannot be copied)."""

    def __init__(self, operator: Callable):
        self.operator = operator

    def __call__(self, *arguments):
        return self.operator(*arguments)

    def __deepcopy__(self, memo) -> "_SharedOperator":
        return self


class SymcnnLayer(torch.nn.Module):
    """One generated layer: its kernels as operators, its parameters (``weight``, ``bias``) as
    ``nn.Parameter`` of PyTorch's shapes, its buffers (a batch norm's running statistics) as buffers. The
    input's shape, dtype and device are checked at every call. ``evaluation``: the operators of its
    evaluation-mode kernels, where it has them; ``masks``: a dropout's generator, whose passes the layer
    counts itself when ``counts_passes`` (a layer on its own; a network counts its own passes)."""

    def __init__(self, operators: LayerOperators, params: dict[str, np.ndarray],
                 buffers: Optional[dict[str, np.ndarray]] = None, evaluation: Optional[LayerOperators] = None,
                 statistics: Optional[Callable] = None, masks: Optional[MaskGenerator] = None,
                 counts_passes: bool = False):
        super().__init__()
        self.operators, self.evaluation = operators, evaluation
        self.statistics = _SharedOperator(statistics) if statistics is not None else None
        self.masks, self.counts_passes = masks, counts_passes
        for role, value in params.items():
            self.register_parameter(role, torch.nn.Parameter(torch.from_numpy(np.array(value))))
        for role, value in (buffers or {}).items():
            self.register_buffer(role, torch.from_numpy(np.array(value)))
        # looked up once: every call reads them
        self._input_count = len(operators.layer.input_shapes)
        self._parameter_names = operators.parameters
        self._evaluation_parameter_names = evaluation.parameters if evaluation is not None else ()
        self._check_training_input = registry.get(operators.layer.kind).check_training_input

    @property
    def spec(self) -> LayerSpec:
        return self.operators.layer

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """The layer's output from its input (an add's or concat's: one tensor per entry of its ``inputs``),
        in the module's mode."""
        if len(inputs) != self._input_count or not all(isinstance(x, torch.Tensor) for x in inputs):
            self._refuse(inputs)
        if self.masks is not None:
            return self._dropout(inputs[0])
        if self.evaluation is not None and not self.training:
            return self.evaluation(*inputs, *(getattr(self, name) for name in self._evaluation_parameter_names))
        check = self._check_training_input
        if self.training and check is not None:
            try:
                check(tuple(inputs[0].shape), self.spec.settings)
            except ValueError as error:
                raise ValueError(f"{self.spec.label}: {error}") from None
        out = self.operators(*inputs, *(getattr(self, role) for role in self._parameter_names))
        if self.training and self.statistics is not None:
            self.statistics(inputs[0].detach(), self.running_mean, self.running_var, self.num_batches_tracked)
        return out

    def _refuse(self, inputs: tuple) -> None:
        if len(inputs) != len(self.spec.input_shapes):
            raise ValueError(f"{self.spec.label}: expected {len(self.spec.input_shapes)} input tensor(s), "
                             f"got {len(inputs)}")
        for name, x in zip(("x", *(f"x{number}" for number in range(2, len(inputs) + 1))), inputs):
            if not isinstance(x, torch.Tensor):
                raise ValueError(f"{self.spec.label}: {name}: expected a tensor, got {type(x).__name__}")

    def _dropout(self, x: torch.Tensor) -> torch.Tensor:
        """The identity in evaluation mode (the input itself, as ``nn.Dropout``); in training mode ``x``
        times the mask of this pass, scaled by 1/(1 - p) (the kernels')."""
        self.operators.check(x)
        if not self.training:
            return x
        generator = self.masks
        drop = self.spec.settings[registry.get(self.spec.kind).mask_drop]
        mask = draw_mask(x, generator.seed, self.spec.index, generator.step, drop, generator.first_image)
        out = self.operators(x, mask)
        if self.counts_passes:
            generator.step += 1
        return out

    @property
    def mask_state(self) -> dict:
        """A dropout layer's generator state ``{"seed": s, "step": t}`` (shared with its network's)."""
        if self.masks is None:
            raise ValueError(f"{self.spec.label}: mask_state: a {self.spec.kind} layer draws no masks")
        return self.masks.state

    @mask_state.setter
    def mask_state(self, state) -> None:
        if self.masks is None:
            raise ValueError(f"{self.spec.label}: mask_state: a {self.spec.kind} layer draws no masks")
        self.masks.state = state

    def extra_repr(self) -> str:
        settings = registry.get(self.spec.kind).settings_text(self.spec.settings)
        shown = " + ".join(str(tuple(shape)) for shape in self.spec.input_shapes)
        shapes = f"{shown} -> {tuple(self.spec.output_shape)}"
        return f"{self.spec.kind}, {settings + ', ' if settings else ''}{shapes}"


def _one_thread_choice():
    """Around a whole forward pass: the kernels' thread count chosen once for all its operators (each
    operator chooses for itself otherwise, :class:`symcnn.runtime.threads.kernel_threads`); nothing under
    torch.compile, which traces the pass (its operators choose when the compiled graph runs)."""
    return contextlib.nullcontext() if torch.compiler.is_compiling() else kernel_threads()


class _Passes:
    """What a whole network's module keeps besides its layers: the dropout generator its dropout layers
    share, and the count of its training passes (one per forward pass in training mode, as the Network
    counts them, dropout layers or not)."""

    masks: MaskGenerator

    @property
    def mask_state(self) -> dict:
        """The dropout generator's state, ``{"seed": s, "step": t}``, as :attr:`Network.mask_state`: the next
        training pass draws the masks of step ``t``, then counts itself. Assigning sets it, checked."""
        return self.masks.state

    @mask_state.setter
    def mask_state(self, state) -> None:
        self.masks.state = state

    @property
    def first_image(self) -> int:
        """The row of the whole batch at which this process's inputs start (0 unless training data-parallel:
        then rank × the batch per process), so that each process's dropout masks are its rows of the
        whole batch's masks: the processes together multiply by the masks one process would."""
        return self.masks.first_image

    @first_image.setter
    def first_image(self, first_image) -> None:
        self.masks.set_first_image(first_image)

    def _count(self, out: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.masks.step += 1
        return out


class SymcnnNetwork(_Passes, torch.nn.Sequential):
    """A spec's layers in order, each a :class:`SymcnnLayer` named by its label. The logits are its
    output (the loss is PyTorch's: ``torch.nn.functional.cross_entropy``)."""

    def __init__(self, spec: NetworkSpec, layers: dict[str, SymcnnLayer], masks: MaskGenerator, kernels):
        super().__init__(OrderedDict(layers))
        self.spec, self.masks = spec, masks
        self._fast_path = FastPath(self, kernels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self._fast_path.run(self, x)
        if logits is not None:
            return self._count(logits)
        with _one_thread_choice():
            return self._count(super().forward(x))


class SymcnnGraph(_Passes, torch.nn.Module):
    """A graph spec's layers, each a :class:`SymcnnLayer` named by its label, run in the spec's order on the
    outputs its ``inputs`` name. A tensor that several layers read gets the sum of their gradients from
    autograd (the Network sums them with its generated ``fanout_`` kernels). The logits are its output."""

    def __init__(self, spec: NetworkSpec, layers: dict[str, SymcnnLayer], masks: MaskGenerator, kernels):
        super().__init__()
        for label, module in layers.items():
            self.add_module(label, module)
        self.spec, self.masks = spec, masks
        self._fast_path = FastPath(self, kernels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self._fast_path.run(self, x)
        if logits is not None:
            return self._count(logits)
        values = {"input": x}
        with _one_thread_choice():
            for layer in self.spec.layers:
                values[layer.label] = getattr(self, layer.label)(*(values[source] for source in layer.inputs))
        return self._count(values[self.spec.layers[-1].label])


def _by_role(arrays: dict[str, np.ndarray], names) -> dict[str, np.ndarray]:
    """``conv1.weight`` -> ``weight``: a layer's arrays by role, as its module names them."""
    return {name.rsplit(".", 1)[1]: arrays[name] for name in names}


def _layer_module(net: Network, layer: LayerSpec, masks: MaskGenerator, counts_passes: bool) -> SymcnnLayer:
    """``layer`` of ``net`` as a module, with ``net``'s initial parameters and buffers."""
    buffers = layer.buffer_shapes()
    return SymcnnLayer(
        layer_operators(net, layer), _by_role(net.params, layer.parameter_shapes()),
        _by_role(net.buffers, buffers),
        evaluation=layer_operators(net, layer, evaluation=True) if has_evaluation_kernels(net, layer) else None,
        statistics=running_statistics_operator(net, layer) if buffers else None,
        masks=masks if registry.get(layer.kind).mask_drop is not None else None, counts_passes=counts_passes)


def from_spec(spec: Union[str, os.PathLike, NetworkSpec], dtype: str = "float32",
              seed: int = 0) -> Union[SymcnnNetwork, SymcnnGraph]:
    """The spec (a shipped name, a ``.toml`` path or a :class:`NetworkSpec`) as an ``nn.Module`` whose
    initial parameters are ``Network.from_spec(spec, dtype, seed).params``; ``.double()`` and ``.float()``
    switch its dtype as for any module. A :class:`SymcnnNetwork` (an ``nn.Sequential``) for a sequential
    spec, a :class:`SymcnnGraph` for a graph spec. Its buffers start as the Network's (PyTorch's initial
    running statistics), its dropout masks from ``seed`` as the Network's."""
    loaded = spec if isinstance(spec, NetworkSpec) else load_spec(spec)
    net = Network(loaded, load_kernels(loaded), dtype=dtype, seed=seed)
    masks = MaskGenerator(seed)
    layers = {layer.label: _layer_module(net, layer, masks, counts_passes=False) for layer in loaded.layers}
    return (SymcnnNetwork if loaded.sequential else SymcnnGraph)(loaded, layers, masks, net.kernels)


def _flat_output(kind: str, input_shape: tuple, settings: dict) -> bool:
    """Whether the layer's output is a vector (else a flatten follows it in the one-layer spec). Settings
    it cannot read are reported by the spec's validation, with the spec's message."""
    op = registry.get(kind)
    try:
        return len(op.output_shape(tuple(input_shape), op.settings_of(settings))) == 1
    except (ValueError, TypeError, KeyError):
        return len(input_shape) == 1


def layer(kind: str, input_shape: tuple[int, ...], dtype: str = "float32", seed: int = 0,
          **settings: Any) -> SymcnnLayer:
    """One layer of ``kind`` with the spec ``settings`` (``out_channels=16, kernel=3, ...``), specialized
    to inputs of shape ``(N, *input_shape)``: ``(C, H, W)``, or ``(features,)`` for a flat input.

    Its kernels come from a one-layer spec (the layer, then the flatten and dense layer that a spec must
    end in, whose kernels go unused), generated once and cached like any spec's."""
    if not isinstance(kind, str) or kind not in registry.names(layer=True):
        raise ValueError(f"kind: must be one of {', '.join(registry.names(layer=True))}, got {kind!r}")
    if registry.get(kind).merges:
        raise ValueError(f"kind: {kind} joins several layers' outputs; it is no single layer (write a graph spec "
                         "and use from_spec)")
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) not in (1, 3):
        raise ValueError(f"input_shape: must be (C, H, W) or (features,), got {input_shape!r}")
    table = {"type": kind, **({"name": "layer"} if registry.get(kind).parameterized else {}), **settings}
    flat = len(input_shape) == 1
    layers = ([{"type": "flatten"}] if flat else []) + [table]
    if not _flat_output(kind, input_shape, settings):
        layers.append({"type": "flatten"})
    layers.append({"type": "dense", "name": "tail", "out_features": 1})
    spec = parse_spec(spec_toml({"name": f"torch-{kind.replace('_', '-')}",
                                 "input": [input_shape[0], 1, 1] if flat else list(input_shape), "layers": layers}))
    position = 1 if flat else 0
    net = Network(spec, load_kernels(spec), dtype=dtype, seed=seed)
    return _layer_module(net, spec.layers[position], MaskGenerator(seed), counts_passes=True)
