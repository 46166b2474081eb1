"""Tasks: how records become examples, what a generator is asked, what is scored.

Every example is ``{"id", "source", "target", "origin", ...}``. The source side always stays
real; generations regenerate the target side; references are always the original real ones.
"""


def example_id(split: str, record: dict, index: int) -> str:
    """``<split>-L<line>`` for records read from a file (traceable to it), else ``<split>-<i>``."""
    line = record.get("_line")
    return f"{split}-L{line}" if line is not None else f"{split}-{index}"
