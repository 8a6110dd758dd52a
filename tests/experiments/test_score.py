"""``jscc score``: pairing by name, the metrics of each pair, JSON output, one-line errors."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

import jscc.metrics as M
from experiments import cli
from jscc.data import read_image


@pytest.fixture
def folders(tmp_path, write_pngs):
    ref = write_pngs(tmp_path / "ref", [(40, 48), (48, 40), (32, 32)], seed=1)
    (tmp_path / "dist").mkdir()
    for i, a in enumerate(ref):  # reconstructions: darker, saved as lossless PNG and one as .bmp
        ext = "bmp" if i == 1 else "png"
        Image.fromarray((a * 0.8).astype(np.uint8)).save(tmp_path / "dist" / f"img_{i:03d}.{ext}")
    return tmp_path / "ref", tmp_path / "dist", ref


def test_score_folders(folders, tmp_path, capsys):
    ref, dist, arrays = folders
    out = tmp_path / "s.json"
    assert cli.main(["score", "--ref", str(ref), "--dist", str(dist), "--metrics", "psnr", "ssim", "lpips",
                     "--out", str(out), "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert "lpips (lower better)" in printed and "img_001" in printed and "mean" in printed
    res = json.loads(out.read_text())
    assert res["schema"] == "jscc-score/1" and res["n_images"] == 3 and res["metrics"] == ["psnr", "ssim", "lpips"]
    lpips = M.load_lpips()
    for row, a in zip(res["images"], arrays):
        x = torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255
        x_hat = torch.from_numpy((a * 0.8).astype(np.uint8)).permute(2, 0, 1)[None].float() / 255
        assert (row["height"], row["width"]) == a.shape[:2]
        assert row["psnr"] == pytest.approx(M.psnr(x_hat.double(), x.double()).item(), abs=1e-6)
        assert row["ssim"] == pytest.approx(M.ssim(x_hat, x).item(), abs=1e-5)
        with torch.no_grad():
            assert row["lpips"] == pytest.approx(M.lpips_distance(lpips, x_hat, x).item(), abs=1e-5)
    psnrs = [r["psnr"] for r in res["images"]]
    assert res["mean"]["psnr"]["mean"] == pytest.approx(np.mean(psnrs))
    assert res["mean"]["psnr"]["sem"] == pytest.approx(np.std(psnrs) / np.sqrt(2))
    assert res["provenance"]["lpips_backbones"]["alex"]


def test_score_two_files_and_identical_images(folders, tmp_path, capsys):
    ref, _, _ = folders
    out = tmp_path / "same.json"
    assert cli.main(["score", "--ref", str(ref / "img_000.png"), "--dist", str(ref / "img_000.png"),
                     "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["images"][0]["psnr"] is None and res["mean"]["psnr"]["n_infinite"] == 1  # identical: PSNR = inf
    assert res["images"][0]["lpips"] == pytest.approx(0, abs=1e-6)


def test_small_images_drop_lpips_with_a_note(tmp_path, write_pngs, capsys):
    write_pngs(tmp_path / "a", [(24, 24)], seed=1)
    write_pngs(tmp_path / "b", [(24, 24)], seed=2)
    assert cli.main(["score", "--ref", str(tmp_path / "a"), "--dist", str(tmp_path / "b"),
                     "--metrics", "psnr", "ms_ssim", "lpips"]) == 0
    captured = capsys.readouterr()
    assert "too small for lpips" in captured.err and "reporting SSIM instead" in captured.err
    assert "ssim" in captured.out and "lpips" not in captured.out


def _bad_cases(tmp_path, write_pngs):
    write_pngs(tmp_path / "ref", [(32, 32), (32, 32)], seed=1)
    write_pngs(tmp_path / "small", [(32, 32), (28, 32)], seed=2)
    write_pngs(tmp_path / "one", [(32, 32)], seed=3)
    (tmp_path / "broken").mkdir()
    write_pngs(tmp_path / "broken", [(32, 32)], seed=4)
    (tmp_path / "broken" / "img_001.png").write_bytes(b"not a png")
    write_pngs(tmp_path / "dup", [(32, 32), (32, 32)], seed=5)
    Image.new("RGB", (32, 32)).save(tmp_path / "dup" / "img_000.jpg")
    (tmp_path / "empty").mkdir()
    ref = str(tmp_path / "ref")
    return [
        (["--ref", ref, "--dist", str(tmp_path / "small")], "img_001: the reference .* is 32x32 px but .* is 32x28 px"),
        (["--ref", ref, "--dist", str(tmp_path / "one")], r"1 image\(s\) in --ref .* but not in --dist .*: img_001"),
        (["--ref", ref, "--dist", str(tmp_path / "broken")], "cannot read image .*img_001.png"),
        (["--ref", ref, "--dist", str(tmp_path / "dup")], "have the same name"),
        (["--ref", ref, "--dist", str(tmp_path / "nowhere")], "--dist .*nowhere: no such file or folder"),
        (["--ref", ref, "--dist", str(tmp_path / "one" / "img_000.png")], "must both be files or both be folders"),
        (["--ref", ref, "--dist", str(tmp_path / "empty")], "--dist no images"),
    ]


def test_score_errors_are_one_line(tmp_path, write_pngs, capsys):
    for argv, match in _bad_cases(tmp_path, write_pngs):
        out = tmp_path / "never.json"
        assert cli.main(["score", *argv, "--out", str(out)]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and err.startswith("jscc score: error: "), err

        assert re.search(match, err), (match, err)
        assert not out.exists()


def test_bad_counts_are_refused_by_the_parser(tmp_path, write_pngs, capsys):
    write_pngs(tmp_path / "a", [(32, 32)])
    assert cli.main(["score", "--ref", str(tmp_path / "a"), "--dist", str(tmp_path / "a"), "--batch-size", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "argument --batch-size: must be a positive integer, got 0" in err


def test_read_image_16_bit_grey(tmp_path):
    """A 16-bit PNG is scaled to 8 bits, not clipped (it used to read as almost white)."""
    values = np.full((8, 8), 30000, dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as im:
        assert im.mode.startswith("I")
    img = read_image(tmp_path / "g16.png")
    assert img.shape == (3, 8, 8) and img.dtype == torch.uint8
    assert int(img[0, 0, 0]) == round(30000 / 257)
