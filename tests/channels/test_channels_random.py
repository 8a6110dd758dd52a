"""seed_everything and make_generator."""

import random
import sys

import numpy as np
import pytest
import torch

from channels import make_generator, seed_everything


def _draws():
    return random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist()


def test_seed_everything_makes_python_numpy_torch_reproducible():
    seed_everything(123)
    first = _draws()
    seed_everything(123)
    assert _draws() == first
    seed_everything(124)
    assert _draws() != first


def test_seed_everything_seeds_sionna():
    sionna_phy = pytest.importorskip("sionna.phy")
    seed_everything(42)
    assert sionna_phy.config.seed == 42
    seed_everything(7)
    assert sionna_phy.config.seed == 7


def test_seed_everything_without_sionna(monkeypatch):
    # None in sys.modules makes `import sionna.phy` raise ImportError
    monkeypatch.setitem(sys.modules, "sionna", None)
    monkeypatch.setitem(sys.modules, "sionna.phy", None)
    seed_everything(5)
    first = _draws()
    seed_everything(5)
    assert _draws() == first


def test_make_generator():
    g = make_generator(3)
    assert isinstance(g, torch.Generator) and g.device.type == "cpu"
    assert torch.equal(torch.randn(5, generator=g), torch.randn(5, generator=make_generator(3)))
    assert not torch.equal(torch.randn(5, generator=make_generator(3)), torch.randn(5, generator=make_generator(4)))


def test_errors():
    with pytest.raises(TypeError, match="seed must be an int"):
        seed_everything(1.5)
    with pytest.raises(TypeError, match="seed must be an int"):
        make_generator(True)
    with pytest.raises(ValueError, match=r"seed must be in \[0, 2\*\*32 - 1\]"):
        seed_everything(-1)
