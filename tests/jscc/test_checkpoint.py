"""Self-describing checkpoints: save / load by path or zoo name, strict loading, weights_only."""
from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import jscc
from jscc.checkpoint import FORMAT, model_checkpoint, model_from_checkpoint, read_checkpoint
from jscc.models import DeepJSCC


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = DeepJSCC(c=8, hidden=[8, 16, 16, 16])
    path = tmp_path / "model.pt"
    jscc.save_model(model, path, train={"dataset": "tiny", "train_snr_db": 10.0}, metrics={"val_psnr": 20.5})
    return model, path


def _assert_same_weights(a: nn.Module, b: nn.Module):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_save_then_load_is_identical_and_in_eval_mode(saved):
    model, path = saved
    for ref in (path, str(path)):
        loaded = jscc.load(ref)
        assert type(loaded) is DeepJSCC
        assert loaded.config == model.config
        _assert_same_weights(model, loaded)
        assert not loaded.training and not any(m.training for m in loaded.modules())
        assert loaded.train_info == {"dataset": "tiny", "train_snr_db": 10.0}
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.eval().encode(x), loaded.encode(x))


def test_checkpoint_is_self_describing(saved):
    model, path = saved
    loaded, ckpt = jscc.load(path, return_checkpoint=True)
    assert ckpt["format"] == FORMAT
    assert ckpt["model"] == "deepjscc"
    assert ckpt["config"] == {"c": 8, "hidden": [8, 16, 16, 16], "csi_side_input": False}
    assert ckpt["metrics"] == {"val_psnr": 20.5}
    assert set(ckpt["state_dict"]) == set(model.state_dict())
    # the raw file is readable with weights_only=True
    raw = torch.load(path, weights_only=True)
    assert raw["model"] == "deepjscc"


def test_save_is_atomic_no_temp_left(saved):
    _, path = saved
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]


def _edit_and_save(path: Path, edit) -> Path:
    ckpt = torch.load(path, weights_only=True)
    edit(ckpt)
    out = path.with_name("edited.pt")
    torch.save(ckpt, out)
    return out


def test_missing_key_is_error(saved):
    _, path = saved
    bad = _edit_and_save(path, lambda c: c["state_dict"].pop("encoder.0.bias"))
    with pytest.raises(RuntimeError, match="Missing key"):
        jscc.load(bad)


def test_unexpected_key_is_error(saved):
    _, path = saved
    bad = _edit_and_save(path, lambda c: c["state_dict"].__setitem__("encoder.99.weight", torch.zeros(1)))
    with pytest.raises(RuntimeError, match="Unexpected key"):
        jscc.load(bad)


def test_wrong_shape_is_error(saved):
    _, path = saved
    bad = _edit_and_save(path, lambda c: c["state_dict"].__setitem__("encoder.0.weight", torch.zeros(8, 3, 3, 3)))
    with pytest.raises(RuntimeError, match="size mismatch"):
        jscc.load(bad)


def test_config_not_matching_weights_is_error(saved):
    _, path = saved
    bad = _edit_and_save(path, lambda c: c["config"].__setitem__("c", 16))
    with pytest.raises(RuntimeError, match="size mismatch"):
        jscc.load(bad)


def test_expect_model_and_config(saved):
    model, path = saved
    ckpt = read_checkpoint(path)
    same = model_from_checkpoint(ckpt, expect_model="deepjscc", expect_config=dict(model.config))
    _assert_same_weights(model, same)
    with pytest.raises(ValueError, match="expected 'other'"):
        model_from_checkpoint(ckpt, expect_model="other")
    with pytest.raises(ValueError, match="differs"):
        model_from_checkpoint(ckpt, expect_config={**model.config, "c": 16})


def test_raw_state_dict_is_rejected(tmp_path):
    path = tmp_path / "raw.pt"
    torch.save(DeepJSCC(c=8).state_dict(), path)
    with pytest.raises(ValueError, match="raw state_dict"):
        jscc.load(path)


def test_unknown_name_mentions_zoo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # so the name cannot be a file by accident
    with pytest.raises(ValueError, match="zoo"):
        jscc.load("no-such-model-anywhere")


def test_missing_file_for_read_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_checkpoint(tmp_path / "nope.pt")


class _Exploit:
    """Unpickling this creates a file: proof that arbitrary code would have run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_loading_uses_weights_only(saved, tmp_path):
    _, path = saved
    marker = tmp_path / "code-ran"
    bad = _edit_and_save(path, lambda c: c.__setitem__("metrics", {"x": _Exploit(marker)}))
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError):
        jscc.load(bad)
    assert not marker.exists()


def test_unregistered_model_cannot_be_saved(tmp_path):
    with pytest.raises(TypeError, match="not a registered model"):
        model_checkpoint(nn.Linear(2, 2))
    assert not (tmp_path / "x.pt").exists()


def test_side_input_model_round_trip(tmp_path):
    torch.manual_seed(1)
    model = DeepJSCC(c=4, csi_side_input=True)
    jscc.save_model(model, tmp_path / "side.pt")
    loaded = jscc.load(tmp_path / "side.pt")
    assert loaded.csi_side_input and loaded.decoder[0].in_channels == 8
    _assert_same_weights(model, loaded)
