"""Answers of tasks with right and wrong: the answer a text states, and exact comparison.

The answer is the last non-empty match of a one-group pattern, whitespace normalised; compared
exactly as text, or by numeric value (commas, ``$`` and ``%`` dropped; ``72.0`` = ``72``; a
number of more than ``MAX_DIGITS`` significant digits or an exponent beyond ``MAX_EXPONENT``
states no answer, so a model cannot stall or crash a stage by writing ``1e1000000``).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

MAX_DIGITS, MAX_EXPONENT = 60, 60


def extract(text: str, pattern: re.Pattern, match: str) -> str | Decimal | None:
    """The answer ``text`` states (None: none)."""
    found = [" ".join((m.group(1) or "").split()) for m in pattern.finditer(text)]
    found = [a for a in found if a]
    if not found:
        return None
    if match == "exact":
        return found[-1]
    number = found[-1].replace(",", "").replace("$", "").replace("%", "")
    if " " in number:  # "3 4" is two numbers, not 34
        return None
    try:
        value = Decimal(number)
    except (InvalidOperation, ValueError):
        return None
    digits = value.as_tuple()
    if not value.is_finite() or len(digits.digits) > MAX_DIGITS or \
            abs(digits.exponent) > MAX_EXPONENT:
        return None
    return value  # compared by value: 72.0 == 72, -0 == 0


def compare(prediction: str, reference: str, pattern: re.Pattern,
            match: str) -> tuple[bool, bool]:
    """(the prediction states an answer, it is the reference's)."""
    given = extract(prediction, pattern, match)
    return given is not None, given is not None and given == extract(reference, pattern, match)
