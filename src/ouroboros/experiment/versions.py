"""The code identity of every stage kind, computed from the source: a stage's fingerprint holds
the SHA-256 of every project module its kind's builder can run, so an edit to any of them
re-runs the finished stages of that kind (and, through fingerprints, everything built on them).
Nothing is bumped by hand, so nothing can be forgotten.

What "can run" means, mechanically: the builder module, every ``ouroboros`` module it imports
(at the top or inside a function) or runs as a script (a sibling ``name.py`` it names),
transitively, the packages above each, and for every registry a module in that set looks
plug-ins up in (``registry.METRICS.get`` ...) every plug-in module that registry names. That
over-approximates what one stage runs (an edit to any metric re-runs every evaluation), which
costs a rebuild and never reuses a stale result.

The hash is of the code, not its layout: comments, docstrings, blank lines and line breaks
inside brackets do not enter it, so rewording a comment rebuilds nothing.
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import re
import tokenize
from functools import cache
from pathlib import Path

import ouroboros
from ouroboros import registry

PACKAGE = "ouroboros"
ROOT = Path(ouroboros.__file__).resolve().parent
_B = "ouroboros.experiment.builders"
# The module whose build function makes each stage kind (builders/__init__.py's BUILDERS).
BUILDER_MODULES = {
    "data": f"{_B}.data", "pool": f"{_B}.data", "test": f"{_B}.data",
    "tokenizer": f"{_B}.tokenizer",
    "trainset": f"{_B}.trainset", "train": f"{_B}.train", "generate": f"{_B}.generate",
    "mixture": f"{_B}.generate", "curate": f"{_B}.curate", "evaluate": f"{_B}.evaluate",
    "slice": f"{_B}.slice", "augment": f"{_B}.augment",
    "backtranslate": f"{_B}.backtranslate",
}
_SKIP_TOKENS = {tokenize.COMMENT, tokenize.NL, tokenize.ENCODING, tokenize.ENDMARKER}
_STRING_STARTS = {getattr(tokenize, n) for n in ("FSTRING_START", "TSTRING_START")
                  if hasattr(tokenize, n)}
_STRING_ENDS = {getattr(tokenize, n) for n in ("FSTRING_END", "TSTRING_END")
                if hasattr(tokenize, n)}


def module_path(name: str) -> Path | None:
    """The source file of a project module (None: not a project module)."""
    if name != PACKAGE and not name.startswith(PACKAGE + "."):
        return None
    base = ROOT.joinpath(*name.split(".")[1:])
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _absolute(node: ast.ImportFrom, module: str, path: Path) -> str:
    """The absolute name of a ``from ... import`` (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    package = module.split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    package = package[:len(package) - node.level + 1]
    return ".".join(package + ([node.module] if node.module else []))


@cache
def _parsed(path: Path) -> tuple[str, ast.Module]:
    source = path.read_text(encoding="utf-8")
    return source, ast.parse(source)


def imports(module: str) -> set[str]:
    """The project modules ``module`` imports anywhere in its source, the plug-in modules of
    every registry it looks plug-ins up in (``registry.X.get``), and the packages above each."""
    path = module_path(module)
    if path is None:
        return set()
    found: set[str] = set()
    for node in ast.walk(_parsed(path)[1]):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, module, path)
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)  # submodules, if they are
        elif (isinstance(node, ast.Attribute) and node.attr == "get"
              and isinstance(node.value, ast.Attribute) and isinstance(node.value.value, ast.Name)
              and node.value.value.id == "registry"):
            found.update(_registry_modules(node.value.attr))
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and re.fullmatch(r"[a-z]\w*\.py", node.value)
              and (path.parent / node.value).is_file()):
            # a sibling file run as a script (the vLLM worker): code the module runs too
            found.add(f"{module.rpartition('.')[0]}.{node.value[:-3]}")
    found = {m for m in found if module_path(m) is not None}
    return found | {".".join(m.split(".")[:i]) for m in found for i in range(1, m.count(".") + 1)}


def _registry_modules(name: str) -> set[str]:
    """The modules of the plug-ins of ``registry.<name>`` (empty: not a registry)."""
    reg = getattr(registry, name, None)
    if not isinstance(reg, registry.Registry):
        return set()
    return {entry.partition(":")[0] for entry in reg.entries.values()}


@cache
def closure(roots: tuple[str, ...]) -> tuple[str, ...]:
    """Every project module the roots can run, sorted."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        m = todo.pop()
        if m in seen or module_path(m) is None:
            continue
        seen.add(m)
        todo.extend(imports(m) - seen)
    return tuple(sorted(seen))


def normalized(source: str) -> str:
    """The tokens of a module's source without comments, docstrings or layout."""
    tree = ast.parse(source)
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0] if node.body else None
            if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                    and isinstance(first.value.value, str)):
                docstrings.add((first.lineno, first.col_offset))
    lines = source.splitlines(keepends=True)
    out, depth, start = [], 0, None
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type in _STRING_STARTS:  # an f-string is one token, as before Python 3.12
            depth += 1
            start = start or tok.start
            continue
        if depth:
            if tok.type in _STRING_ENDS:
                depth -= 1
                if not depth:
                    out.append(_slice(lines, start, tok.end))
                    start = None
            continue
        if tok.type in _SKIP_TOKENS or (tok.type == tokenize.STRING and tok.start in docstrings):
            continue
        out.append({tokenize.INDENT: "<indent>", tokenize.DEDENT: "<dedent>",
                    tokenize.NEWLINE: "<newline>"}.get(tok.type, tok.string))
    return " ".join(out)


def _slice(lines: list[str], start: tuple[int, int], end: tuple[int, int]) -> str:
    """The source text between two (row, column) positions."""
    (r0, c0), (r1, c1) = start, end
    if r0 == r1:
        return lines[r0 - 1][c0:c1]
    return lines[r0 - 1][c0:] + "".join(lines[r0:r1 - 1]) + lines[r1 - 1][:c1]


@cache
def _module_code(module: str) -> str:
    return normalized(_parsed(module_path(module))[0])


def modules_hash(modules: tuple[str, ...]) -> str:
    """SHA-256 over the normalized source of each module, with its name."""
    digest = hashlib.sha256()
    for m in sorted(modules):
        digest.update(f"{m}\0{_module_code(m)}\0".encode())
    return digest.hexdigest()


_STATE: list = [None]  # the package's files (path, mtime, size) the caches were filled from


def forget() -> None:
    """Empty every cache: the next identity is computed from the files as they are now."""
    for f in (_parsed, closure, _module_code, _version):
        if hasattr(f, "cache_clear"):  # (a test may have replaced one)
            f.cache_clear()


def _fresh() -> None:
    """Forget what was read if any module of the package changed since (an edit during a
    long run, or in a worker started later): a stat per file, about a millisecond."""
    state = tuple((str(p), s.st_mtime_ns, s.st_size) for p in sorted(ROOT.rglob("*.py"))
                  for s in (p.stat(),))
    if state != _STATE[0]:
        forget()
        _STATE[0] = state


def version(kind: str) -> str | None:
    """The code identity of a stage kind (None for a kind not built by a study), from the
    package's source as it is on disk now."""
    _fresh()
    return _version(kind)


@cache
def _version(kind: str) -> str | None:
    if kind not in BUILDER_MODULES:
        return None
    return modules_hash(closure((BUILDER_MODULES[kind],)))


def metric_code() -> dict[str, dict]:
    """Per metric: the version in its signatures and the hash of the code it can run, which
    ``tests/unit/test_versions.py`` holds a changed metric to a new version with."""
    out = {}
    for name, entry in sorted(registry.METRICS.entries.items()):
        module = entry.partition(":")[0]
        code = modules_hash(closure((module,)))
        _, tree = _parsed(module_path(module))
        out[name] = {"version": _module_version(tree), "code": code}
    return out


def _module_version(tree: ast.Module) -> int | None:
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "VERSION"
                and isinstance(node.value, ast.Constant)):
            return node.value.value
    return None


if __name__ == "__main__":
    print(json.dumps(metric_code(), indent=2, sort_keys=True))
