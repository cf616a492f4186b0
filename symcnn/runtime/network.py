"""Run a network on its generated kernels: forward, loss and gradients, SGD steps.

This module never imports SymPy. It runs a spec's generated kernel package (found, checked
against the spec and imported by :mod:`symcnn.runtime.loader`), and validates every array at the
boundary: numba does not bounds-check, so an unchecked array would be memory corruption, not an
error.

Example:
    >>> import numpy as np
    >>> net = Network.from_spec("digits", seed=0)
    >>> x = np.zeros((2, 1, 8, 8), dtype=np.float32)
    >>> net.forward(x).shape
    (2, 10)
"""

from __future__ import annotations

import importlib
import os
import time
from typing import Callable, Optional, Union

import numpy as np

from symcnn import registry
from symcnn.runtime.buffers import counter_names, initial_buffers, switch_dtype, update_running_statistics
from symcnn.runtime.compiling import CompileSummary, first_call, prepare
from symcnn.runtime.evaluation import folded_forward, forward_fusions, trainable_fusions
from symcnn.runtime.fanouts import gradient_sum
from symcnn.runtime.gradient_flow import tensors_needing_gradients
from symcnn.runtime.layout import LayerGradients, arguments_getter
from symcnn.runtime.loader import load_kernels
from symcnn.runtime.progress import CompileProgress
from symcnn.runtime.state import LayerState, describe_array, loss_targets
from symcnn.runtime.threads import kernel_threads
from symcnn.spec import LayerSpec, NetworkSpec, load_spec
from symcnn.train_config import TrainConfig
# The training layer sits below the runtime (it names Network only in annotations), so
# Network.fit, a convenience over the Trainer, imports it here, one way.
from symcnn.training.data import Dataset, load_data
from symcnn.training.optimizers import sgd_step
from symcnn.training.trainer import Trainer

__all__ = ["Network", "switch_dtype"]

DTYPES = {"float32": np.float32, "float64": np.float64}

BACKWARD = "backward"  # <label>_backward: all of a layer's gradients in one kernel (symcnn.codegen.backward)
# <kernel>_saving keeps a training forward pass's statistics, <label>_backward_saved reads them
# (symcnn.codegen.saved_statistics)
SAVING, SAVED = "saving", "saved"


class Network(LayerState):
    """A network of generated kernels, with its parameters by PyTorch name.

    ``params`` maps ``conv1.weight``, ``conv1.bias``, ... to arrays in PyTorch's shapes,
    He-initialized from ``seed`` (biases zero; a normalization's weight one). ``buffers`` holds what
    layers keep besides (batch norm's ``bn1.running_mean``, ``bn1.running_var`` and
    ``bn1.num_batches_tracked``, as PyTorch's ``state_dict`` names them). A Network reuses internal
    arrays between calls (the arrays it returns are its callers' own), so one Network serves one
    thread at a time.

    Modes, as a PyTorch module's: a Network starts in training mode (``training`` is True);
    :meth:`eval` and :meth:`train` switch it and return it, and every pass runs in the network's mode
    unless its ``training`` argument says otherwise. In training mode batch norm normalizes with the
    batch's statistics and updates its running ones, and each dropout layer multiplies by a mask drawn
    from ``seed`` by a counter-based generator (:mod:`symcnn.runtime.masks`) and the count of training
    passes so far, :attr:`mask_state`; in evaluation mode batch norm uses its running statistics and
    dropout passes its input on.

    A pass with gradients runs the forward fusions whose skipped output no gradient reads (a convolution's
    kernel storing the ReLU after it, :mod:`symcnn.runtime.evaluation`); set :attr:`fuse_with_gradients`
    to False to run every layer's own forward kernel there, each layer's output an array of its own.
    """

    def __init__(self, spec: NetworkSpec, kernels, dtype: str = "float32", seed: int = 0):
        if not isinstance(spec, NetworkSpec):
            raise ValueError(f"spec: must be a NetworkSpec (Network.from_spec takes a name or a path), "
                             f"got {type(spec).__name__}")
        if not (hasattr(kernels, "MODULES") and hasattr(kernels, "ARGUMENTS")):
            raise ValueError("kernels: must be a generated kernel package (load_kernels), "
                             f"got {type(kernels).__name__}")
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise ValueError(f"dtype: must be one of {', '.join(DTYPES)}, got {dtype!r}")
        if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed: must be an integer >= 0, got {seed!r}")
        self.spec = spec
        self.kernels = kernels
        self.dtype = np.dtype(DTYPES[dtype])
        self._parameter_shapes = spec.parameter_shapes()  # checked before every pass
        self.params = self._initial_params(seed)
        self._buffer_shapes = spec.buffer_shapes()
        self._counters = counter_names(spec)
        self.buffers = initial_buffers(spec, self.dtype)
        self.training = True
        # Layers with a drawn mask (dropout), by label: the identity in evaluation mode.
        self._masked = {layer.label for layer in spec.layers if registry.get(layer.kind).mask_drop is not None}
        self._input_checks = [(layer, registry.get(layer.kind).check_training_input) for layer in spec.layers
                              if registry.get(layer.kind).check_training_input is not None]  # a training pass's
        self._buffered = {layer.label for layer in spec.layers if layer.buffer_shapes()}  # batch norm's running ones
        self.mask_state = {"seed": int(seed) % 2**64, "step": 0}
        self.input_stats = (0.0, 1.0)  # (mean, std) the inputs were standardized with in training
        self.profile: Optional[dict] = None  # set to {} to accumulate seconds per kernel
        self._functions = {}
        # Kernels that only reshape an argument (flatten) -> that argument: run as views, not called.
        # Packages generated before RESHAPES existed have none.
        self.reshapes: dict[str, str] = dict(getattr(kernels, "RESHAPES", {}))
        # An element-wise layer's input gradient stored by the kernel of the one layer that reads it
        # (the package's FUSED): that layer's label -> (the element-wise layer, the kernel); the
        # element-wise layer's own gradient kernel is not run. Packages made before FUSED have none.
        layers = {layer.label: layer for layer in spec.layers}
        self._fused = {reader: (layers[elementwise], kernel)
                       for elementwise, (reader, kernel) in getattr(kernels, "FUSED", {}).items()}
        self._fused_into = {elementwise.label for elementwise, _ in self._fused.values()}
        self._fanout_fused = set(getattr(kernels, "FANOUT_FUSED", {}))  # or by its fan-out's sum (runtime.fanouts)
        # input_gradient -> the tensors whose gradient a backward pass needs (none before the first parameters)
        self._needing_gradients = {wanted: tensors_needing_gradients(spec, wanted) for wanted in (False, True)}
        self._progress = CompileProgress(f"the {spec.name} kernels for {self.dtype}",  # shown while compiling
                                         label=f"{spec.name} ({self.dtype})")
        self._prepared: set[tuple] = set()  # the kinds of pass whose kernels are compiled (_prepare)
        self._called: dict[str, Callable] = {}  # kernel called before -> the getter of its arguments
        self._gradients = {layer.index: LayerGradients.of(layer, self._parameter_shapes) for layer in spec.layers}
        # Activations and input gradients, reused from call to call at the same batch size: a
        # fresh multi-megabyte array costs a page fault per 4 KiB on first touch, more than some of
        # the kernels that fill it. Only arrays that never leave the Network are kept here.
        self._workspace: dict[tuple, np.ndarray] = {}
        self._array_names: dict[int, tuple] = {}  # per layer index: its parameters' and buffers' (role, name)
        self._kernel_names: dict[tuple, str] = {}  # (layer index, what, mode) -> kernel
        # Evaluation mode's folds, by the label of the layer a normalization folds into: (the
        # normalization, its scale and shift kernels, the layer's folded kernel). Older packages have none.
        self._folds = {producer: (layers[norm], *kernel_names)
                       for norm, (producer, *kernel_names) in getattr(kernels, "FOLDS", {}).items()}
        self._forward_fused = forward_fusions(kernels, layers)  # evaluation passes' (FORWARD_FUSED)
        self._trainable = trainable_fusions(kernels, layers, self._forward_fused)  # by mode: training or not
        self.fuse_with_gradients = True
        self._shapes = {"input": spec.input_shape, **{layer.label: layer.output_shape for layer in spec.layers}}
        for module_name in kernels.MODULES:
            module = importlib.import_module(f"{kernels.__name__}.{module_name}")
            for kernel_name in kernels.ARGUMENTS:
                if kernel_name.startswith(f"{module_name}_") and hasattr(module, kernel_name):
                    self._functions[kernel_name] = getattr(module, kernel_name)
        for alias, original in getattr(kernels, "ALIASES", {}).items():  # identical layers: one kernel
            self._functions[alias] = self._functions[original]

    @classmethod
    def from_spec(cls, spec: Union[str, os.PathLike], dtype: str = "float32", seed: int = 0) -> "Network":
        """A shipped spec by name (``"seed004"``) or a path to a ``.toml`` spec file.

        The file is read once: kernels it lacks are generated from the text read, so a file that
        changes meanwhile cannot give kernels of other shapes than the spec's.
        """
        loaded = load_spec(spec)
        return cls(loaded, load_kernels(loaded), dtype=dtype, seed=seed)

    def _check_input(self, x) -> int:
        if not isinstance(x, np.ndarray) or x.ndim != 4 or x.shape[0] < 1:
            raise ValueError(f"x: expected a C-contiguous {self.dtype} array of shape "
                             f"(N, {', '.join(map(str, self.spec.input_shape))}), got {describe_array(x)}")
        self._check_array(x, "x", (x.shape[0], *self.spec.input_shape))
        if not self._all_finite(x):  # refused, not propagated: one NaN image would poison every parameter
            raise ValueError("x: holds NaN or infinite values")
        return x.shape[0]

    def _targets(self, labels, batch: int, label_smoothing: float = 0.0) -> np.ndarray:
        return loss_targets(labels, batch, self.spec.classes, self.dtype, label_smoothing)

    # --- passes ---------------------------------------------------------------------------

    def kernel(self, kernel_name: str):
        """The generated function ``kernel_name`` (``conv1_forward``, ...; a layer identical to an earlier
        one shares its kernel). Its arguments are ``kernels.ARGUMENTS[kernel_name]``; the caller checks
        every array's shape, dtype and layout (numba does not bounds-check)."""
        if kernel_name not in self._functions:
            raise ValueError(f"kernel: {self.spec.name} has no kernel {kernel_name!r}")
        return self._functions[kernel_name]

    def _call(self, kernel_name: str, arrays: dict):
        arguments_of = self._called.get(kernel_name)
        if arguments_of is not None and self.profile is None:  # the common case, kept cheap (batch 1: it shows)
            return self._functions[kernel_name](*arguments_of(arrays))  # (_functions: a test may swap one)
        names = self.kernels.ARGUMENTS[kernel_name]
        source = self.reshapes.get(kernel_name)
        if source is not None:  # a flatten: the output is a view of the argument, no copy
            arrays[names[-1]] = arrays[source].reshape(arrays[names[-1]].shape)
            return None
        arguments = [arrays[name] for name in names]
        function = self._functions[kernel_name]
        if self.profile is not None:  # seconds per kernel, for symcnn bench --profile
            start = time.perf_counter()
            result = function(*arguments)
            self.profile[kernel_name] = self.profile.get(kernel_name, 0.0) + time.perf_counter() - start
            return result
        first = kernel_name not in self._called
        self._called[kernel_name] = arguments_getter(names)
        if first and not function.signatures:  # not compiled by _prepare (a pass run directly): compiles or loads
            return first_call(self, kernel_name, function, arguments)
        return function(*arguments)

    def _prepare(self, key: tuple, *runs) -> Optional[CompileSummary]:
        """Before the first pass of a kind (``key``): compile the kernels that ``runs`` (passes, each a
        function of a network) call, in worker processes when several compile, or load them from numba's
        cache, with a progress display (:mod:`symcnn.runtime.compiling`)."""
        if key in self._prepared:
            return None
        summary = prepare(self, list(runs), self._progress.session)
        if summary is not None:  # None: a dry run refused its arguments, and the pass will say why
            self._prepared.add(key)
        return summary

    def compile(self) -> CompileSummary:
        """Compile every kernel of this network's passes now (training and evaluation mode, the input's
        gradient too) into numba's cache, in worker processes, or load them from there; what it did."""
        x = np.zeros((2, *self.spec.input_shape), dtype=self.dtype)
        targets = self._targets(np.zeros(2, dtype=np.int64), 2)
        passes = [lambda net, mode=mode: net._loss_and_grads(x, targets, True, mode) for mode in (True, False)]
        passes.append(lambda net: net._forward(x, False, fold=True))  # inference: the folds
        return prepare(self, passes, self._progress.session) or CompileSummary()

    def _buffer(self, purpose: str, shape: tuple, dtype) -> np.ndarray:
        """A reusable internal array for ``purpose`` (``conv1.out``, ...) of this shape and dtype."""
        key = (purpose, shape, np.dtype(dtype))
        array = self._workspace.get(key)
        if array is None:
            if len(self._workspace) > 8 * len(self.spec.layers) + 64:  # many batch sizes (an evaluation's last
                # batch, ...): start over
                self._workspace.clear()
            array = self._workspace[key] = np.empty(shape, dtype=dtype)
        return array

    def _layer_arrays(self, layer: LayerSpec) -> dict:
        """The layer's parameters and buffers by role (``weight``, ``bias``, ``running_mean``, ...)."""
        names = self._array_names.get(layer.index)
        if names is None:  # worked out once per layer: a pass reads them for every layer (batch 1: it shows)
            names = self._array_names[layer.index] = (
                *((role, name, False) for role, name, _ in self._gradients[layer.index].parameters),
                *((name.rsplit(".", 1)[1], name, True) for name in layer.buffer_shapes()))  # read by eval kernels
        params, buffers = self._params, self._buffers
        return {role: buffers[name] if is_buffer else params[name] for role, name, is_buffer in names}

    def _kernel(self, layer: LayerSpec, what: str, training: bool) -> str:
        """The kernel of ``layer`` for ``what`` (``forward``, ``grad_input``, ...) in the mode: its
        evaluation-mode kernel where it has one (``bn1_eval_forward``)."""
        key = (layer.index, what, training)
        kernel = self._kernel_names.get(key)
        if kernel is None:
            evaluation = f"{layer.label}_eval_{what}"
            kernel = self._kernel_names[key] = (evaluation if not training and evaluation in self.kernels.ARGUMENTS
                                                else f"{layer.label}_{what}")
        return kernel

    def _forward(self, x: np.ndarray, training: bool, fold: bool = False):
        """The logits, every tensor by label (``"input"``: ``x``; each layer's output that is written), and what the
        backward pass reads besides (by layer label: ``{"switch": ...}`` of a max pool, ``{"mask": ...}``
        of a dropout). A training pass draws its masks at the current step, then counts itself. With
        ``fold``, an evaluation pass runs each of the package's folds (``FOLDS``) and forward fusions
        (``FORWARD_FUSED``: an element-wise layer's output stored by the kernel of the layer before it) as
        one kernel (the outputs of the layers folded or fused into a later layer's kernel are not computed;
        :mod:`symcnn.runtime.evaluation`); otherwise the fusions whose skipped outputs no gradient reads."""
        batch = x.shape[0]
        folds, fused = ((self._folds, self._forward_fused) if fold and not training
                        else ({}, self._trainable[training] if self.fuse_with_gradients else {}))
        values, saved = {"input": x}, {}
        ahead: set[str] = set()  # layers whose output a kernel before theirs computes (a fold, a forward fusion)
        step = self._mask_state["step"]
        for layer, check in self._input_checks if training else ():
            try:
                check((batch, *layer.input_shape), layer.settings)
            except ValueError as error:
                raise ValueError(f"{layer.label}: {error}") from None
        for layer in self.spec.layers:
            if layer.label in ahead:
                continue
            sources = [values[source] for source in layer.inputs]
            value = sources[0]
            if layer.label in folds:  # the normalization after it in its kernel (and an element-wise layer after that)
                norm = folds[layer.label][0]
                output, out = folded_forward(self, layer, value, folds[layer.label], fused.get(norm.label))
                values[output.label] = out
                ahead |= {norm.label, output.label}
                continue
            if layer.label in self._masked and not training:  # the identity: the input passed on, not copied
                values[layer.label] = value
                continue
            arrays = self._layer_arrays(layer)
            arrays.update(zip(self._gradients[layer.index].input_arrays, sources))  # x, and an add's x2, ...
            if layer.label in self._masked:
                arrays["mask"] = self._buffer(f"{layer.label}.mask", value.shape, self.dtype)
                self._draw(layer, arrays["mask"], step)
                saved[layer.label] = {"mask": arrays["mask"]}
            output, kernel = fused.get(layer.label) or (layer, self._kernel(layer, "forward", training))
            ahead.add(output.label)  # with FORWARD_FUSED, E after it: this layer's kernel stores E's output
            arrays["out"] = self._buffer(f"{output.label}.out", (batch, *output.output_shape), self.dtype)
            kept = self._saving_kernel(kernel) if training else None  # its statistics kept for the backward pass
            if kept is not None:
                kernel, (shape, tracked) = kept, self.kernels.STATISTICS[kept]
                arrays["statistics"] = self._buffer(f"{layer.label}.statistics",
                                                    tuple(batch if extent == "N" else extent for extent in shape),
                                                    self.dtype)
                saved.setdefault(layer.label, {})["statistics"] = arrays["statistics"]
            if "switch" in self.kernels.ARGUMENTS[kernel]:
                arrays["switch"] = self._buffer(
                    f"{layer.label}.switch", (batch, *layer.output_shape), switch_dtype(layer))
                saved[layer.label] = {"switch": arrays["switch"]}
            self._call(kernel, arrays)
            if training and layer.label in self._buffered:  # from the kernel's batch values where it kept them
                update_running_statistics(layer, value, self._buffers, kept and {
                    role: arrays["statistics"][row] for role, row in tracked.items()})
            values[output.label] = arrays["out"]
        if training:
            self._mask_state["step"] = step + 1
        return values[self.spec.layers[-1].label], values, saved

    def forward(self, x: np.ndarray, training: Optional[bool] = None) -> np.ndarray:
        """The class scores (logits) of ``x (N, C, H, W)``, in the network's mode (``training=None``,
        the default) or the one given: in training mode batch norm normalizes with the batch's
        statistics and updates its running ones, and dropout draws new masks (as a PyTorch module's
        forward does)."""
        training = self._mode(training)
        self._check_input(x)
        self._check_params()
        self._prepare(("forward", training), lambda net: net._forward(x[:2], training, fold=True))
        with kernel_threads():  # on the CPUs free now (symcnn.runtime.threads)
            return self._forward(x, training, fold=True)[0].copy()  # the internal buffer is reused by the next call

    def loss_and_grads(self, x: np.ndarray, labels: np.ndarray,
                       label_smoothing: float = 0.0,
                       input_gradient: bool = True,
                       training: Optional[bool] = None) -> tuple[float, dict[str, np.ndarray]]:
        """The batch-mean softmax cross-entropy (against smoothed targets if ``label_smoothing``)
        and its gradient for every parameter and, unless ``input_gradient`` is false (training needs
        none: the first layer's input gradient is skipped), the input; in the network's mode, or the
        one ``training`` gives (see :meth:`forward`): a training pass draws new dropout masks (see
        :meth:`masks`) and the gradients go back through them."""
        if not isinstance(input_gradient, (bool, np.bool_)):
            raise ValueError(f"input_gradient: must be True or False, got {input_gradient!r}")
        training = self._mode(training)
        batch = self._check_input(x)
        targets = self._targets(labels, batch, label_smoothing)
        self._check_params()
        self._prepare(("loss", training, bool(input_gradient)),
                      lambda net: net._loss_and_grads(x[:2], targets[:2], input_gradient, training))
        with kernel_threads():  # on the CPUs free now (symcnn.runtime.threads)
            return self._loss_and_grads(x, targets, input_gradient, training)

    def _loss_and_grads(self, x: np.ndarray, targets: np.ndarray, input_gradient: bool, training: bool):
        """:meth:`loss_and_grads` on arguments already checked."""
        logits, values, saved = self._forward(x, training)
        loss = float(self._call("loss_forward", {"x": logits, "targets": targets}))
        upstream = self._buffer("loss.grad_input", logits.shape, self.dtype)
        self._call("loss_grad_input", {"x": logits, "targets": targets, "grad_input": upstream})
        grads = self._backward(values, saved, upstream, input_gradient, training)
        if input_gradient:
            grads["input"] = grads["input"].copy()  # the buffers are reused
        return loss, grads

    def _backward(self, values: dict, saved: dict, upstream: np.ndarray, input_gradient: bool, training: bool,
                  parameters: Optional[set] = None) -> dict[str, np.ndarray]:
        """The gradients of every parameter (of those named in ``parameters``, when given) and, with
        ``input_gradient``, of the input (``"input"``: an internal array), from the logits' gradient
        ``upstream``; ``values`` and ``saved`` are :meth:`_forward`'s."""
        grads: dict[str, np.ndarray] = {}
        # The gradients each tensor's readers send back, by label: summed where several read it.
        sent: dict[str, list[np.ndarray]] = {self.spec.layers[-1].label: [upstream]}
        needed = self._needing_gradients[bool(input_gradient)]
        for layer in reversed(self.spec.layers):
            if layer.label in self._fused_into:  # its input gradient is its reader's kernel's (FUSED)
                continue
            if layer.label not in needed:  # no parameter before it (a flatten before the first dense layer)
                continue
            gradients = sent.pop(layer.label)
            if len(gradients) > 1 and layer.label in self._fanout_fused:  # its fan-out's sum stores its dL/dX
                fused = {"fused_x": values.get(layer.inputs[0]), "fused_out": values.get(layer.label)}
                sent.setdefault(layer.inputs[0], []).append(gradient_sum(self, layer.label, gradients, fused))
                continue
            upstream = gradient_sum(self, layer.label, gradients)
            if layer.label in self._masked and not training:  # the identity in evaluation mode: passed on
                sent.setdefault(layer.inputs[0], []).append(upstream)
                continue
            arrays, names = self._layer_arrays(layer), self._gradients[layer.index]
            # A layer whose forward pass a trainable fusion skipped has no output: no gradient kernel reads it
            arrays.update(zip(names.input_arrays, (values.get(source) for source in layer.inputs)))
            arrays["grad_output"], arrays["out"] = upstream, values.get(layer.label)  # out: tanh's 1 - Y^2 reads it
            arrays.update(saved.get(layer.label, {}))
            together = self._backward_kernel(layer, arrays, training, needed, parameters)
            both = None if together else self._weight_and_bias_kernel(layer, training, parameters)
            for role, name, gradient_name in names.parameters:
                if parameters is None or name in parameters:
                    arrays[gradient_name] = gradient = self._gradient_array(arrays[role])
                    if together is None and both is None:
                        self._call(self._kernel(layer, gradient_name, training), arrays)
                    grads[name] = gradient
            if both is not None:  # the bias's gradient summed from the weight gradient's copies of dL/dY
                self._call(both, arrays)
            for name, source, purpose in names.inputs:
                if source not in needed:  # the input's in training, or a layer's with no parameter before it
                    continue
                kernel = self._kernel(layer, name, training)
                if layer.label in self._fused:  # the gradient of the element-wise layer before it, in one pass
                    elementwise, kernel = self._fused[layer.label]
                    source = elementwise.inputs[0]
                    arrays["fused_x"], arrays["fused_out"] = values.get(source), values[elementwise.label]
                arrays[name] = self._buffer(purpose, (len(upstream), *self._shapes[source]), self.dtype)
                if together is None:
                    self._call(kernel, arrays)
                sent.setdefault(source, []).append(arrays[name])
            if together is not None:  # every gradient of the layer, its statistics computed once
                self._call(together, arrays)
        if input_gradient:
            grads["input"] = gradient_sum(self, "input", sent["input"])
        return grads

    def _backward_kernel(self, layer: LayerSpec, arrays: dict, training: bool, needed: frozenset,
                         parameters: Optional[set]) -> Optional[str]:
        """``<label>_backward`` (or ``_eval_backward``): all of the layer's gradients at once, where the package
        has it (they read the same statistics), this pass needs all (its input's among the tensors ``needed``)
        and no ``FUSED`` kernel stores its input gradient; else ``None`` (each gradient's own kernel)."""
        kernel = self._kernel(layer, "forward", training).removesuffix("forward") + BACKWARD
        if "statistics" in arrays and f"{kernel}_{SAVED}" in self.kernels.ARGUMENTS:  # its forward pass's, kept
            kernel = f"{kernel}_{SAVED}"
        if (kernel not in self.kernels.ARGUMENTS or layer.label in self._fused
                or any(source not in needed for source in layer.inputs)):
            return None
        wanted = parameters is None or all(f"{layer.name}.{role}" in parameters for role in ("weight", "bias")
                                           if role in arrays)
        return kernel if wanted else None

    def _saving_kernel(self, kernel: str) -> Optional[str]:
        """``<kernel>_saving``, the forward kernel that keeps its statistics for ``<label>_backward_saved``, where the
        package has it (:mod:`symcnn.codegen.saved_statistics`), else None."""
        saving = f"{kernel}_{SAVING}"
        return saving if saving in getattr(self.kernels, "STATISTICS", {}) else None

    def _weight_and_bias_kernel(self, layer: LayerSpec, training: bool, parameters: Optional[set]) -> Optional[str]:
        """``<label>_grad_weight_and_bias`` where the package has it and this pass needs both gradients, else None."""
        kernel = self._kernel(layer, "grad_weight_and_bias", training)
        wanted = parameters is None or {f"{layer.name}.weight", f"{layer.name}.bias"} <= parameters
        return kernel if wanted and kernel in self.kernels.ARGUMENTS else None

    def _gradient_array(self, parameter: np.ndarray) -> np.ndarray:
        """A new array for a parameter's gradient: the caller's own (returned, scaled in place by an update)."""
        return np.empty_like(parameter)

    def summary(self, batch: int = 1):
        """The network's :func:`symcnn.network_summary.summary` in its dtype: shapes, parameters,
        multiply-accumulates, activation memory, receptive fields (``print(net.summary())``)."""
        from symcnn.network_summary import summary

        return summary(self.spec, batch=batch, dtype=self.dtype.name)

    def fit(self, data="digits", epochs: Optional[int] = None, batch: Optional[int] = None,
            lr: Optional[float] = None, momentum: Optional[float] = None, weight_decay: Optional[float] = None,
            seed: int = 0, schedule: Optional[str] = None, warmup: Optional[float] = None,
            label_smoothing: Optional[float] = None, checkpoint=None, progress: bool = True, *,
            optimizer: Optional[str] = None, nesterov: Optional[bool] = None, beta1: Optional[float] = None,
            beta2: Optional[float] = None, eps: Optional[float] = None, step_size: Optional[int] = None,
            gamma: Optional[float] = None) -> list[dict]:
        """Train with minibatch SGD, Adam or AdamW (see :mod:`symcnn.training.trainer`); returns one dict per epoch.

        A setting left ``None`` is the spec's recommended one (its ``[training]`` table), else
        :class:`~symcnn.train_config.TrainConfig`'s default (there: what each setting means). ``data`` is
        ``"digits"``, a path to an ``.npz``, or a :class:`symcnn.training.data.Dataset`. Inputs are
        standardized by the training set's mean and standard deviation, kept in ``self.input_stats``
        for later predictions: ``forward((x - mean) / std)``.
        """
        config = TrainConfig.resolve(self.spec.training, epochs=epochs, batch=batch, lr=lr, momentum=momentum,
                                     weight_decay=weight_decay, seed=seed, schedule=schedule, warmup=warmup,
                                     label_smoothing=label_smoothing, optimizer=optimizer, nesterov=nesterov,
                                     beta1=beta1, beta2=beta2, eps=eps, step_size=step_size, gamma=gamma)
        if not isinstance(data, Dataset):
            data = load_data(str(data), self.spec.input_shape, self.spec.classes)
        data = data.standardized()
        trainer = Trainer(self, config)
        history = trainer.fit(data, progress=progress, checkpoint=checkpoint)
        self.input_stats = (data.mean, data.std)
        return history

    def train_step(self, x: np.ndarray, labels: np.ndarray, lr: float = 0.01) -> float:
        """One step of plain SGD (a training pass, :meth:`loss_and_grads`); returns the loss before the step."""
        if (isinstance(lr, (bool, np.bool_)) or not isinstance(lr, (int, float, np.integer, np.floating))
                or not np.isfinite(lr) or lr <= 0):
            raise ValueError(f"lr: must be a positive number, got {lr!r}")
        with kernel_threads():  # one choice of threads for the pass and the update (a large parameter's is parallel)
            loss, grads = self.loss_and_grads(x, labels, input_gradient=False)
            for name, parameter in self.params.items():
                sgd_step(parameter, grads[name], lr)
        return loss

    def optimizer_step(self, optimizer, grads: dict, lr: float) -> None:
        """``optimizer.step`` (:mod:`symcnn.training.optimizers`) of the parameters from ``grads``, on the CPUs
        free now, as the passes: a large parameter's update is a parallel pass."""
        with kernel_threads():
            optimizer.step(self.params, grads, lr)
