"""The numba CPU backend: the lanes schedule and the jinja2 templates of a kernel package."""
