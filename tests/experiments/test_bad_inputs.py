"""The bad-input table of issue 26: every case runs ``jscc`` in-process and must exit with code 2 and one
line on stderr, ``jscc <cmd>: error: ...``, that names the option or file at fault, writing nothing and
losing nothing (every file under the working folder is byte for byte as before)."""
from __future__ import annotations

import json
import os
import re
from fractions import Fraction
from pathlib import Path

import pytest
import torch

import experiments.cli as cli
import experiments.train as train_cli
from jscc.checkpoint import read_checkpoint, save_model
from jscc.models import DeepJSCC, DeepWiVe
from jscc.results import read_results

SMALL_WIVE = {"c": 8, "chunks_per_frame": 4, "hidden": [8, 8, 8, 8], "flow_hidden": 8}
RUN_FILES = ("best.pt", "last.pt", "log.csv", "history.json")


def _results(name: str) -> dict:
    """A minimal valid ``jscc-results/1`` dict."""
    return {"schema": "jscc-results/1", "name": name, "method": "deepjscc", "dataset": {"name": "d", "n_images": 1},
            "channel": {"name": "awgn", "csi": "none", "block_length": None}, "k": 256, "bandwidth_ratio": 1 / 12,
            "bandwidth_ratio_str": "1/12", "train_snr_db": 10.0, "snr_db": [0.0, 10.0],
            "metrics": {"psnr": [20.0, 25.0], "psnr_std": [1.0, 1.0]}, "n_channel_draws": 1,
            "provenance": {"checkpoint_sha256": None, "git_commit": None, "torch": "2", "command": "c"}}


@pytest.fixture(scope="module")
def work(tmp_path_factory, write_pngs) -> Path:
    """The working folder of every case: images, clips, checkpoints, results files, a finished run."""
    root = tmp_path_factory.mktemp("work")
    write_pngs(root / "imgs", [(32, 32)] * 4)
    write_pngs(root / "trunc", [(32, 32)] * 2)
    write_pngs(root / "tiny", [(32, 32), (2, 2)])
    broken = root / "trunc" / "img_001.png"
    broken.write_bytes(broken.read_bytes()[:200])
    for clip in ("a", "b"):
        write_pngs(root / "clips" / clip, [(16, 16)] * 5, seed=ord(clip))
    write_pngs(root / "shortclips" / "a", [(16, 16)] * 3)
    torch.manual_seed(0)
    save_model(DeepJSCC(c=8, hidden=[4, 4, 4, 4]), root / "model.pt")
    save_model(DeepWiVe.from_bandwidth_ratio(Fraction(1, 12), **SMALL_WIVE), root / "wive.pt")
    (root / "empty.pt").write_bytes(b"")
    (root / "good.json").write_text(json.dumps(_results("good")))
    (root / "bad.json").write_text(json.dumps({**_results("bad"), "k": -1}))
    (root / "run").mkdir()
    for name in RUN_FILES:
        (root / "run" / name).write_text(f"the {name} of a finished run")
    (root / "adir").mkdir()
    (root / "afile.txt").write_text("a file")
    (root / "ro").mkdir()
    (root / "ro").chmod(0o555)
    return root


def _snapshot(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): None if p.is_dir() else p.read_bytes() for p in sorted(root.rglob("*"))}


def _run(argv: list[str]) -> int:
    """``jscc ARGV`` in-process: its exit code (argparse's errors exit through SystemExit)."""
    try:
        return cli.main(argv)
    except SystemExit as stop:
        return stop.code


SWEEP = ["sweep", "model.pt", "--data", "imgs", "--snr", "10", "--n-channel-draws", "1", "--metrics", "psnr",
         "--quiet", "--threads", "1"]
TRAIN = ["train", "--data", "imgs", "--epochs", "1", "--batch-size", "2", "--val-size", "1", "--quiet", "--threads", "1",
         "--model-arg", "hidden=[4,4,4,4]"]
BASELINE = ["baseline", "--design-snr", "10", "--data", "imgs", "--workers", "1", "--quiet"]

CASES = {  # id: (argv, what the one line must say: a regex naming the culprit)
    # ratios
    "ratio-1/0": ([*TRAIN, "--bandwidth-ratio=1/0", "--out", "new"], r"argument --bandwidth-ratio: malformed ratio '1/0'"),
    "ratio-abc": ([*TRAIN, "--bandwidth-ratio=abc", "--out", "new"], r"argument --bandwidth-ratio: malformed ratio 'abc'"),
    "ratio-1/10": ([*TRAIN, "--bandwidth-ratio", "1/10", "--out", "new"], r"bandwidth ratio 1/10 gives c = 96\*k/n = 9\.6 "),
    "baseline-ratio-1/0": ([*BASELINE, "--bandwidth-ratio", "1/0", "--out", "new.json"],
                           r"argument --bandwidth-ratio: malformed ratio '1/0'"),
    # counts and sizes
    "val-size-0": ([*TRAIN, "--val-size", "0", "--out", "new"], r"argument --val-size: must be a positive integer, got 0"),
    "samples-per-epoch-negative": ([*TRAIN, "--crop", "16", "--samples-per-epoch", "-5", "--out", "new"],
                                   r"argument --samples-per-epoch: must be a positive integer, got -5"),
    "sweep-batch-size-0": ([*SWEEP, "--batch-size", "0", "--out", "new.json"], r"argument --batch-size: must be a positive"),
    "absurd-snr-grid": ([*SWEEP, "--snr", "0:20:0.0001", "--out", "new.json"],
                        r"SNR range '0:20:0\.0001' has 200001 points \(more than 1000\)"),
    "sweep-limit-negative": ([*SWEEP, "--limit", "-5", "--out", "new.json"], r"argument --limit: must be a positive integer"),
    "baseline-limit-negative": ([*BASELINE, "--limit", "-1", "--out", "new.json"], r"argument --limit: must be a positive"),
    # files that are not what they are passed as
    "results-json-as-checkpoint": (["sweep", "good.json", "--data", "imgs", "--out", "new.json"],
                                   r"good\.json is a JSON file \(jscc results\), not a checkpoint"),
    "png-as-checkpoint": (["sweep", "imgs/img_000.png", "--data", "imgs", "--out", "new.json"],
                          r"imgs/img_000\.png is a PNG image, not a checkpoint"),
    "empty-checkpoint": (["sweep", "empty.pt", "--data", "imgs", "--out", "new.json"], r"empty\.pt is empty \(0 bytes\)"),
    "prior-as-jscc-model": (["sweep", "stylegan2-cifar10-32", "--data", "imgs", "--out", "new.json"],
                            r"'stylegan2-cifar10-32' is a stylegan2 prior .*not a JSCC model"),
    "truncated-image": ([*SWEEP[:2], "--data", "trunc", "--out", "out/sub/new.json"], r"cannot read image trunc/img_001\.png"),
    "image-too-small": ([*SWEEP[:2], "--data", "tiny", "--out", "new.json"],
                        r"image tiny/img_001\.png is 2x2: smaller than 4x4 px"),
    "baseline-image-too-small": ([*BASELINE, "--data", "tiny", "--out", "new.json"], r"image tiny/img_001\.png is 2x2"),
    "train-truncated-image": ([*TRAIN[:1], "--data", "trunc", "--out", "out/run"], r"trunc/img_001\.png"),
    "plot-one-invalid": (["plot", "good.json", "bad.json", "--out", "new.png"],
                         r"bad\.json is not a valid jscc-results/1 results file: \$\.k"),
    "plot-not-json": (["plot", "good.json", "imgs/img_000.png", "--out", "new.png"],
                      r"imgs/img_000\.png is not a JSON results file"),
    "model-arg-bad-json": ([*TRAIN, "--model-arg", "hidden=[32,64", "--out", "new"], r"--model-arg hidden: bad JSON '\[32,64'"),
    # video options
    "frames-on-image-model": ([*SWEEP, "--frames", "5", "--out", "new.json"], r"--frames is for video models"),
    "train-frames-on-image-model": ([*TRAIN, "--frames", "5", "--out", "new"], r"--frames is for video models"),
    "video-clips-too-short": (["sweep", "wive.pt", "--data", "shortclips", "--out", "new.json"],
                              r"--frames: wive.pt codes clips of 1 \+ 4m frames .*shortest clip of shortclips has 3"),
    # runs and outputs
    "train-over-a-run": ([*TRAIN, "--out", "run"],
                         r"--out run already holds a run \(best\.pt, last\.pt, log\.csv, history\.json\).*--overwrite"),
    "resume-without-last-pt": ([*TRAIN, "--resume", "--out", "new"], r"--resume: there is no new/last\.pt"),
    "resume-and-overwrite": ([*TRAIN, "--resume", "--overwrite", "--out", "run"], r"argument --overwrite: not allowed"),
    "train-out-is-a-file": ([*TRAIN, "--out", "afile.txt"], r"--out afile\.txt is an existing file; it must be a folder"),
    "train-failure-leaves-no-folder": ([*TRAIN, "--batch-size", "64", "--out", "out/run"],
                                       r"batch size 64 .*exceeds the 3 training images"),
    "sweep-out-is-a-folder": ([*SWEEP, "--out", "adir"], r"--out adir is an existing folder; it must be a file"),
    "sweep-out-under-a-file": ([*SWEEP, "--out", "afile.txt/r.json"], r"--out afile\.txt/r\.json: afile\.txt is a file"),
    "sweep-out-read-only": ([*SWEEP, "--out", "ro/sub/r.json"], r"--out ro/sub/r\.json: the folder ro is not writable"),
    "baseline-out-is-a-folder": ([*BASELINE, "--out", "adir"], r"--out adir is an existing folder; it must be a file"),
    "baseline-policies-out-is-a-file": ([*BASELINE, "--design", "oracle", "--out", "afile.txt"],
                                        r"--out afile\.txt is an existing file; it must be a folder"),
    "baseline-out-read-only": ([*BASELINE, "--out", "ro/r.json"], r"--out ro/r\.json: the folder ro is not writable"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_exits_2_with_one_line_naming_the_culprit(case, work, monkeypatch, capsys):
    argv, expected = CASES[case]
    monkeypatch.chdir(work)
    if "read-only" in case and os.geteuid() == 0:  # root may write anywhere: stand in for the permission check
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda path, mode, *a, **kw: (
            not (mode & os.W_OK and Path(path).resolve() == work / "ro") and real_access(path, mode, *a, **kw)))
    before = _snapshot(work)
    capsys.readouterr()
    assert _run(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err  # one line, no usage block, no traceback
    assert err[0].startswith(f"jscc {argv[0]}: error: ") and re.search(expected, err[0]), err[0]
    assert _snapshot(work) == before  # nothing written, nothing lost, no empty run folder left behind


def test_a_decimal_ratio_within_1e9_of_a_fraction_is_that_fraction():
    from experiments.args import bandwidth_ratio

    assert bandwidth_ratio("0.08333333333333333") == Fraction(1, 12)  # how Python prints 1/12
    assert bandwidth_ratio("0.0390625") == Fraction(5, 128) and bandwidth_ratio("2/24") == Fraction(1, 12)
    assert bandwidth_ratio("0.0833334") == Fraction(833334, 10**7)  # 7e-8 from 1/12: not snapped
    args = train_cli.setup_args().parse_args(["--bandwidth-ratio=0.08333333333333333", "--out", "x"])
    assert DeepJSCC.from_bandwidth_ratio(args.bandwidth_ratio).c == 8 and str(args.bandwidth_ratio) == "1/12"


def test_video_sweep_without_frames_codes_the_longest_gop_multiple_every_clip_holds(work, tmp_path, capsys):
    out = tmp_path / "v.json"
    assert cli.main(["sweep", str(work / "wive.pt"), "--data", str(work / "clips"), "--snr", "10",
                     "--n-channel-draws", "1", "--metrics", "psnr", "--quiet", "--threads", "1", "--out", str(out)]) == 0
    res = read_results(out)
    assert res["method"] == "deepwive" and len(res["metrics_per_frame"]) == 5 and res["dataset"]["n_images"] == 2
    assert "coding the first 5 frames of each clip" in capsys.readouterr().err


def test_train_overwrite_and_resume_say_what_they_do(work, tmp_path, capsys):
    out = tmp_path / "run"
    common = [*TRAIN[1:], "--data", str(work / "imgs"), "--out", str(out)]
    assert train_cli.main(common) == 0
    first = (out / "last.pt").read_bytes()
    assert train_cli.main([*common, "--overwrite"]) == 0  # a new run over the old one, on request
    assert read_checkpoint(out / "last.pt")["epoch"] == 1 and (out / "last.pt").read_bytes() != first
    capsys.readouterr()
    kept = (out / "last.pt").read_bytes()
    assert train_cli.main([*common, "--resume"]) == 0  # a finished run: nothing to do, and it says so
    assert "has done 1 epochs >= --epochs 1: nothing to train" in capsys.readouterr().err
    assert (out / "last.pt").read_bytes() == kept
    assert train_cli.main([*common, "--resume", "--epochs", "2"]) == 0
    note = capsys.readouterr().err
    assert "was started for 1 epochs (1 done); it trains on to epoch 2 on its 1-epoch cosine" in note
    assert "rises again after epoch 1" in note and note.count("\n") == 1
    assert read_checkpoint(out / "last.pt")["epoch"] == 2


def _api_cases():
    from channels import AWGN
    from jscc.system import JSCCSystem

    model = DeepJSCC(c=8, hidden=[4, 4, 4, 4])
    system = JSCCSystem(model, AWGN(10.0))
    rgb = torch.rand(1, 3, 32, 32)
    return {
        "channel-as-a-string": (lambda: JSCCSystem(model, "awgn"), TypeError, r"channels\.build_channel\('awgn'"),
        "model-as-a-string": (lambda: JSCCSystem("deepjscc", AWGN()), TypeError, r"model must be a registered model"),
        "snr-as-a-string": (lambda: system(rgb, "10"), TypeError, r"snr_db must be a number .* got '10'"),
        "float64-images": (lambda: system(rgb.double(), 10.0), TypeError, r"float32 images, got torch\.float64"),
        "one-channel-images": (lambda: system(rgb[:, :1], 10.0), ValueError, r"RGB images \(B, 3, H, W\)"),
        "uint8-images": (lambda: system((rgb * 255).byte(), 10.0), TypeError, r"floating tensor"),
    }


@pytest.mark.parametrize("case", ["channel-as-a-string", "model-as-a-string", "snr-as-a-string", "float64-images",
                                  "one-channel-images", "uint8-images"])
def test_python_api_bad_inputs_raise_one_clear_error(case):
    call, error, message = _api_cases()[case]
    with pytest.raises(error, match=message) as info:
        call()
    assert "\n" not in str(info.value)


def test_sizes_cut_to_the_models_multiple_are_reported(tmp_path, write_pngs, capsys):
    write_pngs(tmp_path / "odd", [(30, 30), (32, 32), (34, 37)])
    torch.manual_seed(0)
    save_model(DeepJSCC(c=8, hidden=[4, 4, 4, 4]), tmp_path / "m.pt")
    out = tmp_path / "r.json"
    assert cli.main(["sweep", str(tmp_path / "m.pt"), "--data", str(tmp_path / "odd"), "--snr", "10",
                     "--n-channel-draws", "1", "--metrics", "psnr", "--quiet", "--threads", "1", "--out", str(out)]) == 0
    note = "2 of 3 images cut at the bottom/right to a multiple of 4 px (e.g. img_000.png: 30x30 -> 28x28)"
    assert note in capsys.readouterr().err and note in read_results(out)["notes"]
