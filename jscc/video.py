"""Video data: frame folders, video files (PyAV), UCF-101, and synthetic motion over still images.

Every loader yields float32 clips ``(B, T, 3, H, W)`` in [0, 1] (README, Conventions: "Signals").
Clips are held as uint8 ``(T, 3, H, W)`` tensors (one 416x240 frame: 300 KB) or, for frame
folders with ``lazy=True``, read from disk when a batch needs them; batches are cut by index,
as :mod:`jscc.data` does for images.

::

    frame folder(s) / video files / UCF-101 ──► VideoSet ──► batch(indices, generator)
                                                              └─► float32 (B, T, 3, H, W)
    still images ──► SyntheticMotion ──► batch / batch_with_motion ──► clips (+ AffineMotion)

Clip layouts understood by :func:`load_video_folder` (``--data PATH``):

* a folder of frames (``f001.png``, ``f002.png``, ... sorted naturally: ``f2`` before ``f10``);
* a folder of such folders (one clip per folder, at any depth);
* video files (``.avi``, ``.mp4``, ...; decoded with PyAV, ``pip install av``), alone or in
  class folders (the UCF-101 layout ``UCF-101/<Class>/v_<Class>_gXX_cYY.avi``, see
  :func:`load_ucf101` for the official split lists).

Temporal crops: a clip of ``frames`` consecutive frames starting at a random frame (with the
batch's generator) when ``random_crop``, else the first ``frames`` frames; spatial crops are
random / centred ``crop`` x ``crop`` windows, as in :class:`jscc.data.ImageSet`.
"""
from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from jscc.data import IMAGE_EXTENSIONS, ImageSet, limited_name, _to_chw_uint8, iterate_batches, limit_indices

__all__ = [
    "VIDEO_EXTENSIONS",
    "natural_key",
    "FrameFolder",
    "VideoSet",
    "read_video",
    "load_frame_folder",
    "load_video_file",
    "load_video_folder",
    "load_ucf101",
    "iterate_video_batches",
    "AffineMotion",
    "affine_motion",
    "render_motion",
    "SyntheticMotion",
]

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".y4m", ".flv", ".wmv", ".3gp")


# --------------------------------------------------------------------------- paths


def natural_key(text: str | os.PathLike) -> list:
    """Sort key that orders digit runs by value: ``f2.png < f10.png``, ``g08_c01 < g08_c02``.

    ``re.split`` alternates text and digit runs, so keys compare position by position
    (str with str, int with int).
    """
    return [int(part) if i % 2 else part.lower() for i, part in enumerate(re.split(r"(\d+)", str(text)))]


def _natural_sorted(paths, root: Path | None = None) -> list[Path]:
    return sorted(paths, key=lambda p: [natural_key(part) for part in (p.relative_to(root) if root else p).parts])


def _image_files(folder: Path) -> list[Path]:
    return _natural_sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def _is_video_file(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS and path.is_file()


def _check_positive(value, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
    return int(value)


def _crop_hw(crop) -> tuple[int, int] | None:
    """``crop`` as ``(h, w)``: an int (square) or a pair."""
    if crop is None:
        return None
    if isinstance(crop, (int, np.integer)) and not isinstance(crop, bool):
        crop = (crop, crop)
    crop = tuple(crop)
    if len(crop) != 2 or any(isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 1 for c in crop):
        raise ValueError(f"crop must be a positive int or a (height, width) pair, got {crop!r}")
    return int(crop[0]), int(crop[1])


# --------------------------------------------------------------------------- clips


class FrameFolder:
    """A clip stored as one image file per frame, read when sliced (lazy).

    Behaves like a uint8 ``(T, 3, H, W)`` tensor for what :class:`VideoSet` needs:
    ``shape``, ``len`` and slicing along time (``folder[start:stop]`` reads those files).
    Frame sizes are checked at construction from the image headers (no pixels decoded);
    :meth:`cut` gives a view cut at the bottom/right.

    Args:
        files: the frame files in display order.
    """

    dtype = torch.uint8

    def __init__(self, files: Sequence[str | os.PathLike]):
        self.files = [Path(f) for f in files]
        if not self.files:
            raise ValueError("a FrameFolder needs at least one frame file")
        self.size = _common_frame_size(self.files)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.files), 3, *self.size))

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index) -> torch.Tensor:
        if isinstance(index, (int, np.integer)):
            return self[int(index) : int(index) + 1 or None][0]
        if not isinstance(index, slice):
            raise TypeError(f"FrameFolder supports integer and slice indexing along time, got {type(index).__name__}")
        h, w = self.size
        frames = [_read_image(f)[:, :h, :w] for f in self.files[index]]
        if not frames:
            return torch.empty((0, 3, h, w), dtype=torch.uint8)
        return torch.stack(frames)

    def cut(self, size: tuple[int, int]) -> "FrameFolder":
        """The same frames cut at the bottom/right to ``size = (height, width)`` (no file read)."""
        if size[0] > self.size[0] or size[1] > self.size[1]:
            raise ValueError(f"size {tuple(size)} exceeds the frames' size {self.size} in {self.files[0].parent}")
        out = object.__new__(FrameFolder)
        out.files, out.size = self.files, (int(size[0]), int(size[1]))
        return out

    def load(self) -> torch.Tensor:
        """All frames: uint8 ``(T, 3, H, W)``."""
        return self[:]

    def __repr__(self) -> str:
        return f"FrameFolder({str(self.files[0].parent)!r}, {len(self.files)} frames, {self.size[0]}x{self.size[1]})"


def _read_image(path: Path) -> torch.Tensor:
    with Image.open(path) as im:
        return _to_chw_uint8(np.asarray(im.convert("RGB")))


def _common_frame_size(files: Sequence[Path]) -> tuple[int, int]:
    """``(H, W)`` shared by all frame files (read from headers); ValueError naming the first mismatch."""
    size = None
    for f in files:
        with Image.open(f) as im:
            hw = (im.height, im.width)
        if size is None:
            size = hw
        elif hw != size:
            raise ValueError(f"frame sizes differ within the clip {f.parent}: {files[0].name} is "
                             f"{size[0]}x{size[1]} (HxW) but {f.name} is {hw[0]}x{hw[1]}")
    return size


def _clip_shape(clip) -> tuple[int, int, int, int]:
    shape = tuple(clip.shape)
    if len(shape) != 4 or shape[1] != 3 or clip.dtype != torch.uint8:
        raise ValueError(f"a clip must be uint8 (T, 3, H, W), got {clip.dtype} {shape}")
    if shape[0] < 1:
        raise ValueError("a clip must hold at least one frame")
    return shape


class VideoSet:
    """Video clips held as uint8 ``(T, 3, H, W)`` tensors (or :class:`FrameFolder` s, read lazily).

    Args:
        clips: a uint8 tensor ``(N, T, 3, H, W)`` or a list of uint8 ``(T_i, 3, H_i, W_i)``
            tensors / :class:`FrameFolder` s.
        name: dataset name written into results files.
        frames: if given, ``batch`` returns ``frames`` consecutive frames of each clip (``T``);
            without it, whole clips (a batch's clips must then share a length).
        crop: if given, ``crop`` x ``crop`` windows (an int, or a ``(h, w)`` pair); without it,
            whole frames (a batch's clips must then share a size).
        random_crop: random start frame and window position (drawn with the batch's generator,
            per clip: start frame, then top, then left); otherwise the first frames and the
            centred window.
        clip_names: one label per clip (e.g. its path relative to the dataset root).

    Errors at construction: clips shorter than ``frames`` or smaller than ``crop``.
    """

    def __init__(self, clips, name: str, *, frames: int | None = None, crop=None, random_crop: bool = True,
                 clip_names: Sequence[str] | None = None):
        if isinstance(clips, torch.Tensor):
            if clips.ndim != 5 or clips.shape[2] != 3 or clips.dtype != torch.uint8:
                raise ValueError(f"expected a uint8 (N,T,3,H,W) tensor, got {clips.dtype} {tuple(clips.shape)}")
        elif not clips:
            raise ValueError(f"dataset {name!r} holds no clips")
        self.clips = clips
        self.name = name
        self.frames = _check_positive(frames, "frames")
        self.crop = _crop_hw(crop)
        self.random_crop = bool(random_crop)
        self.shapes = [_clip_shape(c) for c in clips]
        self.clip_names = list(clip_names) if clip_names is not None else [f"clip{i}" for i in range(len(clips))]
        if len(self.clip_names) != len(self.shapes):
            raise ValueError(f"{len(self.clip_names)} clip names for {len(self.shapes)} clips")
        if self.frames is not None:
            short = [(n, s[0]) for n, s in zip(self.clip_names, self.shapes) if s[0] < self.frames]
            if short:
                raise ValueError(f"{len(short)} clips of {name!r} are shorter than frames={self.frames} "
                                 f"(e.g. {short[0][0]}: {short[0][1]} frames)")
        if self.crop is not None:
            small = [(n, s[2:]) for n, s in zip(self.clip_names, self.shapes)
                     if s[2] < self.crop[0] or s[3] < self.crop[1]]
            if small:
                raise ValueError(f"{len(small)} clips of {name!r} are smaller than the crop {self.crop} "
                                 f"(e.g. {small[0][0]}: {tuple(small[0][1])})")

    def __len__(self) -> int:
        return len(self.shapes)

    @property
    def stacked(self) -> bool:
        """True when all clips share one shape and are stored as one tensor."""
        return isinstance(self.clips, torch.Tensor)

    @property
    def uniform(self) -> bool:
        """True when every clip is returned with the same ``(T, 3, H, W)``: any indices batch together."""
        return len({self.output_shape(i) for i in range(len(self))}) == 1

    def image_size(self, index: int) -> tuple[int, int]:
        """(H, W) of the frames returned for ``index`` (after cropping)."""
        return self.crop if self.crop is not None else tuple(self.shapes[index][2:])

    def num_frames(self, index: int) -> int:
        """T of the clip returned for ``index``."""
        return self.frames if self.frames is not None else self.shapes[index][0]

    def output_shape(self, index: int) -> tuple[int, int, int, int]:
        """``(T, 3, H, W)`` returned for ``index``."""
        return (self.num_frames(index), 3, *self.image_size(index))

    def _window(self, index: int, generator: torch.Generator | None) -> tuple[int, int, int]:
        """``(start frame, top, left)`` of the crop of clip ``index``."""
        t, _, h, w = self.shapes[index]
        free = (t - self.num_frames(index), h - self.image_size(index)[0], w - self.image_size(index)[1])
        if not self.random_crop:
            return 0, free[1] // 2, free[2] // 2
        start = int(torch.randint(free[0] + 1, (1,), generator=generator)) if self.frames is not None else 0
        if self.crop is None:
            return start, 0, 0
        top = int(torch.randint(free[1] + 1, (1,), generator=generator))
        left = int(torch.randint(free[2] + 1, (1,), generator=generator))
        return start, top, left

    def clip(self, index: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """uint8 ``(T, 3, H, W)`` of one (cropped) clip."""
        index = int(index)
        start, top, left = self._window(index, generator)
        (h, w), t = self.image_size(index), self.num_frames(index)
        return self.clips[index][start : start + t][:, :, top : top + h, left : left + w]

    def batch(self, indices, generator: torch.Generator | None = None) -> torch.Tensor:
        """float32 ``(B, T, 3, H, W)`` in [0, 1] for the given clip indices."""
        indices = [int(i) for i in torch.as_tensor(indices).reshape(-1)]
        if self.stacked and self.frames is None and self.crop is None:
            return self.clips[torch.as_tensor(indices, dtype=torch.long)].float().div_(255)
        shapes = {self.output_shape(i) for i in indices}
        if len(shapes) > 1:
            raise ValueError(f"a batch mixes clip shapes {sorted(shapes)}: use batch size 1, frames= or crop=")
        return torch.stack([self.clip(i, generator) for i in indices]).float().div_(255)

    def subset(self, indices) -> "VideoSet":
        """A new VideoSet of the given indices (same name, frames, crop)."""
        idx = [int(i) for i in indices]
        clips = self.clips[torch.as_tensor(idx, dtype=torch.long)] if self.stacked else [self.clips[i] for i in idx]
        return VideoSet(clips, self.name, frames=self.frames, crop=self.crop, random_crop=self.random_crop,
                        clip_names=[self.clip_names[i] for i in idx])

    def __repr__(self) -> str:
        return (f"VideoSet({self.name!r}, {len(self)} clips, frames={self.frames}, crop={self.crop}, "
                f"random_crop={self.random_crop})")


def _pack(clips: list, name: str, clip_names: list[str], **options) -> VideoSet:
    if all(isinstance(c, torch.Tensor) for c in clips) and len({tuple(c.shape) for c in clips}) == 1:
        return VideoSet(torch.stack(clips), name, clip_names=clip_names, **options)
    return VideoSet(clips, name, clip_names=clip_names, **options)


def _cut_size(h: int, w: int, crop, multiple: int) -> tuple[int, int]:
    """Without a crop, frames are cut at the bottom/right to a multiple of ``multiple`` pixels."""
    if crop is not None:
        return h, w
    if h < multiple or w < multiple:
        raise ValueError(f"frames of {h}x{w} are smaller than multiple={multiple}")
    return h - h % multiple, w - w % multiple


# --------------------------------------------------------------------------- video files (PyAV)


def _import_av():
    try:
        import av
    except ImportError as err:
        raise ImportError("reading video files needs PyAV: pip install av (or extract the frames to PNG "
                          "files and pass the frame folders)") from err
    return av


def read_video(path: str | os.PathLike, *, max_frames: int | None = None, frame_step: int = 1) -> torch.Tensor:
    """Decode a video file's first video stream to uint8 ``(T, 3, H, W)`` RGB (PyAV / FFmpeg).

    Args:
        path: the file (any container/codec FFmpeg decodes: AVI with Xvid for UCF-101, MP4, MKV, ...).
        max_frames: keep at most this many frames (after ``frame_step``); decoding stops there.
        frame_step: keep every ``frame_step``-th frame (temporal subsampling), starting at frame 0.

    YUV -> RGB conversion is FFmpeg's (swscale, using the colour matrix the stream signals,
    BT.601 when unsignalled). Raises :class:`ImportError` without PyAV, FileNotFoundError for a
    missing file, ValueError when the file cannot be decoded or holds no video frames.
    """
    path = Path(path)
    max_frames = _check_positive(max_frames, "max_frames")
    frame_step = _check_positive(frame_step, "frame_step")
    if not path.is_file():
        raise FileNotFoundError(f"no such video file: {path}")
    av = _import_av()
    frames = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"{path} holds no video stream")
            stream = container.streams.video[0]
            for i, frame in enumerate(container.decode(stream)):
                if i % frame_step == 0:
                    frames.append(torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1))
                    if max_frames is not None and len(frames) >= max_frames:
                        break
    except (av.FFmpegError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot decode video file {path}: {err}") from err
    if not frames:
        raise ValueError(f"cannot decode video file {path}: no video frames decoded")
    sizes = {tuple(f.shape[-2:]) for f in frames}
    if len(sizes) > 1:
        raise ValueError(f"frame sizes change within the video file {path}: {sorted(sizes)}")
    return torch.stack(frames).contiguous()


# --------------------------------------------------------------------------- loaders


def _frame_folder_clip(folder: Path, files: list[Path], *, lazy: bool, crop, multiple: int, frame_step: int,
                       max_frames: int | None):
    clip = FrameFolder(files[::frame_step][:max_frames])
    clip = clip.cut(_cut_size(*clip.size, crop, multiple))
    return clip if lazy else clip.load()


def _video_file_clip(path: Path, *, crop, multiple: int, frame_step: int, max_frames: int | None) -> torch.Tensor:
    clip = read_video(path, max_frames=max_frames, frame_step=frame_step)
    h, w = _cut_size(*clip.shape[-2:], crop, multiple)
    return clip[:, :, :h, :w]


def _find_clips(root: Path) -> list[Path]:
    """Clip sources under ``root``, naturally sorted: folders holding frame images, and video files."""
    found = []
    for folder, dirnames, filenames in os.walk(root):
        folder = Path(folder)
        if any(Path(f).suffix.lower() in IMAGE_EXTENSIONS for f in filenames):
            found.append(folder)
        found.extend(folder / f for f in filenames if Path(f).suffix.lower() in VIDEO_EXTENSIONS)
    return _natural_sorted(found, root)


def _load_sources(sources: list[Path], root: Path, name: str, *, frames, crop, random_crop, lazy, multiple,
                  frame_step, max_frames) -> VideoSet:
    frame_step = _check_positive(frame_step, "frame_step")
    max_frames = _check_positive(max_frames, "max_frames")
    clips, names = [], []
    for src in sources:
        if src.is_dir():
            clip = _frame_folder_clip(src, _image_files(src), lazy=lazy, crop=crop, multiple=multiple,
                                      frame_step=frame_step, max_frames=max_frames)
        else:
            clip = _video_file_clip(src, crop=crop, multiple=multiple, frame_step=frame_step, max_frames=max_frames)
        clips.append(clip)
        names.append(str(src.relative_to(root)) if src != root else src.name)
    return _pack(clips, name, names, frames=frames, crop=crop, random_crop=random_crop)


def load_frame_folder(path, *, frames: int | None = None, crop=None, random_crop: bool = True, lazy: bool = False,
                      multiple: int = 4, frame_step: int = 1, max_frames: int | None = None) -> VideoSet:
    """One clip from a folder of frame images (``f001.png``, ...; natural order).

    Without ``crop``, frames are cut at the bottom/right to a multiple of ``multiple`` pixels
    (as :func:`jscc.data.load_folder`). ``lazy``: keep file names only and read frames per
    batch. ``frame_step`` / ``max_frames``: temporal subsampling / the first frames only.
    ValueError when the folder holds no images or its frames differ in size.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"no such frame folder: {path}")
    if not _image_files(path):
        raise ValueError(f"no frames ({', '.join(IMAGE_EXTENSIONS)}) found in {path}")
    return _load_sources([path], path, str(path), frames=frames, crop=crop, random_crop=random_crop, lazy=lazy,
                         multiple=multiple, frame_step=frame_step, max_frames=max_frames)


def load_video_file(path, *, frames: int | None = None, crop=None, random_crop: bool = True, multiple: int = 4,
                    frame_step: int = 1, max_frames: int | None = None) -> VideoSet:
    """One clip from a video file (PyAV); options as :func:`load_frame_folder`."""
    path = Path(path)
    return _load_sources([path], path, str(path), frames=frames, crop=crop, random_crop=random_crop, lazy=False,
                         multiple=multiple, frame_step=frame_step, max_frames=max_frames)


def load_video_folder(path, *, frames: int | None = None, crop=None, random_crop: bool = True, lazy: bool = False,
                      multiple: int = 4, frame_step: int = 1, max_frames: int | None = None,
                      limit: int | None = None, name: str | None = None) -> VideoSet:
    """Every clip under ``path``: a video file, a frame folder, or a tree of frame folders / video files.

    Clips are found recursively (a folder holding image files is one clip; each video file is
    one clip) and ordered naturally by relative path; ``limit`` keeps a seeded random subset of ``limit``.
    ``lazy`` applies to frame folders (video files are decoded at load: use ``max_frames`` /
    ``frame_step`` / ``limit`` to bound memory). Other options as :func:`load_frame_folder`.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such video folder or file: {path}")
    if path.is_file():
        if not _is_video_file(path):
            raise ValueError(f"{path} is not a video file ({', '.join(VIDEO_EXTENSIONS)})")
        sources = [path]
    else:
        sources = _find_clips(path)
    if not sources:
        raise ValueError(f"no clips found under {path}: expected frame folders ({', '.join(IMAGE_EXTENSIONS)}) "
                         f"or video files ({', '.join(VIDEO_EXTENSIONS)})")
    sources, name = _limited(sources, _check_positive(limit, "limit"), name or str(path))
    return _load_sources(sources, path, name, frames=frames, crop=crop, random_crop=random_crop,
                         lazy=lazy, multiple=multiple, frame_step=frame_step, max_frames=max_frames)


def _limited(sources: list, limit: int | None, name: str) -> tuple[list, str]:
    """The ``--limit`` subset of the clips (seeded, :func:`jscc.data.limit_indices`) and the name recording it."""
    keep = limit_indices(len(sources), limit)
    return (sources, name) if keep is None else ([sources[i] for i in keep], limited_name(name, len(sources), len(keep)))


def load_ucf101(root, *, split_file: str | os.PathLike | None = None, frames: int | None = None, crop=None,
                random_crop: bool = True, multiple: int = 4, frame_step: int = 1, max_frames: int | None = None,
                limit: int | None = None) -> VideoSet:
    """UCF-101 from its release layout: ``root/<Class>/v_<Class>_gXX_cYY.avi``.

    ``split_file``: an official list (``ucfTrainTestlist/trainlist01.txt`` / ``testlist01.txt``,
    lines ``ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi [label]``) selecting and ordering the
    clips; without it every ``.avi`` under ``root`` (natural order). Clip names are the paths
    relative to ``root`` (the class is the first part). ``limit`` keeps a seeded random subset;
    options as :func:`load_frame_folder`. A whole clip is decoded at load (~7 s at 320x240 is
    ~40 MB as uint8): bound memory with ``max_frames`` / ``frame_step`` / ``limit``.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no such UCF-101 folder: {root}")
    if split_file is None:
        sources = _natural_sorted((p for p in root.rglob("*.avi") if p.is_file()), root)
        if not sources:
            raise ValueError(f"no .avi files found under {root} (expected <Class>/v_<Class>_gXX_cYY.avi)")
    else:
        lines = [ln.split()[0] for ln in Path(split_file).read_text().splitlines() if ln.strip()]
        sources = [root / ln for ln in lines]
        missing = [s for s in sources if not s.is_file()]
        if missing:
            raise FileNotFoundError(f"{len(missing)} clips of {split_file} are missing under {root} "
                                    f"(e.g. {missing[0]})")
        if not sources:
            raise ValueError(f"split file {split_file} lists no clips")
    name = f"ucf101-{Path(split_file).stem}" if split_file else "ucf101"
    sources, name = _limited(sources, _check_positive(limit, "limit"), name)
    return _load_sources(sources, root, name, frames=frames, crop=crop, random_crop=random_crop, lazy=False,
                         multiple=multiple, frame_step=frame_step, max_frames=max_frames)


iterate_video_batches = iterate_batches  # one batching loop for images and clips (jscc.data)


# --------------------------------------------------------------------------- synthetic motion


@dataclass(frozen=True, eq=False)
class AffineMotion:
    """Per-frame affine camera motion of synthetic clips (the ground truth for flow / alignment).

    Coordinates are pixels ``(x, y)``, x to the right, y down, pixel centres at integers.
    Frame ``t`` shows the source image warped by the forward map (source -> frame)::

        p = c + shift_t + zoom_t * R(angle_t) (s - anchor),   R(a) = [[cos a, -sin a], [sin a, cos a]]

    with ``c = ((W-1)/2, (H-1)/2)`` the frame centre: the source point ``anchor`` is shown at
    the frame centre in frame 0 and moves by ``shift_t``; content is scaled by ``zoom_t`` and
    rotated by ``angle_t`` about it (positive angles turn clockwise on screen, since y points
    down). Frame 0 has ``shift = 0, zoom = 1, angle = 0``.

    Fields:
        matrices: float64 ``(B, T, 3, 3)``: the inverse map, frame pixel -> source pixel
            (homogeneous; what the renderer samples with).
        shift: float64 ``(B, T, 2)``: content displacement ``(dx, dy)`` in pixels.
        zoom: float64 ``(B, T)``: content scale (> 1: zoom in).
        angle_deg: float64 ``(B, T)``: content rotation in degrees.
        anchor: float64 ``(B, 2)``: source pixel ``(x, y)`` at the frame centre in frame 0.
        size: ``(H, W)`` of the frames.
    """

    matrices: torch.Tensor
    shift: torch.Tensor
    zoom: torch.Tensor
    angle_deg: torch.Tensor
    anchor: torch.Tensor
    size: tuple[int, int]

    def forward_matrices(self) -> torch.Tensor:
        """float64 ``(B, T, 3, 3)``: source pixel -> frame pixel."""
        return torch.linalg.inv(self.matrices)

    def flow(self, direction: str = "backward") -> torch.Tensor:
        """Ground-truth optical flow between consecutive frames, float32 ``(B, T-1, 2, H, W)`` in pixels.

        ``"backward"``: for each pixel ``p`` of frame ``t+1``, ``q - p`` where ``q`` is where the
        same content is in frame ``t`` (``frame_{t+1}(p) ~ frame_t(p + flow)``: warp frame
        ``t`` with it to predict frame ``t+1``). ``"forward"``: for each pixel of frame ``t``,
        where it goes in frame ``t+1``. Channel 0 is ``dx``, 1 is ``dy``. Content entering the
        view has a flow too (the source image extends beyond the frame).
        """
        if direction == "backward":
            rel = self.forward_matrices()[:, :-1] @ self.matrices[:, 1:]  # frame t+1 -> source -> frame t
        elif direction == "forward":
            rel = self.forward_matrices()[:, 1:] @ self.matrices[:, :-1]
        else:
            raise ValueError(f"direction must be 'backward' or 'forward', got {direction!r}")
        p = _pixel_grid(*self.size)  # (H, W, 3)
        q = torch.einsum("btij,hwj->bthwi", rel, p)[..., :2]
        return (q - p[..., :2]).permute(0, 1, 4, 2, 3).float().contiguous()


def _pixel_grid(height: int, width: int) -> torch.Tensor:
    """float64 ``(H, W, 3)``: homogeneous pixel coordinates ``(x, y, 1)``."""
    y, x = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64),
                          indexing="ij")
    return torch.stack([x, y, torch.ones_like(x)], dim=-1)


def affine_motion(shift, zoom, angle_deg, anchor, size) -> AffineMotion:
    """Build an :class:`AffineMotion` from per-frame parameters (broadcast to ``(B, T)``).

    Args:
        shift: ``(B, T, 2)`` content displacement ``(dx, dy)`` in pixels.
        zoom: ``(B, T)`` content scale (> 0), or a number.
        angle_deg: ``(B, T)`` content rotation in degrees (clockwise on screen), or a number.
        anchor: ``(B, 2)`` source pixel ``(x, y)`` shown at the frame centre at zero shift.
        size: ``(H, W)`` or an int (square frames).

    Example: a pure pan of 3 px right per frame over 4 frames, anchor at source pixel
    ``(40.5, 30.5)`` for 32x32 frames (the window with top-left ``(25, 15)``)::

        m = affine_motion(torch.tensor([[[3.0 * t, 0.0] for t in range(4)]]), 1.0, 0.0,
                          torch.tensor([[40.5, 30.5]]), 32)
    """
    size = _crop_hw(size)
    shift = torch.as_tensor(shift, dtype=torch.float64)
    if shift.ndim != 3 or shift.shape[-1] != 2:
        raise ValueError(f"shift must be (B, T, 2), got {tuple(shift.shape)}")
    b, t = shift.shape[:2]
    zoom = torch.as_tensor(zoom, dtype=torch.float64).expand(b, t).clone()
    angle_deg = torch.as_tensor(angle_deg, dtype=torch.float64).expand(b, t).clone()
    anchor = torch.as_tensor(anchor, dtype=torch.float64).expand(b, 2).clone()
    if not torch.all(zoom > 0):
        raise ValueError("zoom must be positive")
    h, w = size
    centre = torch.tensor([(w - 1) / 2, (h - 1) / 2], dtype=torch.float64)
    a = torch.deg2rad(angle_deg)
    cos, sin = torch.cos(a), torch.sin(a)
    # inverse map: s = anchor + R(-a) (p - c - shift) / zoom
    rot_inv = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2) / zoom[..., None, None]
    offset = anchor[:, None, :] - (rot_inv @ (centre + shift)[..., None])[..., 0]
    matrices = torch.zeros(b, t, 3, 3, dtype=torch.float64)
    matrices[..., :2, :2] = rot_inv
    matrices[..., :2, 2] = offset
    matrices[..., 2, 2] = 1.0
    return AffineMotion(matrices, shift, zoom, angle_deg, anchor, size)


def render_motion(images, motion: AffineMotion, *, padding_mode: str = "reflection") -> torch.Tensor:
    """Warp still images by ``motion``: float32 ``(B, T, 3, H, W)`` in [0, 1].

    Args:
        images: ``B`` source images, uint8 or float in [0, 1], ``(3, Hs, Ws)`` each (a tensor
            ``(B, 3, Hs, Ws)`` or a list: sizes may differ).
        motion: the per-frame maps (``motion.matrices``: frame pixel -> source pixel).
        padding_mode: ``grid_sample``'s rule where a frame sees beyond the source
            (``"reflection"``, ``"border"`` or ``"zeros"``).

    Bilinear sampling (``grid_sample``, ``align_corners=True`` so pixel centres map exactly):
    integer shifts reproduce the source pixels (up to float32 rounding, < 1e-5).
    """
    if len(images) != motion.matrices.shape[0]:
        raise ValueError(f"{len(images)} images for motion of batch {motion.matrices.shape[0]}")
    h, w = motion.size
    grid_px = _pixel_grid(h, w)
    out = []
    for image, m in zip(images, motion.matrices):
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"images must be (3, Hs, Ws), got {tuple(image.shape)}")
        src = image.float().div(255) if image.dtype == torch.uint8 else image.float()
        hs, ws = src.shape[-2:]
        s = torch.einsum("tij,hwj->thwi", m, grid_px)[..., :2]  # (T, H, W, 2) source pixels (x, y)
        scale = torch.tensor([2.0 / max(ws - 1, 1), 2.0 / max(hs - 1, 1)], dtype=torch.float64)
        grid = (s * scale - 1.0).float()
        frames = F.grid_sample(src.unsqueeze(0).expand(len(m), -1, -1, -1), grid, mode="bilinear",
                               padding_mode=padding_mode, align_corners=True)
        out.append(frames)
    return torch.stack(out).clamp_(0, 1)


def _smooth_rates(keys: torch.Tensor, steps: int) -> torch.Tensor:
    """Per-step values ``(steps, ...)`` interpolated between key values ``(K, ...)`` with a cosine ease.

    Key ``k`` sits at step position ``k * (steps - 1) / (K - 1)``: the rate changes smoothly and
    stays within the keys' convex hull.
    """
    n_keys = keys.shape[0]
    if steps == 1 or n_keys == 1:
        return keys[:1].expand(steps, *keys.shape[1:]).clone()
    pos = torch.arange(steps, dtype=torch.float64) * (n_keys - 1) / (steps - 1)
    k = pos.floor().long().clamp(max=n_keys - 2)
    u = (1 - torch.cos(math.pi * (pos - k))) / 2
    u = u.reshape(-1, *([1] * (keys.ndim - 1)))
    return keys[k] + u * (keys[k + 1] - keys[k])


class SyntheticMotion:
    """Synthetic clips: random smooth pans, zooms and rotations of still images (CPU-scale training).

    Each clip takes one source image and a random camera trajectory: a pan direction (uniform)
    and, at key points every ``key_every`` frames, a pan speed (uniform up to ``max_speed``
    px/frame), a zoom rate (log-scale, uniform in ``+-max_zoom_rate`` per frame) and a rotation
    rate (uniform in ``+-max_rotation_deg`` per frame). Rates are eased between the keys
    (cosine) and accumulated over frames, so motion is smooth (pans speed up and slow down but
    keep their direction) and per-frame motion stays within the bounds.
    The window's position in the source is drawn so the whole trajectory stays inside the
    image when it fits (else centred; ``padding_mode`` fills the rest). Frames are rendered
    with :func:`render_motion` (bilinear; zooming out does not low-pass, mild aliasing).

    Args:
        images: an :class:`~jscc.data.ImageSet` (its full-size images; its ``crop`` is ignored), a
            uint8 tensor ``(N, 3, Hs, Ws)`` or a list of uint8 ``(3, Hs, Ws)`` tensors.
        frames: T.
        size: frame size, an int or ``(H, W)``; every image must be at least this large.
        max_speed: pan speed bound, pixels per frame.
        max_zoom_rate: bound on ``|log(zoom_{t+1} / zoom_t)|``.
        max_rotation_deg: bound on the rotation per frame, degrees.
        key_every: frames between key points of the rates.
        padding_mode: see :func:`render_motion`.
        name: dataset name for results (default ``"synthetic-motion(<images' name>)"``).

    Draws per clip, in order: the direction, ``K = ceil((T-1)/key_every) + 1`` keys x (speed, zoom
    rate, rotation rate), then the window's left and top; a seeded generator reproduces a batch.
    With all bounds 0, every frame is the same source window (``frames[:, t] == window``).
    """

    uniform = True
    stacked = True

    def __init__(self, images, frames: int, size, *, max_speed: float = 3.0, max_zoom_rate: float = 0.02,
                 max_rotation_deg: float = 1.0, key_every: int = 4, padding_mode: str = "reflection",
                 name: str | None = None):
        if isinstance(images, ImageSet):
            name = name or f"synthetic-motion({images.name})"
            images = images.images
        if isinstance(images, torch.Tensor) and (images.ndim != 4 or images.dtype != torch.uint8):
            raise ValueError(f"expected a uint8 (N,3,H,W) tensor, got {images.dtype} {tuple(images.shape)}")
        if len(images) == 0:
            raise ValueError("SyntheticMotion needs at least one source image")
        for im in images:
            if im.ndim != 3 or im.shape[0] != 3 or im.dtype != torch.uint8:
                raise ValueError(f"source images must be uint8 (3, H, W), got {im.dtype} {tuple(im.shape)}")
        self.images = images
        self.frames = _check_positive(frames, "frames")
        self.size = _crop_hw(size)
        small = [tuple(im.shape[-2:]) for im in images if im.shape[-2] < self.size[0] or im.shape[-1] < self.size[1]]
        if small:
            raise ValueError(f"{len(small)} source images are smaller than the frame size {self.size} "
                             f"(e.g. {small[0]})")
        for value, label in ((max_speed, "max_speed"), (max_zoom_rate, "max_zoom_rate"),
                             (max_rotation_deg, "max_rotation_deg")):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{label} must be a finite number >= 0, got {value!r}")
        self.max_speed, self.max_zoom_rate, self.max_rotation_deg = float(max_speed), float(max_zoom_rate), \
            float(max_rotation_deg)
        self.key_every = _check_positive(key_every, "key_every")
        if padding_mode not in ("reflection", "border", "zeros"):
            raise ValueError(f"padding_mode must be reflection, border or zeros, got {padding_mode!r}")
        self.padding_mode = padding_mode
        self.name = name or "synthetic-motion"

    def __len__(self) -> int:
        return len(self.images)

    def image_size(self, index: int = 0) -> tuple[int, int]:
        return self.size

    def num_frames(self, index: int = 0) -> int:
        return self.frames

    def sample_motion(self, source_sizes: Sequence[tuple[int, int]],
                      generator: torch.Generator | None = None) -> AffineMotion:
        """Random trajectories for sources of the given ``(Hs, Ws)`` (one clip each)."""
        t, (h, w) = self.frames, self.size
        n_keys = math.ceil((t - 1) / self.key_every) + 1 if t > 1 else 1
        shifts, log_zooms, angles, anchors = [], [], [], []
        corners = torch.tensor([[0, 0, 1], [w - 1, 0, 1], [0, h - 1, 1], [w - 1, h - 1, 1]], dtype=torch.float64)
        for hs, ws in source_sizes:
            direction = 2 * math.pi * torch.rand(1, generator=generator, dtype=torch.float64)
            u = torch.rand(n_keys, 3, generator=generator, dtype=torch.float64)
            speed = self.max_speed * u[:, 0]
            keys = torch.stack([speed * torch.cos(direction), speed * torch.sin(direction),
                                self.max_zoom_rate * (2 * u[:, 1] - 1), self.max_rotation_deg * (2 * u[:, 2] - 1)], 1)
            steps = _smooth_rates(keys, t - 1) if t > 1 else keys[:0]
            traj = torch.cat([torch.zeros(1, 4, dtype=torch.float64), steps.cumsum(0)])  # (T, 4)
            # footprint of every frame in source coordinates, relative to the anchor
            rel = affine_motion(traj[None, :, :2], traj[None, :, 2].exp(), traj[None, :, 3],
                                torch.zeros(1, 2, dtype=torch.float64), (h, w))
            foot = torch.einsum("tij,cj->tci", rel.matrices[0], corners)[..., :2].reshape(-1, 2)
            lo, hi = foot.min(0).values, foot.max(0).values
            # window top-left (integer, so integer shifts sample pixel centres exactly)
            origin = []
            for axis, extent in ((0, ws), (1, hs)):
                half = ((w, h)[axis] - 1) / 2
                first = math.ceil(-lo[axis].item() - half - 1e-9)
                last = math.floor(extent - 1 - hi[axis].item() - half + 1e-9)
                draw = torch.rand(1, generator=generator, dtype=torch.float64).item()
                origin.append(first + int(draw * (last - first + 1)) if last >= first
                              else (extent - (w, h)[axis]) // 2)
            anchors.append([origin[0] + (w - 1) / 2, origin[1] + (h - 1) / 2])
            shifts.append(traj[:, :2])
            log_zooms.append(traj[:, 2])
            angles.append(traj[:, 3])
        return affine_motion(torch.stack(shifts), torch.stack(log_zooms).exp(), torch.stack(angles),
                             torch.tensor(anchors, dtype=torch.float64), (h, w))

    def batch_with_motion(self, indices, generator: torch.Generator | None = None) -> tuple[torch.Tensor, AffineMotion]:
        """``(clips float32 (B, T, 3, H, W) in [0, 1], AffineMotion)`` for the given image indices."""
        indices = [int(i) for i in torch.as_tensor(indices).reshape(-1)]
        images = [self.images[i] for i in indices]
        motion = self.sample_motion([tuple(im.shape[-2:]) for im in images], generator)
        return render_motion(images, motion, padding_mode=self.padding_mode), motion

    def batch(self, indices, generator: torch.Generator | None = None) -> torch.Tensor:
        """float32 ``(B, T, 3, H, W)`` in [0, 1] (as :meth:`VideoSet.batch`)."""
        return self.batch_with_motion(indices, generator)[0]

    def __repr__(self) -> str:
        return (f"SyntheticMotion({self.name!r}, {len(self)} images, frames={self.frames}, size={self.size}, "
                f"max_speed={self.max_speed}, max_zoom_rate={self.max_zoom_rate}, "
                f"max_rotation_deg={self.max_rotation_deg})")
