"""Stage 2, printing: SymPy printer subclasses in the documents' notation.

:mod:`~symcnn.printing.text` (and the display rewrite :func:`~symcnn.printing.text.readable`),
:mod:`~symcnn.printing.latex`, :mod:`~symcnn.printing.numba` (kernel arithmetic), and the nodes only
printers read (:mod:`~symcnn.printing.nodes`: ``Iverson``, ``FloorDiv``).
"""
