"""Tasks: how examples become training text, prompts and references."""
