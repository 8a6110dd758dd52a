"""Results files: schema, semantic checks, atomic writing, ratios, provenance."""
import json
import re
from fractions import Fraction

import pytest
import torch

from jscc.results import (
    ResultsValidationError,
    bandwidth_ratio_str,
    parse_ratio,
    provenance,
    read_results,
    sha256_file,
    validate_results,
    write_results,
)


def _example():
    """The README's results-file example, with the exact ratio 256/3072."""
    return {
        "schema": "jscc-results/1",
        "name": "deepjscc-cifar10-1_12-awgn-snr10",
        "method": "deepjscc",
        "dataset": {"name": "cifar10-test (JPEG copy)", "n_images": 10000},
        "channel": {"name": "awgn", "csi": "none", "block_length": None},
        "k": 256,
        "bandwidth_ratio": 256 / 3072,
        "bandwidth_ratio_str": "1/12",
        "train_snr_db": 10.0,
        "snr_db": [0, 2, 4],
        "metrics": {"psnr": [20.1, 22.3, 24.0], "psnr_std": [1.9, 2.0, 2.1]},
        "n_channel_draws": 10,
        "provenance": {"checkpoint_sha256": "0" * 64, "git_commit": "abc123", "torch": "2.x", "command": "jscc sweep"},
    }


def _full_example():
    """Every optional field used at once."""
    r = _example()
    r["channel"].update({"name": "rayleigh", "csi": "receiver", "block_length": 1, "equalization": "mmse",
                         "snr_at_tx": True})
    r["metrics"].update({
        "psnr_of_mean_mse": [19.5, 21.9, 23.7],
        "ssim": [0.7, 0.8, 0.85], "ssim_std": [0.1, 0.1, 0.1],
        "ms_ssim": [None, None, None], "ms_ssim_std": [None, None, None],
        "lpips": [0.3, 0.2, 0.1], "lpips_std": [0.05, 0.05, 0.05],
        "perceptual": {"name": "dists", "values": [0.3, 0.2, 0.1]},
    })
    r.update({
        "train_snr_db": [0.0, 20.0],
        "design_snr_db": 2.0,
        "feedback_snr_db": None,
        "codec": "jpeg2000",
        "link": "ldpc",
        "mcs": ["qpsk-1/2", "16qam-1/2", None],
        "byte_accounting": "payload",
        "fallback": "image_mean",
        "layers": [
            {"k": 128, "bandwidth_ratio": 1 / 24, "cumulative_bandwidth_ratio": 1 / 24},
            {"k": 128, "bandwidth_ratio": 1 / 24, "cumulative_bandwidth_ratio": 1 / 12},
        ],
        "metrics_per_prefix": [{"psnr": [1, 2, 3], "psnr_std": [0, 0, 0]}] * 2,
        "metrics_per_frame": [{"psnr": [1, 2, 3], "psnr_std": [0, 0, 0], "ssim": [0.1, 0.2, 0.3]}],
        "notes": "MS-SSIM not measured: 32x32 images are too small; SSIM reported",
    })
    r["provenance"].update({"checkpoint_sha256": None, "git_commit": None, "python": "3.11.9",
                            "created": "2025-01-02T03:04:05+00:00", "device": "cpu", "seed": 0})
    return r


def _problems(obj):
    with pytest.raises(ResultsValidationError) as info:
        validate_results(obj)
    return info.value.problems


# --------------------------------------------------------------------------- schema


def test_examples_validate():
    validate_results(_example())
    validate_results(_full_example())


@pytest.mark.parametrize("where", [(), ("channel",), ("metrics",), ("provenance",), ("dataset",)])
def test_unknown_key_is_an_error(where):
    r = _example()
    target = r
    for part in where:
        target = target[part]
    target["extra_key"] = 1
    (problem,) = _problems(r)
    assert "'extra_key' was unexpected" in problem
    assert problem.startswith("$" + "".join(f".{p}" for p in where) + ":")


def test_unknown_key_in_nested_optional_objects():
    r = _full_example()
    r["layers"][1]["kk"] = 1
    r["metrics"]["perceptual"]["std"] = [0, 0, 0]
    r["metrics_per_frame"][0]["mse"] = [0, 0, 0]
    problems = _problems(r)
    assert len(problems) == 3
    assert any(p.startswith("$.layers[1]:") for p in problems)
    assert any(p.startswith("$.metrics.perceptual:") for p in problems)
    assert any(p.startswith("$.metrics_per_frame[0]:") for p in problems)


@pytest.mark.parametrize("key", ["schema", "name", "k", "snr_db", "metrics", "provenance", "n_channel_draws"])
def test_missing_required(key):
    r = _example()
    del r[key]
    assert any(f"'{key}' is a required property" in p for p in _problems(r))


def test_missing_nested_required_and_bad_values_all_listed():
    r = _example()
    del r["metrics"]["psnr_std"]
    del r["provenance"]["torch"]
    r["schema"] = "jscc-results/2"
    r["k"] = 0
    r["channel"]["csi"] = "genie"
    r["byte_accounting"] = "container"
    r["snr_db"] = []
    problems = _problems(r)
    for path in ["$.metrics:", "$.provenance:", "$.schema:", "$.k:", "$.channel.csi:", "$.byte_accounting:",
                 "$.snr_db:"]:
        assert any(p.startswith(path) for p in problems), path


def test_layers_must_match_prefixes_and_k():
    r = _full_example()
    validate_results(r)
    r["layers"][1]["k"] = 100
    assert _problems(r) == ["$.layers: the layers' k sum to 228 but k is 256"]


def test_metric_length_mismatch():
    r = _full_example()
    r["metrics"]["psnr_std"] = [1.9, 2.0]
    r["metrics"]["perceptual"]["values"] = [0.1]
    r["metrics_per_prefix"] = [{"psnr": [1, 2, 3, 4], "psnr_std": [0, 0, 0]}]
    r["mcs"] = ["qpsk-1/2"]
    assert _problems(r) == [
        "$.metrics.psnr_std: has 2 values but snr_db has 3",
        "$.metrics.perceptual.values: has 1 values but snr_db has 3",
        "$.metrics_per_prefix[0].psnr: has 4 values but snr_db has 3",
        "$.mcs: has 1 values but snr_db has 3",
        "$.metrics_per_prefix: has 1 entries but layers has 2",
    ]


def test_ratio_must_match_its_fraction():
    r = _example()
    r["bandwidth_ratio"] = 0.0833  # the rounded value of the CONVENTIONS example is not 1/12
    (problem,) = _problems(r)
    assert problem.startswith("$.bandwidth_ratio:") and "1/12" in problem
    r["bandwidth_ratio"] = 1 / 6
    assert _problems(r)[0].startswith("$.bandwidth_ratio:")
    r["bandwidth_ratio_str"] = "2/12"
    (problem,) = _problems(r)
    assert "not a reduced fraction" in problem and "1/6" in problem
    r["bandwidth_ratio_str"] = "1/0"
    assert any("malformed" in p for p in _problems(r))
    for bad in ["0.0833", "1 / 12"]:
        r["bandwidth_ratio_str"] = bad
        assert any(p.startswith("$.bandwidth_ratio_str:") and "does not match" in p for p in _problems(r))


def test_non_finite_and_train_range():
    r = _example()
    r["metrics"]["psnr"][1] = float("inf")
    r["train_snr_db"] = [20.0, 0.0]
    problems = _problems(r)
    assert "$.metrics.psnr[1]: inf is not a finite number (JSON cannot store NaN / inf)" in problems
    assert any(p.startswith("$.train_snr_db:") and "lo 20.0 > hi 0.0" in p for p in problems)


def test_null_allowed_only_where_not_measured():
    r = _example()
    r["metrics"]["ssim"] = [None, 0.5, None]
    validate_results(r)
    r["metrics"]["psnr"] = [None, 1.0, 2.0]
    assert _problems(r)[0].startswith("$.metrics.psnr[0]:")


def test_error_message_lists_every_problem():
    r = _example()
    r["k"] = -1
    r["extra"] = 1
    with pytest.raises(ResultsValidationError, match=r"2 problem\(s\)(.|\n)*\$\.k(.|\n)*extra"):
        validate_results(r)
    assert isinstance(ResultsValidationError([]), ValueError)


# --------------------------------------------------------------------------- files


def test_write_read_round_trip_atomic(tmp_path):
    path = tmp_path / "a" / "b" / "result.json"
    r = _full_example()
    assert write_results(r, path) == path
    assert sorted(p.name for p in path.parent.iterdir()) == ["result.json"]  # no temp file left
    assert read_results(path) == r
    assert path.read_text().startswith('{\n  "schema": "jscc-results/1"')
    r2 = _example()
    write_results(r2, str(path))  # overwrite in place
    assert read_results(path) == r2
    assert sorted(p.name for p in path.parent.iterdir()) == ["result.json"]


def test_invalid_object_writes_nothing(tmp_path):
    r = _example()
    r["metrics"]["psnr"][0] = float("nan")
    path = tmp_path / "out" / "result.json"
    with pytest.raises(ResultsValidationError, match="not a finite number"):
        write_results(r, path)
    assert not path.exists()
    assert not (tmp_path / "out").exists()
    good = tmp_path / "good.json"
    write_results(_example(), good)
    before = good.read_text()
    with pytest.raises(ResultsValidationError):
        write_results(r, good)
    assert good.read_text() == before


def test_read_rejects_invalid_file(tmp_path):
    r = _example()
    r["channel"]["fading"] = "slow"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(r))
    with pytest.raises(ResultsValidationError, match=r"\$\.channel: .*'fading' was unexpected"):
        read_results(path)


# --------------------------------------------------------------------------- ratios


def test_bandwidth_ratio_str():
    assert bandwidth_ratio_str(256, 3072) == "1/12"
    assert bandwidth_ratio_str(512, 3072) == "1/6"
    assert bandwidth_ratio_str(3, 3) == "1/1"
    assert bandwidth_ratio_str(46 * 32 * 32 // 32, 3 * 32 * 32) == "23/48"  # c = 46: 2k = c*H*W/16
    for k, n in [(0, 3072), (256, 0), (2.0, 3), (True, 3)]:
        with pytest.raises(ValueError, match="positive integers"):
            bandwidth_ratio_str(k, n)


def test_parse_ratio():
    assert parse_ratio("1/12") == Fraction(1, 12)
    assert parse_ratio(" 2/12 ") == Fraction(1, 6)
    assert parse_ratio("0.125") == Fraction(1, 8)
    assert parse_ratio("3") == 3
    for bad in ["", "1/", "a/b", "1/0", "1//2", "nan", "inf", "0", "-1/12"]:
        with pytest.raises(ValueError):
            parse_ratio(bad)
    with pytest.raises(TypeError):
        parse_ratio(0.5)


# --------------------------------------------------------------------------- provenance


def test_provenance(tmp_path):
    ckpt = tmp_path / "model.pt"
    torch.save({"w": torch.arange(3)}, ckpt)
    p = provenance(command="jscc sweep --model deepjscc", checkpoint_path=ckpt, device="cpu", seed=7)
    assert p["checkpoint_sha256"] == sha256_file(ckpt)
    assert re.fullmatch("[0-9a-f]{64}", p["checkpoint_sha256"])
    assert p["torch"] == torch.__version__
    assert p["command"] == "jscc sweep --model deepjscc"
    assert p["device"] == "cpu" and p["seed"] == 7
    assert p["git_commit"] is None or re.fullmatch("[0-9a-f]{40}(-dirty)?", p["git_commit"])
    r = _example()
    r["provenance"] = p
    validate_results(r)
    bare = provenance()
    assert bare["checkpoint_sha256"] is None and "seed" not in bare and "device" not in bare
    assert isinstance(bare["command"], str)


def test_sha256_file_chunked(tmp_path):
    import hashlib

    data = bytes(range(256)) * 1000
    f = tmp_path / "blob"
    f.write_bytes(data)
    assert sha256_file(f, chunk_size=1000) == sha256_file(f) == hashlib.sha256(data).hexdigest()


def test_written_files_follow_the_umask(tmp_path):
    """Atomic writers publish with the permissions of a normally created file (mkstemp makes 0600)."""
    import os
    import stat

    from jscc.results import atomic_torch_save, write_json

    old = os.umask(0o022)
    try:
        write_json({"a": 1}, tmp_path / "r.json")
        atomic_torch_save({"a": 1}, tmp_path / "c.pt")
    finally:
        os.umask(old)
    for name in ("r.json", "c.pt"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o644
