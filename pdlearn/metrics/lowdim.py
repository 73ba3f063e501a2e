"""Sample-quality metrics for low-dimensional data, each with its data-vs-data floor, and the
fidelity of labelled samples (chapter 7).

``mmd_rbf`` decides (it separates a blurred model from data by several floor
standard deviations at n = 5,000); ``sliced_wasserstein`` gives intuition but its
floor moves by about 20% between draws. Show every number next to ``floor``.
"""
import torch

from ..data import as_data
from ..seeding import derive_seed

BANDWIDTHS = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
# exp(-80) ~ 2e-35: no kernel value below it moves a sum of O(1) terms, and torch's exp takes
# a slow path on arguments that underflow (about 14 times slower), which most pairs reach at h = 0.02
EXP_FLOOR = -80.0


def _sq_dists(a, b):
    """|a_i - b_j|^2 for all pairs, [len(a), len(b)], in a's dtype. Coordinate by coordinate for
    low-dimensional points, exact to rounding also in float32; in more than 8 dimensions by one
    matrix product, |a|^2 + |b|^2 - 2 a.b, in float64, whose cancellation for near pairs (and
    self-pairs) float32 could not afford."""
    if a.shape[1] <= 8:
        return sum((a[:, None, j] - b[None, :, j]).square_() for j in range(a.shape[1]))
    a64, b64 = a.double(), b.double()
    return (a64.pow(2).sum(1)[:, None] + b64.pow(2).sum(1)[None, :] - 2 * a64 @ b64.T).clamp(min=0).to(a.dtype)


def _kernel_sum(a, b, bandwidths, chunk=128):
    """sum_{i,j} k(a_i, b_j) with k = sum_h exp(-|a - b|^2 / (2 h^2)), in row chunks.

    The kernel values are computed in a's dtype (float32 by default, twice as fast as float64
    and within 1e-6 of it: tests/test_metrics.py) and summed in float64, row by row. Small
    chunks keep each block of distances in the CPU cache (three times faster than large ones at
    n = 5,000); ``buf`` is reused so no large temporaries are made. With b = a the matrix is
    symmetric: each row chunk meets only the columns from its own diagonal block on, and the
    blocks right of the diagonal count twice.
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
            k = torch.mul(d2, -1 / (2 * h * h), out=buf).clamp_(min=EXP_FLOOR).exp_()
            row_sums = k.sum(1).double()
            total += 2 * row_sums.sum() - k[:, :len(rows)].sum().double() if symmetric else row_sums.sum()
    return total


DTYPES = (torch.float32, torch.float64)


def _points(x, name, dtype=torch.float32):
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be torch.float32 (the default) or torch.float64, got {dtype!r}")
    return as_data(x, name).flatten(1).cpu().to(dtype)


class MMDReference:
    """A reference set for ``mmd_rbf``, with its own kernel term E k(y, y') computed once.

    Scoring many sample sets against one data set (every row of a quality table) then costs
    only the sample terms: ``ref = MMDReference(data); [mmd_rbf(z, ref) for z in samples]``
    gives exactly the values of ``mmd_rbf(z, data)``, without recomputing the reference's
    m^2 / 2 kernel evaluations each time. ``dtype`` as in ``mmd_rbf``; the reference keeps it.
    """

    @torch.no_grad()
    def __init__(self, y, bandwidths=BANDWIDTHS, dtype=torch.float32):
        self.y, self.bandwidths = _points(y, "y", dtype), tuple(bandwidths)
        m = self.y.shape[0]
        if m < 2:
            raise ValueError("an MMD reference needs at least 2 points")
        self.kyy = (_kernel_sum(self.y, self.y, self.bandwidths) - m * len(self.bandwidths)) / (m * (m - 1))

    def __repr__(self):
        return f"MMDReference({self.y.shape[0]} points of dimension {self.y.shape[1]})"


@torch.no_grad()
def mmd_rbf(x, y, bandwidths=BANDWIDTHS, dtype=None):
    """Unbiased squared MMD (Gretton et al., 2012, eq. 3) with a sum of RBF kernels:

        MMD^2 = E k(x, x') + E k(y, y') - 2 E k(x, y),  k(a, b) = sum_h exp(-|a - b|^2 / (2 h^2)),

    the first two expectations over distinct pairs. Returns a float; it can be
    slightly negative when the two sets are indistinguishable. The default
    bandwidths suit data of unit scale (the toy sets). ``y`` may be an ``MMDReference``
    (whose kernel term is kept), for scoring many sets against one reference.

    The kernel values are computed in ``dtype``: float32 by default (an MMDReference's own
    otherwise), within 1e-6 of float64 on unit-scale data (measured: under 1e-7 at n = 300 to
    5,000, against a data-vs-data floor spread near 4e-4 at n = 5,000) at less than half the
    cost; ``dtype=torch.float64`` for the last digits.
    """
    if isinstance(y, MMDReference):
        if tuple(bandwidths) != y.bandwidths:
            raise ValueError(f"the reference was built with bandwidths {y.bandwidths}, not {tuple(bandwidths)}")
        if dtype not in (None, y.y.dtype):
            raise ValueError(f"the reference was built with dtype {y.y.dtype}, not {dtype}")
        x, y, kyy = _points(x, "x", y.y.dtype), y.y, y.kyy
    else:
        dtype = dtype or torch.float32
        x, y, kyy = _points(x, "x", dtype), _points(y, "y", dtype), None
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same dimension, got {x.shape[1]} and {y.shape[1]}")
    n, m, nb = x.shape[0], y.shape[0], len(bandwidths)
    if n < 2 or m < 2:
        raise ValueError(f"mmd_rbf needs at least 2 points in each set, got x with {n} and y with {m}")
    kxx = (_kernel_sum(x, x, bandwidths) - n * nb) / (n * (n - 1))
    if kyy is None:
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


def class_fidelity(samples, labels, data, data_labels):
    """Fidelity and diversity of labelled samples against labelled data whose classes are blobs.

    With m_c the mean of class c in the data and s_c the mean of the samples labelled c:
        accuracy = fraction of samples whose nearest m_c is that of their label (fidelity)
        spread   = sqrt(mean ||x - s_y||^2), the RMS distance to their own class's sample mean
                   (diversity), with the data's ('data_spread', about m_c) beside it
        offset   = mean over classes of ||s_c - m_c||, how far the samples of a class moved
    Returns a dict with 'accuracy', 'spread', 'data_spread' and 'offset'.
    """
    samples, data = as_data(samples, "samples"), as_data(data, "data")
    labels, data_labels = torch.as_tensor(labels).long(), torch.as_tensor(data_labels).long()
    classes = range(int(data_labels.max()) + 1)
    means = torch.stack([data[data_labels == c].mean(0) for c in classes])
    present = [c for c in classes if (labels == c).any()]
    sample_means = torch.zeros_like(means)
    for c in present:
        sample_means[c] = samples[labels == c].mean(0)
    nearest = torch.cdist(samples, means).argmin(1)
    spread = (samples - sample_means[labels]).pow(2).sum(1).mean().sqrt()
    data_spread = (data - means[data_labels]).pow(2).sum(1).mean().sqrt()
    offset = (sample_means[present] - means[present]).norm(dim=1).mean()
    return {"accuracy": float((nearest == labels).float().mean()), "spread": float(spread),
            "data_spread": float(data_spread), "offset": float(offset)}
