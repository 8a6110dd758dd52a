"""The signal chain: power normalisation, channels, capacity references, seeding.

    z ─► power_normalize ─► awgn / rayleigh (─► equalize) / OFDM / MIMO (Sionna) ─► y

Each stage is a function and a Module side by side (``awgn`` / ``AWGN``). Conventions
(power per example, ``snr_db`` = Es/N0 per complex use, ``N0 = P / 10^(snr_db/10)``,
``h ~ CN(0, 1)``) are those of the README's Conventions.
"""

from torch import nn

from .awgn import AWGN, awgn
from .capacity import awgn_capacity, rayleigh_ergodic_capacity, rayleigh_outage_probability
from .fading import CSI_MODES, EQUALIZATIONS, Rayleigh, equalize, rayleigh
from .mimo import MIMO
from .ofdm import OFDM
from .power import PowerNormalize, power_normalize, snr_db_to_lin, snr_db_to_noise_var
from .random import make_generator, seed_everything

__all__ = [
    "AWGN",
    "CHANNELS",
    "CSI_MODES",
    "EQUALIZATIONS",
    "MIMO",
    "OFDM",
    "PowerNormalize",
    "Rayleigh",
    "awgn",
    "awgn_capacity",
    "build_channel",
    "equalize",
    "make_generator",
    "power_normalize",
    "rayleigh",
    "rayleigh_ergodic_capacity",
    "rayleigh_outage_probability",
    "seed_everything",
    "snr_db_to_lin",
    "snr_db_to_noise_var",
]

# The one name -> class map, keyed by each class's ``name``.
CHANNELS: dict[str, type[nn.Module]] = {cls.name: cls for cls in (AWGN, Rayleigh, OFDM, MIMO)}


def build_channel(name: str, **kwargs) -> nn.Module:
    """Build a channel Module by name (``"awgn"``, ``"rayleigh"``, ``"ofdm"`` or ``"mimo"``); ``kwargs`` go to its constructor."""
    if name not in CHANNELS:
        raise ValueError(f"unknown channel {name!r}; known channels: {sorted(CHANNELS)}")
    return CHANNELS[name](**kwargs)

# Digital links of the separate source-channel coding baseline (Sionna imported lazily).
from .links import (  # noqa: E402
    MCS,
    MCS_GRID,
    BlerTable,
    LDPCLink,
    bler_lookup,
    bler_table,
    capacity_awgn_success,
    capacity_link_bits,
    capacity_rayleigh_success,
    design_mcs,
    rayleigh_capacity_rate_choice,
    rayleigh_mcs_choice,
    simulate_success,
    transport_block_info_bits,
    transport_block_layout,
)

__all__ += [
    "MCS",
    "MCS_GRID",
    "BlerTable",
    "LDPCLink",
    "bler_lookup",
    "bler_table",
    "capacity_awgn_success",
    "capacity_link_bits",
    "capacity_rayleigh_success",
    "design_mcs",
    "rayleigh_capacity_rate_choice",
    "rayleigh_mcs_choice",
    "simulate_success",
    "transport_block_info_bits",
    "transport_block_layout",
]
