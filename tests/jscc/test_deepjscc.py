"""DeepJSCC model: bandwidth ratio, architecture, symbol mapping, input checks, CSI side input."""
from __future__ import annotations

from fractions import Fraction

import pytest
import torch
import torch.nn as nn

from jscc.models import DeepJSCC, c_from_bandwidth_ratio
from jscc.models.deepjscc import GDN, GDN256
from jscc.models.symbols import features_to_symbols, symbols_to_features

REALISABLE_C = (4, 8, 16, 24, 32, 40, 46)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return DeepJSCC(c=8).eval()


# --------------------------------------------------------------------------- bandwidth ratio


@pytest.mark.parametrize("c, k, ratio", [(8, 256, Fraction(1, 12)), (16, 512, Fraction(1, 6))])
def test_channel_uses_and_ratio_cifar_size(c, k, ratio):
    m = DeepJSCC(c=c)
    assert m.channel_uses(32, 32) == k
    assert m.bandwidth_ratio(32, 32) == ratio
    assert isinstance(m.bandwidth_ratio(32, 32), Fraction)
    # and the encoder really emits k complex symbols
    z = m.encode(torch.rand(2, 3, 32, 32))
    assert z.dtype == torch.complex64 and z.shape == (2, k)


@pytest.mark.parametrize("ratio", ["1/12", Fraction(1, 12), 0.0833333, 1 / 12])
def test_c_from_bandwidth_ratio_one_twelfth(ratio):
    assert c_from_bandwidth_ratio(ratio) == 8


def test_c_from_bandwidth_ratio_one_sixth():
    assert c_from_bandwidth_ratio("1/6") == 16
    assert DeepJSCC.from_bandwidth_ratio("1/6").c == 16


@pytest.mark.parametrize("c", REALISABLE_C)
def test_every_realisable_c_gives_c_over_96_exactly(c):
    m = DeepJSCC(c=c)
    for h, w in [(32, 32), (64, 48), (4, 8)]:
        assert m.bandwidth_ratio(h, w) == Fraction(c, 96)
        assert m.channel_uses(h, w) * 96 == c * 3 * h * w
    assert c_from_bandwidth_ratio(Fraction(c, 96)) == c
    assert c_from_bandwidth_ratio(f"{c}/96") == c
    assert c_from_bandwidth_ratio(c / 96) == c  # float matched to the nearest fraction


@pytest.mark.parametrize("ratio", ["1/10", Fraction(1, 7), "0", "-1/12", 0.3])
def test_unrealisable_ratio_is_value_error(ratio):
    with pytest.raises(ValueError, match="c = 96"):
        c_from_bandwidth_ratio(ratio)


@pytest.mark.parametrize("kwargs", [{"c": 0}, {"c": 2.5}, {"c": -8}, {"hidden": (16, 32, 32)}, {"hidden": (16, 0, 32, 32)}])
def test_bad_constructor_args(kwargs):
    with pytest.raises(ValueError):
        DeepJSCC(**kwargs)


def test_odd_number_of_reals_per_image_is_error():
    # c=1 on 4x4: 1*1*1 = 1 real -> cannot pair
    with pytest.raises(ValueError, match="odd"):
        DeepJSCC(c=1).channel_uses(4, 4)


# --------------------------------------------------------------------------- architecture


def test_encoder_is_the_papers():
    c = 8
    m = DeepJSCC(c=c)
    layers = list(m.encoder)
    assert len(layers) == 10
    convs, acts = layers[0::2], layers[1::2]
    assert all(type(l) is nn.Conv2d for l in convs)
    assert all(type(a) is nn.PReLU for a in acts)
    assert [l.in_channels for l in convs] == [3, 16, 32, 32, 32]
    assert [l.out_channels for l in convs] == [16, 32, 32, 32, c]
    assert [l.kernel_size for l in convs] == [(5, 5)] * 5
    assert [l.stride for l in convs] == [(2, 2), (2, 2), (1, 1), (1, 1), (1, 1)]
    assert [a.num_parameters for a in acts] == [16, 32, 32, 32, c]


def test_decoder_is_the_papers():
    c = 8
    m = DeepJSCC(c=c)
    layers = list(m.decoder)
    assert len(layers) == 10
    convs, acts = layers[0::2], layers[1::2]
    assert all(type(l) is nn.ConvTranspose2d for l in convs)
    assert [l.in_channels for l in convs] == [c, 32, 32, 32, 16]
    assert [l.out_channels for l in convs] == [32, 32, 32, 16, 3]
    assert [l.kernel_size for l in convs] == [(5, 5)] * 5
    assert [l.stride for l in convs] == [(1, 1), (1, 1), (1, 1), (2, 2), (2, 2)]
    assert all(type(a) is nn.PReLU for a in acts[:4])
    assert [a.num_parameters for a in acts[:4]] == [32, 32, 32, 16]
    assert type(acts[4]) is nn.Sigmoid


def test_config_round_trips_through_constructor():
    m = DeepJSCC(c=16, hidden=[8, 16, 16, 16], csi_side_input=True)
    assert m.config == {"c": 16, "hidden": [8, 16, 16, 16], "csi_side_input": True}
    m2 = DeepJSCC(**m.config)
    assert {k: v.shape for k, v in m.state_dict().items()} == {k: v.shape for k, v in m2.state_dict().items()}


# --------------------------------------------------------------------------- GDN-256 configuration


def test_gdn_is_the_divisive_normalisation_formula_and_every_gamma_learns():
    torch.manual_seed(0)
    gdn, igdn = GDN(3), GDN(3, inverse=True)
    torch.testing.assert_close(gdn.beta, torch.ones(3))
    torch.testing.assert_close(gdn.gamma, 0.1 * torch.eye(3))
    gamma_param = (torch.rand(3, 3) + GDN.PEDESTAL).sqrt()
    with torch.no_grad():
        for g in (gdn, igdn):
            g.beta_param.copy_(torch.tensor([1.0, 0.5, 2.0]))
            g.gamma_param.copy_(gamma_param)
    x = torch.randn(2, 3, 4, 5)
    beta, gamma = gdn.beta.detach(), gdn.gamma.detach()
    assert (beta >= gdn.beta_min).all() and (gamma >= 0).all()
    norm = beta[None, :, None, None] + torch.einsum("ij,bjhw->bihw", gamma, x.square())
    torch.testing.assert_close(gdn(x), x / norm.sqrt())
    torch.testing.assert_close(igdn(x), x * norm.sqrt())
    # from the initialisation, the zero cross-channel terms get gradients (they are not stuck at 0)
    fresh = GDN(3)
    fresh(x).square().sum().backward()
    off_diagonal = ~torch.eye(3, dtype=torch.bool)
    assert (fresh.gamma_param.grad[off_diagonal] != 0).all()


def test_gdn256_is_the_official_network():
    m = DeepJSCC(c=16, **GDN256)
    assert m.config == {"c": 16, "hidden": [256] * 4, "csi_side_input": False, "norm": "gdn"}
    enc, dec = list(m.encoder), list(m.decoder)
    assert [l.kernel_size for l in enc[0::2]] == [(9, 9)] + [(5, 5)] * 4
    assert [l.kernel_size for l in dec[0::2]] == [(5, 5)] * 4 + [(9, 9)]
    assert [l.out_channels for l in enc[0::2]] == [256] * 4 + [16]
    assert all(type(a[0]) is GDN and not a[0].inverse and type(a[1]) is nn.PReLU for a in enc[1:8:2])
    assert type(enc[9]) is nn.Identity  # no activation on the channel input
    assert all(type(a[0]) is GDN and a[0].inverse for a in dec[1:8:2]) and type(dec[9]) is nn.Sigmoid
    # same bandwidth and symbol layout as the 2019 network
    z = m.encode(torch.rand(2, 3, 32, 32))
    assert z.shape == (2, 512) and m.bandwidth_ratio(32, 32) == Fraction(1, 6)
    assert m.decode(z, (32, 32)).shape == (2, 3, 32, 32)
    assert DeepJSCC(**m.config).config == m.config


def test_default_config_has_no_norm_key_and_bad_norm_is_error():
    assert "norm" not in DeepJSCC(c=8).config  # 2019 checkpoints keep their config
    with pytest.raises(ValueError, match="norm"):
        DeepJSCC(c=8, norm="batchnorm")


@pytest.mark.parametrize("size", [(32, 32), (64, 48), (12, 20)])
def test_fully_convolutional_shapes(model, size):
    h, w = size
    x = torch.rand(2, 3, h, w)
    with torch.no_grad():
        z = model.encode(x)
        x_hat = model.decode(z, (h, w))
    assert z.shape == (2, 8 * h * w // 32)
    assert x_hat.shape == x.shape and x_hat.dtype == torch.float32


def test_outputs_in_unit_interval_even_for_wild_symbols(model):
    g = torch.Generator().manual_seed(0)
    y = 100 * torch.randn(3, 256, dtype=torch.complex64, generator=g)
    with torch.no_grad():
        x_hat = model.decode(y, (32, 32))
    assert x_hat.min() >= 0 and x_hat.max() <= 1
    assert torch.isfinite(x_hat).all()


# --------------------------------------------------------------------------- symbol mapping


def test_features_to_symbols_is_row_major_real_imag_pairs():
    f = torch.arange(2 * 2 * 1 * 3, dtype=torch.float32).reshape(2, 2, 1, 3)  # 6 reals per example
    z = features_to_symbols(f)
    assert z.dtype == torch.complex64 and z.shape == (2, 3)
    expected = torch.tensor([[0 + 1j, 2 + 3j, 4 + 5j], [6 + 7j, 8 + 9j, 10 + 11j]], dtype=torch.complex64)
    assert torch.equal(z, expected)
    assert torch.equal(symbols_to_features(z, (2, 1, 3)), f)


def test_symbol_round_trip_exact():
    g = torch.Generator().manual_seed(1)
    f = torch.randn(3, 8, 5, 6, generator=g)
    z = features_to_symbols(f)
    assert z.shape == (3, 8 * 5 * 6 // 2)
    assert torch.equal(symbols_to_features(z, (8, 5, 6)), f)
    # the other way round too
    assert torch.equal(features_to_symbols(symbols_to_features(z, (8, 5, 6))), z)


def test_odd_reals_is_value_error():
    with pytest.raises(ValueError, match="odd"):
        features_to_symbols(torch.zeros(2, 1, 1, 3))


def test_model_uses_the_convention_mapping(model):
    x = torch.rand(2, 3, 16, 12)
    with torch.no_grad():
        f = model.encoder(x)
        z = model.encode(x)
        assert torch.equal(torch.view_as_real(z).reshape(2, -1), f.reshape(2, -1))
        # the decoder undoes exactly the same mapping
        assert torch.equal(model.decode(z, (16, 12)), model.decoder(f))


# --------------------------------------------------------------------------- input checks


@pytest.mark.parametrize(
    "x, exc, match",
    [
        (torch.rand(3, 32, 32), ValueError, "4 dims"),
        (torch.rand(1, 1, 3, 32, 32), ValueError, "4 dims"),
        (torch.randint(0, 255, (1, 3, 32, 32), dtype=torch.uint8), TypeError, "floating"),
        (torch.full((1, 3, 32, 32), 1.5), ValueError, r"\[0, 1\]"),
        (torch.full((1, 3, 32, 32), -0.1), ValueError, r"\[0, 1\]"),
        (torch.full((1, 3, 32, 32), float("nan")), ValueError, "NaN"),
        (torch.rand(1, 3, 30, 32), ValueError, "multiples of 4"),
        (torch.rand(1, 3, 32, 34), ValueError, "multiples of 4"),
    ],
    ids=["3d", "5d", "uint8", "above1", "below0", "nan", "h30", "w34"],
)
def test_bad_input_clear_error(model, x, exc, match):
    with pytest.raises(exc, match=match):
        model.encode(x)


def test_one_channel_image_is_rejected(model):
    # check_images accepts C=1 for metrics; the RGB encoder must still refuse it
    with pytest.raises(ValueError, match=r"RGB images \(B, 3, H, W\)"):
        model.encode(torch.rand(1, 1, 32, 32))


# --------------------------------------------------------------------------- CSI side input


def test_csi_side_input_decoder_needs_h():
    torch.manual_seed(0)
    m = DeepJSCC(c=8, csi_side_input=True).eval()
    assert m.decoder[0].in_channels == 16  # y and h, each c feature maps
    y = torch.randn(2, 256, dtype=torch.complex64)
    with pytest.raises(ValueError, match="needs h"):
        m.decode(y, (32, 32))
    h1 = torch.randn(2, 1, dtype=torch.complex64)  # block fading: one h per example, broadcast
    with torch.no_grad():
        a = m.decode(y, (32, 32), h=h1)
        b = m.decode(y, (32, 32), h=2 * h1 + 1)
        c = m.decode(y, (32, 32), h=h1.expand(2, 256))
    assert a.shape == (2, 3, 32, 32)
    assert not torch.allclose(a, b)  # h is actually used
    assert torch.equal(a, c)  # (B,1) h is expanded exactly like a (B,k) one


def test_plain_decoder_rejects_h(model):
    y = torch.randn(1, 256, dtype=torch.complex64)
    with pytest.raises(ValueError, match="csi_side_input"):
        model.decode(y, (32, 32), h=torch.ones(1, 1, dtype=torch.complex64))
