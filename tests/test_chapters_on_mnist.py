"""The image chapters (5 to 8) on MNIST-shaped data, as the gpu budget runs them.

At the gpu budget the image chapters switch from the embedded 8 x 8 digits to MNIST
(28 x 28), the Inception FID of torchmetrics and a classifier trained on MNIST. No GPU,
no MNIST download and no Inception weights are at hand here, so this runs every cell of
those chapters at the smoke sizes with ``PDLEARN_IMAGES=mnist`` on a stand-in MNIST
written in its original file format (the digits, enlarged to 28 x 28, with their labels)
and a stand-in for torchmetrics' FrechetInceptionDistance that checks what it is fed
(three channels in [0, 1], as Inception wants with ``normalize=True``) and scores
pooled pixels. What it proves: the MNIST code path of the chapters runs, every shape and
name fits; not that the gpu budget's results are good.
"""
import gzip
import os
import re
import textwrap
from pathlib import Path

import pytest
import torch

import pdlearn as pdl
from test_data_images import idx_bytes

pytestmark = pytest.mark.slow  # each test runs a chapter on MNIST-shaped images

BOOK = Path(__file__).resolve().parent.parent / "book"
CHAPTERS = ["05_diffusion_images", "06_progressive_distillation_images", "07_guidance", "08_real_time"]

STUB = '''
"""A stand-in for torchmetrics' FrechetInceptionDistance (tests only): pooled pixels, not Inception."""
import torch
import torch.nn.functional as F

from pdlearn.metrics import fid_from_features


class FrechetInceptionDistance:
    real_images_seen = 0  # over all instances: tells a test how often a reference set was fed

    def __init__(self, feature=2048, normalize=False, reset_real_features=True):
        assert feature == 2048 and normalize, "pdlearn asks for the 2048-wide pool features of [0, 1] images"
        self.reset_real_features = reset_real_features
        self.features = {True: [], False: []}

    def to(self, device):
        return self

    def update(self, imgs, real):
        assert imgs.ndim == 4 and imgs.shape[1] == 3, f"Inception reads [n, 3, H, W], got {tuple(imgs.shape)}"
        assert imgs.dtype == torch.float32 and 0 <= imgs.min() and imgs.max() <= 1, "normalize=True wants [0, 1]"
        self.features[bool(real)].append(F.adaptive_avg_pool2d(imgs.cpu(), 4).flatten(1))
        FrechetInceptionDistance.real_images_seen += len(imgs) if real else 0

    def reset(self):
        self.features[False] = []
        if self.reset_real_features:
            self.features[True] = []

    def compute(self):
        real, fake = (torch.cat(self.features[k]) for k in (True, False))
        return torch.tensor(fid_from_features(fake, real))
'''


def write_digits_as_mnist(folder):
    """The digits' train and test splits, enlarged from 8 x 8 to 28 x 28, as MNIST's four files."""
    os.makedirs(folder, exist_ok=True)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        x, y = pdl.data.digits(split, return_labels=True)
        big = torch.nn.functional.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False)
        pixels = ((big[:, 0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
        for kind, array in (("images-idx3", pixels), ("labels-idx1", y.numpy())):
            with gzip.open(os.path.join(folder, f"{prefix}-{kind}-ubyte.gz"), "wb") as f:
                f.write(idx_bytes(array))


@pytest.fixture(scope="module")
def mnist_setting(tmp_path_factory):
    """Environment for the chapters' kernels: smoke sizes, the stand-in MNIST and torchmetrics."""
    root = tmp_path_factory.mktemp("mnist_chapters")
    write_digits_as_mnist(root / "data" / "mnist")
    stub = root / "stub" / "torchmetrics" / "image"
    stub.mkdir(parents=True)
    (root / "stub" / "torchmetrics" / "__init__.py").write_text("")
    (stub / "__init__.py").write_text("")
    (stub / "fid.py").write_text(textwrap.dedent(STUB))
    (root / "stub" / "torch_fidelity").mkdir()  # found, so the chapters install nothing
    (root / "stub" / "torch_fidelity" / "__init__.py").write_text("")
    paths = [str(root / "stub"), os.environ.get("PYTHONPATH", "")]
    env = {"PDLEARN_BUDGET": "smoke", "PDLEARN_IMAGES": "mnist", "PDLEARN_DATA": str(root / "data"),
           "PDLEARN_CHECKPOINTS": str(root / "checkpoints"), "PYTHONPATH": os.pathsep.join(p for p in paths if p),
           "MPLBACKEND": "agg"}
    return env


def test_the_stand_in_mnist_reads_as_mnist(mnist_setting, monkeypatch):
    monkeypatch.setenv("PDLEARN_DATA", mnist_setting["PDLEARN_DATA"])
    x, y = pdl.data.mnist("train", return_labels=True)
    assert x.shape == (1347, 1, 28, 28) and x.min() == -1 and y.shape == (1347,)
    assert torch.equal(y, pdl.data.digits("train", return_labels=True)[1])


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_the_image_chapter_runs_on_mnist(chapter, mnist_setting, monkeypatch):
    """Every cell of the chapter runs on 28 x 28 images (in chapter order: later chapters
    load the teacher, students and classifier the earlier ones trained)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    for key, value in mnist_setting.items():
        monkeypatch.setenv(key, value)  # the kernel inherits this process's environment
    nb = nbformat.read(BOOK / f"{chapter}.ipynb", as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(BOOK)}})
    try:
        client.execute()
    except CellExecutionError as err:
        message = re.sub(r"\x1b\[[0-9;]*m", "", str(err))  # the traceback without its colours
        pytest.fail(f"{chapter} failed on MNIST-shaped data:\n{message[:2000]}\n...\n{message[-1500:]}")
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "budget: smoke" in text
    undefined = re.findall(r".*\bnan\b.*", text, flags=re.IGNORECASE)
    assert not undefined, f"{chapter} printed an undefined number on MNIST: {undefined[:3]}"
