"""Image data: folders of images, CIFAR-10 through torchvision, and offline sample photos.

Every loader yields float32 batches ``(B, 3, H, W)`` in [0, 1]. Images are held in memory as
uint8 (CIFAR-10's 50,000 training images take 150 MB) and batches are cut from them by index,
so the training loop has no DataLoader workers or per-sample Python objects to wait on.
"""
from __future__ import annotations

import os
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
                h, w = im.shape[-2:]
                if self.random_crop:
                    top = int(torch.randint(h - self.crop + 1, (1,), generator=generator))
                    left = int(torch.randint(w - self.crop + 1, (1,), generator=generator))
                else:
                    top, left = (h - self.crop) // 2, (w - self.crop) // 2
                im = im[:, top : top + self.crop, left : left + self.crop]
            patches.append(im)
        sizes = {tuple(p.shape[-2:]) for p in patches}
        if len(sizes) > 1:
            raise ValueError(f"a batch mixes image sizes {sorted(sizes)}: use batch size 1 or a crop")
        return torch.stack(patches).float().div_(255)

    def subset(self, indices) -> "ImageSet":
        """A new ImageSet of the given indices (same name, crop)."""
        idx = [int(i) for i in indices]
        images = self.images[torch.as_tensor(idx)] if self.stacked else [self.images[i] for i in idx]
        return ImageSet(images, self.name, self.crop, self.random_crop)


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


def load_folder(path, *, crop: int | None = None, random_crop: bool = True, multiple: int = 4, limit: int | None = None) -> ImageSet:
    """Load every image under ``path`` as RGB.

    Without ``crop``, images are cropped at the bottom/right to a multiple of ``multiple`` pixels
    (DeepJSCC needs H, W divisible by 4; Kodak and CIFAR-10 are untouched).
    ``limit`` keeps the first ``limit`` files (sorted order).
    """
    files = list_image_files(path)[:limit]
    images = []
    for f in files:
        t = read_image(f)
        images.append(t if crop is not None else _crop_to_multiple(t, multiple))
    return _pack(images, str(path), crop, random_crop)


def load_sample_photos(*, crop: int | None = None, random_crop: bool = True, multiple: int = 4, names=SAMPLE_PHOTOS) -> ImageSet:
    """Colour photographs shipped with scikit-image (offline): astronaut, coffee, rocket, ..."""
    import skimage.data

    images = [_to_chw_uint8(getattr(skimage.data, n)()) for n in names]
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
) -> ImageSet:
    """Resolve the command-line data options to an ImageSet.

    ``data`` is a folder/file path, ``"sample"`` (scikit-image photos) or ``"cifar10"`` (torchvision,
    needs ``data_root``). ``name`` overrides the dataset name recorded in results.
    """
    if data is None or data == "sample":
        ds = load_sample_photos(crop=crop, random_crop=random_crop)
    elif data == "cifar10":
        if data_root is None:
            raise ValueError("--data cifar10 needs --data-root DIR (torchvision's CIFAR-10 folder)")
        ds = load_cifar10(data_root, train=train, download=download)
        if crop is not None:
            ds = ImageSet(ds.images, ds.name, crop, random_crop)
    else:
        ds = load_folder(data, crop=crop, random_crop=random_crop, limit=limit)
        limit = None
    if limit is not None:
        ds = ds.subset(range(min(limit, len(ds))))
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
    for start in range(0, stop, batch_size):
        yield dataset.batch(order[start : start + batch_size], generator=generator)
