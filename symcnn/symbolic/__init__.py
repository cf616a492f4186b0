"""Stage 1, symbolic: each op's forward pass as a SymPy index formula, expanded at small shapes,
differentiated (the oracle of every other result) and adjointed into general gradient formulas.

No numerics beyond SymPy's, no I/O, no printing: the stages after this one read these objects.
"""
