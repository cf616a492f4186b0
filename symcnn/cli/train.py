"""``symcnn train``: the command's flow around :class:`symcnn.training.trainer.Trainer`.

Example:
    $ symcnn train digits --epochs 15 --checkpoint run.npz --plot curves.png
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Optional

__all__ = ["run_training", "plot_history"]


def _say(text: str, to_stderr: bool) -> None:
    print(text, file=sys.stderr if to_stderr else sys.stdout, flush=True)


def _count(number: int, noun: str) -> str:
    """``1 epoch``, ``12 epochs``."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _check_output_path(path: str, option: str, suffix: str) -> Path:
    """An output file, checked before training starts: an epoch is not to be lost to a typo."""
    from symcnn.training.checkpoint import check_writable

    target = Path(path)
    if suffix and target.suffix.lower() != suffix:
        raise ValueError(f"{option}: must end in {suffix}, got {path!r}")
    if not target.parent.exists():
        raise ValueError(f"{option}: the directory {str(target.parent)!r} does not exist")
    return check_writable(target, option)


def _check_distinct(data: str, checkpoint: Optional[Path], plot: Optional[Path]) -> None:
    """Outputs that would overwrite the data, or each other, are refused before anything is written."""
    data_path = Path(data).resolve() if data != "digits" else None
    for option, target in (("checkpoint", checkpoint), ("plot", plot)):
        if target is not None and target.resolve() == data_path:
            raise ValueError(f"{option}: {str(target)!r} is the --data file; writing it would destroy the data")
    if checkpoint is not None and plot is not None and checkpoint.resolve() == plot.resolve():
        raise ValueError(f"plot: {str(plot)!r} is also the --checkpoint file")


def _schedule(config) -> str:
    """``cosine``, ``constant``, ``step decay x0.1 every 5 epochs``."""
    if config.schedule == "step":
        return f"step decay x{config.gamma:g} every {_count(config.step_size, 'epoch')}"
    return config.schedule


def _optimizer(config) -> str:
    """What the run's first line says of its optimizer (SGD's words as before there was another)."""
    if config.optimizer == "sgd":
        return (f"{'Nesterov ' if config.nesterov else ''}momentum {config.momentum}, "
                f"weight decay {config.weight_decay}")
    decay = "decoupled" if config.optimizer == "adamw" else "L2"
    return (f"{config.optimizer} (betas {config.beta1}, {config.beta2}, eps {config.eps:g}), "
            f"weight decay {config.weight_decay} ({decay})")


def plot_history(history: list, path: Path, title: str) -> None:
    """Loss (train, test) and test accuracy per epoch, as a PNG written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from symcnn.files import atomic_open

    epochs = [record["epoch"] for record in history]
    figure, (loss_axes, accuracy_axes) = plt.subplots(1, 2, figsize=(10, 4))
    loss_axes.plot(epochs, [r["train_loss"] for r in history], marker="o", label="train")
    loss_axes.plot(epochs, [r["test_loss"] for r in history], marker="o", label="held out")
    loss_axes.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    loss_axes.legend()
    accuracy_axes.plot(epochs, [100 * r["test_accuracy"] for r in history], marker="o", color="C2")
    accuracy_axes.set(xlabel="epoch", ylabel="accuracy (%)", title="held-out accuracy")
    for axes in (loss_axes, accuracy_axes):
        axes.grid(alpha=0.3)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    figure.suptitle(title)
    figure.tight_layout()
    try:
        with atomic_open(path, "wb") as stream:
            figure.savefig(stream, format="png", dpi=100)
    finally:
        plt.close(figure)


def _start_distributed() -> tuple[int, int]:
    """``--distributed``: this process's rank and the number of processes (torchrun's environment)."""
    try:
        from symcnn.torch.distributed import start_processes
    except ImportError:
        raise ValueError("distributed: needs PyTorch: pip install torch==2.13.0 'symcnn[torch]' "
                         "(the CPU build)") from None
    return start_processes()


def _check_shares(data, batch: int, world: int) -> None:
    """Every process computes part of every batch: the smallest batch of an epoch needs ``world`` images."""
    last = len(data.x_train) % batch or batch
    if min(batch, last) < world:
        raise ValueError(f"batch: {world} processes need an image each of every batch, but the last batch of an "
                         f"epoch has {min(batch, last)} ({len(data.x_train)} training images in batches of "
                         f"{batch}); choose another --batch")


def run_training(args) -> int:
    distributed = getattr(args, "distributed", False)
    rank, world = _start_distributed() if distributed else (0, 1)
    try:
        return _train(args, rank, world)
    finally:
        if distributed:
            import torch.distributed as dist

            dist.destroy_process_group()


def _train(args, rank: int, world: int) -> int:
    from symcnn.training.data import load_data
    from symcnn.runtime.network import Network
    from symcnn.spec import load_spec
    from symcnn.train_config import SPEC_TRAINING_KEYS
    from symcnn.training.trainer import TrainConfig, Trainer, TrainingDiverged

    distributed = getattr(args, "distributed", False)
    lead = rank == 0  # the process that prints and writes (the only one, unless --distributed)
    spec = load_spec(args.spec)
    recommended = spec.training
    stated = {name: getattr(args, name) for name in SPEC_TRAINING_KEYS}  # None: not given
    config = TrainConfig.resolve(recommended, seed=args.seed, **stated)
    # The spec's recommendations that the run uses (an option given on the command line wins; a setting
    # of another optimizer or schedule than the run's is not used).
    from_spec = [name for name in recommended if stated[name] is None and config.reads(name)]
    checkpoint = _check_output_path(args.checkpoint, "checkpoint", "") if args.checkpoint and lead else None
    plot = _check_output_path(args.plot, "plot", ".png") if args.plot and lead else None
    _check_distinct(args.data, checkpoint, plot)
    if plot is not None:
        if importlib.util.find_spec("matplotlib") is None:  # checked before training starts
            raise ValueError("plot: needs matplotlib; install it with pip install 'symcnn[plot]'")
    # The data is checked against the spec (shape, classes) before any kernel is generated or compiled.
    data = load_data(args.data, spec.input_shape, spec.classes).standardized()
    if distributed:
        from symcnn.torch.distributed import DataParallelNetwork

        _check_shares(data, config.batch, world)
        net = DataParallelNetwork(spec, dtype=args.dtype, seed=args.seed)
    else:
        net = Network.from_spec(args.spec, dtype=args.dtype, seed=args.seed)
    trainer = Trainer(net, config)
    quiet = args.json

    def say(text: str) -> None:  # (in JSON mode on stderr; with --distributed, rank 0 alone)
        if lead:
            _say(text, quiet)

    if args.resume:  # (every process reads the checkpoint)
        trainer.resume(args.resume, data)  # the data checked against the checkpoint's before anything is said
        say(f"resumed from {args.resume} at epoch {trainer.state.epoch}"
            + (f", batch {trainer.state.step}" if trainer.state.step else ""))
    say(f"training {net.spec.name} on {data.name}"
        + (f", data-parallel in {world} processes" if distributed else "")
        + f": {len(data.x_train)} images, {len(data.x_test)} held out; "
        f"{_count(config.epochs, 'epoch')} of batch {config.batch}, lr {config.lr} ({config.warmup:g}-epoch warm-up, "
        f"{_schedule(config)}), {_optimizer(config)}"
        + (f", label smoothing {config.label_smoothing:g}" if config.label_smoothing else "")
        + (f" ({', '.join(from_spec)} from the spec's [training] table)" if from_spec else ""))

    def report(record: dict) -> None:
        say(f"epoch {record['epoch']:>3}/{config.epochs}  train loss {record['train_loss']:.4f}  "
            f"held-out loss {record['test_loss']:.4f}  accuracy {100 * record['test_accuracy']:.2f}%  "
            f"({record['seconds']:.1f} s)")

    started = time.perf_counter()
    try:
        history = trainer.fit(data, progress=not args.no_progress and lead, checkpoint=checkpoint, on_epoch=report)
    except TrainingDiverged as error:
        if lead:  # (every process diverges alike)
            print(f"symcnn train: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # (a Ctrl-C before training started, while the data was checked, saved nothing: say so truthfully)
        saved = checkpoint is not None and trainer.checkpoint_saved
        where = f"; checkpoint saved to {checkpoint} (continue with --resume {checkpoint})" if saved else ""
        print(f"symcnn train: interrupted at epoch {trainer.state.epoch + 1}, batch {trainer.state.step}{where}",
              file=sys.stderr)
        return 130
    seconds = time.perf_counter() - started
    if not lead:
        return 0
    trained = len(data.x_train) * len(history)  # images through the training steps, resumed epochs included
    epoch_seconds = sum(record["seconds"] for record in history) or 1e-9
    final = history[-1] if history else {"test_accuracy": float("nan"), "test_loss": float("nan"),
                                         "train_loss": float("nan")}
    summary = {
        "spec": net.spec.name,
        "data": data.name,
        "epochs": len(history),
        "test_accuracy": final["test_accuracy"],
        "test_loss": final["test_loss"],
        "train_loss": final["train_loss"],
        "seconds": seconds,
        "images_per_second": trained / epoch_seconds,
        "history": history,
        "checkpoint": str(checkpoint) if checkpoint else None,
        "input_mean": data.mean,
        "input_std": data.std,
        "config": asdict(config),
    }
    if plot is not None and history:
        source = "the shipped handwritten digits" if args.data == "digits" else Path(args.data).name
        plot_history(history, plot, f"network {net.spec.name!r} trained on {source} "
                                    f"({len(data.x_train):,} images, {len(data.x_test):,} held out)")
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{net.spec.name}: held-out accuracy {100 * summary['test_accuracy']:.2f}% after "
              f"{_count(len(history), 'epoch')}; {seconds:.1f} s, {summary['images_per_second']:,.0f} training images/s"
              + (f"; curves in {plot}" if plot else "") + (f"; checkpoint {checkpoint}" if checkpoint else ""))
    return 0
