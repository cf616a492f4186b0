"""Stage 3, views: derivations, general formulas and chain-rule steps as text, LaTeX and JSON.

Importing this package imports every view module, so that each registers how its model objects
display in Jupyter (:func:`symcnn.symbolic.display.register_latex_view`).
"""

from symcnn.views import derivation, formula, steps  # noqa: F401  (each registers its LaTeX views)
