"""Models trained at every generation: tokenizers, from-scratch families, checkpoints."""
