"""Data-parallel training: symcnn's trainer driving a spec's module under ``DistributedDataParallel``.

``symcnn train SPEC --distributed``, started by ``torchrun``, runs symcnn's own training loop
(:class:`symcnn.training.trainer.Trainer`: the same shuffle, learning-rate schedule, optimizer,
label smoothing, evaluation, checkpoints and resume as ``symcnn train``) in every process, on a
:class:`DataParallelNetwork` in place of the :class:`~symcnn.runtime.network.Network`: every process
draws the same batches (the shuffle's seed is shared), computes its rows of each batch with the
generated kernels inside PyTorch (:func:`symcnn.torch.from_spec`), and DDP averages the gradients
over gloo. The loss of each share is scaled so that the average is the gradient of the whole batch's
mean loss, and each process draws its rows of the whole batch's dropout masks, so that K steps of N
processes equal K steps of one process on the whole batches (to rounding). Batch normalization is
the exception, as PyTorch's ``BatchNorm2d`` under DDP: each process normalizes its share with its
share's statistics, and DDP gives every process rank 0's running statistics before each pass.

Only rank 0 prints, writes checkpoints and plots; every process reads a ``--resume`` checkpoint.

Example (two processes on this machine):
    $ torchrun --standalone --nproc-per-node 2 -m symcnn train digits --distributed
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from symcnn.spec import NetworkSpec
from symcnn.torch.modules import from_spec

__all__ = ["DataParallelNetwork", "start_processes", "share", "ENVIRONMENT"]

#: What torchrun (or any launcher) sets in each process for ``init_process_group("gloo")``.
ENVIRONMENT = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def start_processes() -> tuple[int, int]:
    """Join the process group that the environment describes (gloo, CPU); ``(rank, world size)``. One line
    naming what is missing when the process was not started by torchrun. Each process takes its share of
    the machine's cores (numba's and PyTorch's threads), unless ``NUMBA_NUM_THREADS`` says otherwise."""
    missing = [name for name in ENVIRONMENT if not os.environ.get(name)]
    if missing:
        raise ValueError(f"distributed: {', '.join(missing)} not set: start the processes with torchrun, e.g. "
                         "torchrun --standalone --nproc-per-node 2 -m symcnn train SPEC --distributed")
    if not dist.is_initialized():
        dist.init_process_group("gloo")
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if local > 1 and "NUMBA_NUM_THREADS" not in os.environ:
        import numba

        threads = max(1, numba.config.NUMBA_NUM_THREADS // local)
        numba.set_num_threads(threads)
        torch.set_num_threads(threads)
    return dist.get_rank(), dist.get_world_size()


def share(batch: int, rank: int, world: int) -> slice:
    """The rows of a batch of ``batch`` images that process ``rank`` of ``world`` computes: consecutive,
    sizes differing by at most one.

    >>> [share(10, rank, 3) for rank in range(3)]
    [slice(0, 3, None), slice(3, 6, None), slice(6, 10, None)]
    """
    return slice(rank * batch // world, (rank + 1) * batch // world)


class DataParallelNetwork:
    """What :class:`~symcnn.training.trainer.Trainer` drives (a Network's ``params``, ``buffers``,
    ``loss_and_grads``, ``forward``, modes and ``mask_state``), over ``symcnn.torch.from_spec(spec)`` wrapped
    in ``DistributedDataParallel``. ``params`` and ``buffers`` are NumPy views of the module's tensors: the
    trainer's optimizer updates the module in place. Every call takes the whole batch; this process
    computes its :func:`share` of it. The process group must be started (:func:`start_processes`)."""

    def __init__(self, spec: NetworkSpec, dtype: str = "float32", seed: int = 0):
        if not dist.is_initialized():
            raise ValueError("distributed: the process group is not started (start_processes)")
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.module = from_spec(spec, dtype=dtype, seed=seed)
        self.ddp = torch.nn.parallel.DistributedDataParallel(self.module)  # every process: rank 0's parameters
        self.spec, self.dtype = self.module.spec, np.dtype(dtype)
        self.params = {name: value.detach().numpy() for name, value in self.module.named_parameters()}
        self.buffers = {name: value.numpy() for name, value in self.module.named_buffers()}
        self.input_stats = (0.0, 1.0)

    # --- modes and state, as the Network's --------------------------------------------------

    @property
    def training(self) -> bool:
        return self.module.training

    def train(self, mode: bool = True) -> "DataParallelNetwork":
        self.module.train(mode)
        return self

    def eval(self) -> "DataParallelNetwork":
        return self.train(False)

    @property
    def mask_state(self) -> dict:
        return self.module.mask_state

    @mask_state.setter
    def mask_state(self, state) -> None:
        self.module.mask_state = state

    def load_params(self, params: dict) -> None:
        """Copy ``params`` (a checkpoint's, by name) into the module's parameters, checked."""
        self._load(params, self.params, "params")

    def load_buffers(self, buffers: dict) -> None:
        self._load(buffers, self.buffers, "buffers")

    @staticmethod
    def _load(given: dict, own: dict, what: str) -> None:
        if not isinstance(given, dict) or given.keys() != own.keys():
            names = sorted(given) if isinstance(given, dict) else type(given).__name__
            raise ValueError(f"{what}: expected {sorted(own)}, got {names}")
        for name, value in given.items():
            array = np.asarray(value)
            if array.shape != own[name].shape or not np.isfinite(array).all():
                raise ValueError(f"{name}: expected finite values of shape {own[name].shape}, got {array.shape}")
        for name, value in given.items():
            own[name][...] = value

    def optimizer_step(self, optimizer, grads: dict, lr: float) -> None:
        """``optimizer.step`` (:mod:`symcnn.training.optimizers`) of the parameters, NumPy views of the module's
        tensors, in place: every process applies the same averaged gradients to the same parameters."""
        optimizer.step(self.params, grads, lr)

    # --- passes -----------------------------------------------------------------------------

    def _rows(self, x: np.ndarray, every_process: bool = True) -> slice:
        """This process's rows of ``x``; a training pass needs one at least in every process (DDP's
        all-reduce waits for each process's gradients)."""
        least = self.world if every_process else 1
        if not isinstance(x, np.ndarray) or x.ndim != 4 or len(x) < least:
            shape = x.shape if isinstance(x, np.ndarray) else type(x).__name__
            raise ValueError(f"x: expected a batch of at least {least} image(s){' (one per process)' * every_process} "
                             f"of shape (N, {', '.join(map(str, self.spec.input_shape))}), got {shape}")
        rows = share(len(x), self.rank, self.world)
        self.module.first_image = rows.start  # this share's rows of the whole batch's dropout masks
        return rows

    def forward(self, x: np.ndarray, training: Optional[bool] = None) -> np.ndarray:
        """The logits of the whole batch ``x``: each process computes its rows, an all-reduce joins them."""
        mode = self.training
        self.module.train(mode if training is None else bool(training))
        try:
            rows = self._rows(x, every_process=False)
            logits = torch.zeros(len(x), self.spec.classes, dtype=self.module_dtype)
            if rows.stop > rows.start:  # (a small last batch of an evaluation leaves some processes none)
                with torch.no_grad():
                    logits[rows] = self.module(torch.from_numpy(np.ascontiguousarray(x[rows])))
        finally:
            self.module.train(mode)
        dist.all_reduce(logits)
        return logits.numpy()

    @property
    def module_dtype(self) -> torch.dtype:
        return torch.float64 if self.dtype == np.float64 else torch.float32

    def loss_and_grads(self, x: np.ndarray, labels: np.ndarray, label_smoothing: float = 0.0,
                       input_gradient: bool = True, training: Optional[bool] = None) -> tuple[float, dict]:
        """The whole batch's mean cross-entropy and its gradients (by parameter name; ``input`` too unless
        ``input_gradient`` is false), as the Network's: this process's rows through DDP, each share's summed
        loss scaled by world / N so that DDP's average of the shares' gradients is the whole batch's."""
        mode = self.training
        self.module.train(mode if training is None else bool(training))
        try:
            rows = self._rows(x)
            batch = len(x)
            inputs = torch.from_numpy(np.ascontiguousarray(x[rows])).requires_grad_(bool(input_gradient))
            self.module.zero_grad(set_to_none=True)
            summed = F.cross_entropy(self.ddp(inputs), torch.from_numpy(np.asarray(labels[rows], dtype=np.int64)),
                                     reduction="sum", label_smoothing=float(label_smoothing))
            (summed * (self.world / batch)).backward()
        finally:
            self.module.train(mode)
        loss = summed.detach().clone()
        dist.all_reduce(loss)
        grads = {name: value.grad.numpy() for name, value in self.module.named_parameters()}
        if input_gradient:
            whole = torch.zeros((batch, *self.spec.input_shape), dtype=self.module_dtype)
            whole[rows] = inputs.grad / self.world  # the scaled loss's gradient, unscaled
            dist.all_reduce(whole)
            grads["input"] = whole.numpy()
        return loss.item() / batch, grads
