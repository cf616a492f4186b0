"""ONNX models in symcnn (the ``onnx`` extra): ``symcnn import MODEL.onnx -o SPEC.toml [--params PARAMS.npz]``.

The core never imports this package (an import-linter contract says so); it imports onnx.
"""

from symcnn.onnx.importer import CONVERTERS, Imported, convert, import_onnx

__all__ = ["CONVERTERS", "Imported", "convert", "import_onnx"]
