"""A small CNN classifier of the 8 x 8 digits: the feature extractor of the digits FID
and the judge of whether a generated digit is recognisable.

Trained on the digits 'train' split only by ``python -m pdlearn.digits_classifier``,
which writes the shipped weights ``pdlearn/weights/digits_classifier.pt`` (about
100 KB) with its accuracy on the 450 held-out 'test' images in the file's metadata
(99.3% for the shipped weights; ``load_classifier().test_accuracy`` reads it).
"""
import os
from functools import lru_cache

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .images import digits

WEIGHTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights", "digits_classifier.pt")
FORMAT = "pdlearn-digits-classifier-1"
FEATURES = 64


class DigitsClassifier(nn.Module):
    """x [n, 1, 8, 8] in [-1, 1] -> logits [n, 10]. ``features(x)`` is the 64-wide
    penultimate layer (after its ReLU), the representation the digits FID compares."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 8x8 -> 4x4
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 4x4 -> 2x2
        )
        self.hidden = nn.Linear(32 * 2 * 2, FEATURES)
        self.drop = nn.Dropout(0.3)
        self.head = nn.Linear(FEATURES, 10)

    def features(self, x):
        return F.relu(self.hidden(rearrange(self.conv(x), "n c h w -> n (c h w)")))

    def forward(self, x):
        return self.head(self.drop(self.features(x)))


def augment(x, gen):
    """Shift each image by up to one pixel (padding with background) and add a little
    noise, so the classifier also reads slightly off-centre or noisy generated digits."""
    n = x.shape[0]
    padded = F.pad(x, (1, 1, 1, 1), value=-1.0)
    dx, dy = torch.randint(0, 3, (2, n), generator=gen)
    out = torch.stack([padded[i, :, dy[i]:dy[i] + 8, dx[i]:dx[i] + 8] for i in range(n)])
    return out + 0.1 * torch.randn(out.shape, generator=gen)


@torch.no_grad()
def accuracy(net, x, y):
    """Fraction of images whose most probable class is the label."""
    net.eval()
    return float((net(x).argmax(1) == y).float().mean())


def train_classifier(steps=3000, batch_size=128, lr=2e-3, seed=0, progress=True):
    """Train a DigitsClassifier on the 'train' split (cross-entropy, AdamW, cosine decay).
    Returns (net in eval mode, accuracy on the held-out 'test' split)."""
    from tqdm.auto import trange

    x, y = digits("train", return_labels=True)
    x_test, y_test = digits("test", return_labels=True)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = DigitsClassifier()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    net.train()
    for _ in trange(steps, desc="digits classifier", disable=not progress):
        idx = torch.randint(0, x.shape[0], (batch_size,), generator=gen)
        loss = F.cross_entropy(net(augment(x[idx], gen)), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    net.eval()
    return net, accuracy(net, x_test, y_test)


def save_classifier(net, test_accuracy, path=WEIGHTS):
    """Write the weights (float32) and their held-out accuracy."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.save({"format": FORMAT, "model": net.state_dict(), "test_accuracy": float(test_accuracy),
                "train_split": "digits('train')", "test_split": "digits('test')"}, path)


@lru_cache(maxsize=4)
def load_classifier(path=WEIGHTS):
    """The shipped classifier (eval mode, gradients off), loaded with ``weights_only=True``;
    ``.test_accuracy`` is its accuracy on the held-out digits."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"no digits classifier weights at {path}; train them with "
                                "`python -m pdlearn.digits_classifier` (about a minute on a CPU)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not a digits classifier file (format {FORMAT!r})")
    net = DigitsClassifier()
    net.load_state_dict(state["model"])
    net.eval().requires_grad_(False)
    net.test_accuracy = state["test_accuracy"]
    return net


if __name__ == "__main__":
    net, acc = train_classifier()
    save_classifier(net, acc)
    print(f"held-out accuracy {acc:.4f} on {digits('test').shape[0]} test digits; "
          f"wrote {WEIGHTS} ({os.path.getsize(WEIGHTS) / 1024:.0f} KB)")
