"""``symcnn derive``: one op at a small configuration, expanded, with every gradient (and its chain rule).

Example:
    $ symcnn derive conv2d --input 3x3 --kernel 2 --no-bias
    $ symcnn derive maxpool2d --values "1,5,4;9,2,1;6,3,2" --stride 1 --steps --entry x11
"""

from __future__ import annotations

from symcnn.cli.arguments import add_format_options, add_setting_options, chosen_format, count, derive_settings
from symcnn.cli.arguments import print_document, size, values

__all__ = ["add_derive", "run_derive"]


def add_derive(commands) -> None:
    from symcnn import registry

    OPS = registry.names(loss=False)  # symcnn.symbolic.derive.derivable_ops, without importing SymPy to list them
    derive = commands.add_parser(
        "derive",
        help="expand one op at a small configuration: output and every gradient",
        description="Expand OP at a small configuration and derive dL/dX, dL/dW and dL/db by differentiation.",
    )
    derive.add_argument("op", choices=OPS, metavar="OP", help=f"one of {', '.join(OPS)}")
    derive.add_argument("--input", type=size, default=(3, 3), metavar="HxW",
                        help="input height x width (dense: the number of input features); default 3x3")
    # (None, not the default itself, so that a given option an op has no setting for is refused, even at 2x2)
    derive.add_argument("--kernel", type=size, default=None, metavar="K|KhxKw", help="kernel size; default 2x2")
    derive.add_argument("--channels-in", type=count, default=None, metavar="C", help="input channels; default 1")
    derive.add_argument("--channels-out", type=count, default=None, metavar="C",
                        help="output channels (conv2d) or output features (dense); default 1")
    derive.add_argument("--stride", type=size, default=None, metavar="S|SHxSW",
                        help="default 1 for conv2d, the kernel size for pooling (as in PyTorch)")
    derive.add_argument("--padding", type=size, default=None, metavar="P|PHxPW",
                        help="zero padding (conv2d); default 0")
    derive.add_argument("--dilation", type=size, default=None, metavar="D|DHxDW",
                        help="dilation (conv2d); default 1")
    derive.add_argument("--batch", type=count, default=1, metavar="N", help="batch size; default 1")
    derive.add_argument("--inputs", type=count, default=None, metavar="K",
                        help="add or concat: how many inputs it joins, each of the --input shape; default 2")
    add_setting_options(derive)
    derive.add_argument("--no-bias", action="store_true", help="conv2d or dense without a bias")
    derive.add_argument("--values", type=values, default=None, metavar="ROWS",
                        help="numeric input in row-major order, rows separated by ';' (e.g. '1,5,4;9,2,1;6,3,2'); "
                             "default: symbolic entries x00, x01, ...")
    add_format_options(derive)
    derive.add_argument("--steps", action="store_true",
                        help="show each gradient entry as its chain-rule steps (and, with --values, "
                             "a numeric walk-through)")
    derive.add_argument("--entry", action="append", default=[], metavar="NAME",
                        help="the steps of this entry only, like x11, w00 or b0, or of a whole tensor "
                             "(x, w, b); repeatable; implies --steps (default: every entry)")


def run_derive(args) -> int:
    from symcnn.views import derivation as render
    from symcnn.symbolic.derive import LayerConfig, derive, parse_values


    settings = derive_settings(args)  # refuses an option the op lacks
    config = LayerConfig(
        op=args.op,
        input_size=args.input,
        kernel=(2, 2) if args.kernel is None else args.kernel,
        channels_in=1 if args.channels_in is None else args.channels_in,
        channels_out=1 if args.channels_out is None else args.channels_out,
        stride=args.stride,
        padding=0 if args.padding is None else args.padding,
        dilation=1 if args.dilation is None else args.dilation,
        batch=args.batch,
        bias=not args.no_bias,
        settings=settings,
        inputs=args.inputs,
    )
    output_format = chosen_format(args)
    values = None
    if args.values is not None:
        width = config.input_shape[-1]
        for number, row in enumerate(args.values, start=1):
            if len(args.values) > 1 and len(row) != width:
                raise ValueError(f"--values: row {number} has {len(row)} numbers, expected {width} (the input width)")
        values = parse_values([item for row in args.values for item in row], config.input_shape)
    if args.steps or args.entry:
        from symcnn.views import steps as steps_view
        from symcnn.symbolic.steps import steps

        walk = steps(config, values, args.entry)
        if args.standalone:
            from symcnn.report.standalone import derivation_report

            return print_document(derivation_report(steps_view.latex_parts(walk), steps=True), args)
        views = {"text": steps_view.as_text, "latex": steps_view.as_latex, "json": steps_view.as_json}
        print(views[output_format](walk))
        return 0
    result = derive(config, values)
    if args.standalone:
        from symcnn.report.standalone import derivation_report

        return print_document(derivation_report(render.latex_parts(result)), args)
    print({"text": render.as_text, "latex": render.as_latex, "json": render.as_json}[output_format](result))
    return 0
