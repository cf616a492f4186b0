r"""One way for a model object to display itself in Jupyter: the :class:`LatexDisplay` mixin.

A model object (a :class:`~symcnn.symbolic.derive.Derivation`, a
:class:`~symcnn.symbolic.adjoint.GradientFormula`, :class:`~symcnn.symbolic.steps.Steps`, a worked
example) inherits ``_repr_latex_`` from :class:`LatexDisplay`; how it is shown is a view, written
in a higher layer (:mod:`symcnn.views`), which registers it here with :func:`register_latex_view`.
So the objects know nothing of their views, and no import runs upwards (SymPy's ``Printable``
does the same with its printer).

Example (the view of :mod:`symcnn.views.derivation`, found without importing it here):
    >>> from symcnn.symbolic.derive import LayerConfig, derive
    >>> display = derive(LayerConfig("avgpool2d", input_size=(2, 2), kernel=(2, 2)))._repr_latex_()
    >>> print("\n".join(display.splitlines()[3:7]))
    \text{Output} \\
    \begin{aligned}
    y_{00} &= \frac{x_{00}}{4} + \frac{x_{01}}{4} + \frac{x_{10}}{4} + \frac{x_{11}}{4}
    \end{aligned} \\[2ex]
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Optional

__all__ = ["LatexDisplay", "register_latex_view", "registered_latex_view", "VIEWS_PACKAGE"]

#: The package whose modules register the views of the symbolic objects when imported.
VIEWS_PACKAGE = "symcnn.views"

_LATEX_VIEWS: dict[type, Callable[[Any], str]] = {}


def register_latex_view(cls: type, view: Callable[[Any], str]) -> None:
    """Show instances of ``cls`` (and of its subclasses) in Jupyter as ``view(instance)``:
    a ``$$...$$`` LaTeX display."""
    _LATEX_VIEWS[cls] = view


def registered_latex_view(cls: type) -> Optional[Callable[[Any], str]]:
    """The view registered for ``cls`` or for its nearest base class; ``None`` if there is none."""
    return next((_LATEX_VIEWS[base] for base in cls.__mro__ if base in _LATEX_VIEWS), None)


class LatexDisplay:
    """Gives a model object Jupyter's ``_repr_latex_``, printed by the view registered for its class.

    When no view is registered yet, ``_repr_latex_`` imports :data:`VIEWS_PACKAGE` by name, whose
    modules register theirs. That import is the one deliberate late binding of the package: a
    lower layer never imports a higher one statically (the import-linter contract in
    ``pyproject.toml`` holds every other import to that), and a notebook that has imported only
    :mod:`symcnn.symbolic` still displays its objects.
    """

    __slots__ = ()

    def _repr_latex_(self) -> str:
        view = registered_latex_view(type(self))
        if view is None:
            importlib.import_module(VIEWS_PACKAGE)
            view = registered_latex_view(type(self))
        if view is None:
            raise LookupError(f"no LaTeX view is registered for {type(self).__name__}")
        return view(self)
