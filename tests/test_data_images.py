"""Image data: the embedded digits and its fixed split, and the MNIST / Fashion-MNIST /
CIFAR-10 loaders, on tiny files written here in the original formats (no network)."""
import gzip
import hashlib
import io
import os
import tarfile

import numpy as np
import pytest
import torch

import pdlearn as pdl
from pdlearn import images


# --- the digits -------------------------------------------------------------

def test_digits_shapes_range_and_levels():
    x, y = pdl.data.digits("all", return_labels=True)
    assert x.shape == (1797, 1, 8, 8) and x.dtype == torch.float32 and y.shape == (1797,)
    assert float(x.min()) == -1.0 and float(x.max()) == 1.0
    levels = (x + 1) * 8  # intensities 0..16 on a grid
    assert torch.equal(levels, levels.round()) and set(y.tolist()) == set(range(10))
    assert pdl.data.digits("train").shape == (1347, 1, 8, 8)
    assert pdl.data.digits("test").shape == (450, 1, 8, 8)


def test_digits_split_is_fixed_disjoint_and_covers_every_class():
    train_idx, test_idx = images.digits_split()
    assert len(set(train_idx) & set(test_idx)) == 0 and len(set(train_idx) | set(test_idx)) == 1797
    x_all, y_all = pdl.data.digits("all", return_labels=True)
    x_test, y_test = pdl.data.digits("test", return_labels=True)
    assert torch.equal(x_test, x_all[torch.from_numpy(test_idx)]) and torch.equal(y_test, y_all[test_idx])
    assert torch.bincount(y_test, minlength=10).min() >= 30  # every digit is in the held-out split
    assert torch.equal(pdl.data.digits("test"), x_test)  # the same every call (seeded, fixed once)


def test_digits_rejects_an_unknown_split():
    with pytest.raises(ValueError, match="split must be one of train, test, all"):
        pdl.data.digits("validation")


# --- files in the original formats ---------------------------------------------

def idx_bytes(array):
    """An IDX file of unsigned bytes: 0, 0, 0x08, ndim, the sizes big-endian, the data."""
    array = np.asarray(array, dtype=np.uint8)
    return bytes([0, 0, 8, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes() + array.tobytes()


def write_idx_set(folder, n_train=5, n_test=3, seed=0):
    """Tiny MNIST-format files; returns the pixel arrays and labels written."""
    g = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    written = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        pixels, labels = g.integers(0, 256, (n, 28, 28)), g.integers(0, 10, n)
        pixels[0, 0, 0], pixels[0, 0, 1] = 0, 255
        for kind, array in (("images-idx3", pixels), ("labels-idx1", labels)):
            with gzip.open(os.path.join(folder, f"{prefix}-{kind}-ubyte.gz"), "wb") as f:
                f.write(idx_bytes(array))
        written[prefix] = (pixels, labels)
    return written


def test_read_idx_plain_and_gzipped(tmp_path):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a.idx").write_bytes(idx_bytes(a))
    with gzip.open(tmp_path / "a.idx.gz", "wb") as f:
        f.write(idx_bytes(a))
    assert np.array_equal(images.read_idx(str(tmp_path / "a.idx")), a)
    assert np.array_equal(images.read_idx(str(tmp_path / "a.idx.gz")), a)
    (tmp_path / "short.idx").write_bytes(idx_bytes(a)[:-5])
    with pytest.raises(ValueError, match="truncated"):
        images.read_idx(str(tmp_path / "short.idx"))
    (tmp_path / "bad.idx").write_bytes(b"PK\x03\x04" + bytes(20))
    with pytest.raises(ValueError, match="not an IDX file"):
        images.read_idx(str(tmp_path / "bad.idx"))


@pytest.mark.parametrize("loader, name", [(pdl.data.mnist, "mnist"), (pdl.data.fashion_mnist, "fashion_mnist")])
def test_idx_sets_load_from_the_cache(tmp_path, loader, name):
    written = write_idx_set(tmp_path / name)
    x, y = loader("train", root=str(tmp_path), return_labels=True)
    assert x.shape == (5, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.long
    assert x[0, 0, 0, 0] == -1.0 and x[0, 0, 0, 1] == 1.0  # 0 -> -1, 255 -> 1
    torch.testing.assert_close(x[:, 0], torch.from_numpy(written["train"][0]).float() / 127.5 - 1)
    assert torch.equal(y, torch.from_numpy(written["train"][1]).long())
    assert loader("test", root=str(tmp_path)).shape == (3, 1, 28, 28)


def test_the_cache_folder_comes_from_pdlearn_data(tmp_path, monkeypatch):
    write_idx_set(tmp_path / "mnist")
    monkeypatch.setenv("PDLEARN_DATA", str(tmp_path))
    assert images.data_dir() == str(tmp_path)
    assert pdl.data.mnist("test").shape == (3, 1, 28, 28)
    monkeypatch.delenv("PDLEARN_DATA")
    assert images.data_dir().endswith(os.path.join(".cache", "pdlearn"))


def test_nothing_is_downloaded_unless_asked(tmp_path):
    for loader in (pdl.data.mnist, pdl.data.fashion_mnist, pdl.data.cifar10):
        with pytest.raises(FileNotFoundError, match="download=True") as info:
            loader(root=str(tmp_path))
        assert str(tmp_path) in str(info.value)
    assert os.listdir(tmp_path) == []


def point_mnist_at(monkeypatch, mirror, files):
    monkeypatch.setitem(images.SOURCES, "mnist", {"mirrors": [mirror], "files": files})


def test_download_checks_the_sha256(tmp_path, monkeypatch):
    # a "server" that is a local folder: urllib reads file:// URLs like http:// ones
    write_idx_set(tmp_path / "server")
    files = {f: hashlib.sha256((tmp_path / "server" / f).read_bytes()).hexdigest()
             for f in sorted(os.listdir(tmp_path / "server"))}
    point_mnist_at(monkeypatch, (tmp_path / "server").as_uri() + "/", files)
    cache = tmp_path / "cache"
    x = pdl.data.mnist("train", root=str(cache), download=True)
    # a split downloads its own two files only
    assert tuple(x.shape) == (5, 1, 28, 28)
    assert sorted(os.listdir(cache / "mnist")) == sorted(f for f in files if f.startswith("train"))
    # a file whose bytes differ from the published hash is refused and not kept
    bad = dict(files, **{"t10k-images-idx3-ubyte.gz": "0" * 64})
    point_mnist_at(monkeypatch, (tmp_path / "server").as_uri() + "/", bad)
    with pytest.raises(ConnectionError, match="does not match the published"):
        pdl.data.mnist("test", root=str(tmp_path / "other"), download=True)
    assert "t10k-images-idx3-ubyte.gz" not in os.listdir(tmp_path / "other" / "mnist")
    assert not [f for f in os.listdir(tmp_path / "other" / "mnist") if f.endswith(".part")]


def test_offline_download_fails_with_a_clear_message(tmp_path, monkeypatch):
    point_mnist_at(monkeypatch, (tmp_path / "nowhere").as_uri() + "/", dict(images.SOURCES["mnist"]["files"]))
    with pytest.raises(ConnectionError, match="are you offline") as info:
        pdl.data.mnist(root=str(tmp_path / "cache"), download=True)
    assert "PDLEARN_DATA" in str(info.value)


def test_published_hashes_are_well_formed():
    for name, source in images.SOURCES.items():
        assert source["mirrors"] and all(m.startswith(("https://", "http://")) for m in source["mirrors"])
        for filename, digest in source["files"].items():
            assert len(digest) == 64 and int(digest, 16) >= 0, (name, filename)


def test_cifar10_binary_records(tmp_path):
    g = np.random.default_rng(0)
    records = {}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for i, base in enumerate([f"data_batch_{k}.bin" for k in range(1, 6)] + ["test_batch.bin"]):
            labels, pixels = g.integers(0, 10, 2), g.integers(0, 256, (2, 3072))
            records[base] = (labels, pixels)
            raw = np.concatenate([labels[:, None], pixels], 1).astype(np.uint8).tobytes()
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{base}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    os.makedirs(tmp_path / "cifar10")
    (tmp_path / "cifar10" / "cifar-10-binary.tar.gz").write_bytes(buffer.getvalue())
    x, y = pdl.data.cifar10("train", root=str(tmp_path), return_labels=True)
    assert x.shape == (10, 3, 32, 32) and y.shape == (10,)
    labels, pixels = records["data_batch_2.bin"]
    assert torch.equal(y[2:4], torch.from_numpy(labels).long())
    # red plane first, then green, then blue; each row by row
    torch.testing.assert_close(x[2, 1, 0, 5], torch.tensor(pixels[0, 1024 + 5] / 127.5 - 1, dtype=torch.float32))
    torch.testing.assert_close(x[3, 2, 31, 31], torch.tensor(pixels[1, 3071] / 127.5 - 1, dtype=torch.float32))
    assert pdl.data.cifar10("test", root=str(tmp_path)).shape == (2, 3, 32, 32)


def test_image_set_dispatches_by_name(tmp_path, monkeypatch):
    assert torch.equal(pdl.data.image_set("digits", "test"), pdl.data.digits("test"))
    write_idx_set(tmp_path / "fashion_mnist")
    monkeypatch.setenv("PDLEARN_DATA", str(tmp_path))
    x, y = pdl.data.image_set("fashion_mnist", "train", return_labels=True)
    assert x.shape == (5, 1, 28, 28) and y.shape == (5,)
    with pytest.raises(ValueError, match="unknown image set 'svhn'"):
        pdl.data.image_set("svhn")
