"""ouroboros: a lab for recursive training of language models and model collapse.

The public Python API (everything else is internal and may change):

* ``run_study(config, out=..., overrides=...)``: run or continue a study, as ``ouroboros run``;
* ``load_run(path)``: a run directory as pandas DataFrames (``Run``);
* ``load_config(path_or_dict, overrides)``: a validated ``StudyConfig``;
* ``Run``, ``StudyConfig``, ``ConfigError``.

Names are imported when first used, so ``import ouroboros`` stays light.
"""

__version__ = "0.1.0"

__all__ = ["ConfigError", "Run", "StudyConfig", "__version__", "load_config", "load_run",
           "run_study"]

_WHERE = {"run_study": "ouroboros.api", "load_run": "ouroboros.api", "Run": "ouroboros.api",
          "load_config": "ouroboros.config", "StudyConfig": "ouroboros.config",
          "ConfigError": "ouroboros.config"}


def __getattr__(name: str):
    if name in _WHERE:
        import importlib
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'ouroboros' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
