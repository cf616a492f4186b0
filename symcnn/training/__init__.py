"""Training on the runtime: data sets, the trainer (SGD with momentum), checkpoints (no SymPy)."""
