"""Stages, fingerprints, the run directory, resume and the recursive-training recipe."""
