"""Real-data sources: the built-in ground-truth language (more sources plug in by name)."""
