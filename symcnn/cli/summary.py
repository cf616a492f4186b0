"""``symcnn summary``: a network's layers with their shapes, parameters, multiply-accumulates,
activation memory, receptive field and jump, and the totals (:mod:`symcnn.network_summary`).

Example:
    $ symcnn summary alexnet
    $ symcnn summary my.toml --batch 8 --dtype float64 --json
"""

from __future__ import annotations

__all__ = ["add_summary", "run_summary"]


def add_summary(commands, number) -> None:
    command = commands.add_parser(
        "summary", help="a network's shapes, parameters, multiply-accumulates, memory and receptive fields",
        description="Each layer's output shape, parameters, multiply-accumulates (document 003's FLOP count: one "
                    "FLOP = one multiply-add), activation memory (document 003's N·H·W·C·sizeof), receptive field "
                    "and jump (document 003's recurrence, dilation included), a mark on each layer whose window "
                    "does not tile its padded input, and the totals. Computed from the spec alone: nothing is "
                    "generated or compiled.")
    command.add_argument("spec", metavar="SPEC", help="a shipped spec name (e.g. seed004, vgg16) or a .toml path")
    command.add_argument("--batch", type=number(int), default=1, help="images per forward pass (document 003's N)")
    command.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                         help="the element type the memory is counted in")
    command.add_argument("--json", action="store_true", help="machine-readable output, with stable field names")


def run_summary(args) -> int:
    from symcnn.network_summary import summary

    result = summary(args.spec, batch=args.batch, dtype=args.dtype)
    print(result.json() if args.json else result.text())
    return 0
