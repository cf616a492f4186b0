"""Stage 2, printing: SymPy printer subclasses (text, LaTeX, numba) in the documents' notation."""
