"""Test the checkout's code: put this directory first on sys.path.

`pip install '.[test]'` installs symcnn's dependencies (and a copy of symcnn); the tests and the
doctests of symcnn/ must both import the one package in this checkout, or pytest refuses the
doctest modules as duplicates of the installed copy.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# symcnn.torch and symcnn.onnx import their optional extras: their doctests run where those are installed.
import importlib.util  # noqa: E402

collect_ignore_glob = [f"symcnn/{extra}/*" for extra in ("torch", "onnx") if importlib.util.find_spec(extra) is None]
