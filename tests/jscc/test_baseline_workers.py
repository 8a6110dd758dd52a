"""``jscc baseline --workers 2`` from a threaded parent: source-coding pools never fork (issue 26).

A forked child copies every lock another thread of the parent held at the fork (torch's intra-op pool,
tqdm's monitor, LPIPS, ...), so a worker could hang forever. Each ``--workers 2`` run below happens in
a subprocess (a hang fails on its timeout instead of stalling the suite) that first starts a busy
background thread and torch's 2-thread intra-op pool, while the ``--workers 1`` run goes on in this
process; both must write the same results.
"""
from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import channels.links as L
import jscc.baselines.video_codecs as vc
from experiments import baseline as baseline_cli

ROOT = Path(__file__).resolve().parents[2]

# Runs `jscc baseline ... --workers 2` in process (argv[1]: JSON list of the arguments) from a parent with a busy
# thread and a warm 2-thread torch pool; prints the pools started and how their workers start.
_SCRIPT = textwrap.dedent("""
    import json, sys, threading, time
    import torch
    import jscc.baselines.codecs as C
    from experiments import baseline

    stop = threading.Event()
    def busy():
        a = torch.rand(64, 64)
        while not stop.is_set():
            a = (a @ a).clamp(0, 1)
            time.sleep(0.002)
    worker = threading.Thread(target=busy, daemon=True)
    worker.start()
    torch.set_num_threads(2)
    torch.rand(512, 512) @ torch.rand(512, 512)  # the intra-op pool's threads are running

    started, new_pool = [], C._new_pool
    def counted(workers):
        pool = new_pool(workers)
        started.append(pool._mp_context.get_start_method())
        return pool
    C._new_pool = counted
    assert baseline.main(json.loads(sys.argv[1])) == 0
    stop.set()
    worker.join()  # not mid-matmul when the interpreter exits (a C++ terminate)
    print(json.dumps({"pools": started}))
""")


def _check_workers_2_equal_1(common: list[str], out: Path, n_files: int, timeout: float = 120) -> None:
    """``--workers 2`` in a threaded subprocess while ``--workers 1`` runs here; same results files."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    argv = [*common, "--workers", "2", "--out", str(out / "w2")]
    proc = subprocess.Popen([sys.executable, "-c", _SCRIPT, json.dumps(argv)], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        assert baseline_cli.main([*common, "--workers", "1", "--out", str(out / "w1")]) == 0
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the run and its workers (its own session)
        _, stderr = proc.communicate()
        pytest.fail(f"jscc baseline --workers 2 hung (killed after {timeout} s): {stderr}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 0, stderr
    info = json.loads(stdout.strip().splitlines()[-1])
    assert info["pools"] == ["spawn"], info  # one pool for the whole run (both policies), spawned
    one, two = _results(out / "w1"), _results(out / "w2")
    assert len(one) == n_files and one == two


def _results(folder: Path) -> dict[str, dict]:
    """``{file name: results}`` without what may differ between runs (provenance: command, time, ...)."""
    out = {}
    for path in sorted(folder.glob("*.json")):
        res = json.loads(path.read_text())
        res.pop("provenance", None)
        out[path.name] = res
    return out


@pytest.mark.skipif(not vc.video_codec_available("h264"), reason="PyAV with libx264 not installed")
def test_video_baseline_two_workers_from_threaded_parent(tmp_path, write_panning_clips):
    """Two 5-frame 32x32 clips, h264, two design SNRs (two source-coding calls, one pool)."""
    write_panning_clips(tmp_path / "clips")
    common = ["--codec", "h264", "--frames", "5", "--gop", "4", "--link", "capacity", "--snr", "0:20:10",
              "--bandwidth-ratio", "1/12", "--data", str(tmp_path / "clips"), "--n-channel-draws", "2",
              "--design-snr", "5", "15", "--quiet"]
    _check_workers_2_equal_1(common, tmp_path / "out", n_files=2)


def test_image_baseline_two_workers_from_threaded_parent(tmp_path, write_pngs):
    """Four 32x32 PNGs, JPEG2000, two design SNRs."""
    write_pngs(tmp_path / "images", [(32, 32)] * 4)
    common = ["--codec", "jpeg2000", "--link", "capacity", "--snr", "0:20:10", "--bandwidth-ratio", "1/12",
              "--data", str(tmp_path / "images"), "--n-channel-draws", "2", "--metrics", "psnr",
              "--design-snr", "5", "15", "--quiet"]
    _check_workers_2_equal_1(common, tmp_path / "out", n_files=2)


def test_fallback_choices_listed_once():
    action = next(a for a in baseline_cli.setup_args()._actions if "--fallback" in a.option_strings)
    assert list(action.choices) == ["image_mean", "dataset_mean", "clip_mean"]


def test_bler_cache_file_has_umask_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        L._atomic_write_json({"a": 1}, tmp_path / "sub" / "table.json")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "sub" / "table.json").stat().st_mode) == 0o644
    assert json.loads((tmp_path / "sub" / "table.json").read_text()) == {"a": 1}
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["table.json"]  # no temp file left
