"""ADJSCC: SNR attention modules on the DeepJSCC backbone."""
from __future__ import annotations

import pytest
import torch

from channels import AWGN
from jscc.evaluate import evaluate
from jscc.data import ImageSet
from jscc.models import ADJSCC, DeepJSCC
from jscc.models.deepjscc import SNRAttention
from jscc.system import JSCCSystem


def _checkpoint(model):
    return {"model": model.registry_name, "config": model.config, "state_dict": model.state_dict()}


def test_same_channel_uses_as_the_backbone_and_snr_changes_the_code():
    torch.manual_seed(0)
    m = ADJSCC(c=16)
    assert m.channel_uses(32, 32) == DeepJSCC(c=16).channel_uses(32, 32) == 512
    for attention in [*m.encoder_attention, *m.decoder_attention]:  # leave the identity initialisation
        torch.nn.init.normal_(attention.context[2].weight, std=0.5)
    x = torch.rand(2, 3, 32, 32)
    z0, z20 = m.encode(x, torch.tensor([0.0, 0.0])), m.encode(x, torch.tensor([20.0, 20.0]))
    assert z0.shape == (2, 512) and z0.dtype == torch.complex64
    assert not torch.allclose(z0, z20)
    # per-example SNRs: each example is coded with its own SNR
    mixed = m.encode(x, torch.tensor([0.0, 20.0]))
    torch.testing.assert_close(mixed[0], z0[0])
    torch.testing.assert_close(mixed[1], z20[1])


def test_attention_is_the_identity_at_initialisation_and_in_unit_range_times_two():
    torch.manual_seed(0)
    att = SNRAttention(32)
    f = torch.randn(3, 32, 4, 4)
    torch.testing.assert_close(att(f, torch.tensor([0.0, 10.0, 20.0])), f)
    torch.nn.init.normal_(att.context[2].weight, std=10.0)
    scale = att(torch.ones(3, 32, 4, 4), torch.tensor([0.0, 10.0, 20.0]))
    assert scale.min() >= 0 and scale.max() <= 2


def test_warm_start_from_deepjscc_reproduces_it_exactly():
    torch.manual_seed(0)
    base = DeepJSCC(c=8).eval()
    m = ADJSCC(c=8).eval()
    m.warm_start(_checkpoint(base))
    x = torch.rand(2, 3, 32, 32)
    snr = torch.tensor([3.0, 17.0])
    torch.testing.assert_close(m.encode(x, snr), base.encode(x))
    y = base.encode(x)
    torch.testing.assert_close(m.decode(y, (32, 32), snr), base.decode(y, (32, 32)))
    with pytest.raises(ValueError, match="warm-start"):
        ADJSCC(c=16).warm_start(_checkpoint(base))


def test_snr_is_required_and_gradients_reach_the_attention():
    m = ADJSCC(c=8)
    x = torch.rand(2, 3, 32, 32)
    with pytest.raises(ValueError, match="snr_db"):
        m.encode(x)
    out = JSCCSystem(m, AWGN())(x, torch.tensor([5.0, 15.0]))
    out["x_hat"].square().mean().backward()
    for attention in [*m.encoder_attention, *m.decoder_attention]:
        assert attention.context[2].weight.grad.abs().sum() > 0


def test_sweep_encodes_per_snr_for_adaptive_models():
    torch.manual_seed(0)
    m = ADJSCC(c=8)
    for attention in m.encoder_attention:
        torch.nn.init.normal_(attention.context[2].weight, std=1.0)
    calls = []
    original = m.encode
    m.encode = lambda x, snr_db=None: calls.append(float(snr_db[0])) or original(x, snr_db)
    images = ImageSet(torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8), "rand")
    summary = evaluate(JSCCSystem(m, AWGN()), images, [0.0, 10.0], n_channel_draws=2)
    assert calls == [0.0, 10.0] and len(summary["psnr"]) == 2
