"""Stage 3, codegen: derived formulas lowered to kernel descriptions and rendered, through a
backend's templates, into a package of shape-specialized kernels (today: numba on the CPU)."""
