"""Sample-quality metrics for low-dimensional data, each with its data-vs-data floor.

``mmd_rbf`` decides (it separates a blurred model from data by several floor
standard deviations at n = 5,000); ``sliced_wasserstein`` gives intuition but its
floor moves by about 20% between draws. Show every number next to ``floor``.
"""
import torch

from .data import as_data
from .seeding import derive_seed

BANDWIDTHS = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)


def _sq_dists(a, b):
    return (a.pow(2).sum(1)[:, None] + b.pow(2).sum(1)[None, :] - 2 * a @ b.T).clamp(min=0)


def _kernel_sum(a, b, bandwidths, chunk=128):
    """sum_{i,j} k(a_i, b_j) with k = sum_h exp(-|a - b|^2 / (2 h^2)), in row chunks.

    Small chunks keep each block of distances in the CPU cache (three times faster
    than large ones at n = 5,000); ``buf`` is reused so no large temporaries are made.
    With b = a the matrix is symmetric: each row chunk meets only the columns from its
    own diagonal block on, and the blocks right of the diagonal count twice.
    """
    symmetric = b is a
    total = torch.zeros((), dtype=torch.float64)
    buf = None
    for i in range(0, a.shape[0], chunk):
        rows = a[i:i + chunk]
        d2 = _sq_dists(rows, b[i:] if symmetric else b)
        if buf is None or buf.shape != d2.shape:
            buf = torch.empty_like(d2)
        for h in bandwidths:
            k = torch.mul(d2, -1 / (2 * h * h), out=buf).exp_()
            total += 2 * k.sum() - k[:, :len(rows)].sum() if symmetric else k.sum()
    return total


@torch.no_grad()
def mmd_rbf(x, y, bandwidths=BANDWIDTHS):
    """Unbiased squared MMD (Gretton et al., 2012, eq. 3) with a sum of RBF kernels:

        MMD^2 = E k(x, x') + E k(y, y') - 2 E k(x, y),  k(a, b) = sum_h exp(-|a - b|^2 / (2 h^2)),

    the first two expectations over distinct pairs. Returns a float; it can be
    slightly negative when the two sets are indistinguishable. The default
    bandwidths suit data of unit scale (the toy sets).
    """
    x = as_data(x, "x").flatten(1).double().cpu()
    y = as_data(y, "y").flatten(1).double().cpu()
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same dimension, got {x.shape[1]} and {y.shape[1]}")
    n, m, nb = x.shape[0], y.shape[0], len(bandwidths)
    if n < 2 or m < 2:
        raise ValueError("mmd_rbf needs at least 2 points in each set")
    kxx = (_kernel_sum(x, x, bandwidths) - n * nb) / (n * (n - 1))
    kyy = (_kernel_sum(y, y, bandwidths) - m * nb) / (m * (m - 1))
    kxy = _kernel_sum(x, y, bandwidths) / (n * m)
    return float(kxx + kyy - 2 * kxy)


@torch.no_grad()
def sliced_wasserstein(x, y, n_projections=256, seed=0):
    """Sliced 2-Wasserstein distance (Rabin et al., 2011; Bonneel et al., 2015):

        SW_2(x, y) = ( E_theta W_2^2(theta . x, theta . y) )^(1/2),

    theta uniform on the unit sphere (seeded); each 1D W_2 compares quantiles.
    """
    x = as_data(x, "x").flatten(1).double().cpu()
    y = as_data(y, "y").flatten(1).double().cpu()
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same dimension, got {x.shape[1]} and {y.shape[1]}")
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(x.shape[1], n_projections, generator=g, dtype=torch.float64)
    theta = theta / theta.norm(dim=0, keepdim=True)
    px, py = (x @ theta).sort(0).values, (y @ theta).sort(0).values
    if px.shape[0] != py.shape[0]:
        q = torch.linspace(0, 1, max(px.shape[0], py.shape[0]), dtype=torch.float64)
        px, py = torch.quantile(px, q, dim=0), torch.quantile(py, q, dim=0)
    return float((px - py).pow(2).mean().sqrt())


def floor(draw, n, metric=mmd_rbf, repeats=5, seed=0):
    """The data-vs-data floor of ``metric`` at sample size n: (mean, std) over ``repeats``
    pairs of fresh draws. ``draw(n, seed)`` returns n fresh data points, for example
    ``lambda n, seed: pdl.data.toy('moons', n, seed)``."""
    values = []
    for r in range(repeats):
        a = draw(n, derive_seed(seed, "floor", r, 0))
        b = draw(n, derive_seed(seed, "floor", r, 1))
        values.append(metric(a, b))
    v = torch.tensor(values, dtype=torch.float64)
    return float(v.mean()), float(v.std()) if repeats > 1 else 0.0


VERDICTS = ("better", "tie", "worse")


def verdict(score, reference, spread, k=2.0, lower_is_better=True):
    """The book's one comparison rule: is ``score`` better than ``reference``, a tie, or worse?

        d = score - reference
        'tie'     when |d| <= k * spread              (k = 2 by default)
        'better'  when d < -k * spread  (lower is better: MMD, FID, milliseconds)
        'worse'   when d > +k * spread

    ``spread`` is the standard deviation of the null: the spread of the data-vs-data floor
    drawn like the samples (``floor``, ``image_fid_floor``), or the spread of repeated
    paired timings. A difference inside two spreads is a tie, whatever the digits say.
    With ``lower_is_better=False`` (accuracy, confidence) 'better' and 'worse' swap.
    """
    score, reference, spread = float(score), float(reference), float(spread)
    if not spread >= 0:
        raise ValueError(f"spread must be a standard deviation >= 0, got {spread}")
    if not k > 0:
        raise ValueError(f"k must be > 0 (how many spreads make a difference), got {k}")
    d = score - reference if lower_is_better else reference - score
    if abs(d) <= k * spread:
        return "tie"
    return "better" if d < 0 else "worse"


def with_floor(score, floor, fmt=".5f"):
    """A score beside its floor, as the book prints them: ``'0.00123 (floor 0.00040 +- 0.00041)'``.
    ``floor`` is the (mean, std) of ``floor`` or ``image_fid_floor``."""
    mean, std = floor
    return f"{score:{fmt}} (floor {mean:{fmt}} +- {std:{fmt}})"


# ---------------------------------------------------------------------------
# Image metrics (chapter 5): digits FID with its floor, the classifier's verdict
# on samples, the nearest-neighbour memorisation check; defined in pdlearn/fid.py.
# ---------------------------------------------------------------------------
from .fid import (class_accuracy, classifier_confidence, classifier_features, confident_fraction,  # noqa: E402,F401
                  digits_features, digits_fid, digits_fid_floor, fid_from_features, forget_references,
                  frechet_distance, image_fid, image_fid_floor, inception_fid, memorisation,
                  nearest_neighbour_distances, split_features)
