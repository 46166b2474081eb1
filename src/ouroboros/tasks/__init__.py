"""Tasks: how records become examples, what a generator is asked, what is scored.

Every example is ``{"id", "source", "target", "origin", ...}``. The source side always stays
real; generations regenerate the target side; references are always the original real ones.
"""
