"""Deep joint source-channel coding simulator: models, metrics, data, training, sweeps, zoo.

The names below are imported on first use (PEP 562), so that ``import jscc.registry`` or a CLI's
``--help`` does not pay for torch.
"""
from __future__ import annotations

import importlib

_LAZY = {"load": "jscc.checkpoint", "save_model": "jscc.checkpoint", "build_model": "jscc.registry",
         "list_models": "jscc.registry", "register_model": "jscc.registry", "JSCCSystem": "jscc.system"}

__all__ = ["JSCCSystem", "build_model", "list_models", "load", "register_model", "save_model"]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'jscc' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
