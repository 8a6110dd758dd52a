"""Shared command-line parsing: SNR lists and channel options."""
from __future__ import annotations

import argparse

import pytest

from experiments.args import channel_from_args, parse_snr_list


def test_range_includes_stop():
    values = parse_snr_list("0:20:2")
    assert len(values) == 11
    assert values == [float(v) for v in range(0, 21, 2)]
    assert values[-1] == 20.0


def test_range_plus_comma_list():
    assert parse_snr_list("0:10:5,13") == [0.0, 5.0, 10.0, 13.0]


def test_several_values():
    assert parse_snr_list(["1", "4"]) == [1.0, 4.0]
    assert parse_snr_list(["0:10:5", "13,19"]) == [0.0, 5.0, 10.0, 13.0, 19.0]


def test_fractional_step_keeps_stop_despite_rounding():
    # 0.3 / 0.1 = 2.9999999999999996 in floating point: the stop must still be included
    assert parse_snr_list("0:0.3:0.1") == pytest.approx([0.0, 0.1, 0.2, 0.3], abs=1e-12)
    assert len(parse_snr_list("0:1:0.1")) == 11


def test_negative_values_at_function_level():
    assert parse_snr_list("-5:5:5") == [-5.0, 0.0, 5.0]
    assert parse_snr_list("-3,-1") == [-3.0, -1.0]


def test_stop_not_on_grid():
    assert parse_snr_list("0:5:2") == [0.0, 2.0, 4.0]


@pytest.mark.parametrize("bad", ["a:b", "5:0:1", "0:1:0", "0:10:-1", "nan", "inf", "1:2", "1:2:3:4", "", ",", "x"])
def test_bad_strings(bad):
    with pytest.raises(argparse.ArgumentTypeError):
        parse_snr_list(bad)


def test_negative_snr_range_on_the_command_line():
    from experiments.sweep import setup_args

    args = setup_args().parse_args(["model.pt", "--snr", "-5:5:5", "--out", "r.json"])
    assert parse_snr_list(args.snr) == [-5.0, 0.0, 5.0]


def test_negative_snr_range_with_equals_sign():
    from experiments.sweep import setup_args

    args = setup_args().parse_args(["model.pt", "--snr=-5:5:5", "--out", "r.json"])
    assert parse_snr_list(args.snr) == [-5.0, 0.0, 5.0]


def _ns(channel=None, block_length=None, csi=None, equalization=None):
    return argparse.Namespace(channel=channel, block_length=block_length, csi=csi, equalization=equalization)


def test_channel_from_args():
    assert channel_from_args(_ns("awgn")).channel_config() == {"name": "awgn", "csi": "none", "block_length": None}
    ch = channel_from_args(_ns("rayleigh", block_length=4, csi="receiver", equalization="zf"))
    assert ch.channel_config() == {"name": "rayleigh", "csi": "receiver", "block_length": 4, "equalization": "zf"}
    with pytest.raises(ValueError, match="rayleigh only"):
        channel_from_args(_ns("awgn", csi="receiver"))


def test_channel_from_args_fallback_to_checkpoint_config():
    recorded = {"name": "rayleigh", "csi": "receiver", "block_length": None, "equalization": "side"}
    ch = channel_from_args(_ns(), fallback=recorded)
    assert ch.channel_config() == recorded
    # a different channel named on the command line ignores the recorded options
    assert channel_from_args(_ns("awgn"), fallback=recorded).channel_config()["name"] == "awgn"
    # the same channel with one option overridden keeps the others
    ch = channel_from_args(_ns("rayleigh", equalization="mmse"), fallback=recorded)
    assert ch.csi == "receiver" and ch.equalization == "mmse"


def test_cli_choices_repeat_the_modules_that_define_them():
    # experiments.args repeats them so that --help imports no torch
    from channels.ofdm import OFDM_INTERPOLATIONS, OFDM_MODELS
    from experiments import args
    from jscc.evaluate import IMAGE_METRICS
    from jscc.metrics import DEFAULT_METRICS
    from jscc.models.video import POLICIES

    assert (args.OFDM_MODEL_CHOICES, args.OFDM_INTERPOLATION_CHOICES) == (OFDM_MODELS, OFDM_INTERPOLATIONS)
    assert (args.IMAGE_METRIC_CHOICES, args.DEFAULT_METRIC_CHOICES, args.POLICY_CHOICES) == \
        (IMAGE_METRICS, DEFAULT_METRICS, POLICIES)
    from channels.links import BLER_BUDGETS
    from jscc.baselines.codecs import ACCOUNTING_MODES, FALLBACK_MODES, list_codecs
    from jscc.baselines.separate import BASELINE_METRICS, LINKS
    from jscc.baselines.video_codecs import VIDEO_CODECS, VIDEO_FALLBACK_MODES

    assert args.CODEC_CHOICES == (*list_codecs(), *VIDEO_CODECS) and args.LINK_CHOICES == LINKS
    assert (args.BASELINE_METRIC_CHOICES, args.ACCOUNTING_CHOICES) == (BASELINE_METRICS, ACCOUNTING_MODES)
    assert args.FALLBACK_CHOICES == tuple(dict.fromkeys([*FALLBACK_MODES, *VIDEO_FALLBACK_MODES]))
    assert args.BLER_BUDGET_CHOICES == tuple(sorted(BLER_BUDGETS))


def test_help_of_train_sweep_plot_demo_baseline_imports_no_torch():
    import subprocess
    import sys

    for command in ("train", "sweep", "plot", "demo", "baseline"):
        code = ("import sys; from experiments import cli\n"
                f"try: cli.main(['{command}', '--help'])\nexcept SystemExit: pass\n"
                "assert 'torch' not in sys.modules, 'torch imported'")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, (command, done.stderr[-500:])
