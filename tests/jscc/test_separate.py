"""Separate source-channel coding baseline: codec bytes over capacity and 5G LDPC links, the cliff."""
from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest
import skimage.data
import torch

from experiments import baseline as baseline_cli
from experiments import plot as plot_cli
from channels.links import BlerTable, transport_block_info_bits, transport_block_layout
from jscc.baselines.separate import PSNR_CAP_DB, SeparateBaseline, baseline_results, channel_uses
from jscc.data import ImageSet
from jscc.results import read_results, validate_results


@pytest.fixture(scope="module")
def photos() -> ImageSet:
    """Six 32x32 crops of scikit-image's astronaut (uint8, offline)."""
    im = torch.from_numpy(skimage.data.astronaut()).permute(2, 0, 1)
    crops = [im[:, 100 + 40 * i : 132 + 40 * i, 150 + 30 * i : 182 + 30 * i] for i in range(6)]
    return ImageSet(torch.stack(crops).contiguous(), "astronaut-crops")


def test_channel_uses_exact_arithmetic():
    assert channel_uses((32, 32), Fraction(1, 12)) == 256
    assert channel_uses((512, 768), Fraction(1, 16)) == 73728
    with pytest.raises(ValueError, match="not a positive integer"):
        channel_uses((32, 32), Fraction(1, 7))


def test_capacity_awgn_cliff(photos):
    """Above the design SNR every image gets its codec reconstruction, below it the fallback."""
    b = SeparateBaseline(photos, link="capacity", bandwidth_ratio="1/6", workers=1)
    point = b.capacity_point(20.0)
    assert point.bits == 3409  # floor(512 log2 101) = floor(3409.004)
    assert point.budget_bytes == 426
    assert b.capacity_point(0.0).bits == 512  # log2(2) = 1 exactly
    out = b.sweep([10.0, 19.9, 20.0, 25.0], 20.0, n_channel_draws=2)
    psnr = out["metrics"]["psnr"]
    fallback = float(np.mean(-10 * np.log10(b.fallback_mse)))
    delivered = float(b.psnr_delivered(point).mean())
    assert psnr[0] == pytest.approx(fallback) and psnr[1] == pytest.approx(fallback)
    assert psnr[2] == pytest.approx(delivered) and psnr[3] == pytest.approx(delivered)
    assert delivered > fallback + 8  # 426 bytes of JPEG2000 beat the image mean by far
    # Above the cliff the curve is flat: more SNR buys nothing.
    assert psnr[2] == psnr[3]


def test_lpips_and_ssim_follow_the_cliff(photos):
    """Each metric is the codec reconstruction's where the link delivers and the fallback's where it fails."""
    import jscc.metrics as M

    b = SeparateBaseline(photos, link="capacity", bandwidth_ratio="1/6", workers=1, metrics=("psnr", "ssim", "lpips"))
    assert b.metrics == ["ssim", "lpips"] and b.metric_notes == []
    point = b.capacity_point(20.0)
    out = b.sweep([10.0, 25.0], 20.0, n_channel_draws=2)["metrics"]
    x = torch.stack([torch.from_numpy(im).permute(2, 0, 1) for im in b.images]).float() / 255
    recs = torch.stack([torch.from_numpy(np.array(r.reconstruction)).permute(2, 0, 1)
                        for r in b._results[point.budget_bytes]]).float() / 255
    lpips = M.load_lpips()
    with torch.no_grad():
        assert out["lpips"][1] == pytest.approx(M.lpips_distance(lpips, recs, x).double().mean().item(), abs=1e-6)
        assert out["ssim"][1] == pytest.approx(M.ssim(recs, x).double().mean().item(), abs=1e-6)
    assert out["lpips"][0] == pytest.approx(float(b.fallback_scores["lpips"].mean()))
    assert out["lpips"][0] > out["lpips"][1] + 0.1 and out["ssim"][0] < out["ssim"][1]  # the cliff in every metric
    small = ImageSet(torch.zeros(2, 3, 24, 24, dtype=torch.uint8), "tiny")
    b = SeparateBaseline(small, link="capacity", bandwidth_ratio="1/6", workers=1, metrics=("psnr", "lpips"))
    assert b.metrics == [] and ">= 31 px" in b.metric_notes[0]
    with pytest.raises(ValueError, match="unknown metrics"):
        SeparateBaseline(small, bandwidth_ratio="1/6", workers=1, metrics=("fid",))


def test_quality_grows_with_design_snr_and_oracle_is_the_envelope(photos):
    b = SeparateBaseline(photos, link="capacity", bandwidth_ratio="1/6", workers=1)
    designs = [12.0, 16.0, 20.0, 24.0]
    delivered = [b.psnr_delivered(b.capacity_point(d)).mean() for d in designs]
    assert all(x <= y + 1e-9 for x, y in zip(delivered, delivered[1:]))
    snrs = [12.0, 20.0]
    oracle = b.sweep(snrs, "oracle", n_channel_draws=1)["metrics"]["psnr"]
    for d in designs:
        fixed = b.sweep(snrs, d, n_channel_draws=1)["metrics"]["psnr"]
        assert all(o >= f - 1e-9 for o, f in zip(oracle, fixed))


def test_awgn_capacity_oracle_is_the_best_feasible_design_and_codes_only_those_budgets(photos):
    """On AWGN a capacity code works iff snr >= design: the oracle codes only the designs <= snr and
    picks the best of them (or the fallback), exactly as a search over the whole grid would."""
    from jscc.baselines.separate import CAPACITY_DESIGN_GRID

    b = SeparateBaseline(photos, link="capacity", bandwidth_ratio="1/6", workers=1)
    snrs = [-6.0, 3.0, 12.0]
    oracle = b.sweep(snrs, "oracle", n_channel_draws=1)
    assert oracle["points"][0] is None
    assert sorted(b._source) == sorted({b.capacity_point(d).budget_bytes for d in CAPACITY_DESIGN_GRID if d <= 12.0})
    fallback = float(np.mean(-10 * np.log10(b.fallback_mse)))
    for snr, psnr in zip(snrs, oracle["metrics"]["psnr"]):  # brute force over every design of the grid
        expected = [b.psnr_delivered(b.capacity_point(d)).mean() if d <= snr else fallback for d in CAPACITY_DESIGN_GRID]
        assert psnr == pytest.approx(max(expected), abs=1e-9)


def test_fallback_when_nothing_fits(photos):
    """At 0 dB and k/n = 1/48 (k = 64 uses: 8 bytes) no JPEG2000 codestream fits: always the fallback."""
    b = SeparateBaseline(photos, link="capacity", bandwidth_ratio="1/48", workers=1)
    point = b.capacity_point(0.0)
    assert point.budget_bytes == 8
    np.testing.assert_allclose(b.psnr_delivered(point), -10 * np.log10(b.fallback_mse))
    mean = b.sweep([5.0], 0.0, n_channel_draws=1)["metrics"]["psnr"][0]
    assert mean == pytest.approx(float(np.mean(-10 * np.log10(b.fallback_mse))))


def test_results_count_delivered_and_fallen_back_images_per_snr(photos):
    """Below the cliff every (image, draw) falls back; above it those whose codestream fits are delivered."""
    b = SeparateBaseline(photos, link="capacity", bandwidth_ratio="1/6", workers=1)
    res = baseline_results(b, [10.0, 25.0], 20.0, n_channel_draws=2)
    validate_results(res)
    fits = sum(r is not None for r in b._results[b.capacity_point(20.0).budget_bytes])
    assert fits > 0
    assert res["delivery"] == {"unit": "image x channel draw", "delivered": [0, 2 * fits],
                               "fell_back": [12, 12 - 2 * fits]}
    with pytest.raises(ValueError, match=r"\$\.delivery\.fell_back: has 1 values but snr_db has 2"):
        validate_results({**res, "delivery": {**res["delivery"], "fell_back": [12]}})


def test_baseline_cli_warns_when_everything_fell_back(tmp_path, write_pngs, capsys):
    """At k/n = 1/48 designed for 0 dB (8 bytes per image) no JPEG2000 codestream fits: a flat curve, flagged."""
    write_pngs(tmp_path / "imgs", [(32, 32)] * 2)
    out = tmp_path / "r.json"
    assert baseline_cli.main(["--data", str(tmp_path / "imgs"), "--design-snr", "0", "--snr", "0,10",
                              "--bandwidth-ratio", "1/48", "--n-channel-draws", "1", "--metrics", "psnr",
                              "--workers", "1", "--quiet", "--out", str(out)]) == 0
    assert read_results(out)["delivery"] == {"unit": "image x channel draw", "delivered": [0, 0], "fell_back": [2, 2]}
    printed = capsys.readouterr()
    assert "every image x channel draw fell back to the image_mean at every SNR" in printed.err
    assert "delivered (the rest fell back), per image x channel draw: 0: 0/2, 10: 0/2" in printed.out


def test_dataset_mean_fallback_is_worse_than_image_mean(photos):
    image_mean = SeparateBaseline(photos, fallback="image_mean", workers=1).fallback_mse
    dataset_mean = SeparateBaseline(photos, fallback="dataset_mean", workers=1).fallback_mse
    assert dataset_mean.mean() > image_mean.mean()


def test_capacity_rayleigh_outage_rate(photos):
    """Slow fading: the fraction of delivered images matches 1 - P_out(R) = exp(-(2^R - 1)/snr)."""
    b = SeparateBaseline(photos, link="capacity", channel="rayleigh", bandwidth_ratio="1/6", workers=1)
    point = b.capacity_point(10.0)
    gen = torch.Generator().manual_seed(0)
    ok = np.concatenate([b.delivered(point, 10.0, gen) for _ in range(3000)])  # 18,000 (image, draw) pairs
    rate = np.log2(11.0)
    expected = np.exp(-(2**rate - 1) / 10.0)  # 0.368
    assert abs(ok.mean() - expected) < 0.015  # ~4 sigma of a binomial proportion at n = 18,000


def test_ldpc_exact_link_delivers_codec_bytes_at_high_snr_and_fails_at_low(photos):
    b = SeparateBaseline(photos, link="ldpc", ldpc_mode="exact", bandwidth_ratio="1/6", accounting="payload", workers=1)
    point = b.ldpc_point("16QAM-r1/2")
    assert point.bits == transport_block_info_bits(512, "16QAM-r1/2")
    gen = torch.Generator().manual_seed(0)
    b.code([point.budget_bytes])
    fits = np.array([r is not None for r in b._results[point.budget_bytes]])
    assert fits.any()
    np.testing.assert_array_equal(b.delivered(point, 30.0, gen), fits)
    assert not b.delivered(point, -10.0, gen).any()
    high = b.sweep([30.0], "16QAM-r1/2", n_channel_draws=1)["metrics"]["psnr"][0]
    assert high == pytest.approx(float(b.psnr_delivered(point).mean()))


def test_bad_input(photos):
    with pytest.raises(ValueError, match="unknown codec"):
        SeparateBaseline(photos, codec="bpg")
    with pytest.raises(ValueError, match="unknown link"):
        SeparateBaseline(photos, link="turbo")
    with pytest.raises(ValueError, match="unknown fallback"):
        SeparateBaseline(photos, fallback="zeros")
    with pytest.raises(ValueError):
        SeparateBaseline(photos, bandwidth_ratio="one twelfth")
    b = SeparateBaseline(photos, workers=1)
    with pytest.raises(ValueError, match="design must be"):
        b.sweep([10.0], "best")
    with pytest.raises(SystemExit, match="--mcs applies"):
        baseline_cli.main(["--mcs", "QPSK-r1/2", "--out", "x.json"])


def test_results_are_schema_valid_and_record_the_setup(photos):
    b = SeparateBaseline(photos, link="capacity", bandwidth_ratio="1/12", accounting="payload", workers=1)
    res = baseline_results(b, [0.0, 10.0, 20.0], 10.0, n_channel_draws=2)
    validate_results(res)
    assert res["method"] == "separate" and res["codec"] == "jpeg2000" and res["link"] == "capacity"
    assert res["design_snr_db"] == 10.0 and res["byte_accounting"] == "payload" and res["fallback"] == "image_mean"
    assert res["k"] == 256 and res["bandwidth_ratio_str"] == "1/12"
    assert max(res["metrics"]["psnr"]) < PSNR_CAP_DB


def test_baseline_cli_and_plot(tmp_path, write_pngs):
    write_pngs(tmp_path / "imgs", [(32, 32)] * 4)
    out = tmp_path / "res"
    assert baseline_cli.main(["--data", str(tmp_path / "imgs"), "--design-snr", "5", "15", "--design", "oracle",
                              "--snr", "-5:20:5", "--bandwidth-ratio", "1/6", "--n-channel-draws", "2",
                              "--workers", "1", "--quiet", "--out", str(out)]) == 0
    files = sorted(out.glob("*.json"))
    assert len(files) == 3
    for f in files:
        res = read_results(f)
        assert res["snr_db"] == [-5.0, 0.0, 5.0, 10.0, 15.0, 20.0] and res["n_channel_draws"] == 2
    png = tmp_path / "cliff.png"
    assert plot_cli.main([*map(str, files), "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_baseline_cli_fast_bler_budget_builds_the_cheaper_table(tmp_path, write_pngs, monkeypatch):
    monkeypatch.setenv("JSCC_CACHE_DIR", str(tmp_path / "cache"))
    write_pngs(tmp_path / "imgs", [(16, 16)] * 2)
    out = tmp_path / "ldpc.json"
    assert baseline_cli.main(["--data", str(tmp_path / "imgs"), "--link", "ldpc", "--mcs", "QPSK-r1/2",
                              "--bler-budget", "fast", "--snr", "0,20", "--bandwidth-ratio", "1/6",
                              "--byte-accounting", "payload", "--workers", "1", "--quiet", "--out", str(out)]) == 0
    validate_results(read_results(out))
    (table,) = (tmp_path / "cache" / "bler").glob("*.json")
    key = json.loads(table.read_text())["key"]
    assert (key["n_blocks"], key["max_errors"], key["batch_size"]) == (300, 20, 20)
    assert np.allclose(np.diff(key["snr_db_grid"]), 0.1)
    with pytest.raises(SystemExit):
        baseline_cli.main(["--bler-budget", "tiny", "--out", str(out)])


def _step_table(k: int, mcs, threshold_db: float) -> BlerTable:
    """A synthetic AWGN BLER table: 1 up to ``threshold_db``, 0 from 1e-6 dB above (no simulation)."""
    key = {"k": k, "mcs": mcs.name, "tb_size": transport_block_info_bits(k, mcs)}
    return BlerTable(key=key, snr_db=np.array([threshold_db, threshold_db + 1e-6]), bler=np.array([1.0, 0.0]),
                     n_blocks=np.array([100, 100]), n_errors=np.array([100, 0]))


def test_ldpc_awgn_oracle_reads_few_tables_and_equals_the_search_through_all(photos):
    b = SeparateBaseline(photos, link="ldpc", bandwidth_ratio="1/6", accounting="payload", workers=1)
    read = []

    def table(mcs):
        read.append(mcs.name)
        return _step_table(b.k, mcs, transport_block_layout(b.k, mcs).shannon_limit_db + 1.0)

    b.table = table
    fallback = float(np.mean(-10 * np.log10(b.fallback_mse)))

    def expected(point, snr):
        p = b.success_probability(point, snr)
        return p * float(b.psnr_delivered(point).mean()) + (1 - p) * fallback

    for snr in (3.0, 11.0, 30.0):
        read.clear()
        cands = b.ldpc_awgn_oracle_candidates(snr)
        # most payload first, every one within capacity, stopping at the first that delivers everything
        assert [p.bits for p in cands] == sorted((p.bits for p in cands), reverse=True)
        assert [b.success_probability(p, snr) for p in cands][-1] == 1.0 and len(set(read)) == len(cands) < 25
        best = max(expected(p, snr) for p in b.candidates())
        assert expected(b.choose("oracle", snr), snr) == pytest.approx(best, abs=1e-9)


def test_portrait_and_landscape_images_of_one_pixel_count_mix(photos):
    """Kodak mixes 768x512 and 512x768: one k, per-image MSE against each image's own orientation."""
    land = photos.images[0][:, :32, :16].contiguous()
    port = photos.images[1][:, :16, :32].contiguous()
    mixed = ImageSet([land, port], "mixed")
    b = SeparateBaseline(mixed, link="capacity", bandwidth_ratio="1/6", accounting="payload", workers=1,
                         fallback="dataset_mean")
    assert b.k == channel_uses((32, 16), Fraction(1, 6))
    above, below = b.sweep([30.0, -5.0], 20.0, n_channel_draws=1)["metrics"]["psnr"]
    assert above > below
    single = SeparateBaseline(ImageSet([port], "port"), link="capacity", bandwidth_ratio="1/6", accounting="payload",
                              workers=1)
    assert single.sweep([30.0], 20.0, n_channel_draws=1)["metrics"]["psnr"][0] == pytest.approx(
        SeparateBaseline(mixed, link="capacity", bandwidth_ratio="1/6", accounting="payload",
                         workers=1).psnr_delivered(single.capacity_point(20.0))[1])


def test_ldpc_and_capacity_over_ofdm_and_mimo(tmp_path, write_pngs):
    # 16QAM-1/2 at k = 512 (129 payload bytes): over OFDM with H = 1 and perfect CSI every image gets through at
    # 25 dB and none at -5 dB (below capacity); MIMO 2x2 with SVD precoding likewise at 40 / -10 dB.
    write_pngs(tmp_path / "imgs", [(32, 32)] * 3)
    runs = {"ofdm": ["--channel", "ofdm", "--ofdm-model", "none", "--csi", "perfect", "--snr", "-5", "25"],
            "mimo": ["--channel", "mimo", "--antennas", "2x2", "--csi", "transmitter", "--snr", "-10", "40"]}
    for name, extra in runs.items():
        out = tmp_path / f"{name}.json"
        assert baseline_cli.main(["--data", str(tmp_path / "imgs"), "--link", "ldpc", "--ldpc-mode", "exact",
                                  "--mcs", "16QAM-r1/2", *extra, "--bandwidth-ratio", "1/6", "--n-channel-draws", "2",
                                  "--metrics", "psnr", "--workers", "1", "--quiet", "--out", str(out)]) == 0
        res = read_results(out)
        assert res["channel"]["name"] == name and res["channel"]["equalization"] == "zf"
        assert res["delivery"]["delivered"] == [0, 6], name
    # capacity references over the links: H = 1 is AWGN (design 10 dB: the cliff at 10 dB); 2x2 MIMO with CSI at
    # the receiver designed for its own SNR (match) falls into outage on some draws
    out = tmp_path / "cap"
    assert baseline_cli.main(["--data", str(tmp_path / "imgs"), "--link", "capacity", "--channel", "ofdm",
                              "--ofdm-model", "none", "--csi", "perfect", "--design-snr", "10", "--snr", "9.9", "10",
                              "--bandwidth-ratio", "1/6", "--n-channel-draws", "2", "--metrics", "psnr", "--workers",
                              "1", "--quiet", "--out", str(out / "ofdm.json")]) == 0
    assert read_results(out / "ofdm.json")["delivery"]["delivered"] == [0, 6]
    assert baseline_cli.main(["--data", str(tmp_path / "imgs"), "--link", "capacity", "--channel", "mimo",
                              "--design", "match", "--snr", "10", "--bandwidth-ratio", "1/6", "--n-channel-draws", "20",
                              "--metrics", "psnr", "--workers", "1", "--quiet", "--out", str(out / "mimo.json")]) == 0
    assert 0 < read_results(out / "mimo.json")["delivery"]["delivered"][0] < 60
    # the capacity oracle over a fading link backs off from the average SNR (its success probability is the
    # fraction of 4,000 seeded draws whose information reaches the rate): never worse than `match` in expectation
    from channels import MIMO

    b = SeparateBaseline(ImageSet(torch.from_numpy(np.stack(write_pngs(tmp_path / "b", [(32, 32)] * 3))).permute(
        0, 3, 1, 2).contiguous(), "b"), link="capacity", channel=MIMO(equalization="zf"), bandwidth_ratio="1/6",
        workers=1)
    match, oracle = b.capacity_point(10.0), b.choose("oracle", 10.0)
    expected = {p: b.success_probability(p, 10.0) for p in (match, oracle)}
    assert oracle.design_snr_db < 10.0 and 0 < expected[match] < expected[oracle] <= 1
    with pytest.raises(SystemExit, match="equalises with zf"):
        baseline_cli.main(["--data", str(tmp_path / "imgs"), "--link", "ldpc", "--ldpc-mode", "exact", "--channel",
                           "ofdm", "--equalization", "mmse", "--mcs", "16QAM-r1/2", "--out", str(tmp_path / "x.json")])
    from channels import OFDM

    with pytest.raises(ValueError, match="--link capacity or --link ldpc --ldpc-mode exact"):
        SeparateBaseline(ImageSet(torch.zeros(1, 3, 32, 32, dtype=torch.uint8), "x"), link="ldpc",
                         channel=OFDM(equalization="zf"), bandwidth_ratio="1/6")
