"""ouroboros: a lab for recursive training of language models and model collapse."""

__version__ = "0.1.0"
