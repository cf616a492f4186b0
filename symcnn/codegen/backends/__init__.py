"""Code generation backends: each a folder with its schedules and its templates."""
