"""Stage 3, views: derivations, general formulas and chain-rule steps as text, LaTeX and JSON."""
