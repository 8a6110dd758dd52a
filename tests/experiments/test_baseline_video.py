"""``jscc baseline`` on video clips (--codec h264 --frames T --gop G), in process."""
from __future__ import annotations

import pytest

import jscc.baselines.video_codecs as vc
from experiments import baseline as baseline_cli
from experiments import plot as plot_cli
from jscc.results import read_results


@pytest.mark.skipif(not vc.video_codec_available("h264"), reason="PyAV with libx264 not installed")
def test_baseline_cli_video_clips(tmp_path, write_panning_clips):
    """Two frame folders of 5 PNG frames (32x32, a smooth image panning 2 px per frame) -> valid results files."""
    write_panning_clips(tmp_path / "clips")
    common = ["--codec", "h264", "--frames", "5", "--gop", "4", "--link", "capacity", "--snr", "0:20:10",
              "--bandwidth-ratio", "1/12", "--data", str(tmp_path / "clips"), "--n-channel-draws", "2",
              "--workers", "1", "--quiet"]
    assert baseline_cli.main([*common, "--design-snr", "10", "--out", str(tmp_path / "h264.json")]) == 0
    res = read_results(tmp_path / "h264.json")  # validates
    assert res["codec"] == "h264" and res["k"] == 1280 and res["bandwidth_ratio_str"] == "1/12"
    assert res["dataset"]["n_images"] == 2 and res["snr_db"] == [0.0, 10.0, 20.0] and res["n_channel_draws"] == 2
    assert res["byte_accounting"] == "payload" and res["fallback"] == "clip_mean" and res["design_snr_db"] == 10.0
    assert len(res["metrics_per_frame"]) == 5
    psnr = res["metrics"]["psnr"]
    assert psnr[0] + 10 < psnr[1] == psnr[2]  # the cliff at the design SNR
    assert res["provenance"]["command"].startswith("jscc baseline --codec h264")
    # several policies -> a folder, one file each; plottable by jscc plot
    out = tmp_path / "res"
    assert baseline_cli.main([*common, "--design-snr", "5", "15", "--out", str(out)]) == 0
    files = sorted(out.glob("*.json"))
    assert [f.name for f in files] == ["h264-gop4-capacity-awgn-payload-design15dB.json",
                                       "h264-gop4-capacity-awgn-payload-design5dB.json"]
    png = tmp_path / "cliff.png"
    assert plot_cli.main([str(tmp_path / "h264.json"), *map(str, files), "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
