"""Training of one generation's model."""
