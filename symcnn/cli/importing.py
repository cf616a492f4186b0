"""``symcnn import``: an ONNX model as a spec (and its parameters), for derive, report, generate and train.

Example:
    $ symcnn import model.onnx -o model.toml --params model.npz
"""

from __future__ import annotations

import math
import sys

__all__ = ["add_import", "run_import"]


def add_import(commands) -> None:
    command = commands.add_parser(
        "import", help="turn an ONNX model into a spec (and its parameters)",
        description="Turn an ONNX model (Conv, with groups, ConvTranspose, MaxPool, AveragePool, GlobalAveragePool, "
                    "Flatten, Gemm or MatMul+Add, Relu, LeakyRelu, Elu, Sigmoid, Tanh, BatchNormalization, "
                    "LayerNormalization, Dropout, Add, Sum and Concat of layers, and a final Softmax) into a spec "
                    "file, and its weights into an .npz by parameter name (conv1.weight, ...; with a batch "
                    "norm's running statistics by buffer name). A node of another op is refused in one line "
                    "naming it (exit 2). Needs the onnx extra: pip install 'symcnn[onnx]'.")
    command.add_argument("model", metavar="MODEL.onnx", help="the ONNX model")
    command.add_argument("-o", "--out", required=True, metavar="SPEC.toml", help="the spec file to write")
    command.add_argument("--params", metavar="PARAMS.npz",
                         help="also write the parameters (float32; and buffers: running statistics) here; "
                              "default: none written")
    command.add_argument("--name", help="the spec's name; default: the spec file's name")


def run_import(args) -> int:
    try:
        from symcnn.onnx.importer import import_onnx
    except ImportError:
        raise ValueError("model: reading ONNX needs the onnx package: pip install 'symcnn[onnx]'") from None
    spec = import_onnx(args.model, args.out, args.params, args.name)
    parameters = sum(math.prod(shape) for shape in spec.parameter_shapes().values())
    print(f"symcnn import: {spec.name}: {len(spec.layers)} layers, {parameters:,} parameters -> {args.out}"
          + (f" and {args.params}" if args.params else ""), file=sys.stderr)
    return 0
