"""Checking written formulas: claims read from LaTeX or SymPy syntax, the element-wise and index
checkers, the documents' worked examples and the errata of the five documents."""
