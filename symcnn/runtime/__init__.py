"""The runtime: loads a generated kernel package and runs it (never imports SymPy).
:class:`Network` is the entry point: ``Network.from_spec("seed004")``.
"""

from symcnn.runtime.network import Network

__all__ = ["Network"]
