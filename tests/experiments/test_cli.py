"""The command-line tools, called in-process: train -> sweep -> plot, the dispatcher, the demo."""
from __future__ import annotations

import json
import re

import pytest
import torch

import experiments.cli as cli
import experiments.demo as demo
import experiments.plot as plot
import experiments.sweep as sweep
import experiments.train as train_cli
from jscc.checkpoint import read_checkpoint
from jscc.results import read_results, sha256_file, validate_results

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def data(tmp_path_factory, write_pngs):
    folder = tmp_path_factory.mktemp("imgs")
    write_pngs(folder, [(32, 32)] * 12, seed=7)
    return folder


def _train(data, out, *extra):
    argv = ["--data", str(data), "--epochs", "1", "--batch-size", "4", "--val-size", "2", "--quiet",
            "--threads", "1", "--out", str(out), *extra]
    assert train_cli.main(argv) == 0
    return out / "best.pt"


@pytest.fixture(scope="module")
def ckpt(data, tmp_path_factory):
    return _train(data, tmp_path_factory.mktemp("run"))


def _sweep(ckpt, data, out, *extra):
    argv = [str(ckpt), "--data", str(data), "--snr", "0:10:5", "--n-channel-draws", "2", "--quiet",
            "--threads", "1", "--out", str(out), *extra]
    assert sweep.main(argv) == 0
    return json.loads(out.read_text())


def _assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 1000


def test_train_cli_writes_checkpoints(ckpt):
    run = ckpt.parent
    assert {"best.pt", "last.pt", "log.csv", "history.json"} <= {p.name for p in run.iterdir()}
    c = torch.load(ckpt, weights_only=True)
    assert c["model"] == "deepjscc" and c["config"]["c"] == 8
    info = c["train"]
    assert info["channel"] == {"name": "awgn", "csi": "none", "block_length": None}
    assert info["bandwidth_ratio"] == "1/12" and info["train_snr_db"] == 10.0
    assert info["n_train_images"] + info["n_val_images"] == 12
    assert info["command"].startswith("jscc train ")
    assert len(json.loads((run / "history.json").read_text())) == 1


def test_train_sweep_plot_pipeline(ckpt, data, tmp_path):
    out = tmp_path / "res" / "sweep.json"
    res = _sweep(ckpt, data, out)
    validate_results(res)
    assert read_results(out) == res
    assert res["k"] == 256
    assert res["bandwidth_ratio_str"] == "1/12" and res["bandwidth_ratio"] == 256 / 3072
    assert res["n_channel_draws"] == 2
    assert res["snr_db"] == [0, 5, 10]
    assert len(res["metrics"]["psnr"]) == 3 and len(res["metrics"]["psnr_std"]) == 3
    assert len(res["metrics"]["ssim"]) == 3 and len(res["metrics"]["lpips"]) == 3  # default: psnr ssim lpips
    assert res["provenance"]["lpips_backbones"]["alex"]
    assert res["provenance"]["checkpoint_sha256"] == sha256_file(ckpt)
    assert res["channel"]["name"] == "awgn"
    assert res["train_snr_db"] == 10.0
    assert res["dataset"]["n_images"] == 12
    assert res["method"] == "deepjscc"

    png = tmp_path / "fig" / "psnr.png"
    assert plot.main([str(out), "--out", str(png)]) == 0
    _assert_png(png)
    png2 = tmp_path / "ssim.png"
    assert cli.main(["plot", str(out), str(out), "--metric", "ssim", "--std", "--title", "t", "--out", str(png2)]) == 0
    _assert_png(png2)
    png3 = tmp_path / "psnr_lpips.png"  # one panel per metric
    assert cli.main(["plot", str(out), "--metric", "psnr", "lpips", "--out", str(png3)]) == 0
    _assert_png(png3)


def test_sweep_drops_lpips_for_small_images_with_a_note(ckpt, tmp_path, write_pngs, capsys):
    write_pngs(tmp_path / "small", [(28, 28)] * 2)
    res = _sweep(ckpt, tmp_path / "small", tmp_path / "s.json")
    assert "lpips" not in res["metrics"] and "ssim" in res["metrics"]
    assert "too small for lpips" in res["notes"] and "too small for lpips" in capsys.readouterr().err


def test_plot_rejects_other_suffix_and_missing_metric(ckpt, data, tmp_path, capsys):
    out = tmp_path / "r.json"
    _sweep(ckpt, data, out, "--metrics", "psnr")
    with pytest.raises(ValueError, match=r"\.png or \.pdf"):
        plot.main([str(out), "--out", str(tmp_path / "fig.jpg")])
    with pytest.raises(ValueError, match="no metric 'ssim'"):
        plot.main([str(out), "--metric", "ssim", "--out", str(tmp_path / "fig.png")])
    full = tmp_path / "full.json"
    _sweep(ckpt, data, full)  # psnr ssim lpips
    assert plot.main([str(out), str(full), "--metric", "psnr", "lpips", "--out", str(tmp_path / "two.png")]) == 0
    assert "has no lpips: left out of the lpips panel" in capsys.readouterr().err


def test_sweep_records_a_substitute_perceptual_metric_under_its_name(ckpt, data, tmp_path):
    res = _sweep(ckpt, data, tmp_path / "p.json", "--metrics", "psnr", "perceptual", "--perceptual", "ssim")
    assert res["metrics"]["perceptual"]["name"] == "ssim" and "lpips" not in res["metrics"]
    values = res["metrics"]["perceptual"]["values"]
    assert len(values) == 3 and all(0 <= v <= 2 for v in values)  # 1 - SSIM


def test_sweep_rayleigh(ckpt, data, tmp_path):
    res = _sweep(ckpt, data, tmp_path / "ray.json", "--channel", "rayleigh", "--block-length", "1")
    validate_results(res)
    assert res["channel"]["name"] == "rayleigh"
    assert res["channel"]["block_length"] == 1 and res["channel"]["csi"] == "none"
    assert res["name"].endswith("-rayleigh")


@pytest.mark.parametrize("snr", ["a:b", "10:0:1", "nan"])
def test_sweep_bad_snr_exits(ckpt, data, tmp_path, snr):
    out = tmp_path / "bad.json"
    with pytest.raises(SystemExit) as err:
        sweep.main([str(ckpt), "--data", str(data), "--snr", snr, "--out", str(out)])
    assert err.value.code not in (0, None)
    assert not out.exists()


def test_sweep_unknown_model_name(data, tmp_path):
    with pytest.raises(ValueError, match="zoo"):
        sweep.main(["no-such-zoo-model", "--data", str(data), "--out", str(tmp_path / "r.json")])


def test_side_input_model_sweeps_with_recorded_channel(data, tmp_path):
    ckpt = _train(data, tmp_path / "run", "--channel", "rayleigh", "--csi", "receiver", "--equalization", "side",
                  "--model-arg", "csi_side_input=true", "--model-arg", "hidden=[8,8,8,8]", "--bandwidth-ratio", "1/24")
    c = torch.load(ckpt, weights_only=True)
    assert c["config"] == {"c": 4, "hidden": [8, 8, 8, 8], "csi_side_input": True}
    res = _sweep(ckpt, data, tmp_path / "side.json")  # no --channel: the recorded one is used
    validate_results(res)
    assert res["channel"] == {"name": "rayleigh", "csi": "receiver", "block_length": None, "equalization": "side"}
    assert res["k"] == 128 and res["bandwidth_ratio_str"] == "1/24"


def test_train_cli_bad_ratio(data, tmp_path):
    with pytest.raises(ValueError, match="not a positive integer"):
        train_cli.main(["--data", str(data), "--bandwidth-ratio", "1/10", "--out", str(tmp_path / "r")])


def test_train_cli_seed_controls_initial_weights(data, tmp_path):
    finals = []
    for i, global_seed in enumerate((1, 2)):
        torch.manual_seed(global_seed)  # e.g. a different process, or earlier work in this one
        ckpt = _train(data, tmp_path / f"run{i}", "--seed", "0")
        finals.append(torch.load(ckpt, weights_only=True)["state_dict"])
    for key in finals[0]:
        assert torch.equal(finals[0][key], finals[1][key]), key


def test_dispatcher(capsys):
    assert cli.main(["nope"]) == 2
    captured = capsys.readouterr()
    assert "unknown subcommand 'nope'" in captured.err and "usage: jscc" in captured.out
    assert cli.main([]) == 2  # nothing asked: usage, and a failure code
    assert "train" in capsys.readouterr().out
    assert cli.main(["--help"]) == 0
    capsys.readouterr()
    assert cli.main(["--version"]) == 0 and capsys.readouterr().out.startswith("jscc ")


@pytest.mark.parametrize("argv, match", [
    (["sweep", "no-such-model", "--out", "x.json"], "jscc sweep: error: 'no-such-model' is neither a checkpoint"),
    (["baseline", "--design-snr", "10", "--bandwidth-ratio", "1/0", "--out", "x.json"],
     "jscc baseline: error: argument --bandwidth-ratio: malformed ratio '1/0'"),
    (["baseline", "--design-snr", "10", "--bandwidth-ratio", "abc", "--out", "x.json"],
     "jscc baseline: error: argument --bandwidth-ratio: malformed ratio 'abc'"),
    (["plot", "missing.json", "--out", "x.png"], "jscc plot: error: .*missing.json"),
])
def test_user_errors_are_one_line(argv, match, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and re.match(match, err), err
    assert not list(tmp_path.iterdir())  # nothing written
    with pytest.raises((ValueError, OSError, SystemExit)):  # --debug: the traceback
        cli.main([*argv, "--debug"])


def test_subcommand_help_exits_zero():
    for name in ("train", "sweep", "plot", "demo"):
        with pytest.raises(SystemExit) as err:
            cli.main([name, "--help"])
        assert err.value.code == 0


def test_demo_trains_sweeps_and_plots(tmp_path):
    out = tmp_path / "demo"
    argv = ["--train", "--epochs", "1", "--steps-per-epoch", "2", "--snr", "0,10", "--n-channel-draws", "1",
            "--crop", "64", "--out", str(out)]
    assert demo.main(argv) == 0
    res = read_results(out / "results.json")  # validates
    assert res["snr_db"] == [0.0, 10.0] and len(res["metrics"]["psnr"]) == 2
    assert res["dataset"]["n_images"] == 2 and res["n_channel_draws"] == 1
    assert res["k"] == 8 * 64 * 64 // 32 and res["bandwidth_ratio_str"] == "1/12"
    assert res["provenance"]["checkpoint_sha256"] == sha256_file(out / "train" / "best.pt")
    assert "ssim" in res["metrics"] and len(res["metrics"]["lpips"]) == 2
    _assert_png(out / "psnr_vs_snr.png")
    _assert_png(out / "grid.png")


def test_demo_with_the_zoo_model(tmp_path):
    """The default demo path: the shipped CIFAR-10 model on the sample photos, PSNR rising with SNR."""
    from jscc.zoo import ZOO, weight_path

    assert demo.DEMO_MODEL in ZOO
    out = tmp_path / "demo"
    assert demo.main(["--snr", "0,20", "--n-channel-draws", "1", "--crop", "64", "--out", str(out)]) == 0
    res = read_results(out / "results.json")
    assert res["provenance"]["checkpoint_sha256"] == sha256_file(weight_path(demo.DEMO_MODEL))
    assert res["dataset"]["n_images"] == 7
    psnr = res["metrics"]["psnr"]
    assert psnr[1] > psnr[0] + 3  # 20 dB is far better than 0 dB for a model trained at 10 dB
    _assert_png(out / "grid.png")


def test_train_init_warm_starts_from_a_zoo_model_of_the_same_config(tmp_path, write_pngs):
    from jscc.checkpoint import read_checkpoint
    from jscc.zoo import weight_path

    write_pngs(tmp_path / "imgs", [(32, 32)] * 10)
    common = ["--data", str(tmp_path / "imgs"), "--epochs", "1", "--batch-size", "4", "--val-size", "2",
              "--quiet", "--threads", "1", "--init", "deepjscc-cifar10-1_12-awgn-snr10"]
    assert train_cli.main([*common, "--out", str(tmp_path / "run")]) == 0
    ckpt = read_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["train"]["init"]["sha256"] == sha256_file(weight_path("deepjscc-cifar10-1_12-awgn-snr10"))
    with pytest.raises(SystemExit, match="--init"):
        train_cli.main([*common, "--bandwidth-ratio", "1/6", "--out", str(tmp_path / "run2")])


def test_train_adjscc_warm_starts_from_a_deepjscc_backbone(tmp_path, write_pngs):
    from jscc.checkpoint import read_checkpoint

    write_pngs(tmp_path / "imgs", [(32, 32)] * 10)
    common = ["--model", "adjscc", "--data", str(tmp_path / "imgs"), "--epochs", "1", "--batch-size", "4",
              "--val-size", "2", "--quiet", "--threads", "1", "--train-snr-range", "0", "20"]
    assert train_cli.main([*common, "--init", "deepjscc-cifar10-1_12-awgn-snr10", "--out", str(tmp_path / "run")]) == 0
    ckpt = read_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["model"] == "adjscc" and ckpt["train"]["train_snr_db"] == [0.0, 20.0]
    with pytest.raises(SystemExit, match="warm-start"):
        train_cli.main([*common, "--bandwidth-ratio", "1/6", "--init", "deepjscc-cifar10-1_12-awgn-snr10",
                        "--out", str(tmp_path / "run2")])


def test_layered_train_layer_by_layer_sweep_and_plots(data, tmp_path):
    from jscc.checkpoint import read_checkpoint

    common = ["--model", "deepjscc-f", "--bandwidth-ratio", "1/6", "--model-arg", "layers=2",
              "--model-arg", "feedback_snr_db=20"]
    stage1 = _train(data, tmp_path / "s1", *common, "--train-layer", "1")
    stage2 = _train(data, tmp_path / "s2", *common, "--train-layer", "2", "--init", str(stage1))
    before, after = read_checkpoint(stage1)["state_dict"], read_checkpoint(stage2)["state_dict"]
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith(("encoders.0.", "decoders.0.")))
    assert not torch.equal(before["encoders.1.0.weight"], after["encoders.1.0.weight"])
    res = _sweep(stage2, data, tmp_path / "f.json", "--stop-psnr", "15", "--feedback-snr", "noiseless")
    assert res["stop_psnr_db"] == 15.0 and res["feedback_snr_db"] is None
    assert len(res["metrics_per_prefix"]) == 2 and [layer["k"] for layer in res["layers"]] == [256, 256]
    assert all(256 <= u <= 512 for u in res["metrics"]["channel_uses"])
    single = _sweep(ckpt_single := _train(data, tmp_path / "single"), data, tmp_path / "single.json")
    assert single["k"] == 256 and ckpt_single.exists()
    for extra in (["--per-prefix"], ["--x", "bandwidth", "--at-snr", "10"]):
        out = tmp_path / f"plot{len(extra)}.png"
        assert plot.main([str(tmp_path / "f.json"), str(tmp_path / "single.json"), *extra, "--out", str(out)]) == 0
        _assert_png(out)
    with pytest.raises(SystemExit, match="no SNR point"):
        plot.main([str(tmp_path / "f.json"), "--x", "bandwidth", "--at-snr", "7", "--out", str(tmp_path / "x.png")])
    with pytest.raises(SystemExit, match="--stop-psnr"):
        _sweep(ckpt_single, data, tmp_path / "bad.json", "--stop-psnr", "20")
    with pytest.raises(SystemExit, match="--allocation-policy applies to deepwive"):
        _sweep(ckpt_single, data, tmp_path / "bad.json", "--allocation-policy", "agent")
    with pytest.raises(SystemExit, match="--intra-only applies to deepwive"):
        _sweep(ckpt_single, data, tmp_path / "bad.json", "--intra-only")
    with pytest.raises(ValueError, match="layered"):
        _train(data, tmp_path / "bad", "--train-layer", "1")


def test_reproduce_runs_in_process_on_a_tiny_subset(tmp_path, write_pngs, capsys):
    import experiments.reproduce as reproduce

    write_pngs(tmp_path / "imgs", [(32, 32)] * 3)
    out = tmp_path / "fig"
    assert reproduce.main(["awgn-cifar10-1_12", "--data", str(tmp_path / "imgs"), "--snr", "0,10,20",
                           "--n-channel-draws", "1", "--workers", "1", "--out", str(out)]) == 0
    files = sorted(p.name for p in out.glob("*.json"))
    assert "deepjscc-cifar10-1_12-awgn-snr10.json" in files
    assert "jpeg2000-capacity-awgn-full-design10dB.json" in files
    for f in out.glob("*.json"):
        res = read_results(f)
        assert res["snr_db"] == [0.0, 10.0, 20.0] and res["dataset"]["n_images"] == 3
        assert len(res["metrics"]["lpips"]) == 3  # models and JPEG2000 alike: PSNR and LPIPS
    _assert_png(out.with_suffix(".png"))
    printed = capsys.readouterr().out
    assert "not in the zoo yet" in printed or len(files) == 12


def test_reproduce_envelope_takes_the_best_model_per_snr():
    from experiments.reproduce import envelope

    def res(name, psnr, lpips=(0.3, 0.2)):
        return {"schema": "jscc-results/1", "name": name, "method": "deepjscc", "dataset": {"name": "d", "n_images": 1},
                "channel": {"name": "awgn", "csi": "none", "block_length": None}, "k": 256,
                "bandwidth_ratio": 1 / 12, "bandwidth_ratio_str": "1/12", "train_snr_db": 1.0, "snr_db": [0.0, 10.0],
                "metrics": {"psnr": psnr, "psnr_std": [1.0, 2.0], "lpips": list(lpips)}, "n_channel_draws": 1,
                "provenance": {"checkpoint_sha256": None, "git_commit": None, "torch": "2", "command": "c"}}

    env = envelope([res("a", [20.0, 25.0]), res("b", [19.0, 27.0], (0.5, 0.1))], name="env")
    validate_results(env)
    assert env["metrics"]["psnr"] == [20.0, 27.0] and "10 dB b" in env["notes"]
    assert env["metrics"]["lpips"] == [0.3, 0.1]  # the other metrics of the model chosen by PSNR
    with pytest.raises(ValueError, match="same SNRs"):
        envelope([res("a", [1.0, 2.0]), {**res("b", [1.0, 2.0]), "snr_db": [0.0, 5.0]}], name="env")


def test_video_model_trains_on_synthetic_motion_and_sweeps_frame_folders(tmp_path, write_pngs):
    write_pngs(tmp_path / "stills", [(40, 40)] * 6)
    for clip in ("a", "b"):
        write_pngs(tmp_path / "clips" / clip, [(16, 16)] * 5, seed=ord(clip))
    model_args = ["--model", "deepwive", "--bandwidth-ratio", "1/12", "--model-arg", "c=8",
                  "--model-arg", "chunks_per_frame=4", "--model-arg", "hidden=[8,8,8,8]", "--model-arg", "flow_hidden=8"]
    run = tmp_path / "run"
    assert train_cli.main([*model_args, "--data", str(tmp_path / "stills"), "--frames", "5", "--synthetic-motion",
                           "--crop", "16", "--samples-per-epoch", "4", "--epochs", "1", "--batch-size", "2",
                           "--val-size", "1", "--quiet", "--threads", "1", "--train-snr-range", "0", "20",
                           "--out", str(run)]) == 0
    res = _sweep(run / "best.pt", tmp_path / "clips", tmp_path / "v.json", "--frames", "5", "--metrics", "psnr")
    assert res["method"] == "deepwive" and len(res["metrics_per_frame"]) == 5 and res["dataset"]["n_images"] == 2
    assert res["bandwidth_ratio_str"] == "1/12" and res["allocation_policy"] == "uniform"
    for clip in ("c", "d"):  # per-frame LPIPS on frames large enough for it (>= 31 px)
        write_pngs(tmp_path / "clips32" / clip, [(32, 32)] * 5, seed=ord(clip))
    res = _sweep(run / "best.pt", tmp_path / "clips32", tmp_path / "l.json", "--frames", "5", "--metrics", "psnr", "lpips")
    assert len(res["metrics"]["lpips"]) == 3 and all(len(frame["lpips"]) == 3 for frame in res["metrics_per_frame"])
    res = _sweep(run / "best.pt", tmp_path / "clips", tmp_path / "o.json", "--frames", "5", "--metrics", "psnr",
                 "--allocation-policy", "oracle")
    assert res["allocation_policy"] == "oracle" and "intra_only" not in res and res["name"] == "run-awgn-oracle"
    res = _sweep(run / "best.pt", tmp_path / "clips", tmp_path / "i.json", "--frames", "5", "--metrics", "psnr",
                 "--intra-only")
    assert res["intra_only"] is True and res["k"] == 320  # the same bandwidth as the video model
    assert res["name"] == "run-awgn-intra"

    # agent stage: from the trained codec, only the agent changes; validation uses the agent policy
    data = ["--data", str(tmp_path / "stills"), "--frames", "5", "--synthetic-motion", "--crop", "16",
            "--samples-per-epoch", "4", "--epochs", "1", "--batch-size", "2", "--val-size", "1", "--quiet",
            "--threads", "1", "--train-snr-range", "0", "20"]
    agent_run = tmp_path / "agent"
    assert train_cli.main([*model_args, "--model-arg", "policy=agent", *data, "--train-agent", "--init",
                           str(run / "best.pt"), "--out", str(agent_run)]) == 0
    codec, agent = read_checkpoint(run / "best.pt"), read_checkpoint(agent_run / "last.pt")
    assert agent["config"]["policy"] == "agent"
    changed = {k for k, v in agent["state_dict"].items() if not torch.equal(v, codec["state_dict"][k])}
    assert all(k.startswith("agent.") for k in changed)  # the codec is frozen (the agent's update: test_video_model)
    assert "train_reward_db" in agent["history"][0] and "train_mse" not in agent["history"][0]
    with pytest.raises(ValueError, match="allocation agent"):
        train_cli.main(["--data", str(tmp_path / "stills"), "--crop", "16", "--samples-per-epoch", "4", "--epochs", "1",
                        "--batch-size", "2", "--val-size", "1", "--quiet", "--train-agent", "--out", str(tmp_path / "x")])
    with pytest.raises(ValueError, match="policy='agent'"):
        train_cli.main([*model_args, *data, "--train-agent", "--init", str(run / "best.pt"), "--out", str(tmp_path / "z")])
    with pytest.raises(SystemExit, match="differs only in"):
        train_cli.main([*model_args, "--model-arg", "policy=agent", "--model-arg", "scale_levels=3", *data,
                        "--train-agent", "--init", str(run / "best.pt"), "--out", str(tmp_path / "y")])
    with pytest.raises(SystemExit, match="--frames"):
        train_cli.main(["--data", str(tmp_path / "stills"), "--synthetic-motion", "--out", str(tmp_path / "bad")])
