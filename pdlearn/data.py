"""Data: toy 2D sets, input checks, and the image sets of ``images`` under the same roof.

Every function in pdlearn that takes data also takes a plain float tensor [n, ...]
(or a NumPy array), checked by ``as_data``.
"""
import math

import numpy as np
import torch

from .validate import positive_int

from .images import cifar10, digits, fashion_mnist, image_set, mnist  # noqa: F401  (pdl.data.digits() beside pdl.data.toy())

TOY = ("moons", "swiss_roll", "checkerboard", "eight_gaussians", "rings")


def as_data(x, name="data", ndim=None, dim=None):
    """Check and return x as a float tensor [n, ...]; raise a clear error otherwise."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a float tensor of shape [n, ...], got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a float tensor (got dtype {x.dtype}); convert it with x.float()")
    if x.ndim < 2:
        raise ValueError(f"{name} must have shape [n, ...] with a batch dimension first, got shape {tuple(x.shape)}; "
                         "for a single point use x[None]")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(x.shape)}")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"{name} must have shape [n, {dim}], got {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)}); it needs at least one example")
    if not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).flatten(1).any(1).sum())
        raise ValueError(f"{name} contains NaN or inf in {bad} of {x.shape[0]} examples; clean or drop them first")
    return x


def toy(name, n=10_000, seed=0, return_labels=False):
    """A toy 2D data set as a float32 tensor [n, 2], drawn at random (seeded).

    Names: 'moons', 'swiss_roll', 'checkerboard', 'eight_gaussians', 'rings'.
    Points are drawn at random positions (never evenly spaced: an even spacing
    makes two draws look more alike than two samples of a distribution do). All
    sets have a scale of about one. With ``return_labels`` also returns the
    component of each point (long [n]: which moon, square colour, mode or ring).
    """
    if name not in TOY:
        raise ValueError(f"unknown toy set {name!r}; choose one of {', '.join(TOY)}")
    n = positive_int(n, "n")
    g = np.random.default_rng(seed)
    if name == "moons":
        y = g.integers(0, 2, n)
        a = g.uniform(0, math.pi, n)
        x = np.where(y[:, None] == 0,
                     np.stack([np.cos(a), np.sin(a)], 1),
                     np.stack([1 - np.cos(a), 0.5 - np.sin(a)], 1))
        x = (x - [0.5, 0.25]) * 1.5 + 0.05 * g.standard_normal((n, 2))
    elif name == "swiss_roll":
        a = 1.5 * math.pi * (1 + 2 * g.uniform(0, 1, n))
        x = np.stack([a * np.cos(a), a * np.sin(a)], 1) / 7.0 + 0.05 * g.standard_normal((n, 2))
        y = (a > 3 * math.pi).astype(np.int64)
    elif name == "checkerboard":
        # 4 x 4 board on [-2, 2]^2; points fill the 8 squares where (col + row) is even
        col = g.integers(0, 4, n)
        row = 2 * g.integers(0, 2, n) + (col % 2)
        x = np.stack([col + g.uniform(0, 1, n), row + g.uniform(0, 1, n)], 1) - 2.0
        y = (col * 4 + row) // 2 % 8
    elif name == "eight_gaussians":
        y = g.integers(0, 8, n)
        angle = y * (2 * math.pi / 8)
        x = 2.0 * np.stack([np.cos(angle), np.sin(angle)], 1) + 0.15 * g.standard_normal((n, 2))
    else:  # rings
        y = g.integers(0, 2, n)
        a = g.uniform(0, 2 * math.pi, n)
        r = np.where(y == 0, 0.8, 1.8)[:, None]
        x = r * np.stack([np.cos(a), np.sin(a)], 1) + 0.06 * g.standard_normal((n, 2))
    x = torch.from_numpy(np.asarray(x, dtype=np.float32))
    return (x, torch.from_numpy(np.asarray(y, dtype=np.int64))) if return_labels else x
