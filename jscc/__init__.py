"""Deep joint source-channel coding simulator: models, metrics, data, training, sweeps, zoo."""
from jscc.checkpoint import load, save_model
from jscc.registry import build_model, list_models, register_model
from jscc.system import JSCCSystem

__all__ = ["JSCCSystem", "build_model", "list_models", "load", "register_model", "save_model"]
__version__ = "0.1.0"
