"""Training on the runtime: data sets, the trainer, the optimizers (SGD, Adam, AdamW), checkpoints (no SymPy)."""
