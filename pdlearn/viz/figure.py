"""The one figure helper: every plot of the book gets its figure here, at one resolution and
never wider than the book's column, so no figure is shown shrunk on the page."""
import matplotlib.pyplot as plt
import numpy as np
import torch

DPI = 100  # pixels per inch of every stored figure: 10 pt text is 14 px, beside the page's 16 px
WIDTH = 6.8  # inches: at DPI, the widest figure that the book's column (688 px at 1280 px) shows at full size


def figure(width, height, rows=1, cols=1, ax=None, **kwargs):
    """``(fig, axes)`` for a plot: a new figure of ``rows`` x ``cols`` panels, ``width`` x ``height``
    inches in all, at ``DPI``; a figure wider than ``WIDTH`` is scaled down whole (both sides), so
    it fits the column at full size. Keyword arguments go to ``plt.subplots`` (``squeeze=False``...).

    Given ``ax``, returns ``ax``'s figure and ``ax`` itself instead, so that a plot can also be
    drawn into one panel of a larger figure.
    """
    if ax is not None:
        return ax.figure, ax
    scale = min(1.0, WIDTH / width)
    return plt.subplots(rows, cols, figsize=(width * scale, height * scale), dpi=DPI, **kwargs)


def legend(ax, **kwargs):
    """A legend beside ``ax`` (to the right, top-aligned), where it cannot cover a curve.
    Keyword arguments go to ``ax.legend`` (``ncol=2``, ``title=...``)."""
    options = dict(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False, fontsize=8)
    return ax.legend(**{**options, **kwargs})


def as_numpy(x):
    """A tensor or array as a float NumPy array on the CPU."""
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float32)
