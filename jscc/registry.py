"""One model registry: ``@register_model("name")`` on a class, ``build_model(name, **config)``.

A registered class takes its whole configuration as keyword arguments and exposes it
back as ``model.config`` (a JSON-serialisable dict), so a checkpoint can rebuild it.
"""
from __future__ import annotations

from typing import Callable

import torch.nn as nn

_MODELS: dict[str, type[nn.Module]] = {}


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
    """Registered model names, sorted."""
    _import_model_modules()
    return sorted(_MODELS)


def get_model_class(name: str) -> type[nn.Module]:
    """The class registered under ``name``; ValueError listing the known names otherwise."""
    _import_model_modules()
    try:
        return _MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; registered models: {', '.join(sorted(_MODELS))}") from None


def build_model(name: str, **config) -> nn.Module:
    """Instantiate the registered model ``name`` with ``config`` keyword arguments."""
    return get_model_class(name)(**config)


def _import_model_modules() -> None:
    # Importing the package runs every @register_model decorator.
    import jscc.models  # noqa: F401
