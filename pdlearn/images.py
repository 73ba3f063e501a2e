"""Image data sets, as float tensors [n, C, H, W] in [-1, 1].

- ``digits``: the 1,797 handwritten digits that ship with scikit-learn (8 x 8,
  no download), with a fixed, seeded held-out split for honest evaluation.
- ``mnist``, ``fashion_mnist``, ``cifar10``: the standard sets in their original
  file formats (gzipped IDX; the CIFAR-10 binary version, no pickle), read with
  numpy alone. They download only when asked (``download=True``), check each
  file's SHA-256, and keep it in ``$PDLEARN_DATA`` (default ``~/.cache/pdlearn``).
"""
import gzip
import hashlib
import os
import tarfile
import urllib.error
import urllib.request
from functools import lru_cache

import numpy as np
import torch

# ---------------------------------------------------------------------------
# The embedded digits
# ---------------------------------------------------------------------------

DIGITS_SPLIT_SEED = 0
DIGITS_HELDOUT = 450  # images held out of every training run (teachers and the digits classifier)
SPLITS = ("train", "test", "all")


def digits_split(seed=DIGITS_SPLIT_SEED, heldout=DIGITS_HELDOUT):
    """Indices (train, test) into scikit-learn's 1,797 digits: a seeded permutation, fixed
    once for the whole book, with the last ``heldout`` images as the test split."""
    perm = np.random.default_rng(seed).permutation(1797)
    return perm[:-heldout], perm[-heldout:]


@lru_cache(maxsize=1)
def _sklearn_digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images, d.target


def digits(split="train", return_labels=False):
    """scikit-learn's handwritten digits (UCI optdigits, Alpaydin & Kaynak, 1998) as float32
    [n, 1, 8, 8] in [-1, 1]: intensity k in 0..16 becomes k / 8 - 1.

    Kept at 8 x 8, not padded or resized: these are the pixels that were measured
    (resizing would invent detail), 64 pixels keep a UNet step cheap enough to train
    a teacher on a laptop CPU in minutes, and 8 x 8 still allows the UNet two
    halvings (8 -> 4 -> 2).

    split: 'train' (1,347 images), 'test' (450 held out: no teacher and not the
    digits classifier ever trains on them; the metrics compare against them) or
    'all' (1,797). With ``return_labels`` also returns the digit of each image (long [n]).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    images, targets = _sklearn_digits()
    x = torch.from_numpy(images.astype(np.float32)).reshape(-1, 1, 8, 8) / 8.0 - 1.0
    y = torch.from_numpy(targets.astype(np.int64))
    if split != "all":
        idx = torch.from_numpy(digits_split()[0 if split == "train" else 1])
        x, y = x[idx], y[idx]
    return (x, y) if return_labels else x


# ---------------------------------------------------------------------------
# Downloaded sets: MNIST, Fashion-MNIST, CIFAR-10
# ---------------------------------------------------------------------------

# Each set: mirrors tried in order, and the SHA-256 of every file as published.
SOURCES = {
    "mnist": {
        "mirrors": ["https://storage.googleapis.com/cvdf-datasets/mnist/",
                    "https://ossci-datasets.s3.amazonaws.com/mnist/"],
        "files": {
            "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        },
    },
    "fashion_mnist": {
        "mirrors": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"],
        "files": {
            "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        },
    },
    "cifar10": {
        "mirrors": ["https://www.cs.toronto.edu/~kriz/"],
        "files": {"cifar-10-binary.tar.gz": "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd"},
    },
}


def data_dir(root=None):
    """Where downloaded sets live: ``root``, else ``$PDLEARN_DATA``, else ``~/.cache/pdlearn``."""
    return root or os.environ.get("PDLEARN_DATA") or os.path.join(os.path.expanduser("~"), ".cache", "pdlearn")


def sha256(path):
    """The SHA-256 of a file, as a hex string."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch(name, root=None, download=False, files=None):
    """The folder holding the files of set ``name`` (all of them, or only ``files``), downloading
    the missing ones if asked.

    A downloaded file is kept only if its SHA-256 matches the published one.
    Files already in the folder are trusted (they were checked when downloaded,
    or put there by hand); nothing is fetched unless ``download=True``.
    """
    if name not in SOURCES:
        raise ValueError(f"unknown data set {name!r}; choose one of {', '.join(SOURCES)}")
    folder = os.path.join(data_dir(root), name)
    wanted = SOURCES[name]["files"] if files is None else files
    missing = [f for f in wanted if not os.path.exists(os.path.join(folder, f))]
    if missing and not download:
        raise FileNotFoundError(
            f"{name} is not in {folder} (missing {', '.join(missing)}). Pass download=True to fetch it "
            f"(it is then cached there), or set PDLEARN_DATA to a folder that already holds it.")
    for filename in missing:
        _download(name, filename, folder)
    return folder


def _download(name, filename, folder):
    os.makedirs(folder, exist_ok=True)
    target, expected = os.path.join(folder, filename), SOURCES[name]["files"][filename]
    errors = []
    for mirror in SOURCES[name]["mirrors"]:
        url, tmp = mirror + filename, target + ".part"
        try:
            print(f"downloading {url}")
            with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
                for block in iter(lambda: response.read(1 << 20), b""):
                    out.write(block)
        except (urllib.error.URLError, OSError) as err:
            errors.append(f"{url}: {err}")
            if os.path.exists(tmp):  # a download cut off half way
                os.remove(tmp)
            continue
        found = sha256(tmp)
        if found != expected:
            os.remove(tmp)
            errors.append(f"{url}: SHA-256 {found} does not match the published {expected}")
            continue
        os.replace(tmp, target)
        return
    raise ConnectionError(
        f"could not download {filename} for {name}; are you offline? Tried:\n  " + "\n  ".join(errors) +
        f"\nDownload the file by other means and put it in {folder}, or point PDLEARN_DATA at a copy.")


def read_idx(path):
    """An array from an IDX file (LeCun et al.'s format; gzipped if the name ends in .gz):
    two zero bytes, a type code (0x08 = uint8), the number of dimensions d, then d
    big-endian uint32 sizes and the data."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes (its header is {raw[:4].hex()})")
    ndim = raw[3]
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path} is truncated: its header promises shape {shape}, it holds {data.size} values")
    return data.reshape(shape)


def _to_images(pixels):
    """uint8 [n, C, H, W] -> float32 in [-1, 1]."""
    return torch.from_numpy(pixels.astype(np.float32)) / 127.5 - 1.0


def _idx_set(name, split, root, download, return_labels):
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    prefix = "train" if split == "train" else "t10k"
    images, labels = f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz"
    folder = fetch(name, root, download, files=[images, labels])  # one split needs only its own two files
    pixels = read_idx(os.path.join(folder, images))
    if pixels.ndim != 3:
        raise ValueError(f"{os.path.join(folder, images)} holds an array of shape {pixels.shape}, not images "
                         "[n, height, width]; is it a label file? Put the original files of the set there")
    y = read_idx(os.path.join(folder, labels))
    if y.shape != (pixels.shape[0],) or (y.size and y.max() > 9):
        raise ValueError(f"{os.path.join(folder, labels)} does not label {os.path.join(folder, images)}: it holds "
                         f"{y.shape[0] if y.ndim == 1 else y.shape} labels (largest {int(y.max()) if y.size else '-'}) "
                         f"for {pixels.shape[0]} images; put the matching original files of the set there")
    x = _to_images(pixels[:, None])
    return (x, torch.from_numpy(y.astype(np.int64))) if return_labels else x


def mnist(split="train", root=None, download=False, return_labels=False):
    """MNIST (LeCun et al., 1998): float32 [n, 1, 28, 28] in [-1, 1]; 60,000 train / 10,000 test.
    Downloads (about 11 MB) only with ``download=True``; see ``fetch``."""
    return _idx_set("mnist", split, root, download, return_labels)


def fashion_mnist(split="train", root=None, download=False, return_labels=False):
    """Fashion-MNIST (Xiao et al., 2017): float32 [n, 1, 28, 28] in [-1, 1]; 60,000 / 10,000.
    Downloads (about 30 MB) only with ``download=True``; see ``fetch``."""
    return _idx_set("fashion_mnist", split, root, download, return_labels)


CIFAR_RECORD = 1 + 3 * 32 * 32  # one label byte, then the red, green and blue planes, row by row


def cifar10(split="train", root=None, download=False, return_labels=False):
    """CIFAR-10 (Krizhevsky, 2009), binary version: float32 [n, 3, 32, 32] in [-1, 1];
    50,000 train (data_batch_1..5.bin) / 10,000 test (test_batch.bin). Each record is
    a label byte and 3,072 pixel bytes. Read straight from the archive (about 160 MB),
    which downloads only with ``download=True``; see ``fetch``."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    folder = fetch("cifar10", root, download)
    wanted = [f"data_batch_{i}.bin" for i in range(1, 6)] if split == "train" else ["test_batch.bin"]
    chunks = {}
    with tarfile.open(os.path.join(folder, "cifar-10-binary.tar.gz"), "r:gz") as tar:
        for member in tar:
            base = os.path.basename(member.name)
            if base in wanted:
                chunks[base] = tar.extractfile(member).read()
    if len(chunks) != len(wanted):
        raise ValueError(f"the CIFAR-10 archive in {folder} lacks {sorted(set(wanted) - set(chunks))}; "
                         "delete it and download again")
    raw = np.frombuffer(b"".join(chunks[w] for w in wanted), dtype=np.uint8)
    if raw.size % CIFAR_RECORD:
        raise ValueError(f"the CIFAR-10 archive in {folder} holds a truncated batch file; delete it and download again")
    records = raw.reshape(-1, CIFAR_RECORD)
    x = _to_images(records[:, 1:].reshape(-1, 3, 32, 32))
    return (x, torch.from_numpy(records[:, 0].astype(np.int64))) if return_labels else x


IMAGE_SETS = ("digits", "mnist", "fashion_mnist", "cifar10")


def image_set(name, split="train", return_labels=False, download=True):
    """Any image set of the book by name ('digits', 'mnist', 'fashion_mnist', 'cifar10'),
    so that a chapter reads its data set from the budget and runs the same code for each.
    The downloaded sets fetch on first use here (``download=True``)."""
    if name == "digits":
        return digits(split, return_labels)
    if name not in IMAGE_SETS:
        raise ValueError(f"unknown image set {name!r}; choose one of {', '.join(IMAGE_SETS)}")
    return globals()[name](split, download=download, return_labels=return_labels)
