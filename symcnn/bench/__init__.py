"""Benchmarks: the generated kernels side by side with PyTorch and an independent NumPy network."""
