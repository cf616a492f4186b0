"""Build hook: regenerate the shipped specs' kernels when a wheel is built.

An installed symcnn then always carries kernels that match its templates ("generate optimized
kernels at build time"). The templates ship inside the package (symcnn/codegen/backends/numba_cpu/templates).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class GenerateKernels(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version, build_data):
        if self.target_name != "wheel" or version == "editable":
            return  # an editable install uses the checkout's generated/ directly
        root = Path(self.root)
        sys.path.insert(0, str(root))
        try:
            from symcnn.codegen.package import generate
            from symcnn.spec import SHIPPED_SPECS
        finally:
            sys.path.remove(str(root))
        self._output = Path(tempfile.mkdtemp(prefix="symcnn-kernels-"))
        generate(SHIPPED_SPECS, self._output)
        build_data["force_include"][str(self._output)] = "symcnn/_generated"

    def finalize(self, version, build_data, artifact_path):
        output = getattr(self, "_output", None)
        if output is not None:
            shutil.rmtree(output, ignore_errors=True)
