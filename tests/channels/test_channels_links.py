"""Digital links of the separate source-channel coding baseline (channels/links.py).

Offline; Monte-Carlo budgets are small (k = 256 channel uses, a few hundred blocks), the
tolerances are stated at each assertion.
"""

from __future__ import annotations

import json
import math
import warnings
from fractions import Fraction

import numpy as np
import pytest
import torch

from channels import links as L
from channels import rayleigh, rayleigh_outage_probability

K = 256  # channel uses per image (CIFAR-10 at bandwidth ratio 1/12)


def _binomial_tol(p: float, n1: int, n2: int | None = None, sigmas: float = 4.0) -> float:
    """``sigmas`` standard deviations of a difference of two binomial proportions (or one vs truth)."""
    p = min(max(p, 0.02), 0.98)  # floor so that near-0/1 rates still get a sensible tolerance
    var = p * (1 - p) * (1 / n1 + (1 / n2 if n2 else 0.0))
    return sigmas * math.sqrt(var)


def _toy_table(snr_db, bler, k=K, mcs="QPSK-r1/2", tb_size=256) -> L.BlerTable:
    snr_db = np.asarray(snr_db, float)
    return L.BlerTable(key={"k": k, "mcs": mcs, "tb_size": tb_size}, snr_db=snr_db,
                       bler=np.asarray(bler, float), n_blocks=np.full(snr_db.size, 100),
                       n_errors=(np.asarray(bler) * 100).astype(int))


# ----------------------------------------------------------------------------------------
# Capacity link
# ----------------------------------------------------------------------------------------


def test_capacity_link_bits_exact():
    assert L.capacity_link_bits(256, 10.0) == 885  # floor(256 * log2(11)) = floor(885.61)
    assert L.capacity_link_bits(256, 0.0) == 256  # log2(2) = 1
    assert L.capacity_link_bits(1, 0.0) == 1
    assert L.capacity_link_bits(512, 20.0) == math.floor(512 * math.log2(1 + 100))


def test_capacity_awgn_success_iff_snr_at_least_design():
    snr = torch.tensor([-5.0, 9.99, 10.0, 10.01, 30.0])
    assert L.capacity_awgn_success(snr, 10.0).tolist() == [False, False, True, True, True]
    assert bool(L.capacity_awgn_success(10.0, 10.0)) and not bool(L.capacity_awgn_success(9.0, 10.0))


def test_capacity_rayleigh_outage_matches_closed_form():
    # 200k draws per point: the standard error of a proportion is <= 0.0011; tolerance 5 sigma.
    n, k = 200_000, 256
    for snr_db, design_db in [(10.0, 5.0), (5.0, 5.0), (20.0, 15.0), (0.0, -3.0)]:
        bits = L.capacity_link_bits(k, design_db)
        rate = bits / k
        ok, h = L.capacity_rayleigh_success(bits, k, snr_db, batch_size=n, generator=torch.Generator().manual_seed(1))
        assert ok.shape == (n,) and ok.dtype == torch.bool and h.shape == (n,) and h.is_complex()
        p_out = 1 - math.exp(-(2**rate - 1) / 10 ** (snr_db / 10))
        assert math.isclose(p_out, rayleigh_outage_probability(rate, snr_db), rel_tol=1e-9)
        tol = 5 * math.sqrt(p_out * (1 - p_out) / n)
        assert abs((~ok).double().mean().item() - p_out) <= tol, (snr_db, design_db)


def test_capacity_rayleigh_uses_project_fading_and_given_h():
    # The h drawn for an image is the one channels.rayleigh draws first from the same stream.
    ok, h = L.capacity_rayleigh_success(100, 64, 10.0, batch_size=5, generator=torch.Generator().manual_seed(3))
    _, h_ref = rayleigh(torch.ones(5, 64, dtype=torch.complex64), 10.0, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(h, h_ref.reshape(5))
    # Given h: success iff log2(1 + |h|^2 snr) >= R (R = 2 here, needs |h|^2 snr >= 3).
    h = torch.tensor([1.0, 0.5, 0.1j, 0.6 - 0.1j], dtype=torch.complex64)
    ok, h_out = L.capacity_rayleigh_success(128, 64, 10.0, h=h)
    gain = h.abs().double() ** 2 * 10
    assert ok.tolist() == (gain >= 3).tolist() and torch.equal(h_out, h)
    # Per-image SNRs.
    ok, _ = L.capacity_rayleigh_success(128, 64, torch.tensor([0.0, 10.0]), h=torch.ones(2, dtype=torch.complex64))
    assert ok.tolist() == [False, True]


def test_rayleigh_capacity_rate_choice_toy():
    rates = [0.5, 1.0, 2.0, 4.0]
    quality = [20.0, 24.0, 28.0, 35.0]
    snr_db, fb = 10.0, 12.0
    p_out = np.array([rayleigh_outage_probability(r, snr_db) for r in rates])
    expected = (1 - p_out) * np.array(quality) + p_out * fb
    choice = L.rayleigh_capacity_rate_choice(snr_db, rates, quality, fb)
    assert choice.index == int(np.argmax(expected))
    assert choice.rate == rates[choice.index]
    assert math.isclose(choice.expected_quality, expected.max(), rel_tol=1e-12)
    assert math.isclose(choice.outage_probability, p_out[choice.index], rel_tol=1e-12)
    # A callable quality gives the same choice; a flat quality picks the lowest rate.
    assert L.rayleigh_capacity_rate_choice(snr_db, rates, dict(zip(rates, quality)).__getitem__, fb) == choice
    assert L.rayleigh_capacity_rate_choice(snr_db, rates, [30.0] * 4, fb).index == 0


# ----------------------------------------------------------------------------------------
# MCS and transport block layout
# ----------------------------------------------------------------------------------------


def test_mcs_grid_and_names():
    assert len(L.MCS_GRID) == 25
    se = [m.spectral_efficiency for m in L.MCS_GRID]
    assert se == sorted(se)
    m = L.MCS(16, Fraction(1, 2))
    assert m.name == "16QAM-r1/2" and m.bits_per_symbol == 4 and m.spectral_efficiency == 2.0
    assert L.MCS.parse("16qam-r1/2") == m == L.MCS("16QAM", "1/2") == L.MCS(16, 0.5)
    bpsk = L.MCS(2, "1/3")
    assert bpsk.name == "BPSK-r1/3" and bpsk.constellation_type == "pam" and bpsk.bits_per_symbol == 1
    assert {m.name for m in L.MCS_GRID} >= {"BPSK-r1/3", "QPSK-r5/6", "256QAM-r5/6", "64QAM-r2/3"}


@pytest.mark.parametrize("k", [256, 768])
def test_transport_block_layout_arithmetic(k):
    for mcs in L.MCS_GRID:
        lay = L.transport_block_layout(k, mcs)
        n = k * mcs.bits_per_symbol
        assert lay.num_coded_bits == n and sum(lay.codeword_lengths) == n
        assert lay.tb_size == L.transport_block_info_bits(k, mcs) and lay.tb_size % 8 == 0
        assert lay.tb_crc_bits == (24 if lay.tb_size > 3824 else 16)
        n_crc = lay.tb_crc_bits + lay.num_code_blocks * lay.cb_crc_bits
        # Info + CRC bits fill one code block each (plus filler up to the lifting size) ...
        assert lay.num_code_blocks * (lay.cb_size - lay.cb_crc_bits) == lay.tb_size + lay.tb_crc_bits
        assert lay.filler_bits >= 0
        # ... and the effective rate is the target rate up to 38.214 TBS quantisation and the CRC.
        assert lay.effective_code_rate == pytest.approx((lay.tb_size + n_crc) / n)
        assert lay.tb_size <= float(mcs.rate) * n * 1.1 + 24
        assert (lay.tb_size + n_crc) / n <= 0.95
        assert float(mcs.rate) * 0.85 <= lay.effective_code_rate


def test_documented_layout_values():
    # 38.214 TBS for N_info = r * n, as Sionna's calculate_tb_size / TBEncoder compute it.
    assert L.transport_block_info_bits(256, "QPSK-r1/2") == 256
    assert L.transport_block_info_bits(256, "16QAM-r1/2") == 528
    assert L.transport_block_info_bits(256, "256QAM-r5/6") == 1736
    assert L.transport_block_info_bits(768, "256QAM-r5/6") == 5120  # > 3824: CRC24A
    assert L.transport_block_layout(768, "256QAM-r5/6").tb_crc_bits == 24


def test_segmented_transport_block():
    lay = L.transport_block_layout(4096, "64QAM-r5/6")  # ~20k info bits: several code blocks
    assert lay.num_code_blocks > 1 and lay.cb_crc_bits == 24
    assert lay.cb_size - lay.cb_crc_bits <= 8448 - 24
    assert sum(lay.codeword_lengths) == 4096 * 6


# ----------------------------------------------------------------------------------------
# Bit-exact LDPC link
# ----------------------------------------------------------------------------------------


def test_ldpc_link_high_snr_exact_and_low_snr_fails():
    link = L.get_link(K, "QPSK-r1/2")
    g = torch.Generator().manual_seed(0)
    bits = link.random_payload(8, g)
    x = link.modulate(bits)
    assert x.shape == (8, K) and x.dtype == torch.complex64  # exactly k modulated symbols
    assert x.abs().square().mean().item() == pytest.approx(1.0, abs=0.1)
    ok, bits_hat, h = link.transmit(bits, 30.0, generator=g)
    assert ok.dtype == torch.bool and ok.all() and h is None
    assert torch.equal(bits_hat, bits)
    ok, bits_hat, _ = link.transmit(bits, -10.0, generator=g)
    assert not ok.any()


def test_ldpc_link_bytes_round_trip_and_budget():
    link = L.get_link(K, "QPSK-r1/2")
    payloads = [b"jpeg2000 codestream", bytes(range(32)), b""]
    ok, got, _ = link.send_bytes(payloads, 30.0, generator=torch.Generator().manual_seed(0))
    assert ok.all() and got == payloads
    with pytest.raises(ValueError, match="exceed the transport block of 32 bytes"):
        link.send_bytes([bytes(33)], 30.0)


def test_ldpc_link_every_modulation_high_snr():
    g = torch.Generator().manual_seed(1)
    for mcs in ["BPSK-r1/3", "16QAM-r2/3", "64QAM-r3/4", "256QAM-r5/6"]:
        link = L.get_link(K, mcs)
        bits = link.random_payload(4, g)
        ok, bits_hat, _ = link.transmit(bits, 40.0, generator=g)
        assert ok.all() and torch.equal(bits_hat, bits), mcs


def test_ldpc_link_chunked_decoding_is_exact(monkeypatch):
    # Decoding in chunks of TBs (LDPCLink.decode_chunk, bounded by DECODE_CHUNK_BYTES) gives
    # the same bits and CRC flags as one decoder call, near the waterfall too.
    link = L.get_link(K, "QPSK-r1/2")
    assert link.decode_chunk >= 100  # small TBs: batches of 100 are decoded in one call
    bits = link.random_payload(24, torch.Generator().manual_seed(4))
    ok1, hat1, _ = link.transmit(bits, 1.5, generator=torch.Generator().manual_seed(5))
    monkeypatch.setattr(link, "decode_chunk", 5)
    ok2, hat2, _ = link.transmit(bits, 1.5, generator=torch.Generator().manual_seed(5))
    assert torch.equal(ok1, ok2) and torch.equal(hat1, hat2) and 0 < ok1.sum() < 24


def test_ldpc_link_rayleigh_receiver_knows_h():
    link = L.get_link(K, "16QAM-r1/2")
    g = torch.Generator().manual_seed(2)
    bits = link.random_payload(3, g)
    # A strong rotated channel is decoded (coherent detection), a deep fade is not.
    h = torch.tensor([2.0 * np.exp(2.5j), 1.0j, 1e-3], dtype=torch.complex64)
    ok, bits_hat, h_out = link.transmit(bits, 25.0, channel="rayleigh", h=h, generator=g)
    assert ok.tolist() == [True, True, False] and torch.equal(h_out, h)
    assert torch.equal(bits_hat[:2], bits[:2])
    # Drawn h: returned, one per image.
    ok, _, h_out = link.transmit(bits, 25.0, channel="rayleigh", generator=g)
    assert h_out.shape == (3,) and h_out.is_complex()


# ----------------------------------------------------------------------------------------
# BLER tables (fast path) vs exact simulation
# ----------------------------------------------------------------------------------------

WATERFALL = [1.0, 1.5, 2.0, 2.5]  # QPSK-r1/2, k=256: BLER ~0.8, 0.4, 0.1, 0.01


@pytest.fixture(scope="module")
def qpsk_table(tmp_path_factory):
    cache = tmp_path_factory.mktemp("bler")
    with pytest.warns(UserWarning, match="lookups"):  # a grid cut to the waterfall: warned
        table = L.bler_table(K, "QPSK-r1/2", WATERFALL, n_blocks=300, max_errors=300, batch_size=150,
                             seed=5, cache_dir=cache)
    return table, cache


def test_bler_table_waterfall_and_cache_file(qpsk_table, monkeypatch):
    table, cache = qpsk_table
    assert table.snr_db.tolist() == WATERFALL
    assert table.n_blocks[0] == 300 and table.bler[0] > 0.3 and table.bler[-1] < 0.1
    assert (np.diff(table.monotone_bler()) <= 0).all()
    files = list(cache.glob("bler_k256_QPSK-r1_2_it20_*.json"))
    assert len(files) == 1
    obj = json.loads(files[0].read_text())
    assert obj["schema"] == "jscc-bler/1"
    assert {"k", "num_coded_bits", "tb_size", "modulation_order", "code_rate", "num_bp_iter",
            "sionna_version"} <= set(obj["key"])
    assert obj["key"]["tb_size"] == 256 and obj["key"]["num_coded_bits"] == 512

    # Second call: loaded from the file, no simulation.
    def boom(*a, **kw):
        raise AssertionError("simulated although the table is cached")

    monkeypatch.setattr(L, "_simulate_bler_point", boom)
    again = L.bler_table(K, "QPSK-r1/2", WATERFALL, n_blocks=300, max_errors=300, batch_size=150, seed=5,
                         cache_dir=cache)
    np.testing.assert_array_equal(again.bler, table.bler)
    assert again.key == table.key
    # A different key (decoder iterations) is not served from that file.
    with pytest.raises(AssertionError, match="simulated although"):
        L.bler_table(K, "QPSK-r1/2", WATERFALL, n_blocks=300, max_errors=300, batch_size=150, seed=5,
                     cache_dir=cache, num_bp_iter=10)


def test_lazy_table_simulates_only_what_lookups_read_and_equals_the_whole_table(tmp_path, monkeypatch):
    # Real simulation, k = 256 QPSK-1/2, 120 blocks per point. Every point has its own seed, so
    # the points a lazy table simulates equal those of the table built whole (bit for bit).
    grid = [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    opts = dict(n_blocks=120, max_errors=40, batch_size=60)
    lazy = L.bler_table(K, "QPSK-r1/2", grid, lazy=True, cache_dir=tmp_path / "lazy", **opts)
    assert lazy.pending.all() and lazy.key["seeding"] == "per-point"
    assert L.bler_lookup(lazy, 10 ** (-1 / 10)) == 1.0 and lazy.pending.all()  # below the grid: nothing read
    b = L.bler_lookup(lazy, 10 ** (1.75 / 10))
    assert lazy.pending.tolist() == [True, True, False, False, True, True]  # the bracket 1.5 / 2.0 only
    assert b == pytest.approx((lazy.bler[2] + lazy.bler[3]) / 2)
    L.bler_lookup(lazy, 10 ** (2.0 / 10))  # on a grid point: that point alone (already there)
    assert lazy.pending.sum() == 4
    whole = L.bler_table(K, "QPSK-r1/2", grid, cache_dir=tmp_path / "whole", **opts)
    assert not whole.pending.any()
    np.testing.assert_array_equal(lazy.bler[2:4], whole.bler[2:4])
    np.testing.assert_array_equal(lazy.n_errors[2:4], whole.n_errors[2:4])
    # Saved with nulls for the pending points; reloaded without simulating those it has.
    (path,) = (tmp_path / "lazy").glob("*.json")
    assert json.loads(path.read_text())["bler"][:2] == [None, None]
    calls = []
    real = L._simulate_bler_point
    monkeypatch.setattr(L, "_simulate_bler_point", lambda link, snr, *a: calls.append(snr) or real(link, snr, *a))
    again = L.bler_table(K, "QPSK-r1/2", grid, lazy=True, cache_dir=tmp_path / "lazy", **opts)
    np.testing.assert_array_equal(again.bler[2:4], lazy.bler[2:4])
    assert again.resolve() is again and calls == [0.5, 1.0, 2.5, 3.0][: len(calls)] and not again.pending.any()
    # Completed, it is the whole table (points above the first error-free one: 0, not simulated).
    for name in ("bler", "n_blocks", "n_errors"):
        np.testing.assert_array_equal(getattr(again, name), getattr(whole, name))
    assert L.bler_table(K, "QPSK-r1/2", grid, cache_dir=tmp_path / "lazy", **opts).bler.tolist() == whole.bler.tolist()


def test_lazy_tables_sharing_a_cache_share_their_points(tmp_path, monkeypatch):
    # Two processes (here two tables opened before either simulated) on one cache file: a point one
    # of them saved is taken from the file by the other, and the file ends with every point of both.
    calls = []
    monkeypatch.setattr(L, "_simulate_bler_point", _fake_waterfall_point(calls))
    grid = [0.5, 1.0, 1.5, 2.0, 2.5]
    opts = dict(n_blocks=50, max_errors=50, batch_size=50, cache_dir=tmp_path, lazy=True)
    a, b = (L.bler_table(K, "QPSK-r1/2", grid, **opts) for _ in range(2))
    a.resolve([1])
    b.resolve([1, 3])
    assert calls == [("QPSK-r1/2", 1.0), ("QPSK-r1/2", 2.0)]  # b took 1.0 dB from a's save
    assert b.n_errors[1] == a.n_errors[1]
    a.resolve([0])
    (path,) = tmp_path.glob("*.json")
    saved = L.BlerTable.from_json(json.loads(path.read_text()))
    assert saved.pending.tolist() == [False, False, True, False, True]


def test_table_built_before_per_point_seeds_is_still_read(tmp_path, monkeypatch):
    grid = [1.0, 2.0]
    monkeypatch.setattr(L, "_simulate_bler_point", lambda *a: pytest.fail("simulated a cached table"))
    layout = L.transport_block_layout(K, "QPSK-r1/2")
    key = L._table_key(layout, L.MCS.parse("QPSK-r1/2"), np.array(grid), n_blocks=50, max_errors=10, batch_size=50,
                       num_bp_iter=20, demapping="app", seed=0)
    legacy = {name: v for name, v in key.items() if name != "seeding"}
    old = L.BlerTable(key=legacy, snr_db=np.array(grid), bler=np.array([0.2, 0.0]), n_blocks=np.array([50, 50]),
                      n_errors=np.array([10, 0]))
    (tmp_path / f"bler_k{K}_QPSK-r1_2_it20_{L._key_digest(legacy)}.json").write_text(json.dumps(old.to_json()))
    t = L.bler_table(K, "QPSK-r1/2", grid, n_blocks=50, max_errors=10, batch_size=50, cache_dir=tmp_path, lazy=True)
    assert t.bler.tolist() == [0.2, 0.0] and "seeding" not in t.key


def _fake_waterfall_point(calls: list):
    """A stand-in for ``_simulate_bler_point``: BLER falls from 1 to 0 over ~1.5 dB starting 1 dB above the
    TB's Shannon limit; errors drawn from the point's generator (so reproducible per point)."""
    def fake(link, snr_db, n_blocks, max_errors, batch_size, generator):
        calls.append((link.mcs.name, round(snr_db, 6)))
        p = 1 / (1 + math.exp(4 * (snr_db - link.layout.shannon_limit_db - 1.75)))
        errors = int((torch.rand(n_blocks, generator=generator, dtype=torch.float64) < p).sum())
        return n_blocks, errors
    return fake


def test_design_mcs_from_lazy_tables_equals_the_search_through_whole_tables(tmp_path, monkeypatch):
    # The search from the most payload down (skipping MCSs above capacity, stopping below the
    # first that qualifies) on lazy tables must choose what the search through every whole table
    # chooses, at every design SNR, while simulating a small fraction of the points.
    calls = []
    monkeypatch.setattr(L, "_simulate_bler_point", _fake_waterfall_point(calls))
    opts = dict(n_blocks=400, max_errors=400, batch_size=400, cache_dir=tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # grid-edge warnings of the whole tables
        whole = {m: L.bler_table(K, m, **opts) for m in L.feasible_mcs(K)}
    n_whole = len(calls)
    for design in np.arange(-6.0, 26.0, 0.35):
        calls.clear()
        lazy = L.design_mcs(K, float(design), **opts, snr_db_grid=None, use_cache=False)
        assert lazy == L.design_mcs(K, float(design), tables=whole), design
        assert len(calls) <= 12, (design, calls)  # two points for each of a few MCSs
    assert n_whole > 200
    # Given tables, the search reads only those it needs too.
    lazy_tables = {m: L.bler_table(K, m, lazy=True, use_cache=False, **{k: v for k, v in opts.items()
                                                                        if k != "cache_dir"}) for m in whole}
    assert L.design_mcs(K, 12.0, tables=lazy_tables) == L.design_mcs(K, 12.0, tables=whole)
    assert sum(not t.pending.all() for t in lazy_tables.values()) <= 6 < len(whole)


def test_bler_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("JSCC_CACHE_DIR", str(tmp_path))
    assert L.bler_cache_dir() == tmp_path / "bler"
    assert L.bler_cache_dir(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv("JSCC_CACHE_DIR")
    assert L.bler_cache_dir().parts[-3:] == (".cache", "jscc", "bler")


def test_cached_success_agrees_with_exact(qpsk_table):
    # Two independent estimates of the same BLER (300 blocks in the table, 300 exact blocks
    # here): their difference must lie within 4 standard deviations of a binomial difference.
    table, _ = qpsk_table
    n = 300
    for snr in (1.5, 2.0):
        ok_exact, _ = L.simulate_success(K, "QPSK-r1/2", snr, batch_size=n, mode="exact",
                                         generator=torch.Generator().manual_seed(11))
        p_table = float(table.bler[WATERFALL.index(snr)])
        p_exact = (~ok_exact).double().mean().item()
        assert abs(p_exact - p_table) <= _binomial_tol(p_table, n, n), (snr, p_exact, p_table)
        # Cached draws are Bernoulli(1 - BLER): 20k draws, 5 sigma of one proportion.
        ok_cached, h = L.simulate_success(K, "QPSK-r1/2", snr, batch_size=20_000, table=table,
                                          generator=torch.Generator().manual_seed(12))
        assert h is None
        assert abs((~ok_cached).double().mean().item() - p_table) <= 5 * math.sqrt(
            max(p_table * (1 - p_table), 1e-4) / 20_000)


@pytest.mark.slow
def test_cached_success_agrees_with_exact_rayleigh(tmp_path):
    # Full default grid (about 40 s to build), 1000 images at 10 dB average SNR. The same
    # generator gives both modes the same h; tolerance 4 sigma of a binomial difference
    # (the table's own error is smaller as it averages over the whole grid).
    table = L.bler_table(K, "QPSK-r1/2", n_blocks=1000, cache_dir=tmp_path)
    n = 1000
    ok_e, h_e = L.simulate_success(K, "QPSK-r1/2", 10.0, channel="rayleigh", batch_size=n, mode="exact",
                                   generator=torch.Generator().manual_seed(1))
    ok_c, h_c = L.simulate_success(K, "QPSK-r1/2", 10.0, channel="rayleigh", batch_size=n, table=table,
                                   generator=torch.Generator().manual_seed(1))
    assert torch.equal(h_e, h_c)
    p = L.rayleigh_success_probability(table, 10.0)
    assert abs(ok_e.double().mean().item() - ok_c.double().mean().item()) <= _binomial_tol(p, n, n)
    assert abs(ok_e.double().mean().item() - p) <= _binomial_tol(p, n)


def test_bler_lookup_interpolation_and_clamping():
    t = _toy_table([0.0, 1.0, 2.0, 3.0], [1.0, 0.5, 0.6, 0.0])  # 0.6: MC bump, made monotone
    lin = lambda db: 10 ** (np.asarray(db) / 10)  # noqa: E731
    assert t.lookup(lin(-5.0)) == 1.0 and t.lookup(0.0) == 1.0  # below the grid / no signal
    assert t.lookup(lin(10.0)) == 0.0  # above the grid, last point 0
    assert t.lookup(lin(0.5)) == pytest.approx(0.75)
    assert t.lookup(lin(2.0)) == pytest.approx(0.5)  # running minimum
    assert t.lookup(lin(2.5)) == pytest.approx(0.25)
    out = L.bler_lookup(t, torch.tensor([1.0, 1e3]))
    assert isinstance(out, torch.Tensor) and out.tolist() == [1.0, 0.0]
    assert isinstance(L.bler_lookup(t, lin(np.array([0.5]))), np.ndarray)
    assert t.snr_db_at(0.25) == pytest.approx(2.5) and t.snr_db_at(1e-9) == pytest.approx(3.0)
    # Last point > 0: held above the grid.
    assert _toy_table([0.0, 1.0], [1.0, 0.2]).lookup(lin(30.0)) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="snr_lin"):
        t.lookup(-1.0)


def test_cached_rayleigh_uses_effective_snr():
    # Step-like table at 5 dB: success iff |h|^2 snr_lin >= 10^0.5 (up to the 0.1 dB ramp).
    t = _toy_table([4.95, 5.05], [1.0, 0.0])
    n, snr_db = 100_000, 10.0
    ok, h = L.simulate_success(K, "QPSK-r1/2", snr_db, channel="rayleigh", batch_size=n, table=t,
                               generator=torch.Generator().manual_seed(0))
    p_out = 1 - math.exp(-(10**0.5) / 10)
    assert abs((~ok).double().mean().item() - p_out) <= 5 * math.sqrt(p_out * (1 - p_out) / n) + 0.002
    assert L.rayleigh_success_probability(t, snr_db) == pytest.approx(1 - p_out, abs=2e-3)
    g = h.abs().double() ** 2 * 10
    assert ok[g > 10**0.51].all() and not ok[g < 10**0.49].any()


def test_design_mcs_and_rayleigh_choice_with_given_tables():
    # Waterfalls at 2, 6 and 10 dB for three MCSs of increasing payload.
    tables = {
        "QPSK-r1/2": _toy_table([0, 1, 2, 3], [1, 0.5, 0.01, 0.0], tb_size=256),
        "16QAM-r1/2": _toy_table([4, 5, 6, 7], [1, 0.5, 0.01, 0.0], mcs="16QAM-r1/2", tb_size=528),
        "64QAM-r1/2": _toy_table([8, 9, 10, 11], [1, 0.5, 0.01, 0.0], mcs="64QAM-r1/2", tb_size=768),
    }
    assert L.design_mcs(K, 6.0, tables=tables).name == "16QAM-r1/2"
    assert L.design_mcs(K, 5.9, tables=tables).name == "QPSK-r1/2"
    assert L.design_mcs(K, 20.0, tables=tables).name == "64QAM-r1/2"
    assert L.design_mcs(K, 0.0, tables=tables) is None
    quality = {"QPSK-r1/2": 22.0, "16QAM-r1/2": 27.0, "64QAM-r1/2": 30.0}
    choice = L.rayleigh_mcs_choice(K, 15.0, quality, 14.0, tables=tables)
    p = {m: L.rayleigh_success_probability(tables[m], 15.0) for m in tables}
    expected = {m: p[m] * quality[m] + (1 - p[m]) * 14.0 for m in tables}
    assert choice.mcs.name == max(expected, key=expected.get)
    assert choice.expected_quality == pytest.approx(max(expected.values()))
    assert 0 < choice.success_probability < 1


# ----------------------------------------------------------------------------------------
# Large transport blocks: code-block-scaled BLER tables
# ----------------------------------------------------------------------------------------

KODAK_K = 73_728  # 768 x 512 x 3 / 16 channel uses (Kodak at k/n = 1/16)


def test_code_block_surrogate_kodak_layouts():
    # Documented values (5G NR, Sionna's TBEncoder): QPSK-1/2 needs 9 code blocks of
    # K_cb = 8224 bits (TB bits + CRC24B) and E = 16384 coded bits each; the surrogate is the
    # one-code-block TB of 8184 channel uses: K_s = 8192 + CRC24A = 8216 bits, E_s = 16368.
    s = L.code_block_surrogate(KODAK_K, "QPSK-r1/2")
    assert (s.num_code_blocks, s.layout.cb_size, s.layout.codeword_lengths) == (9, 8224, (16384,) * 9)
    assert (s.surrogate_k, s.surrogate.cb_size, s.surrogate.num_coded_bits) == (8184, 8216, 16368)
    assert s.cb_size_error == -8 and abs(s.rate_error) < 1e-5
    for mcs, c in [("QPSK-r1/2", 9), ("16QAM-r2/3", 24), ("256QAM-r5/6", 59)]:
        s = L.code_block_surrogate(KODAK_K, mcs)
        lay, sur = s.layout, s.surrogate
        q = L.MCS.parse(mcs).bits_per_symbol
        assert lay.num_code_blocks == c and lay.cb_crc_bits == 24
        # E values: sum to n, at most two values differing by log2(M) (38.212 5.4.2.1).
        assert sum(lay.codeword_lengths) == lay.num_coded_bits
        assert max(lay.codeword_lengths) - min(lay.codeword_lengths) in (0, q)
        # Surrogate: one code block, no CB CRC, same base graph and lifting size, the code
        # rate within 1e-3 relative, at most 256 information bits fewer (38.214 TB sizes of
        # one code block are multiples of 128 below 8192 bits and stop at 8192 + 24).
        assert sur.num_code_blocks == 1 and sur.cb_crc_bits == 0 and sur.tb_crc_bits == 24
        assert (sur.base_graph, sur.lifting_size) == (lay.base_graph, lay.lifting_size)
        assert sur.cb_size == sur.tb_size + 24 and sur.num_coded_bits == s.surrogate_k * q
        assert abs(s.rate_error) < 1e-3 and -256 <= s.cb_size_error <= 0, mcs
        assert abs(s.codeword_length_error) <= 0.04 * s.mean_codeword_length
    # k = 8344 at QPSK-1/2 (2 blocks of 4264 bits, E = 8344): at rate 1/2 the one-block TB
    # sizes leave a 0.66 % rate error, so the target rate is adjusted: TB of 4224 bits
    # (K_s = 4248) over E_s = 8312 bits, QPSK at rate 4224/8312 = 528/1039.
    s = L.code_block_surrogate(8344, "QPSK-r1/2")
    assert s.surrogate_mcs == L.MCS("QPSK", "528/1039") and s.surrogate_mcs.name == "QPSK-r528/1039"
    assert (s.surrogate_k, s.surrogate.cb_size, s.surrogate.num_coded_bits) == (4156, 4248, 8312)
    assert abs(s.rate_error) < 1e-4 and s.surrogate.lifting_size == s.layout.lifting_size == 208
    # A TB of one code block is its own surrogate.
    s = L.code_block_surrogate(K, "QPSK-r1/2")
    assert s.surrogate == s.layout and s.surrogate_k == K and s.rate_error == 0.0


def _fake_cb_point(calls: list, p_by_snr: dict):
    """Stand-in for ``_simulate_bler_point``: ``round(n_blocks * p(snr))`` errors, no decoding."""
    def fake(link, snr_db, n_blocks, max_errors, batch_size, generator):
        calls.append((link.k, round(snr_db, 6)))
        return n_blocks, int(round(n_blocks * p_by_snr[round(snr_db, 6)]))
    return fake


def test_cb_scaled_table_formula_key_and_dispatch(monkeypatch, tmp_path):
    # k = 16800 at QPSK-1/2: 3 code blocks of 5664 bits; surrogate k = 5592 (one block of 5656).
    k, mcs, grid = 16_800, "QPSK-r1/2", [1.0, 1.1, 1.2]
    p_cb = {1.0: 0.97, 1.1: 0.2, 1.2: 0.0}
    calls = []
    monkeypatch.setattr(L, "_simulate_bler_point", _fake_cb_point(calls, p_cb))
    sur = L.code_block_surrogate(k, mcs)
    assert sur.num_code_blocks == 3 and sur.surrogate_k == 5592
    opts = dict(n_blocks=200, max_errors=200, cache_dir=tmp_path)
    t = L.bler_table(k, mcs, grid, max_blocks_exact=2, **opts)
    # Only the surrogate was simulated, up to the first error-free point.
    assert calls == [(5592, 1.0), (5592, 1.1), (5592, 1.2)]
    np.testing.assert_allclose(t.bler, [1 - 0.03**3, 1 - 0.8**3, 0.0])
    assert t.n_blocks.tolist() == [200] * 3 and t.n_errors.tolist() == [194, 40, 0]  # code blocks
    assert t.cb_scaled and t.key["cb_scaled"] is True
    assert t.key["k"] == k and t.key["tb_size"] == sur.layout.tb_size and t.key["num_code_blocks"] == 3
    assert (t.key["surrogate_k"], t.key["surrogate_cb_size"], t.key["surrogate_num_coded_bits"]) == (5592, 5656, 11184)
    assert t.key["surrogate_mcs"] == mcs  # rate error 1.6e-5 at the MCS's own rate
    # The surrogate's exact table is the only cache file; a second call only reads it.
    files = list(tmp_path.glob("*.json"))
    assert [f.name.split("_it")[0] for f in files] == ["bler_k5592_QPSK-r1_2"]
    sur_key = json.loads(files[0].read_text())["key"]
    assert "cb_scaled" not in sur_key and t.key["surrogate_table"] == L._key_digest(sur_key)
    calls.clear()
    again = L.bler_table(k, mcs, grid, max_blocks_exact=2, **opts)
    assert calls == [] and again.key == t.key
    np.testing.assert_array_equal(again.bler, t.bler)
    # The cached path picks the scaled table up through table_kwargs.
    ok, _ = L.simulate_success(k, mcs, 1.1, batch_size=20_000, generator=torch.Generator().manual_seed(0),
                               snr_db_grid=grid, max_blocks_exact=2, **opts)
    p_tb = 1 - 0.8**3
    assert calls == [] and abs((~ok).double().mean().item() - p_tb) <= 5 * math.sqrt(p_tb * (1 - p_tb) / 20_000)
    assert L.design_mcs(k, 1.2, mcs_grid=[L.MCS.parse(mcs)], snr_db_grid=grid, max_blocks_exact=2,
                        **opts).name == mcs
    assert L.design_mcs(k, 1.1, mcs_grid=[L.MCS.parse(mcs)], snr_db_grid=grid, max_blocks_exact=2, **opts) is None
    # With C <= max_blocks_exact (default 4) the whole TB is simulated and the key is unchanged.
    exact = L.bler_table(k, mcs, grid, **opts)
    assert {c[0] for c in calls} == {k} and not exact.cb_scaled and "cb_scaled" not in exact.key
    np.testing.assert_allclose(exact.bler, [0.97, 0.2, 0.0])


def test_bler_table_default_grid_options(monkeypatch, tmp_path):
    # grid_step_db / grid_below_db shape the default grid per (k, MCS), e.g. the cheaper
    # budget proposed for code-block-scaled tables: 0.1 dB steps from the Shannon limit.
    calls = []
    monkeypatch.setattr(L, "_simulate_bler_point", lambda link, snr, *a: calls.append(snr) or (20, 0))
    with pytest.warns(UserWarning, match="lowest SNR"):  # error-free at once: the grid starts too high
        t = L.bler_table(K, "QPSK-r1/2", n_blocks=300, cache_dir=tmp_path, grid_step_db=0.1, grid_below_db=0.0)
    grid = L.default_snr_grid(K, "QPSK-r1/2", step_db=0.1, below_db=0.0)
    shannon = 10 * math.log10(2 ** (256 / K) - 1)  # tb_size 256 over k = 256 uses: 0 dB
    assert t.key["snr_db_grid"] == grid.tolist() and grid[0] <= shannon < grid[0] + 0.1
    assert np.allclose(np.diff(grid), 0.1) and calls == [grid[0]]
    with pytest.raises(ValueError, match="step_db > 0"):
        L.default_snr_grid(K, "QPSK-r1/2", step_db=0.0)


@pytest.mark.slow
def test_cb_scaled_bler_matches_multi_code_block_monte_carlo(tmp_path):
    # About 2-4 minutes of one CPU core (~0.11 s per code block). k = 16800 at QPSK-1/2:
    # 3 code blocks (K_cb = 5664, Z = 288), surrogate K_s = 5656 with the rate within 2e-5.
    # At 1.2 dB (the waterfall: code-block BLER ~0.1, TB BLER ~0.3; a 400-TB / 600-CB run
    # gave 0.33 exact vs 0.26 scaled) 200 whole TBs (exact chain) against 400 surrogate code
    # blocks scaled to 3 blocks. Tolerance: 4 standard deviations of the difference,
    # sd^2 = p_tb (1 - p_tb) / 200 + (3 (1 - p_cb)^2)^2 p_cb (1 - p_cb) / 400 (delta method).
    k, mcs, snr = 16_800, "QPSK-r1/2", 1.2
    n_tb, n_cb = 200, 400
    ok, _ = L.simulate_success(k, mcs, snr, batch_size=n_tb, mode="exact", chunk=50,
                               generator=torch.Generator().manual_seed(3))
    p_exact = (~ok).double().mean().item()
    with pytest.warns(UserWarning, match="lookups"):  # a one-point grid
        t = L.bler_table(k, mcs, [snr], n_blocks=n_cb, max_errors=n_cb, batch_size=100, seed=4,
                         cache_dir=tmp_path, max_blocks_exact=2)
    assert t.cb_scaled and t.n_blocks[0] == n_cb
    p_cb, p_tb = t.n_errors[0] / n_cb, float(t.bler[0])
    assert p_tb == pytest.approx(1 - (1 - p_cb) ** 3)
    p = min(max(p_tb, 0.05), 0.95)
    q = min(max(p_cb, 0.02), 0.98)
    sd = math.sqrt(p * (1 - p) / n_tb + (3 * (1 - q) ** 2) ** 2 * q * (1 - q) / n_cb)
    assert abs(p_exact - p_tb) <= 4 * sd, (p_exact, p_tb, p_cb)
    assert 0.02 < p_cb < 0.5 and 0.05 < p_exact < 0.9  # really on the waterfall


# ----------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------


def test_bad_inputs():
    with pytest.raises(ValueError, match="unknown modulation"):
        L.MCS(8, "1/2")
    with pytest.raises(ValueError, match="unknown modulation"):
        L.MCS("32QAM", "1/2")
    with pytest.raises(ValueError, match="outside Sionna's 5G LDPC limits"):
        L.MCS(4, "1/8")
    with pytest.raises(ValueError, match="outside Sionna's 5G LDPC limits"):
        L.MCS(4, 0.97)
    with pytest.raises(ValueError, match="code rate"):
        L.MCS(4, "half")
    with pytest.raises(ValueError, match="k too small|too small for this MCS"):
        L.transport_block_info_bits(16, "BPSK-r1/2")
    with pytest.raises(ValueError, match="too small for this MCS"):
        L.transport_block_info_bits(100, "BPSK-r5/6")
    with pytest.raises(ValueError, match="k must be >= 1"):
        L.transport_block_info_bits(0, "QPSK-r1/2")
    with pytest.raises(ValueError, match="finite"):
        L.capacity_link_bits(256, float("nan"))
    with pytest.raises(ValueError, match="finite"):
        L.capacity_rayleigh_success(10, 10, float("inf"), batch_size=3)
    with pytest.raises(ValueError, match="finite"):
        L.simulate_success(K, "QPSK-r1/2", float("nan"), batch_size=2, table=_toy_table([0, 1], [1, 0]))
    with pytest.raises(ValueError, match="finite"):
        L.get_link(K, "QPSK-r1/2").transmit(torch.zeros(2, 8), torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match="unknown channel"):
        L.simulate_success(K, "QPSK-r1/2", 5.0, channel="rician", batch_size=2)
    with pytest.raises(ValueError, match="mode"):
        L.simulate_success(K, "QPSK-r1/2", 5.0, batch_size=2, mode="fast")
    with pytest.raises(ValueError, match="batch_size"):
        L.capacity_rayleigh_success(10, 10, 5.0)
    with pytest.raises(ValueError, match="only 0 and 1"):
        L.get_link(K, "QPSK-r1/2").transmit(torch.full((1, 8), 2.0), 5.0)
    with pytest.raises(ValueError, match="exceeds the transport block size 256"):
        L.get_link(K, "QPSK-r1/2").transmit(torch.zeros(1, 257), 5.0)
    with pytest.raises(ValueError, match="only used with channel='rayleigh'"):
        L.get_link(K, "QPSK-r1/2").transmit(torch.zeros(1, 8), 5.0, h=torch.ones(1, dtype=torch.complex64))
    with pytest.raises(ValueError, match="ascending"):
        L.bler_table(K, "QPSK-r1/2", [2.0, 1.0], use_cache=False)
    with pytest.raises(ValueError, match="max_blocks_exact must be >= 1"):
        L.bler_table(K, "QPSK-r1/2", [1.0], use_cache=False, max_blocks_exact=0)
    with pytest.raises(ValueError, match="demapping"):
        L.bler_table(K, "QPSK-r1/2", [1.0], use_cache=False, demapping="exact")
    with pytest.raises(ValueError, match="k too small|too small for this MCS"):
        L.code_block_surrogate(16, "BPSK-r1/2")
    with pytest.raises(ValueError, match="is for k=256 QPSK-r1/2"):
        L.simulate_success(K, "16QAM-r1/2", 5.0, batch_size=2, table=_toy_table([0, 1], [1, 0]))
