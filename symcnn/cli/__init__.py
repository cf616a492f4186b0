"""The ``symcnn`` command: a thin layer over the stages below it."""
