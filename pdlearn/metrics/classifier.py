"""The image classifier that judges samples: a small CNN, the feature extractor of the
digits FID and the judge of whether a generated digit is recognisable.

For the 8 x 8 digits it is trained on the 'train' split only by
``python -m pdlearn.metrics.classifier``,
which writes the shipped weights ``pdlearn/weights/digits_classifier.pt`` (about
100 KB) with its accuracy on the 450 held-out 'test' images in the file's metadata
(99.3% for the shipped weights; ``load_classifier().test_accuracy`` reads it).

The same network, sized by the image, judges the samples of the other image sets
(MNIST, Fashion-MNIST, CIFAR-10): ``image_classifier(name)`` trains it on the set's
training split the first time it is asked for (sizes 'image_classifier', seconds on a
GPU) and keeps it as a checkpoint, so that the gpu budget's tables have a confidence
and a class-accuracy column too.
"""
import os
from functools import lru_cache

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..budget import checkpoint_path, device, sizes
from ..checkpoints import write_torch
from ..images import digits, image_set
from ..train import fit
from ..validate import network_device

WEIGHTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "weights", "digits_classifier.pt")
FORMAT = "pdlearn-digits-classifier-1"
FEATURES = 64


class ImageClassifier(nn.Module):
    """x [n, C, H, H] in [-1, 1] -> logits [n, 10]; by default C = 1, H = 8 (the digits).
    ``features(x)`` is the 64-wide penultimate layer (after its ReLU), the representation
    the digits FID compares. H must be divisible by 4 (MNIST: 28, CIFAR-10: 32)."""

    def __init__(self, in_channels=1, image_size=8):
        super().__init__()
        if image_size % 4:
            raise ValueError(f"the classifier halves the image twice: image_size must be divisible by 4, "
                             f"got {image_size}")
        self.input_shape = (in_channels, image_size, image_size)
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # H -> H/2
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # H/2 -> H/4
        )
        self.hidden = nn.Linear(32 * (image_size // 4) ** 2, FEATURES)
        self.drop = nn.Dropout(0.3)
        self.head = nn.Linear(FEATURES, 10)

    def features(self, x):
        return F.relu(self.hidden(rearrange(self.conv(x), "n c h w -> n (c h w)")))

    def forward(self, x):
        return self.head(self.drop(self.features(x)))


def augment(x, gen):
    """Shift each image by up to H/8 pixels (one for the 8 x 8 digits; padding with
    background) and add a little noise, so the classifier also reads slightly
    off-centre or noisy generated images."""
    n, size = x.shape[0], x.shape[-1]
    pad = max(1, size // 8)
    padded = F.pad(x, (pad, pad, pad, pad), value=-1.0)
    dx, dy = torch.randint(0, 2 * pad + 1, (2, n), generator=gen)
    out = torch.stack([padded[i, :, dy[i]:dy[i] + size, dx[i]:dx[i] + size] for i in range(n)])
    return out + 0.1 * torch.randn(out.shape, generator=gen)


@torch.no_grad()
def accuracy(net, x, y, batch_size=1024):
    """Fraction of images whose most probable class is the label."""
    net.eval()
    at = network_device(net)
    predicted = torch.cat([net(c.to(at)).argmax(1).cpu() for c in x.split(batch_size)])
    return float((predicted == y).float().mean())


@torch.enable_grad()  # also when first asked for inside a metric that runs under no_grad
def train_classifier(steps=3000, batch_size=128, lr=2e-3, seed=0, progress=True, name="digits"):
    """Train an ImageClassifier, sized by the images, on the 'train' split of image set
    ``name``: cross-entropy on augmented images, with the one training loop of the book
    (``train.fit``: AdamW, weight decay 1e-4, cosine decay, no EMA, no gradient clipping),
    on ``device()``. Returns (net in eval mode on the CPU, accuracy on the held-out 'test' split)."""
    x, y = image_set(name, "train", return_labels=True)
    x_test, y_test = image_set(name, "test", return_labels=True)
    torch.manual_seed(seed)
    at = device()
    net = ImageClassifier(x.shape[1], x.shape[-1]).to(at)

    def loss_fn(model, gen):
        idx = torch.randint(0, x.shape[0], (batch_size,), generator=gen)
        return F.cross_entropy(model(augment(x[idx], gen).to(at)), y[idx].to(at))

    net = fit(net, loss_fn, steps, lr=lr, warmup=0, decay="cosine", weight_decay=1e-4, ema_decay=None,
              grad_clip=None, seed=seed, progress=progress, desc=f"{name} classifier")
    net = net.cpu().eval()
    return net, accuracy(net, x_test, y_test)


def save_classifier(net, test_accuracy, path=WEIGHTS, name="digits"):
    """Write the weights (float32), the input shape and their held-out accuracy on set ``name``."""
    write_torch(path, {"format": FORMAT, "model": net.state_dict(), "test_accuracy": float(test_accuracy),
                       "input_shape": list(net.input_shape), "image_set": name, "train_split": f"{name} 'train'",
                       "test_split": f"{name} 'test'"})  # atomic: a job killed mid-write leaves no broken file


@lru_cache(maxsize=8)
def load_classifier(path=WEIGHTS):
    """The shipped classifier (eval mode, gradients off, on the CPU), or one written by
    ``save_classifier`` at ``path``, loaded with ``weights_only=True``; ``.test_accuracy``
    is its accuracy on the held-out split of its image set."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"no digits classifier weights at {path}; train them with "
                                "`python -m pdlearn.metrics.classifier` (about a minute on a CPU)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"{path} is damaged or not a classifier file ({type(err).__name__}); delete it and it is "
                         "trained afresh on next use") from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not a digits classifier file (format {FORMAT!r})")
    channels, size, _ = state.get("input_shape", (1, 8, 8))
    net = ImageClassifier(channels, size)
    net.load_state_dict(state["model"])
    net.eval().requires_grad_(False)
    net.test_accuracy, net.image_set = state["test_accuracy"], state.get("image_set", "digits")
    return net


def image_classifier(name="digits", progress=True, budget_name=None):
    """The classifier that judges samples of image set ``name``: the shipped weights for
    the digits; for MNIST, Fashion-MNIST and CIFAR-10 an ImageClassifier sized by the
    image, trained on the set's 'train' split the first time it is asked for (sizes
    'image_classifier') and kept at ``checkpoint_path('<name>_classifier')``, so later
    calls (and later chapters) load it. ``.test_accuracy`` is its held-out accuracy."""
    if name == "digits":
        return load_classifier()
    cfg = sizes("image_classifier", budget_name)
    path = checkpoint_path(f"{name}_classifier_{cfg['steps']}", budget_name)
    if not os.path.exists(path):
        net, acc = train_classifier(cfg["steps"], cfg["batch_size"], cfg["lr"], progress=progress, name=name)
        save_classifier(net, acc, path, name)
    net = load_classifier(os.path.abspath(path))
    if net.image_set != name:
        raise ValueError(f"{path} holds a classifier of {net.image_set}, not of {name}; delete it and it is "
                         "trained afresh")
    return net


if __name__ == "__main__":
    net, acc = train_classifier()
    save_classifier(net, acc)
    print(f"held-out accuracy {acc:.4f} on {digits('test').shape[0]} test digits; "
          f"wrote {WEIGHTS} ({os.path.getsize(WEIGHTS) / 1024:.0f} KB)")


DigitsClassifier = ImageClassifier  # its name in earlier versions: it judges every image set now
