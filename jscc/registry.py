"""One model registry: ``@register_model("name")`` on a class, ``build_model(name, **config)``.

A registered class takes its whole configuration as keyword arguments and exposes it
back as ``model.config`` (a JSON-serialisable dict), so a checkpoint can rebuild it.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import torch.nn as nn

_MODELS: dict[str, type[nn.Module]] = {}

#: Where each shipped family registers itself: :func:`list_models` answers from this table without
#: importing torch or the models (fast ``--help``); :func:`get_model_class` imports only the module it needs.
#: ``tests/jscc/test_registry.py`` checks it against the ``@register_model`` decorators.
MODEL_MODULES = {
    "deepjscc": "jscc.models.deepjscc", "adjscc": "jscc.models.deepjscc", "deepjscc-q": "jscc.models.quantized",
    "deepjscc-l-multi": "jscc.models.layered", "deepjscc-l-masked": "jscc.models.layered",
    "deepjscc-l-residual": "jscc.models.layered", "deepjscc-f": "jscc.models.feedback",
    "inverse-jscc": "jscc.models.generative", "generative-jscc": "jscc.models.generative",
    "swinjscc": "jscc.models.swin", "deepwive": "jscc.models.video",
}


def register_model(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator registering a model family under ``name``."""

    def decorator(cls: type[nn.Module]) -> type[nn.Module]:
        if name in _MODELS and _MODELS[name] is not cls:
            raise ValueError(f"model name {name!r} is already registered by {_MODELS[name].__name__}")
        cls.registry_name = name
        _MODELS[name] = cls
        return cls

    return decorator


def list_models() -> list[str]:
    """Registered model names, sorted (the shipped families and any registered since; imports nothing)."""
    return sorted({*MODEL_MODULES, *_MODELS})


def get_model_class(name: str) -> type[nn.Module]:
    """The class registered under ``name``; ValueError listing the known names otherwise."""
    if name not in _MODELS and name in MODEL_MODULES:
        importlib.import_module(MODEL_MODULES[name])
    try:
        return _MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; registered models: {', '.join(list_models())}") from None


def build_model(name: str, **config) -> nn.Module:
    """Instantiate the registered model ``name`` with ``config`` keyword arguments."""
    return get_model_class(name)(**config)
