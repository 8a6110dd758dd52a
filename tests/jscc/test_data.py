"""Image data: folders, ImageFolder trees, crops, batching, CIFAR-10 errors (all offline, tiny PNGs)."""
from __future__ import annotations

import pytest
import torch

from jscc.data import ImageSet, iterate_batches, load_cifar10, load_dataset, load_folder


def _all_batches(ds, batch_size, **kw):
    return list(iterate_batches(ds, batch_size, **kw))


def test_plain_folder_cropped_to_multiple_of_4(tmp_path, write_pngs):
    arrays = write_pngs(tmp_path, [(34, 30)] * 3)
    ds = load_folder(tmp_path)
    assert len(ds) == 3 and ds.stacked
    assert ds.image_size(0) == (32, 28)
    x = ds.batch([0, 1, 2])
    assert x.dtype == torch.float32 and x.shape == (3, 3, 32, 28)
    assert x.min() >= 0 and x.max() <= 1
    # bottom / right are cut; pixel values are exactly the PNG's / 255
    expected = torch.from_numpy(arrays[1][:32, :28]).permute(2, 0, 1).float() / 255
    assert torch.equal(x[1], expected)


def test_imagefolder_tree(tmp_path, write_pngs):
    write_pngs(tmp_path / "cat", [(32, 32)] * 2, seed=1)
    write_pngs(tmp_path / "dog", [(32, 32)] * 3, seed=2)
    (tmp_path / "dog" / "notes.txt").write_text("not an image")
    ds = load_folder(tmp_path)
    assert len(ds) == 5
    (x,) = _all_batches(ds, 8)
    assert x.shape == (5, 3, 32, 32) and x.dtype == torch.float32


def test_grayscale_and_rgba_become_rgb(tmp_path, write_pngs):
    write_pngs(tmp_path, [(16, 16)], mode="L", prefix="gray")
    write_pngs(tmp_path, [(16, 16)], mode="RGBA", prefix="rgba")
    ds = load_folder(tmp_path)
    x = ds.batch([0, 1])
    assert x.shape == (2, 3, 16, 16)
    gray = x[0]  # sorted: gray_000.png before rgba_000.png
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])


def test_single_file_and_limit(tmp_path, write_pngs):
    write_pngs(tmp_path, [(32, 32)] * 4)
    assert len(load_folder(tmp_path / "img_002.png")) == 1
    assert len(load_dataset(str(tmp_path), limit=2)) == 2


def test_random_crop_shape_and_reproducible(tmp_path, write_pngs):
    write_pngs(tmp_path, [(34, 30)] * 3)
    ds = load_folder(tmp_path, crop=16)
    a = ds.batch([0, 1, 2], generator=torch.Generator().manual_seed(0))
    b = ds.batch([0, 1, 2], generator=torch.Generator().manual_seed(0))
    c = ds.batch([0, 1, 2], generator=torch.Generator().manual_seed(1))
    assert a.shape == (3, 3, 16, 16) and ds.image_size(0) == (16, 16)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)  # 19*15 positions per image: equal crops for all 3 is ~1e-7 likely


def test_centre_crop(tmp_path, write_pngs):
    arrays = write_pngs(tmp_path, [(34, 30)])
    ds = load_folder(tmp_path, crop=16, random_crop=False)
    x = ds.batch([0])
    top, left = (34 - 16) // 2, (30 - 16) // 2
    expected = torch.from_numpy(arrays[0][top : top + 16, left : left + 16]).permute(2, 0, 1).float() / 255
    assert torch.equal(x[0], expected)


def test_images_smaller_than_crop_error(tmp_path, write_pngs):
    write_pngs(tmp_path, [(32, 32), (12, 40)])
    with pytest.raises(ValueError, match="smaller than the crop"):
        load_folder(tmp_path, crop=16)


def test_empty_folder_error(tmp_path):
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match="no images"):
        load_folder(tmp_path)


def test_missing_path_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_folder(tmp_path / "does-not-exist")
    with pytest.raises(FileNotFoundError):
        load_dataset(str(tmp_path / "does-not-exist"))


def test_mixed_sizes_batched_one_at_a_time(tmp_path, write_pngs):
    write_pngs(tmp_path, [(32, 32), (40, 36), (32, 32), (20, 24)])
    ds = load_folder(tmp_path)
    assert not ds.stacked
    batches = _all_batches(ds, 4)
    assert [tuple(b.shape) for b in batches] == [(1, 3, 32, 32), (1, 3, 40, 36), (1, 3, 32, 32), (1, 3, 20, 24)]
    shuffled = _all_batches(ds, 4, shuffle=True, generator=torch.Generator().manual_seed(0))
    assert len(shuffled) == 4 and all(b.shape[0] == 1 for b in shuffled)
    with pytest.raises(ValueError, match="mixes image sizes"):
        ds.batch([0, 1])


def test_stacked_batches_and_drop_last(smooth_uint8):
    ds = ImageSet(smooth_uint8(10, 8, 8), "tiny")
    assert [b.shape[0] for b in _all_batches(ds, 4)] == [4, 4, 2]
    assert [b.shape[0] for b in _all_batches(ds, 4, drop_last=True)] == [4, 4]
    # a shuffled epoch visits every image exactly once
    shuffled = torch.cat(_all_batches(ds, 3, shuffle=True, generator=torch.Generator().manual_seed(5)))
    ordered = torch.cat(_all_batches(ds, 3))
    key = lambda t: sorted(t.flatten(1).sum(1).tolist())  # noqa: E731
    assert key(shuffled) == key(ordered)
    assert not torch.equal(shuffled, ordered)


def test_imageset_validation_and_subset(smooth_uint8):
    images = smooth_uint8(6, 8, 8)
    with pytest.raises(ValueError, match="uint8"):
        ImageSet(images.float(), "x")
    with pytest.raises(ValueError, match="uint8"):
        ImageSet(images[:, :1], "x")
    with pytest.raises(ValueError, match="no images"):
        ImageSet([], "x")
    ds = ImageSet(images, "tiny")
    sub = ds.subset([4, 1])
    assert len(sub) == 2 and sub.name == "tiny"
    assert torch.equal(sub.batch([0, 1]), ds.batch([4, 1]))
    assert torch.equal(ds.batch([3]), images[3:4].float() / 255)


def test_cifar10_needs_data_root():
    with pytest.raises(ValueError, match="--data-root"):
        load_dataset("cifar10")


def test_cifar10_missing_without_download_is_offline_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="--download"):
        load_cifar10(tmp_path, train=False, download=False)
    assert list(tmp_path.iterdir()) == []  # nothing fetched
    with pytest.raises(FileNotFoundError, match="--download"):
        load_dataset("cifar10", data_root=str(tmp_path), train=True)


def test_sample_photos_offline():
    ds = load_dataset("sample", crop=32, limit=2)
    x = ds.batch([0, 1], generator=torch.Generator().manual_seed(0))
    assert x.shape == (2, 3, 32, 32) and x.dtype == torch.float32
    assert 0 <= x.min() and x.max() <= 1


def test_streamed_folder_gives_the_in_memory_batches(tmp_path, write_pngs):
    # Same files, same generator: the streamed batches (decoded in threads, next one prefetched) equal the
    # in-memory ones bit for bit, random crops included; sizes come from the headers.
    from jscc.data import StreamingImageSet

    write_pngs(tmp_path, [(40, 52), (37, 45), (64, 33), (40, 40), (50, 61)])
    for crop in (None, 24):
        memory = load_folder(tmp_path, crop=crop, stream=False)
        streamed = load_folder(tmp_path, crop=crop, stream=True)
        assert isinstance(streamed, StreamingImageSet) and not isinstance(memory, StreamingImageSet)
        assert len(streamed) == 5 and [streamed.image_size(i) for i in range(5)] == \
            [memory.image_size(i) for i in range(5)]
        size = 2 if crop else 1
        a = list(iterate_batches(memory, size, shuffle=True, generator=torch.Generator().manual_seed(3)))
        b = list(iterate_batches(streamed, size, shuffle=True, generator=torch.Generator().manual_seed(3)))
        assert len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))
    sub = streamed.subset([4, 0])
    assert torch.equal(sub.batch([0, 1], torch.Generator().manual_seed(1)),
                       memory.subset([4, 0]).batch([0, 1], torch.Generator().manual_seed(1)))
    assert torch.equal(streamed.images[1], memory.images[1])  # the lazy sequence decodes on access
    import pickle

    assert len(pickle.loads(pickle.dumps(streamed))) == 5
    # flips: drawn after each crop's offsets, the same in both; about half the crops are mirrored
    memory.flip = streamed.flip = True
    a, b = (ds.subset([i % 5 for i in range(40)]).batch(range(40), torch.Generator().manual_seed(5))
            for ds in (memory, streamed))
    assert torch.equal(a, b)
    gen, flips = torch.Generator().manual_seed(5), 0
    for i, x in enumerate(a):  # per crop: top, left, then the flip bit
        im = memory.images[i % 5]
        top = int(torch.randint(im.shape[1] - 23, (1,), generator=gen))
        left = int(torch.randint(im.shape[2] - 23, (1,), generator=gen))
        crop = im[:, top:top + 24, left:left + 24].float() / 255
        flip = bool(torch.randint(2, (1,), generator=gen))
        flips += flip
        assert torch.equal(x, crop.flip(-1) if flip else crop)
    assert 8 <= flips <= 32 and memory.subset([0]).flip is True


def test_big_folders_stream_by_default(tmp_path, write_pngs, monkeypatch):
    import jscc.data as D

    write_pngs(tmp_path, [(32, 32)] * 3)
    assert not isinstance(load_folder(tmp_path), D.StreamingImageSet)
    monkeypatch.setattr(D, "STREAM_ABOVE_BYTES", 3 * 32 * 32 * 3 - 1)  # one byte less than the decoded images
    assert isinstance(load_folder(tmp_path), D.StreamingImageSet)
    assert not isinstance(load_folder(tmp_path, stream=False), D.StreamingImageSet)


def test_training_on_a_streamed_folder(tmp_path, write_pngs):
    from experiments import train as train_cli

    from jscc.checkpoint import read_checkpoint

    write_pngs(tmp_path / "imgs", [(40, 40)] * 8)
    for mode in ("--stream", "--no-stream"):
        assert train_cli.main(["--data", str(tmp_path / "imgs"), mode, "--crop", "32", "--epochs", "1", "--batch-size",
                               "2", "--val-size", "2", "--quiet", "--out", str(tmp_path / mode)]) == 0
    a, b = (read_checkpoint(tmp_path / mode / "last.pt")["state_dict"] for mode in ("--stream", "--no-stream"))
    assert all(torch.equal(a[name], b[name]) for name in a)  # the same batches: the same weights


def test_limit_takes_a_seeded_random_subset_in_file_order(tmp_path, write_pngs):
    # 20 "classes" of one image each, sorted by name: the first 5 files would be 5 neighbours; --limit draws
    # a seeded subset (the same every time), keeps the file order and records itself in the name.
    from jscc.data import limit_indices

    arrays = write_pngs(tmp_path, [(8, 8)] * 20)
    keep = limit_indices(20, 5)
    assert keep == sorted(keep) and len(set(keep)) == 5 and keep != [0, 1, 2, 3, 4] and keep == limit_indices(20, 5)
    ds = load_folder(tmp_path, limit=5)
    assert len(ds) == 5 and ds.name == f"{tmp_path} (5 of 20, seed 0)"
    for j, i in enumerate(keep):
        assert torch.equal(ds.images[j], torch.from_numpy(arrays[i]).permute(2, 0, 1))
    assert limit_indices(20, 20) is None and limit_indices(20, None) is None and len(load_folder(tmp_path, limit=50)) == 20
