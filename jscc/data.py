"""Image data: folders of images, CIFAR-10 through torchvision, and offline sample photos.

Every loader yields float32 batches ``(B, 3, H, W)`` in [0, 1]. Images are held in memory as
uint8 (CIFAR-10's 50,000 training images take 150 MB) and batches are cut from them by index,
so the training loop has no DataLoader workers or per-sample Python objects to wait on. Folders
too big for memory (decoded size above :data:`STREAM_ABOVE_BYTES`, or ``stream=True``) are
streamed instead (:class:`StreamingImageSet`): each batch is decoded from disk by a few threads
while the previous one trains, with the same crops as in memory.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp")
# Colour photographs shipped inside scikit-image (no download): the offline sample set.
SAMPLE_PHOTOS = ("astronaut", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field", "retina", "chelsea")


class ImageSet:
    """Images held in memory as uint8 ``(3, H, W)`` tensors.

    Args:
        images: a uint8 tensor ``(N, 3, H, W)`` or a list of uint8 ``(3, H_i, W_i)`` tensors.
        name: dataset name written into results files.
        crop: if given, ``batch`` returns ``crop`` x ``crop`` patches: random (with the batch's
            generator) when ``random_crop`` else centred. Without it, a batch's images must share a size.
    """

    def __init__(self, images, name: str, crop: int | None = None, random_crop: bool = True):
        if isinstance(images, torch.Tensor):
            if images.ndim != 4 or images.shape[1] != 3 or images.dtype != torch.uint8:
                raise ValueError(f"expected a uint8 (N,3,H,W) tensor, got {images.dtype} {tuple(images.shape)}")
        elif not images:
            raise ValueError(f"dataset {name!r} holds no images")
        self.images = images
        self.name = name
        self.crop = crop
        self.random_crop = random_crop
        self.notes: list[str] = []  # what loading did to the images (e.g. cut to a size multiple), for results
        self.flip = False  # with random crops: each crop mirrored left-right with probability 1/2 (augmentation)
        if crop is not None:
            small = [tuple(im.shape[-2:]) for im in images if min(im.shape[-2:]) < crop]
            if small:
                raise ValueError(f"{len(small)} images of {name!r} are smaller than the crop {crop} (e.g. {small[0]})")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def uniform(self) -> bool:
        """Whether batches of several images are possible (stacked images, or crops)."""
        return self.stacked or self.crop is not None

    @property
    def stacked(self) -> bool:
        """True when all images share one size and are stored as one tensor."""
        return isinstance(self.images, torch.Tensor)

    def image_size(self, index: int) -> tuple[int, int]:
        """(H, W) of the image returned for ``index`` (after cropping)."""
        if self.crop is not None:
            return (self.crop, self.crop)
        return tuple(self.images[index].shape[-2:])

    def batch(self, indices, generator: torch.Generator | None = None) -> torch.Tensor:
        """float32 ``(B, 3, H, W)`` in [0, 1] for the given image indices."""
        if self.stacked and self.crop is None:
            return self.images[torch.as_tensor(indices)].float().div_(255)
        patches = []
        for i in indices:
            im = self.images[int(i)]
            if self.crop is not None:
                top, left = self._crop_offset(*im.shape[-2:], generator)
                im = im[:, top : top + self.crop, left : left + self.crop]
                if self._draw_flip(generator):
                    im = im.flip(-1)
            patches.append(im)
        return _stack(patches)

    def _draw_flip(self, generator: torch.Generator | None) -> bool:
        """Whether to mirror the next random crop (one draw from ``generator`` after its offsets, when ``flip``)."""
        return self.flip and self.random_crop and bool(torch.randint(2, (1,), generator=generator))

    def _crop_offset(self, height: int, width: int, generator: torch.Generator | None) -> tuple[int, int]:
        """(top, left) of the crop of a ``height`` x ``width`` image: random (drawn from ``generator``, top
        first) or centred."""
        if not self.random_crop:
            return (height - self.crop) // 2, (width - self.crop) // 2
        top = int(torch.randint(height - self.crop + 1, (1,), generator=generator))
        return top, int(torch.randint(width - self.crop + 1, (1,), generator=generator))

    def subset(self, indices) -> "ImageSet":
        """A new ImageSet of the given indices (same name, crop)."""
        idx = [int(i) for i in indices]
        images = self.images[torch.as_tensor(idx)] if self.stacked else [self.images[i] for i in idx]
        subset = ImageSet(images, self.name, self.crop, self.random_crop)
        subset.notes, subset.flip = list(self.notes), self.flip
        return subset


#: A folder whose decoded images (3 H W bytes each) would take more than this is streamed from disk.
STREAM_ABOVE_BYTES = 4 * 2**30


class _LazyImages:
    """The images of a :class:`StreamingImageSet` as a read-only sequence (each access decodes its file)."""

    def __init__(self, owner: "StreamingImageSet"):
        self.owner = owner

    def __len__(self) -> int:
        return len(self.owner.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.owner._read(int(index))


class StreamingImageSet(ImageSet):
    """Image files decoded on demand: the :class:`ImageSet` interface for folders too big for memory.

    Args:
        files: image paths.
        sizes: ``(H, W)`` of each image as read (before cropping; without ``crop``, cut down to a multiple
            of ``multiple`` as :func:`load_folder` does).
        name, crop, random_crop: as :class:`ImageSet`.
        multiple: without ``crop``, images are cut at the bottom/right to a multiple of this.
        threads: decoding threads per batch.

    ``batch`` draws the crop offsets from its generator in the main thread, in the order
    :meth:`ImageSet.batch` draws them, then decodes and crops the files in ``threads`` threads: the
    same batch, bit for bit, as the in-memory set of the same files. :func:`iterate_batches` prepares
    the next batch in the background while the current one is used (``prefetch``).
    """

    prefetch = True

    def __init__(self, files, sizes, name: str, crop: int | None = None, random_crop: bool = True,
                 multiple: int = 4, threads: int = 4):
        if not files:
            raise ValueError(f"dataset {name!r} holds no images")
        self.files, self.multiple, self.threads = [Path(f) for f in files], multiple, threads
        self.sizes = [(h - h % multiple, w - w % multiple) if crop is None else (h, w) for h, w in sizes]
        self.name, self.crop, self.random_crop, self.notes, self.flip = name, crop, random_crop, [], False
        if crop is not None:
            small = [s for s in self.sizes if min(s) < crop]
            if small:
                raise ValueError(f"{len(small)} images of {name!r} are smaller than the crop {crop} (e.g. {small[0]})")
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    @property
    def images(self) -> _LazyImages:
        return _LazyImages(self)

    def __len__(self) -> int:
        return len(self.files)

    @property
    def stacked(self) -> bool:
        return False

    def image_size(self, index: int) -> tuple[int, int]:
        return (self.crop, self.crop) if self.crop is not None else self.sizes[index]

    def _read(self, index: int, top: int | None = None, left: int | None = None, flip: bool = False) -> torch.Tensor:
        im = read_image(self.files[index])
        if top is None:
            return _crop_to_multiple(im, self.multiple) if self.crop is None else im
        im = im[:, top : top + self.crop, left : left + self.crop]
        return im.flip(-1) if flip else im

    def batch(self, indices, generator: torch.Generator | None = None) -> torch.Tensor:
        """float32 ``(B, 3, H, W)`` in [0, 1] for the given image indices (decoded now)."""
        jobs = [(int(i), None, None, False) if self.crop is None else
                (int(i), *self._crop_offset(*self.sizes[int(i)], generator), self._draw_flip(generator))
                for i in indices]  # the draws in ImageSet.batch's order: offsets, then the flip, image by image
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="jscc-decode")
        return _stack(list(self._pool.map(lambda job: self._read(*job), jobs)))

    def subset(self, indices) -> "StreamingImageSet":
        idx = [int(i) for i in indices]
        subset = StreamingImageSet([self.files[i] for i in idx], [self.sizes[i] for i in idx], self.name, self.crop,
                                   self.random_crop, self.multiple, self.threads)
        subset.notes, subset.flip = list(self.notes), self.flip
        return subset

    def __getstate__(self):  # picklable (no thread pool)
        return {k: v for k, v in self.__dict__.items() if k not in ("_pool", "_lock")}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._pool, self._lock = None, threading.Lock()


def _stack(patches: list[torch.Tensor]) -> torch.Tensor:
    """uint8 ``(3, H, W)`` patches of one size -> float32 ``(B, 3, H, W)`` in [0, 1]."""
    sizes = {tuple(p.shape[-2:]) for p in patches}
    if len(sizes) > 1:
        raise ValueError(f"a batch mixes image sizes {sorted(sizes)}: use batch size 1 or a crop")
    return torch.stack(patches).float().div_(255)


def _to_chw_uint8(array: np.ndarray) -> torch.Tensor:
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    return torch.from_numpy(np.ascontiguousarray(array[..., :3].transpose(2, 0, 1)))


def read_image(path: str | os.PathLike) -> torch.Tensor:
    """One image file as uint8 ``(3, H, W)`` RGB.

    Grey images are repeated to 3 channels, alpha is dropped, and 16-bit images (Pillow modes
    ``I;16*`` / ``I``) are scaled to 8 bits (``round(v / 257)``), not clipped.

    Raises:
        ValueError: the file cannot be read as an image (unknown format, truncated, ...); the message
            names the file.
    """
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode.startswith("I"):  # 16-bit (or 32-bit integer) grey: scale, never clip at 255
                array = np.clip(np.round(np.asarray(im, dtype=np.float64) / 257.0), 0, 255).astype(np.uint8)
            elif im.mode == "F":
                array = np.clip(np.round(np.asarray(im, dtype=np.float64)), 0, 255).astype(np.uint8)
            else:
                array = np.asarray(im.convert("RGB"))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ValueError(f"cannot read image {path}: {err}") from None
    return _to_chw_uint8(array)


def _crop_to_multiple(im: torch.Tensor, multiple: int) -> torch.Tensor:
    h, w = im.shape[-2:]
    return im[:, : h - h % multiple, : w - w % multiple]


def _pack(images: list[torch.Tensor], name: str, crop: int | None, random_crop: bool) -> ImageSet:
    if len({tuple(im.shape) for im in images}) == 1:
        return ImageSet(torch.stack(images), name, crop, random_crop)
    return ImageSet(images, name, crop, random_crop)


def list_image_files(path: str | os.PathLike) -> list[Path]:
    """Image files under ``path`` (a plain folder or an ImageFolder tree), sorted; a single file is allowed."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"no such image folder or file: {path}")
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {path}")
    return files


def image_file_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(H, W)`` of an image file from its header (no decoding); ValueError naming the file otherwise."""
    try:
        with Image.open(path) as im:
            w, h = im.size
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ValueError(f"cannot read image {path}: {err}") from None
    return h, w


#: Seed of the ``--limit`` subset (:func:`limit_indices`).
LIMIT_SEED = 0


def limit_indices(n: int, limit: int | None) -> list[int] | None:
    """The ``limit`` of ``n`` examples that ``--limit`` keeps: a random subset drawn with
    :data:`LIMIT_SEED`, in the original (sorted) order; None when ``limit`` is None or >= ``n``. (The
    first files of a class-sorted folder such as CIFAR-10's would be one class.)"""
    if limit is None or limit >= n:
        return None
    if limit < 1:
        raise ValueError(f"limit must be a positive integer, got {limit}")
    return sorted(torch.randperm(n, generator=torch.Generator().manual_seed(LIMIT_SEED))[:limit].tolist())


def limited_name(name: str, n: int, limit: int) -> str:
    """A dataset name that records a ``--limit`` subset: ``"<name> (<limit> of <n>, seed <LIMIT_SEED>)"``."""
    return f"{name} ({limit} of {n}, seed {LIMIT_SEED})"


def load_folder(path, *, crop: int | None = None, random_crop: bool = True, multiple: int = 4, limit: int | None = None,
                stream: bool | None = None) -> ImageSet:
    """Load every image under ``path`` as RGB.

    Without ``crop``, images are cropped at the bottom/right to a multiple of ``multiple`` pixels
    (DeepJSCC needs H, W divisible by 4; Kodak and CIFAR-10 are untouched).
    ``limit`` keeps a seeded random subset of ``limit`` files (:func:`limit_indices`, in sorted
    order; the dataset name records it). ``stream``: True gives a
    :class:`StreamingImageSet` (decoded batch by batch), False loads into memory, None (default)
    streams when the decoded images would take more than :data:`STREAM_ABOVE_BYTES`.
    """
    files = list_image_files(path)
    name, keep = str(path), limit_indices(len(files), limit)
    if keep is not None:
        name, files = limited_name(name, len(files), len(keep)), [files[i] for i in keep]
    if stream is not False:
        sizes = [image_file_size(f) for f in files]
        if stream or sum(3 * h * w for h, w in sizes) > STREAM_ABOVE_BYTES:
            note = None if crop is not None else cropping_note(files, sizes, multiple)
            ds = StreamingImageSet(files, sizes, name, crop, random_crop, multiple)
            ds.notes = [note] if note else []
            return ds
    images = [read_image(f) for f in files]
    if crop is not None:
        return _pack(images, name, crop, random_crop)
    note = cropping_note(files, [tuple(t.shape[-2:]) for t in images], multiple)
    ds = _pack([_crop_to_multiple(t, multiple) for t in images], name, crop, random_crop)
    ds.notes = [note] if note else []
    return ds


def cropping_note(files, sizes, multiple: int) -> str | None:
    """What cutting images at the bottom/right to a multiple of ``multiple`` px does to them: None when no
    image changes, else one line (how many, an example with its sizes). ValueError, naming the file, for an
    image smaller than ``multiple`` in either direction."""
    changed = []
    for f, (h, w) in zip(files, sizes):
        if h < multiple or w < multiple:
            raise ValueError(f"image {f} is {h}x{w}: smaller than {multiple}x{multiple} px, the smallest size the "
                             "models take")
        if h % multiple or w % multiple:
            changed.append((f, h, w))
    if not changed:
        return None
    f, h, w = changed[0]
    return (f"{len(changed)} of {len(files)} images cut at the bottom/right to a multiple of {multiple} px "
            f"(e.g. {Path(f).name}: {h}x{w} -> {h - h % multiple}x{w - w % multiple})")


def load_sample_photos(*, crop: int | None = None, random_crop: bool = True, multiple: int = 4, names=SAMPLE_PHOTOS) -> ImageSet:
    """Colour photographs shipped with scikit-image (offline): astronaut, coffee, rocket, ..."""
    import skimage.data

    arrays = [getattr(skimage.data, n)() for n in names]
    images = [_to_chw_uint8(a[0] if isinstance(a, tuple) else a) for a in arrays]  # stereo_motorcycle: (left, ...)
    if crop is None:
        images = [_crop_to_multiple(im, multiple) for im in images]
    return _pack(images, "skimage-sample-photos", crop, random_crop)


def load_cifar10(root, *, train: bool, download: bool = False) -> ImageSet:
    """CIFAR-10 through torchvision from ``root``; downloads only when ``download=True``."""
    from torchvision.datasets import CIFAR10

    try:
        ds = CIFAR10(root=str(root), train=train, download=download)
    except RuntimeError as err:
        raise FileNotFoundError(
            f"CIFAR-10 not found under {root!r} ({err}); pass --download to fetch it, or use --data PATH "
            "with a folder of images"
        ) from err
    images = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))
    return ImageSet(images, f"cifar10-{'train' if train else 'test'} (torchvision)")


def load_dataset(
    data: str | None = None,
    *,
    data_root: str | None = None,
    train: bool = True,
    download: bool = False,
    crop: int | None = None,
    random_crop: bool = True,
    limit: int | None = None,
    name: str | None = None,
    stream: bool | None = None,
    multiple: int = 4,
) -> ImageSet:
    """Resolve the command-line data options to an ImageSet.

    ``data`` is a folder/file path, ``"sample"`` (scikit-image photos) or ``"cifar10"`` (torchvision,
    needs ``data_root``). ``name`` overrides the dataset name recorded in results. ``stream``: for a
    folder, see :func:`load_folder`. ``multiple``: without ``crop``, images are cut to a multiple of this
    many pixels (what the model needs: 4 for the CNNs, 16 for swinjscc); ``ds.notes`` says so.
    """
    if data is None or data == "sample":
        ds = load_sample_photos(crop=crop, random_crop=random_crop, multiple=multiple)
    elif data == "cifar10":
        if data_root is None:
            raise ValueError("--data cifar10 needs --data-root DIR (torchvision's CIFAR-10 folder)")
        ds = load_cifar10(data_root, train=train, download=download)
        if crop is not None:
            ds = ImageSet(ds.images, ds.name, crop, random_crop)
    else:
        ds = load_folder(data, crop=crop, random_crop=random_crop, limit=limit, stream=stream, multiple=multiple)
        limit = None
    keep = limit_indices(len(ds), limit)
    if keep is not None:
        n, ds = len(ds), ds.subset(keep)
        ds.name = limited_name(ds.name, n, len(keep))
    if name:
        ds.name = name
    return ds


def holdout_split(n: int, val_size: int, seed: int) -> tuple[list[int], list[int]]:
    """``(validation, training)`` indices of ``n`` examples: ``min(val_size, max(1, n // 10))`` of them,
    drawn with ``seed``, are held out for validation."""
    n_val = min(val_size, max(1, n // 10))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return order[:n_val], order[n_val:]


def iterate_batches(
    dataset,
    batch_size: int,
    *,
    indices=None,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
):
    """Yield float32 batches ``(B,3,H,W)`` of an :class:`ImageSet` (or clips ``(B,T,3,H,W)`` of a
    :class:`jscc.video.VideoSet` / ``SyntheticMotion``: anything with ``batch``, ``uniform`` and
    ``len``); examples of mixed sizes are batched one at a time.

    ``indices``: the image order (e.g. from a sampler); default all images, shuffled with
    ``generator`` when ``shuffle``. ``generator`` also draws random crops.
    """
    if indices is not None:
        order = torch.as_tensor(indices, dtype=torch.long)
    else:
        order = torch.randperm(len(dataset), generator=generator) if shuffle else torch.arange(len(dataset))
    n = len(order)
    if not dataset.uniform:
        batch_size = 1
    stop = n - n % batch_size if drop_last else n
    chunks = (order[start : start + batch_size] for start in range(0, stop, batch_size))
    if not getattr(dataset, "prefetch", False):
        for chunk in chunks:
            yield dataset.batch(chunk, generator=generator)
        return
    # Streamed data: one background thread prepares batch i + 1 while batch i is used. It calls
    # ``batch`` in order, so the generator's draws (the crops) are those of the loop above.
    with ThreadPoolExecutor(1, thread_name_prefix="jscc-prefetch") as ahead:
        pending = None
        for chunk in chunks:
            future = ahead.submit(dataset.batch, chunk, generator)
            if pending is not None:
                yield pending.result()
            pending = future
        if pending is not None:
            yield pending.result()
