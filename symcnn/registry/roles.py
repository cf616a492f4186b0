"""How an op's tensors are named by role: its inputs ``input``, ``input2``, ..., its parameters
``weight`` and ``bias``; what the derivation differentiates and the kernels call them.

SymPy-free, so that spec validation, code generation and the runtime name them alike.

Example:
    >>> input_role(2), array_name("input2"), differentiable("weight"), differentiable("mask")
    ('input2', 'x2', True, False)
"""

from __future__ import annotations

import re

__all__ = ["MAX_MERGED", "input_role", "is_input_role", "input_number", "differentiable", "array_name"]

#: The most inputs one layer takes (an add or concat; a DenseNet block concatenates a few dozen at most).
MAX_MERGED = 64

_INPUT_ROLE = re.compile(r"input([2-9]|[1-9][0-9]+)?\Z")


def input_role(number: int) -> str:
    """The role of an op's input ``number`` (from 1): ``input``, ``input2``, ``input3``, ...

    >>> input_role(1), input_role(3)
    ('input', 'input3')
    """
    return "input" if number == 1 else f"input{number}"


def is_input_role(role: str) -> bool:
    """Whether ``role`` names one of an op's inputs (``input``, ``input2``, ...), as opposed to a
    parameter, a buffer or a mask.

    >>> is_input_role("input2"), is_input_role("weight"), is_input_role("input1")
    (True, False, False)
    """
    return bool(_INPUT_ROLE.match(role))


def input_number(role: str) -> int:
    """The number of the input with ``role``: ``input`` is 1, ``input2`` is 2.

    >>> input_number("input"), input_number("input3")
    (1, 3)
    """
    if not is_input_role(role):
        raise ValueError(f"role: {role!r} is not an input's role")
    return int(role[len("input"):] or 1)


def differentiable(role: str) -> bool:
    """Whether a formula's operand of ``role`` gets a gradient: the inputs and the learned parameters
    (not a mask, running statistics or targets)."""
    return role in ("weight", "bias") or is_input_role(role)


def array_name(role: str) -> str:
    """The name of an input's array in generated code and the runtime: ``x``, ``x2``, ...; of its
    gradient ``grad_input``, ``grad_input2``, ...; other roles keep their names."""
    return f"x{role[len('input'):]}" if is_input_role(role) else role
