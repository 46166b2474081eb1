"""Real-data sources and the split selection shared by all of them.

A source gives the records of each split; a task turns records into examples; ``select_splits``
then draws the seeded subsets every study uses. Test and validation subsets do not depend on
the seed (every seed is measured on the same real data); the training subset does, and the
training examples left over form the pool the ``fresh`` policy draws never-used data from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from ouroboros.config import DataConfig
from ouroboros.data.arithmetic import example, sample_problems
from ouroboros.data.files import DataError, file_digest, map_fields, read_split, split_paths
from ouroboros.data.grammar import GroundTruthLanguage, LanguageSpec

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class RealSplits:
    """The real examples of one seed, and the unused training examples (fresh-data pool)."""

    train: list[dict]
    valid: list[dict]
    test: list[dict]
    pool: list[dict] | None = None  # None: the source makes fresh data itself


class DataSource(Protocol):
    """Where real data comes from."""

    def records(self, seed: int) -> dict[str, list[dict] | None]:
        """Records per split (None: no such split, carve it from train)."""

    def fingerprint(self, test: bool = True) -> dict:
        """What identifies the data (enters every stage fingerprint); ``test=False``: less the
        content of a test split that comes from its own file (the test stage's alone)."""


class GrammarSource:
    """Real sentences sampled from the built-in ground-truth language.

    The test split depends only on the language; train and validation are drawn per seed;
    fresh data comes from streams keyed by (seed, generation), disjoint from the splits'.
    """

    exact_sizes = True  # records() already has the configured sizes

    def __init__(self, cfg: DataConfig, needed: tuple[str, ...] = ("text",)) -> None:
        g = cfg.grammar
        self.cfg = cfg
        self.truth = GroundTruthLanguage(LanguageSpec(g.seed, g.zipf_exponent, g.version,
                                                      g.open_class_size))

    def records(self, seed: int) -> dict[str, list[dict] | None]:
        """Exactly the configured number of sentences per split."""
        rng = np.random.default_rng([seed, 0])
        train = self.truth.sample(self.cfg.train_size, rng)
        valid = self.truth.sample(self.cfg.valid_size, rng)
        test = self.truth.sample(self.cfg.test_size, np.random.default_rng([2**31, 1]))
        return {name: [{"text": t} for t in texts]
                for name, texts in (("train", train), ("valid", valid), ("test", test))}

    def fresh(self, n: int, seed: int, generation: int) -> list[dict]:
        """New real sentences for generation ``generation`` of seed ``seed``."""
        return [{"text": t} for t in
                self.truth.sample(n, np.random.default_rng([seed, 1, generation]))]

    def fingerprint(self, test: bool = True) -> dict:
        """The language and the split sizes (the test split is drawn from the language)."""
        return {**self.truth.fingerprint(), "train_size": self.cfg.train_size,
                "valid_size": self.cfg.valid_size, "test_size": self.cfg.test_size}


class ArithmeticSource:
    """Arithmetic problems from a seeded generator (data/arithmetic.py), every one distinct.

    As with the grammar, the test problems depend only on the settings; train and validation
    are drawn per seed from the rest; fresh problems, per seed and generation, never repeat a
    test problem.
    """

    exact_sizes = True

    def __init__(self, cfg: DataConfig, needed: tuple[str, ...] = ("source", "target")) -> None:
        self.cfg, self.spec = cfg, cfg.arithmetic.spec()

    def _test(self) -> list[int]:
        return sample_problems(self.spec, self.cfg.test_size, np.random.default_rng([2**31, 1]))

    def _records(self, indices: list[int]) -> list[dict]:
        return [example(self.spec, *self.spec.problem(i)) for i in indices]

    def _splits(self, seed: int) -> tuple[list[int], list[int]]:
        """(test problems, this seed's train + valid problems)."""
        test = self._test()
        return test, sample_problems(self.spec, self.cfg.train_size + self.cfg.valid_size,
                                     np.random.default_rng([seed, 0]), set(test))

    def records(self, seed: int) -> dict[str, list[dict] | None]:
        """Exactly the configured number of problems per split, no problem in two splits."""
        test, rest = self._splits(seed)
        n = self.cfg.train_size
        return {"train": self._records(rest[:n]), "valid": self._records(rest[n:]),
                "test": self._records(test)}

    def fresh(self, n: int, seed: int, generation: int) -> list[dict]:
        """New problems for generation ``generation`` of seed ``seed``: never a test, train or
        validation problem, nor one an earlier generation's fresh data held."""
        test, rest = self._splits(seed)
        used = set(test) | set(rest)
        for g in range(1, generation + 1):
            drawn = sample_problems(self.spec, n, np.random.default_rng([seed, 1, g]), used)
            used.update(drawn)
        return self._records(drawn)

    def fresh_capacity(self) -> int:
        """How many never-used problems remain for fresh data, over all generations."""
        return self.spec.size - self.cfg.train_size - self.cfg.valid_size - self.cfg.test_size

    def fingerprint(self, test: bool = True) -> dict:
        """The problem settings and the split sizes."""
        return {"source": "arithmetic", **self.spec.fingerprint(),
                "train_size": self.cfg.train_size, "valid_size": self.cfg.valid_size,
                "test_size": self.cfg.test_size}


class FileSource:
    """Real data from local files, with field mapping (see ``data.files``)."""

    def __init__(self, cfg: DataConfig, needed: tuple[str, ...]) -> None:
        self.cfg, self.needed = cfg, needed
        root = cfg.files.root
        self.root = Path(root) if root else None

    def records(self, seed: int) -> dict[str, list[dict] | None]:
        """Every record of each configured split file (files are read in full)."""
        out: dict[str, list[dict] | None] = {}
        for split in SPLITS:
            spec = getattr(self.cfg.files, split)
            if spec is None:
                out[split] = None
                continue
            raw, where = read_split(spec, self.cfg.files.format, self.root)
            if not raw:
                raise DataError(f"the {split} split ({where}) has no examples")
            out[split] = map_fields(raw, self.cfg.files.fields, self.needed, where)
        return out

    def fingerprint(self, test: bool = True) -> dict:
        """The file settings and sizes, each split's file(s) identified by content (SHA-256),
        so an edited file re-runs the study and a moved one does not. The training side
        (``test=False``) leaves out the test file's content: no training example depends on
        it, so an edited test file re-runs the evaluations and retrains nothing."""
        files = self.cfg.files.model_dump(exclude={"root"})
        for split in SPLITS:  # content and extension (format: auto parses by extension)
            if split == "test" and not test and files[split] is not None:
                files[split] = "its own file (the test stage)"
            elif files[split] is not None:
                files[split] = [{"sha256": file_digest(p), "suffix": p.suffix}
                                for p in split_paths(files[split], self.root)]
        return {"source": "files", **files, "sizes": _sizes(self.cfg)}


class HFDatasetSource:
    """A Hugging Face dataset by name (needs network) or local files through ``datasets``."""

    def __init__(self, cfg: DataConfig, needed: tuple[str, ...]) -> None:
        self.cfg, self.needed = cfg, needed

    def records(self, seed: int) -> dict[str, list[dict] | None]:
        """Records of each mapped split, loaded with ``datasets.load_dataset``."""
        import datasets
        h = self.cfg.hf
        try:
            ds = datasets.load_dataset(h.path or "json", h.name, revision=h.revision,
                                       data_files=h.data_files)
        except Exception as e:  # offline, unknown name, bad files: one clear message
            raise DataError(f"dataset {h.path or h.data_files} could not be loaded: "
                            f"{type(e).__name__}: {e}") from None
        out: dict[str, list[dict] | None] = {s: None for s in SPLITS}
        for ours, theirs in h.splits.items():
            if theirs not in ds:
                raise DataError(f"dataset {h.path} has no split '{theirs}' "
                                f"(has: {', '.join(ds)})")
            rows = [{**r, "_line": i} for i, r in enumerate(ds[theirs], 1)]
            if not rows:
                raise DataError(f"the {ours} split ({h.path}:{theirs}) has no examples")
            out[ours] = map_fields(rows, h.fields, self.needed, f"{h.path}:{theirs}")
        if out["train"] is None or out["test"] is None:
            raise DataError("data.hf.splits must map train and test")
        return out

    def fingerprint(self, test: bool = True) -> dict:
        """The dataset identity and sizes; local data files are identified by content (one
        dataset: its test split is not told apart)."""
        hf = self.cfg.hf.model_dump()
        if hf["data_files"]:  # local files by content; globs, URLs, Hub paths as given
            hf["data_files"] = {split: [file_digest(Path(p)) if Path(p).is_file() else p
                                        for p in (files if isinstance(files, list) else [files])]
                                for split, files in hf["data_files"].items()}
        return {"source": "hf", **hf, "sizes": _sizes(self.cfg)}


def _sizes(cfg: DataConfig) -> dict:
    return {"train": cfg.train_size, "valid": cfg.valid_size, "test": cfg.test_size}


def _take(examples: list[dict], n: int | None, rng: np.random.Generator) -> list[dict]:
    """A seeded subset of ``n`` examples in their original order (all if n is None)."""
    if n is None or n >= len(examples):
        return list(examples)
    keep = np.sort(rng.permutation(len(examples))[:n])
    return [examples[i] for i in keep]


def select_splits(split_examples: dict[str, list[dict] | None], cfg: DataConfig, seed: int,
                  exact: bool) -> RealSplits:
    """Seeded subsets per split; ``exact`` sources (grammar) already have the right sizes."""
    train_all = split_examples["train"] or []
    if exact:
        return RealSplits(train_all, split_examples["valid"] or [], split_examples["test"] or [])
    order = list(np.random.default_rng([seed, 0]).permutation(len(train_all)))
    valid = split_examples.get("valid")
    if valid is None:  # carve the validation split from the training data of this seed
        n_valid = cfg.valid_size or max(1, len(order) // 10)
        valid, order = [train_all[i] for i in sorted(order[:n_valid])], order[n_valid:]
    else:
        valid = _take(valid, cfg.valid_size, np.random.default_rng([2**31, 2]))
    short = [(f"data.{k}_size", n, len(rows)) for k, n, rows in
             (("train", cfg.train_size, order),
              ("valid", cfg.valid_size if split_examples.get("valid") is not None else None,
               split_examples.get("valid") or []),
              ("test", cfg.test_size, split_examples["test"] or []))
             if n is not None and n > len(rows)]
    if short:  # asking for more than there is would silently run on less
        raise DataError(", and ".join(
            f"{key}: asks for {n} examples, but the data hold {have}" for key, n, have in short)
            + " (after the seed's validation split where it is carved from train); lower it, "
              "or give null for all")
    n_train = len(order) if cfg.train_size is None else cfg.train_size
    train = [train_all[i] for i in sorted(order[:n_train])]  # file order, for readability
    test = _take(split_examples["test"] or [], cfg.test_size, np.random.default_rng([2**31, 3]))
    for name, rows in (("train", train), ("valid", valid), ("test", test)):
        if not rows:
            raise DataError(f"the real {name} split is empty after selection")
    return RealSplits(train, valid, test, pool=[train_all[i] for i in order[n_train:]])
