"""The ``symcnn`` command. Thin: it parses arguments and calls the library.

User errors print one line on stderr and exit with status 2; ``--check`` mismatches exit 1.

Example:
    $ symcnn derive conv2d --input 3x3 --kernel 2 --no-bias
    $ symcnn examples --check
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Optional, Sequence

from symcnn.cli.arguments import Parser as _Parser  # one-line errors, suggestions, defaults in the help
from symcnn.cli.arguments import OPTION_OF_SETTING, add_format_options, chosen_format, print_document
from symcnn.cli.arguments import operand, size as _size, values as _values
from symcnn.cli.bench import add_bench as _add_bench, run_bench as _run_bench
from symcnn.cli.compile import add_compile as _add_compile, run_compile as _run_compile
from symcnn.cli.derive import add_derive as _add_derive
from symcnn.cli.exercise import RUNNERS as _TEACHING, add_commands as _add_teaching
from symcnn.cli.importing import add_import as _add_import, run_import as _run_import
from symcnn.cli.interrupt import MESSAGE, STATUS, interrupts_end_cleanly
from symcnn.cli.summary import add_summary as _add_summary, run_summary as _run_summary

__all__ = ["main"]


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="symcnn", description="Derive and check the mathematics of convolutional networks.")
    parser.add_argument("--version", action="version", version=f"symcnn {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    commands.add_parser("demo", help="a guided tour: the documents' examples, derived and checked",
                        description="A guided tour of symcnn, each step computed as it is shown: document 002's "
                                    "convolution and max pooling derived, a general gradient formula, the generated "
                                    "numba kernels of document 004's network checked and timed, a few seconds of "
                                    "training on real digits, and every worked example of the five reference "
                                    "documents checked. Takes a few minutes (longer the first time, while numba "
                                    "compiles the kernels); exit 1 if anything does not reproduce.")
    examples = commands.add_parser("examples", help="list the documents' worked examples; --check derives them",
                                   description="List the worked examples of the five reference documents (each "
                                               "with its document and what it shows); --check derives each with "
                                               "symcnn and compares it with the document (exit 1 on a mismatch).")
    examples.add_argument("--check", action="store_true", help="derive each example and compare with its document")
    examples.add_argument("--json", action="store_true", help="machine-readable output")
    _add_derive(commands)
    _add_formula(commands)
    _add_generate(commands)
    _add_compile(commands)
    _add_train(commands)
    _add_bench(commands, _number)
    _add_summary(commands, _number)
    _add_report(commands)
    _add_check(commands)
    _add_errata(commands)
    _add_teaching(commands, _number)
    _add_import(commands)
    return parser


def _add_report(commands) -> None:
    from symcnn.cli.report import add_arguments

    report = commands.add_parser(
        "report",
        help="derivation reports: a worked example, an op's formulas or a network's walk-through, as LaTeX, "
             "PDF or Markdown",
        description="Write a derivation report built from the same derivation objects the kernels come from: "
                    "LaTeX (-o FILE.tex), PDF (-o FILE.pdf, with latexmk or pdflatex) or GitHub Markdown.",
    )
    add_arguments(report, size=_size)


def _add_check(commands) -> None:
    from symcnn.cli.check import add_check

    add_check(commands, _size, _values)


def _add_errata(commands) -> None:
    from symcnn.cli.check import add_errata

    add_errata(commands)


def _number(kind):
    def parse(text: str):
        try:
            return kind(text)
        except ValueError:
            expected = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    return parse


def _add_train(commands) -> None:
    train = commands.add_parser(
        "train",
        help="train a network's generated kernels on real data (minibatch SGD with momentum, Adam or AdamW)",
        description="Train SPEC on the shipped handwritten digits (resized to the spec's input) or an .npz "
                    "file, with a progress bar, held-out accuracy per epoch, checkpoints and curves.",
    )
    train.add_argument("spec", metavar="SPEC", help="a shipped spec name or a .toml path")
    train.add_argument("--data", default="digits", metavar="digits|PATH.npz",
                       help="'digits' (1,797 real 8x8 digits, shipped) or an .npz with x (N,C,H,W) and y (N,)")
    # No default here: a setting not given is the spec's recommended one ([training]), else TrainConfig's.
    from symcnn.train_config import DEFAULT_LR, OPTIMIZERS, SCHEDULES, TrainConfig

    default = TrainConfig()
    recommended = "the spec's [training] value, else"
    train.add_argument("--epochs", type=_number(int), help=f"default: {recommended} {default.epochs}")
    train.add_argument("--batch", type=_number(int), help=f"default: {recommended} {default.batch}")
    train.add_argument("--optimizer", choices=OPTIMIZERS,
                       help=f"sgd (with momentum), adam or adamw, as torch.optim's "
                            f"(default: {recommended} {default.optimizer})")
    optimizers_of_rate = {}
    for name, rate in DEFAULT_LR.items():
        optimizers_of_rate.setdefault(rate, []).append(name)
    train.add_argument("--lr", type=_number(float),
                       help=f"peak learning rate (default: {recommended} "
                            + " or ".join(f"{rate} ({', '.join(names)})" for rate, names in optimizers_of_rate.items())
                            + ")")
    train.add_argument("--schedule", choices=SCHEDULES,
                       help=f"learning-rate schedule after the warm-up: cosine decays to 0, constant, or step "
                            f"(times --gamma every --step-size epochs) (default: {recommended} {default.schedule})")
    train.add_argument("--step-size", type=_number(int), metavar="EPOCHS",
                       help="--schedule step: epochs between two decays (no default: step needs it)")
    train.add_argument("--gamma", type=_number(float),
                       help=f"--schedule step: the factor of each decay (default: {recommended} {default.gamma})")
    train.add_argument("--warmup", type=_number(float), metavar="EPOCHS",
                       help=f"epochs of linear learning-rate warm-up from 0 "
                            f"(default: {recommended} {default.warmup:g})")
    train.add_argument("--momentum", type=_number(float),
                       help=f"sgd's momentum (default: {recommended} {default.momentum})")
    train.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=None,
                       help="sgd: Nesterov momentum (default: the spec's [training] value, else off)")
    train.add_argument("--beta1", type=_number(float),
                       help=f"adam, adamw: decay rate of the gradient's mean (default: {recommended} {default.beta1})")
    train.add_argument("--beta2", type=_number(float),
                       help=f"adam, adamw: decay rate of its square's mean (default: {recommended} {default.beta2})")
    train.add_argument("--eps", type=_number(float),
                       help=f"adam, adamw: added to the denominator (default: {recommended} {default.eps:g})")
    train.add_argument("--weight-decay", type=_number(float),
                       help=f"added to the gradient as wd * p (sgd, adam), or p *= 1 - lr * wd (adamw) "
                            f"(default: {recommended} {default.weight_decay})")
    train.add_argument("--label-smoothing", type=_number(float), metavar="S",
                       help="train against targets (1 - S) * one_hot + S / classes "
                            f"(default: {recommended} {default.label_smoothing:g})")
    train.add_argument("--seed", type=_number(int), default=0, help="initialization and shuffling (default 0)")
    train.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                       help="the kernels' floating-point type")
    train.add_argument("--checkpoint", default=None, metavar="PATH",
                       help="write a checkpoint here after every epoch and on Ctrl-C (default: none)")
    train.add_argument("--resume", default=None, metavar="PATH",
                       help="continue from this checkpoint (default: start afresh)")
    train.add_argument("--plot", default=None, metavar="PATH.png",
                       help="write loss and accuracy curves (matplotlib; default: no plot)")
    train.add_argument("--json", action="store_true", help="print a machine-readable summary on stdout")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument("--distributed", action="store_true",
                       help="data-parallel in the processes torchrun starts (torchrun --nproc-per-node 2 -m symcnn "
                            "train SPEC --distributed): each computes its share of every batch with the generated "
                            "kernels inside PyTorch, DistributedDataParallel (gloo) averages the gradients; rank 0 "
                            "prints and writes (needs the torch extra; docs/torch.md)")


def _add_generate(commands) -> None:
    generate = commands.add_parser(
        "generate",
        help="render the numba kernels of network specs from the templates",
        description="Render templates/ into one package of numba kernels per spec: every layer's forward "
                    "and gradient kernels and the loss, each shape a constant. Deterministic and atomic.",
    )
    generate.add_argument("specs", nargs="*", metavar="SPEC",
                          help="shipped spec names or .toml paths (default: every shipped spec)")
    generate.add_argument("--out", default=None, metavar="DIR",
                          help="output directory (default: the source checkout's generated/; "
                               "needed when symcnn is installed)")
    generate.add_argument("--check", action="store_true",
                          help="write nothing; exit 1 and name the stale files when the output differs")


def _add_formula(commands) -> None:
    from symcnn import registry

    FORMULA_OPS = registry.names()  # the keys of symcnn.views.formula.FORMULA_OPS, without importing SymPy
    formula = commands.add_parser(
        "formula",
        help="the general index formula of an op's gradient, derived, for any stride, padding and dilation",
        description="Print the general formula of OP: its forward pass, or its gradient derived in gather "
                    "form with every condition (divisibility by the stride, range of the solved index).",
    )
    formula.add_argument("op", choices=list(FORMULA_OPS), metavar="OP", help=f"one of {', '.join(FORMULA_OPS)}")
    formula.add_argument("operand", nargs="?", type=operand, default=None, metavar="OPERAND",
                         help="the gradient with respect to this operand (input, weight, bias; an add's or concat's "
                              "input2, ...), or the forward formula (forward); default input")
    formula.add_argument("--wrt", type=operand, default=None, metavar="OPERAND",
                         help="the same as OPERAND, as an option (default: input)")
    for option, meta in (("kernel", "K|KhxKw"), ("stride", "S|SHxSW"), ("padding", "P|PHxPW"), ("dilation", "D|DHxDW")):
        formula.add_argument(f"--{option}", type=_size, default=None, metavar=meta,
                             help=f"specialize the {option} and simplify (default: general)")
    add_format_options(formula)


def _version() -> str:
    from symcnn import __version__

    return __version__


_OPTION_OF_FIELD = {
    "input_size": "--input",
    "channels_in": "--channels-in",
    "channels_out": "--channels-out",
    "kernel": "--kernel",
    "stride": "--stride",
    "padding": "--padding",
    "dilation": "--dilation",
    "batch": "--batch",
    "output": "--output",
    "values": "--values",
    "entry": "--entry",
    "wrt": "--wrt",
    "epochs": "--epochs",
    "lr": "--lr",
    "momentum": "--momentum",
    "weight_decay": "--weight-decay",
    "seed": "--seed",
    "schedule": "--schedule",
    "warmup": "--warmup",
    "label_smoothing": "--label-smoothing",
    "optimizer": "--optimizer",
    "nesterov": "--nesterov",
    "beta1": "--beta1",
    "beta2": "--beta2",
    "eps": "--eps",
    "step_size": "--step-size",
    "gamma": "--gamma",
    "data": "--data",
    "resume": "--resume",
    "plot": "--plot",
    "checkpoint": "--checkpoint",
    "threads": "--threads",
    "repeat": "--repeat",
    "suite": "--suite",
    "against": "--against",
    "formula": "FORMULA",
    **OPTION_OF_SETTING,
}


def _as_option(message: str) -> str:
    """A library message ``field: ...`` as the CLI says it: ``--option: ...``."""
    field, separator, rest = message.partition(": ")
    return f"{_OPTION_OF_FIELD[field]}: {rest}" if separator and field in _OPTION_OF_FIELD else message


def _run_derive(args) -> int:
    from symcnn.cli.derive import run_derive

    return run_derive(args)


def _run_examples(args) -> int:
    from symcnn.checking.documents import by_document
    from symcnn.checking.examples import EXAMPLE_LIST, check

    if not args.check:
        if args.json:
            print(json.dumps([{"name": e.name, "document": e.document, "section": e.section, "title": e.title}
                              for e in EXAMPLE_LIST], indent=2))
        else:
            width = max(len(e.name) for e in EXAMPLE_LIST)
            for document, examples in by_document(EXAMPLE_LIST, lambda example: example.document):
                print(document.heading)
                print("\n".join(f"  {e.name:<{width}}  {e.title}" for e in examples))
        return 0
    results = [check(example) for example in EXAMPLE_LIST]
    if args.json:
        print(json.dumps([{"name": r.name, "document": r.document, "status": r.status, "checked": r.checked,
                           "mismatches": list(r.mismatches)} for r in results], indent=2))
    else:
        print(_results_table(results))
    return 1 if any(r.status != "ok" for r in results) else 0


def _results_table(results) -> str:
    from symcnn.checking.documents import by_document

    width = max(len(r.name) for r in results)
    lines = []
    for document, group in by_document(results, lambda result: result.document):
        lines.append(document.heading)
        for r in group:
            values = "1 value" if r.checked == 1 else f"{r.checked} values"
            lines.append(f"  {r.name:<{width}}  {r.status} ({values})")
            lines += [f"      {mismatch}" for mismatch in r.mismatches]
    passed = sum(r.status == "ok" for r in results)
    lines.append(f"{passed} of {len(results)} examples reproduce their documents")
    return "\n".join(lines)


def _run_formula(args) -> int:
    from symcnn.views.formula import general_formula

    output_format = chosen_format(args)
    if args.operand and args.wrt and args.operand != args.wrt:
        raise ValueError(f"wrt: the operand is given twice: {args.operand!r} (OPERAND) and {args.wrt!r} (--wrt)")
    wrt = args.operand or args.wrt or "input"
    settings = dict(kernel=args.kernel, stride=args.stride, padding=args.padding, dilation=args.dilation)
    if args.standalone:
        from symcnn.report.opformulas import formula_report

        return print_document(formula_report(args.op, wrt, **settings), args)
    view = general_formula(args.op, wrt, **settings)
    print({"text": view.text, "latex": view.latex, "json": view.json}[output_format]())
    return 0


def _run_generate(args) -> int:
    from symcnn.codegen.package import generate
    from symcnn.spec import SHIPPED_SPECS

    specs = args.specs or list(SHIPPED_SPECS)
    if args.check:
        stale = generate(specs, args.out, check=True)
        for path in stale:
            print(f"stale: {path}")
        if stale:
            print(f"{len(stale)} generated file(s) differ from what the templates produce; "
                  "run `symcnn generate` to update them", file=sys.stderr)
            return 1
        print(f"generated kernels are up to date ({', '.join(specs)})")
        return 0
    for path in generate(specs, args.out):
        print(f"wrote {path}")
    return 0


def _run_train(args) -> int:
    from symcnn.cli.train import run_training

    return run_training(args)


def _run_report(args) -> int:
    from symcnn.cli.report import run

    return run(args)


def _run_check(args) -> int:
    from symcnn.cli.check import run_check

    return run_check(args)


def _run_errata(args) -> int:
    from symcnn.cli.check import run_errata

    return run_errata(args)


def _run_demo(args) -> int:
    from symcnn.cli import demo

    return demo.run()


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        with interrupts_end_cleanly():
            return _main(argv)
    except KeyboardInterrupt:  # Ctrl-C at any moment (start-up imports SymPy): one line, no traceback
        print(MESSAGE, file=sys.stderr)
        return STATUS


def _main(argv: Optional[Sequence[str]]) -> int:
    parser = _build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv  # the command as typed: the first line of a --standalone document names it
    runners = {"demo": _run_demo, "examples": _run_examples, "derive": _run_derive, "formula": _run_formula,
               "generate": _run_generate, "compile": _run_compile, "train": _run_train, "bench": _run_bench,
               "report": _run_report, "check": _run_check, "errata": _run_errata, "import": _run_import,
               "summary": _run_summary, **_TEACHING}
    try:
        return runners[args.command](args)
    except ValueError as error:  # user errors: one line naming the option, no traceback
        print(f"symcnn {args.command}: error: {_as_option(str(error))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `symcnn ... | head`: the reader left; not an error of ours
        sys.stderr.close()
        return 0
    except OSError as error:  # an unwritable --out, a full disk: say so in one line
        print(f"symcnn {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
