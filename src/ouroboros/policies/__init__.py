"""Data policies: how each later generation's training set is assembled."""
