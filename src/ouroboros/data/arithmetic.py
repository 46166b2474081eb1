"""A built-in verifiable task: arithmetic problems from a seeded generator, with exact answers.

Every problem is written one symbol per token (``"4 7 + 1 5 ="``), so a word-level tokenizer
of a dozen symbols learns it and a tiny model can be trained on two CPU cores. The answer can
be written least significant digit first (``reverse``: a left-to-right model then computes it
in the order carries propagate, which small models learn far faster) and can be preceded by a
worked scratchpad of column sums (``scratchpad``), ending ``#### <answer>`` as GSM8K answers
do. Correctness is exact: the answer after the last ``####`` (or the whole text without a
scratchpad), whitespace normalised, equals the reference's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

ANSWER_MARK = "####"
_ANSWER = re.compile(r"(- )?[0-9]( [0-9])*")  # digits, one per token; "- " before a negative


@dataclass(frozen=True)
class ArithmeticSpec:
    """Which problems: operators, operand digits (from ``min_digits`` to ``max_digits``),
    answer format."""

    operators: tuple[str, ...] = ("+",)
    min_digits: int = 1
    max_digits: int = 2
    reverse: bool = True
    scratchpad: bool = False

    def fingerprint(self) -> dict:
        """What identifies the problems (and so the data)."""
        return {"operators": list(self.operators), "min_digits": self.min_digits,
                "max_digits": self.max_digits, "reverse": self.reverse,
                "scratchpad": self.scratchpad, "version": 1}

    @property
    def low(self) -> int:
        """The smallest operand (0 with one-digit operands)."""
        return 10 ** (self.min_digits - 1) if self.min_digits > 1 else 0

    @property
    def span(self) -> int:
        """How many operands there are."""
        return 10 ** self.max_digits - self.low

    @property
    def size(self) -> int:
        """How many distinct problems there are."""
        return len(self.operators) * self.span ** 2

    def problem(self, index: int) -> tuple[int, str, int]:
        """Problem number ``index`` of the enumeration: (a, operator, b)."""
        op, rest = divmod(index, self.span ** 2)
        a, b = divmod(rest, self.span)
        return a + self.low, self.operators[op], b + self.low


def spaced(number: int, reverse: bool = False) -> str:
    """``47`` -> ``"4 7"`` (``"7 4"`` reversed); a minus sign stays first."""
    digits = str(abs(number))
    digits = digits[::-1] if reverse else digits
    return ("- " if number < 0 else "") + " ".join(digits)


def _value(a: int, op: str, b: int) -> int:
    return a + b if op == "+" else a - b if op == "-" else a * b


def _columns(a: int, b: int) -> str:
    """The column sums of an addition, least significant first: ``"7+5+0=12 4+1+1=6"``."""
    steps, carry, i = [], 0, 0
    while a or b or carry or i == 0:
        x, y = a % 10, b % 10
        total = x + y + carry
        steps.append(f"{x} + {y} + {carry} = {spaced(total)}")
        a, b, carry, i = a // 10, b // 10, total // 10, i + 1
    return " ; ".join(steps)


def example(spec: ArithmeticSpec, a: int, op: str, b: int) -> dict:
    """One problem as source and target text."""
    answer = spaced(_value(a, op, b), spec.reverse)
    target = answer
    if spec.scratchpad:
        work = _columns(a, b) if op == "+" else f"{spaced(a)} {op} {spaced(b)}"
        target = f"{work} {ANSWER_MARK} {answer}"
    return {"source": f"{spaced(a)} {op} {spaced(b)} =", "target": target}


def sample_problems(spec: ArithmeticSpec, n: int, rng: np.random.Generator,
                    exclude: set[int] | None = None) -> list[int]:
    """``n`` distinct problem indices drawn at random, none of ``exclude``; a ValueError
    when the problem space is too small for them."""
    exclude = exclude or set()
    available = spec.size - len(exclude)
    if n > available:
        raise ValueError(f"{n} problems asked for, but only {available} distinct ones remain "
                         f"({spec.size} in all with these operators and digits)")
    chosen: list[int] = []
    seen = set(exclude)
    while len(chosen) < n:  # rejection: the space is far larger than the splits in practice
        for i in rng.integers(0, spec.size, size=2 * (n - len(chosen)) + 8).tolist():
            if i not in seen:
                seen.add(i)
                chosen.append(i)
                if len(chosen) == n:
                    break
    return chosen


def answer_of(text: str) -> str | None:
    """The answer a text gives: after its last ``####`` (or the whole text), whitespace
    normalised; None if that is not a number written one digit per token."""
    tail = text.rsplit(ANSWER_MARK, 1)[-1]
    answer = " ".join(tail.split())
    return answer if _ANSWER.fullmatch(answer) else None


def check(prediction: str, reference: str) -> tuple[bool, bool]:
    """(the prediction states an answer, that answer is the reference's), exactly."""
    given = answer_of(prediction)
    return given is not None, given is not None and given == answer_of(reference)


def parse_problem(source: str) -> tuple[int, str, int] | None:
    """``"4 7 + 1 5 ="`` -> (47, "+", 15): the problem a source states (digits one per token,
    whitespace normalised), or None if it states none."""
    words = source.split()
    if "=" not in words or words[-1] != "=":
        return None
    ops = [i for i, w in enumerate(words) if w in ("+", "-", "*") and 0 < i < len(words) - 1]
    if len(ops) != 1:
        return None
    i = ops[0]
    left, right = words[:i], words[i + 1:-1]
    if not (left and right and all(w.isdigit() and len(w) == 1 for w in left + right)):
        return None
    return int("".join(left)), words[i], int("".join(right))


def true_answer(source: str, spec: ArithmeticSpec) -> str | None:
    """The exact answer of the problem a source states, written as ``spec`` writes answers."""
    problem = parse_problem(source)
    return None if problem is None else spaced(_value(*problem), spec.reverse)


def _digits(n: int) -> int:
    return len(str(abs(n)))


def similar(spec: ArithmeticSpec, source: str, rng: np.random.Generator) -> dict:
    """The oracle teacher: a new problem like the one ``source`` states, with the same
    operator and the same number of digits in each operand, and its exact answer (a random
    draw: it may be the problem itself, which de-duplication then drops)."""
    problem = parse_problem(source)
    if problem is None:
        raise ValueError(f"not an arithmetic problem: {source!r}")
    a, op, b = problem

    def like(n: int) -> int:
        d = _digits(n)
        lo = 0 if d == 1 else 10 ** (d - 1)
        return int(rng.integers(lo, 10 ** d))
    return example(spec, like(a), op, like(b))
