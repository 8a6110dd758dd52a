"""The model registry: lookup, building, duplicate names."""
from __future__ import annotations

import pytest
import torch.nn as nn

import jscc
from jscc import registry
from jscc.models import DeepJSCC


@pytest.fixture
def isolated_registry(monkeypatch):
    """A private copy of the registry table, restored after the test."""
    import jscc.models  # noqa: F401  (every family registered)

    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))
    return registry._MODELS


def test_the_static_table_names_every_family_and_its_module():
    import jscc.models  # noqa: F401  (runs every @register_model)

    shipped = {name: cls.__module__ for name, cls in registry._MODELS.items() if cls.__module__.startswith("jscc.models.")}
    assert shipped == registry.MODEL_MODULES


def test_deepjscc_is_registered():
    assert "deepjscc" in jscc.list_models()
    assert registry.get_model_class("deepjscc") is DeepJSCC
    assert DeepJSCC.registry_name == "deepjscc"


def test_unknown_model_lists_known_names():
    with pytest.raises(ValueError, match="unknown model 'nope'") as err:
        jscc.build_model("nope")
    assert "deepjscc" in str(err.value)


def test_build_model():
    m = jscc.build_model("deepjscc", c=8)
    assert isinstance(m, DeepJSCC)
    assert m.config["c"] == 8 and m.channel_uses(32, 32) == 256


def test_duplicate_name_with_another_class_errors(isolated_registry):
    class Other(nn.Module):
        pass

    with pytest.raises(ValueError, match="already registered"):
        jscc.register_model("deepjscc")(Other)
    assert registry.get_model_class("deepjscc") is DeepJSCC  # not replaced


def test_reregistering_same_class_is_harmless(isolated_registry):
    assert jscc.register_model("deepjscc")(DeepJSCC) is DeepJSCC
    assert registry.get_model_class("deepjscc") is DeepJSCC


def test_register_new_model(isolated_registry):
    @jscc.register_model("tiny-test-model")
    class Tiny(nn.Module):
        def __init__(self, width: int = 2):
            super().__init__()
            self.config = {"width": width}

    assert "tiny-test-model" in jscc.list_models()
    m = jscc.build_model("tiny-test-model", width=5)
    assert isinstance(m, Tiny) and m.config == {"width": 5} and Tiny.registry_name == "tiny-test-model"
