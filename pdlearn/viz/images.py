"""Images (chapters 5-8): sample grids, grids in a table, denoising strips and nearest
training neighbours."""
import numpy as np
import torch

from .figure import as_numpy, figure

ZOOM = 8  # image pixels are drawn this many times larger, then smoothed to the figure's size


def tile(x, nrow=None, pad=1):
    """Images [n, C, H, W] in [-1, 1] as one array [rows * (H + pad), cols * (W + pad), C]
    in [0, 1], ``nrow`` images per row (default: a square), with a ``pad``-pixel grey gap."""
    from einops import rearrange

    x = torch.as_tensor(as_numpy(x)).clamp(-1, 1).add(1).div(2)
    n = x.shape[0]
    nrow = nrow or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / nrow))
    blank = torch.full((rows * nrow - n, *x.shape[1:]), 0.5)
    x = torch.nn.functional.pad(torch.cat([x, blank]), (0, pad, 0, pad), value=0.5)
    grid = rearrange(x, "(r c) ch h w -> (r h) (c w) ch", c=nrow)
    return grid[:-pad or None, :-pad or None].numpy()


def pixels(x, nrow=None):
    """The grid of ``tile(x, nrow)`` ready for ``imshow``: grey levels [H, W] for one channel,
    RGB otherwise, every pixel repeated ``ZOOM`` times. Drawn with smoothing, every image pixel
    and every gap then comes out the same width on the page; drawn as it is, some would be one
    screen pixel wider than others."""
    grid = tile(x, nrow).repeat(ZOOM, 0).repeat(ZOOM, 1)
    return grid[..., 0] if grid.shape[-1] == 1 else grid


def show(ax, x, nrow=None, title=None):
    """Draw the images x [n, C, H, W] on ``ax`` as one grid (digits: dark ink on white paper);
    returns the AxesImage."""
    ax.imshow(pixels(x, nrow), cmap="gray_r", vmin=0, vmax=1, interpolation="antialiased")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=10)
    return ax.images[-1]


def image_grid(x, nrow=None, title=None, size=3.0):
    """One grid of images [n, C, H, W] in [-1, 1]."""
    fig, ax = figure(size, size)
    show(ax, x, nrow, title)
    fig.tight_layout()
    return fig


def image_grids(sets, nrow=None, size=2.4):
    """Grids side by side: ``sets`` maps a title (for example '16 steps') to images [n, C, H, W]."""
    fig, axes = figure(size * len(sets), size + 0.3, 1, len(sets), squeeze=False)
    for ax, (title, x) in zip(axes[0], sets.items()):
        show(ax, x, nrow, str(title))
    fig.tight_layout()
    return fig


def denoising_strip(traj, n=4, columns=8, size=0.9):
    """The reverse process of ``n`` samples, read left to right: for each sample a row of
    noisy states z_t and, under it, a row of the network's current guess x_hat(z_t), at
    ``columns`` times of a sampler trajectory (``return_trajectory=True``)."""
    z, x_hat, t = as_numpy(traj["z"]), as_numpy(traj["x_hat"]), as_numpy(traj["t"])
    idx = np.unique(np.linspace(0, len(x_hat) - 1, columns).round().astype(int))
    fig, axes = figure(size * len(idx), size * 2 * n, 2 * n, len(idx), squeeze=False)
    for i in range(n):
        for j, k in enumerate(idx):
            for row, images in ((2 * i, z[k]), (2 * i + 1, x_hat[k])):
                show(axes[row][j], images[i:i + 1], 1, f"t = {t[k]:.2f}" if row == 0 else None)
        axes[2 * i][0].text(-0.15, 0.5, r"$z_t$", transform=axes[2 * i][0].transAxes, ha="right", va="center")
        axes[2 * i + 1][0].text(-0.15, 0.5, r"$\hat x$", transform=axes[2 * i + 1][0].transAxes, ha="right",
                                va="center")
    fig.tight_layout(h_pad=0.2, w_pad=0.2)
    return fig


def nearest_neighbours(samples, train, n=8, size=0.9):
    """Samples (top row) above their nearest training images in pixel distance (bottom row),
    each pair titled with the distance: the picture behind a memorisation check."""
    s, r = torch.as_tensor(as_numpy(samples[:n])), torch.as_tensor(as_numpy(train))
    d = torch.cdist(s.flatten(1), r.flatten(1)).min(1)
    fig, axes = figure(size * len(s), 2 * size + 0.4, 2, len(s), squeeze=False)
    for j in range(len(s)):
        show(axes[0][j], s[j:j + 1], 1, f"d = {float(d.values[j]):.1f}")
        show(axes[1][j], r[int(d.indices[j])][None], 1)
    axes[0][0].text(-0.15, 0.5, "sample", transform=axes[0][0].transAxes, ha="right", va="center", fontsize=9)
    axes[1][0].text(-0.15, 0.5, "nearest\ntrain", transform=axes[1][0].transAxes, ha="right", va="center",
                    fontsize=9)
    fig.tight_layout(h_pad=0.2, w_pad=0.2)
    return fig


def image_table(rows, nrow=None, size=1.6):
    """Grids in a table: ``rows`` maps a row title to {column title: images [n, C, H, W]},
    for example {'DDIM': {'4 steps': x4, '1 step': x1}, 'student': {...}}."""
    cols = list(next(iter(rows.values())))
    fig, axes = figure(size * len(cols) + 0.6, (size + 0.3) * len(rows), len(rows), len(cols), squeeze=False)
    for r, (name, sets) in enumerate(rows.items()):
        for c, col in enumerate(cols):
            show(axes[r, c], sets[col], nrow, col if r == 0 else None)
        axes[r, 0].text(-0.08, 0.5, name, transform=axes[r, 0].transAxes, rotation=90, ha="right", va="center",
                        fontsize=10)
    fig.tight_layout()
    return fig
