"""Video data: frame folders, video files, UCF-101 layout, crops, batching, synthetic motion (offline, tiny)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from jscc.data import ImageSet
from jscc.video import (FrameFolder, SyntheticMotion, VideoSet, affine_motion, iterate_video_batches,
                        load_frame_folder, load_ucf101, load_video_file, load_video_folder, natural_key,
                        read_video, render_motion)


def _clip_uint8(t: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """uint8 ``(T, H, W, 3)`` of random pixels (every frame distinct)."""
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def _write_frames(folder: Path, frames: np.ndarray, names=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    names = names or [f"f{i + 1:03d}.png" for i in range(len(frames))]
    for name, frame in zip(names, frames):
        Image.fromarray(frame).save(folder / name)
    return folder


def _write_video(path: Path, frames: np.ndarray) -> Path:
    """A lossless (PNG-in-AVI) video file, so decoded pixels equal ``frames``."""
    av = pytest.importorskip("av")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("png", rate=10)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "rgb24"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _as_tensor(frames: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255


# --------------------------------------------------------------------------- folders


def test_frame_folder_shapes_range_and_natural_order(tmp_path):
    frames = _clip_uint8(12, 18, 22)
    # written in shuffled order with unpadded numbers: f2 must come before f10
    names = [f"f{i + 1}.png" for i in range(12)]
    order = np.random.default_rng(1).permutation(12)
    _write_frames(tmp_path, frames[order], [names[i] for i in order])
    ds = load_frame_folder(tmp_path)
    assert len(ds) == 1 and ds.stacked and ds.uniform
    assert ds.image_size(0) == (16, 20) and ds.num_frames(0) == 12  # cut to a multiple of 4
    x = ds.batch([0])
    assert x.shape == (1, 12, 3, 16, 20) and x.dtype == torch.float32
    assert 0 <= x.min() and x.max() <= 1
    assert torch.equal(x[0], _as_tensor(frames[:, :16, :20]))


def test_natural_key():
    names = ["f10.png", "f2.png", "F1.png", "f001b.png", "g1.png"]
    assert sorted(names, key=natural_key) == ["F1.png", "f001b.png", "f2.png", "f10.png", "g1.png"]


def test_lazy_frame_folder_reads_only_on_batch(tmp_path):
    frames = _clip_uint8(6, 16, 16)
    _write_frames(tmp_path, frames)
    ds = load_frame_folder(tmp_path, lazy=True, frames=3, random_crop=False)
    assert isinstance(ds.clips[0], FrameFolder) and ds.clips[0].shape == (6, 3, 16, 16)
    assert torch.equal(ds.batch([0])[0], _as_tensor(frames[:3]))
    assert torch.equal(ds.clips[0][4], torch.from_numpy(frames[4]).permute(2, 0, 1))
    eager = load_frame_folder(tmp_path, frames=3, crop=8)
    g = lambda: torch.Generator().manual_seed(4)  # noqa: E731
    lazy = load_frame_folder(tmp_path, lazy=True, frames=3, crop=8)
    assert torch.equal(eager.batch([0], g()), lazy.batch([0], g()))


def test_folder_of_folders_mixed_lengths(tmp_path):
    _write_frames(tmp_path / "clip10", _clip_uint8(5, 16, 16, seed=3))
    _write_frames(tmp_path / "clip2", _clip_uint8(7, 16, 16, seed=2))
    _write_frames(tmp_path / "sub" / "clip1", _clip_uint8(4, 16, 20, seed=1))
    (tmp_path / "notes.txt").write_text("not a frame")
    ds = load_video_folder(tmp_path)
    assert ds.clip_names == ["clip2", "clip10", str(Path("sub") / "clip1")]
    assert not ds.stacked and not ds.uniform
    batches = list(iterate_video_batches(ds, 4))
    assert [tuple(b.shape) for b in batches] == [(1, 7, 3, 16, 16), (1, 5, 3, 16, 16), (1, 4, 3, 16, 20)]
    with pytest.raises(ValueError, match="mixes clip shapes"):
        ds.batch([0, 1])
    # frames= and crop= make them batchable
    ds = load_video_folder(tmp_path, frames=4, crop=12, limit=3)
    assert ds.uniform
    (x,) = list(iterate_video_batches(ds, 4, generator=torch.Generator().manual_seed(0)))
    assert x.shape == (3, 4, 3, 12, 12)


def test_random_spatiotemporal_crop_reproducible_and_centred(tmp_path):
    frames = _clip_uint8(10, 20, 24)
    _write_frames(tmp_path, frames)
    ds = load_frame_folder(tmp_path, frames=4, crop=8)
    a = ds.batch([0, 0, 0], generator=torch.Generator().manual_seed(0))
    b = ds.batch([0, 0, 0], generator=torch.Generator().manual_seed(0))
    c = ds.batch([0, 0, 0], generator=torch.Generator().manual_seed(1))
    assert a.shape == (3, 4, 3, 8, 8) and torch.equal(a, b) and not torch.equal(a, c)
    # each crop is a window of the clip: consecutive frames, same position
    full = _as_tensor(frames)
    g = torch.Generator().manual_seed(0)
    start = int(torch.randint(7, (1,), generator=g))
    top, left = int(torch.randint(13, (1,), generator=g)), int(torch.randint(17, (1,), generator=g))
    assert torch.equal(a[0], full[start : start + 4, :, top : top + 8, left : left + 8])
    # not random: first frames, centred window
    centred = load_frame_folder(tmp_path, frames=4, crop=(8, 12), random_crop=False).batch([0])
    assert torch.equal(centred[0], full[:4, :, 6:14, 6:18])


def test_errors_empty_mismatched_short_small(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no frames")
    with pytest.raises(ValueError, match="no clips found"):
        load_video_folder(tmp_path / "empty")
    with pytest.raises(ValueError, match="no frames"):
        load_frame_folder(tmp_path / "empty")
    with pytest.raises(FileNotFoundError):
        load_video_folder(tmp_path / "missing")
    frames = _clip_uint8(3, 16, 16)
    _write_frames(tmp_path / "mixed", frames)
    Image.fromarray(_clip_uint8(1, 16, 20)[0]).save(tmp_path / "mixed" / "f004.png")
    with pytest.raises(ValueError, match="frame sizes differ.*f004.png"):
        load_frame_folder(tmp_path / "mixed")
    _write_frames(tmp_path / "short", frames)
    with pytest.raises(ValueError, match="shorter than frames=4"):
        load_frame_folder(tmp_path / "short", frames=4)
    with pytest.raises(ValueError, match="smaller than the crop"):
        load_frame_folder(tmp_path / "short", crop=20)


def test_videoset_validation_and_subset():
    clips = torch.from_numpy(_clip_uint8(12, 8, 8)).permute(0, 3, 1, 2).reshape(3, 4, 3, 8, 8)
    with pytest.raises(ValueError, match="uint8"):
        VideoSet(clips.float(), "x")
    with pytest.raises(ValueError, match="no clips"):
        VideoSet([], "x")
    with pytest.raises(ValueError, match="uint8"):
        VideoSet([clips[0, :, :2]], "x")
    ds = VideoSet(clips, "tiny")
    assert torch.equal(ds.batch([2, 0]), clips[[2, 0]].float() / 255)
    sub = ds.subset([2, 1])
    assert len(sub) == 2 and sub.clip_names == ["clip2", "clip1"]
    assert torch.equal(sub.batch([0]), ds.batch([2]))
    assert [b.shape[0] for b in iterate_video_batches(ds, 2)] == [2, 1]
    assert [b.shape[0] for b in iterate_video_batches(ds, 2, drop_last=True)] == [2]


# --------------------------------------------------------------------------- video files


def test_video_file_and_ucf101_layout(tmp_path):
    pytest.importorskip("av")
    a, b = _clip_uint8(6, 16, 24, seed=1), _clip_uint8(5, 16, 24, seed=2)
    root = tmp_path / "UCF-101"
    _write_video(root / "Biking" / "v_Biking_g01_c02.avi", a)
    _write_video(root / "ApplyLipstick" / "v_ApplyLipstick_g10_c01.avi", b)
    _write_video(root / "ApplyLipstick" / "v_ApplyLipstick_g9_c01.avi", b[:4])
    assert torch.equal(read_video(root / "Biking" / "v_Biking_g01_c02.avi").permute(0, 2, 3, 1),
                       torch.from_numpy(a))
    assert read_video(root / "Biking" / "v_Biking_g01_c02.avi", frame_step=2, max_frames=2).shape == (2, 3, 16, 24)
    one = load_video_file(root / "Biking" / "v_Biking_g01_c02.avi", frames=3, random_crop=False)
    assert torch.equal(one.batch([0])[0], _as_tensor(a[:3]))
    ds = load_ucf101(root)
    assert [Path(n).name for n in ds.clip_names] == ["v_ApplyLipstick_g9_c01.avi", "v_ApplyLipstick_g10_c01.avi",
                                                     "v_Biking_g01_c02.avi"]
    split = tmp_path / "testlist01.txt"
    split.write_text("Biking/v_Biking_g01_c02.avi 2\nApplyLipstick/v_ApplyLipstick_g10_c01.avi 1\n")
    ds = load_ucf101(root, split_file=split, frames=4, crop=8)
    assert ds.name == "ucf101-testlist01" and ds.clip_names[0] == str(Path("Biking") / "v_Biking_g01_c02.avi")
    assert ds.batch([0, 1], torch.Generator().manual_seed(0)).shape == (2, 4, 3, 8, 8)
    split.write_text("Biking/v_Biking_g99_c01.avi\n")
    with pytest.raises(FileNotFoundError, match="missing"):
        load_ucf101(root, split_file=split)
    # the generic loader finds the same files
    assert len(load_video_folder(root)) == 3


def test_video_decode_errors(tmp_path):
    pytest.importorskip("av")
    bad = tmp_path / "broken.avi"
    bad.write_bytes(b"this is not a video" * 10)
    with pytest.raises(ValueError, match="cannot decode video file .*broken.avi"):
        load_video_folder(tmp_path)
    with pytest.raises(FileNotFoundError):
        read_video(tmp_path / "missing.mp4")


def test_video_file_without_pyav_is_a_clear_error(tmp_path, monkeypatch):
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(b"\x00" * 64)
    monkeypatch.setitem(sys.modules, "av", None)  # PyAV not installed
    with pytest.raises(ImportError, match="pip install av"):
        read_video(bad)
    with pytest.raises(ImportError, match="pip install av"):
        load_video_folder(tmp_path)


# --------------------------------------------------------------------------- synthetic motion


def _source(h: int = 40, w: int = 48, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(_clip_uint8(1, h, w, seed)[0]).permute(2, 0, 1).contiguous()


def test_identity_motion_returns_the_window():
    src = _source()
    m = affine_motion(torch.zeros(1, 3, 2), 1.0, 0.0, torch.tensor([[5 + 7.5, 9 + 11.5]]), (24, 16))
    x = render_motion([src], m)
    window = src[:, 9:33, 5:21].float() / 255
    assert x.shape == (1, 3, 3, 24, 16)
    for t in range(3):
        torch.testing.assert_close(x[0, t], window, atol=1e-5, rtol=0)


def test_pure_pan_moves_content_by_the_stated_integer_shift():
    src = _source()
    shift = torch.tensor([[[0.0, 0.0], [3.0, -2.0], [-4.0, 5.0]]])  # content moves by (dx, dy)
    top, left, h, w = 12, 10, 16, 20
    m = affine_motion(shift, 1.0, 0.0, torch.tensor([[left + (w - 1) / 2, top + (h - 1) / 2]]), (h, w))
    x = render_motion(src[None], m)
    s = src.float() / 255
    for t, (dx, dy) in enumerate(shift[0].long().tolist()):
        # frame_t(y, x) = source(top + y - dy, left + x - dx): every pixel is a source pixel
        expected = s[:, top - dy : top - dy + h, left - dx : left - dx + w]
        torch.testing.assert_close(x[0, t], expected, atol=1e-5, rtol=0)
    # and relative to frame 0: content at (x, y) in frame 0 is at (x + 3, y - 2) in frame 1
    torch.testing.assert_close(x[0, 1, :, 0 : h - 2, 3:], x[0, 0, :, 2:h, : w - 3], atol=1e-5, rtol=0)
    flow = m.flow("backward")  # frame 1 pixel p shows frame 0's p - shift
    torch.testing.assert_close(flow[0, 0, 0], torch.full((h, w), -3.0))
    torch.testing.assert_close(flow[0, 0, 1], torch.full((h, w), 2.0))
    torch.testing.assert_close(m.flow("forward")[0, 1], -flow[0, 1])


def test_synthetic_motion_batches_bounds_and_reproducibility():
    images = torch.stack([_source(48, 56, seed=i) for i in range(3)])
    sm = SyntheticMotion(ImageSet(images, "tiny"), frames=5, size=32, max_speed=2.0, max_zoom_rate=0.03,
                         max_rotation_deg=2.0, key_every=2)
    x, m = sm.batch_with_motion([0, 2], torch.Generator().manual_seed(0))
    assert x.shape == (2, 5, 3, 32, 32) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert m.matrices.shape == (2, 5, 3, 3) and sm.name == "synthetic-motion(tiny)"
    assert torch.equal(sm.batch([0, 2], torch.Generator().manual_seed(0)), x)
    assert not torch.equal(sm.batch([0, 2], torch.Generator().manual_seed(1)), x)
    step = m.shift.diff(dim=1)
    assert step.norm(dim=-1).max() <= 2.0 + 1e-9 and step.norm(dim=-1).max() > 0
    assert m.zoom.log().diff(dim=1).abs().max() <= 0.03 + 1e-9
    assert m.angle_deg.diff(dim=1).abs().max() <= 2.0 + 1e-9
    assert torch.all(m.zoom[:, 0] == 1) and torch.all(m.shift[:, 0] == 0)
    # frame 0 is an exact source window; warping it with the ground-truth flow predicts frame 1
    flow = m.flow()[:, 0]
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    grid = torch.stack([(xx + flow[:, 0]) * 2 / 31 - 1, (yy + flow[:, 1]) * 2 / 31 - 1], dim=-1)
    pred = F.grid_sample(x[:, 0], grid, align_corners=True)
    torch.testing.assert_close(pred[..., 4:-4, 4:-4], x[:, 1, :, 4:-4, 4:-4], atol=1e-4, rtol=0)
    batches = list(iterate_video_batches(sm, 2, shuffle=True, generator=torch.Generator().manual_seed(0)))
    assert [tuple(b.shape) for b in batches] == [(2, 5, 3, 32, 32), (1, 5, 3, 32, 32)]


def test_synthetic_motion_static_and_errors():
    src = _source(40, 40)
    sm = SyntheticMotion([src], frames=3, size=(16, 24), max_speed=0, max_zoom_rate=0, max_rotation_deg=0)
    x, m = sm.batch_with_motion([0], torch.Generator().manual_seed(2))
    left, top = int(m.anchor[0, 0] - 11.5), int(m.anchor[0, 1] - 7.5)
    window = src[:, top : top + 16, left : left + 24].float() / 255
    for t in range(3):
        torch.testing.assert_close(x[0, t], window, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="smaller than the frame size"):
        SyntheticMotion([src], frames=3, size=48)
    with pytest.raises(ValueError, match="max_speed"):
        SyntheticMotion([src], frames=3, size=16, max_speed=-1)
    with pytest.raises(ValueError, match="uint8"):
        SyntheticMotion([src.float()], frames=3, size=16)


def test_validation_on_synthetic_motion_is_the_same_clips_every_time():
    """evaluate() seeds the data generator: a SyntheticMotion validation set (random motion per batch)
    gives the same clips, hence the same PSNR, at every epoch."""
    from channels import AWGN
    from jscc.evaluate import evaluate
    from jscc.models.video import DeepWiVe
    from jscc.system import JSCCSystem

    images = torch.stack([_source(48, 56, seed=i) for i in range(2)])
    val = SyntheticMotion(ImageSet(images, "tiny"), frames=5, size=16)
    torch.manual_seed(0)
    model = DeepWiVe(c=8, chunks_per_frame=4, gop_chunks=8, hidden=(8, 8, 8, 8), flow_hidden=8, agent_hidden=16)
    system = JSCCSystem(model, AWGN()).eval()
    first = evaluate(system, val, [10.0], n_channel_draws=1, seed=3)["psnr"]
    torch.rand(5)  # the global RNG moves between epochs
    assert evaluate(system, val, [10.0], n_channel_draws=1, seed=3)["psnr"] == first
    assert evaluate(system, val, [10.0], n_channel_draws=1, seed=4)["psnr"] != first
