"""Point clouds in 2D (chapters 1-4 and 7): scatter panels, the forward process, sampling
paths, sampler grids and a classifier's decision regions."""
import matplotlib.pyplot as plt
import numpy as np
import torch

from .figure import as_numpy, figure

LIM = 2.6  # the toy sets fit in [-LIM, LIM]^2


def scatter(ax, x, title=None, lim=LIM, s=2.0, color="C0", alpha=0.6):
    """Draw points x [n, 2] on ``ax``: equal aspect, no ticks, a fixed square window."""
    x = as_numpy(x)
    ax.scatter(x[:, 0], x[:, 1], s=s, color=color, alpha=alpha, linewidths=0, rasterized=True)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def scatter_panels(sets, lim=LIM, size=2.6, s=2.0, colors=None):
    """One scatter panel per entry of ``sets`` (a dict title -> points [n, 2]), side by side."""
    fig, axes = figure(size * len(sets), size, 1, len(sets), squeeze=False)
    for i, (ax, (title, x)) in enumerate(zip(axes[0], sets.items())):
        scatter(ax, x, title, lim=lim, s=s, color=(colors[i] if colors else f"C{i % 10}"))
    fig.tight_layout()
    return fig


def forward_strip(x, sched, times=(0.0, 0.05, 0.1, 0.2, 0.35, 0.5, 1.0), seed=0, lim=3.2, size=2.0):
    """Small multiples of the forward process: z_t = alpha_t x + sigma_t eps at several t,
    one noise draw eps ~ N(0, I) (seeded) shared by all panels, so a point can be followed."""
    from ..losses import q_sample

    x = torch.as_tensor(x, dtype=torch.float32)
    eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    fig, axes = figure(size * len(times), size + 0.3, 1, len(times), squeeze=False)
    for ax, t in zip(axes[0], times):
        t_vec = torch.full((x.shape[0],), float(t), dtype=torch.float64)
        z = q_sample(x.double(), t_vec, sched, eps.double())
        alpha, sigma = sched.alpha_sigma(torch.tensor(float(t), dtype=torch.float64))
        alpha, sigma = abs(float(alpha)), abs(float(sigma))  # no "-0.00" at t = 0
        scatter(ax, z, f"t = {t:g}\n" + rf"$\alpha$={alpha:.2f}, $\sigma$={sigma:.2f}", lim=lim, s=1.5)
        ax.title.set_fontsize(8)
    fig.tight_layout()
    return fig


def trajectories(traj, n_paths=6, data=None, lim=3.2, size=4.0, points=40):
    """Paths of ``n_paths`` samples through a sampler's trajectory (``return_trajectory=True``):
    each path starts at its noise z_1 (open circle) and ends at its sample z_0 (dot),
    drawn over the data (when given) in grey. Long trajectories
    are thinned to about ``points`` states per path (always keeping the first and last)."""
    z = as_numpy(traj["z"])  # [steps + 1, n, 2]
    keep = np.unique(np.linspace(0, len(z) - 1, min(points, len(z))).round().astype(int))
    z = z[keep]
    fig, ax = figure(size, size)
    if data is not None:
        scatter(ax, data, lim=lim, s=1.5, color="0.75", alpha=0.6)
    for i in range(min(n_paths, z.shape[1])):
        ax.plot(z[:, i, 0], z[:, i, 1], lw=1.0, color=f"C{i % 10}", alpha=0.8)
        ax.plot(*z[0, i], "o", mfc="white", color=f"C{i % 10}", ms=6)
        ax.plot(*z[-1, i], "o", color=f"C{i % 10}", ms=6, mec="black", mew=0.6)
    ax.set_title("sampling paths: noise (o) to sample (•)", fontsize=10)
    fig.tight_layout()
    return fig


def ode_paths(fine, coarse=None, n_paths=10, data=None, lim=LIM, size=3.6):
    """Two panels for deterministic sampling paths (trajectories from ``return_trajectory=True``).

    Left: z_t along the many-step trajectory ``fine`` (solid curves, noise marked o), with
    the few-step trajectory ``coarse`` from the same noise drawn as dashed straight
    segments in the same colour. Right: the network's prediction x_hat(z_t, t) along
    ``fine``, which starts at the data mean for every path and fans out to the samples.
    """
    z, xh = as_numpy(fine["z"]), as_numpy(fine["x_hat"])
    fig, axes = figure(2 * size, size, 1, 2)
    for ax, paths, title in ((axes[0], z, r"paths of $z_t$"), (axes[1], xh, r"paths of $\hat x(z_t, t)$")):
        scatter(ax, data if data is not None else paths[-1], lim=lim, s=0.5, color="0.85", alpha=0.6)
        for i in range(min(n_paths, paths.shape[1])):
            ax.plot(paths[:, i, 0], paths[:, i, 1], lw=1.0, color=f"C{i % 10}", alpha=0.8)
            ax.plot(*paths[-1, i], "o", color=f"C{i % 10}", ms=3)
        ax.set_title(title, fontsize=10)
    for i in range(min(n_paths, z.shape[1])):
        axes[0].plot(*z[0, i], "o", mfc="none", color=f"C{i % 10}", ms=5)
    if coarse is not None:
        zc = as_numpy(coarse["z"])
        for i in range(min(n_paths, zc.shape[1])):
            axes[0].plot(zc[:, i, 0], zc[:, i, 1], "--", lw=1.0, color=f"C{i % 10}", marker="s", ms=3, mfc="white")
        axes[0].set_title(rf"paths of $z_t$; {len(zc) - 1}-step DDIM dashed", fontsize=10)
    fig.tight_layout()
    return fig


def labelled_panels(sets, labels, lim=LIM, size=2.8, s=1.5, colors=("C0", "C3")):
    """One scatter panel per entry of ``sets`` (title -> points [n, 2]), every panel colouring
    point i by ``labels[i]`` (e.g. which moon it came from), so points can be followed across panels."""
    labels = np.asarray(as_numpy(labels), dtype=int)
    palette = np.array([colors[k % len(colors)] for k in range(labels.max() + 1)])
    fig, axes = figure(size * len(sets), size, 1, len(sets), squeeze=False)
    for ax, (title, x) in zip(axes[0], sets.items()):
        scatter(ax, x, title, lim=lim, s=s, color=palette[labels], alpha=0.6)
    fig.tight_layout()
    return fig


def interpolation_paths(noise_path, data_path, data=None, lim=3.2, size=3.2, cmap="viridis"):
    """A path in noise space and its image in data space, coloured by position along the path
    (dark: start, light: end), so one can see where a smooth path of noises lands."""
    noise_path, data_path = as_numpy(noise_path), as_numpy(data_path)
    colors = plt.get_cmap(cmap)(np.linspace(0, 1, len(noise_path)))
    fig, axes = figure(2 * size, size, 1, 2)
    for ax, path, title in ((axes[0], noise_path, r"noise $z_1$"), (axes[1], data_path, r"sample $z_0$")):
        if data is not None and ax is axes[1]:
            scatter(ax, data, lim=lim, s=0.5, color="0.85", alpha=0.6)
        else:
            scatter(ax, np.zeros((0, 2)), lim=lim)
        ax.plot(path[:, 0], path[:, 1], lw=0.5, color="0.6")
        ax.scatter(path[:, 0], path[:, 1], c=colors, s=10, zorder=3)
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def sampler_grid(samples, data=None, lim=LIM, size=2.0, s=0.6):
    """Small multiples of samples: ``samples`` maps (row label, column label) -> points [n, 2];
    rows and columns appear in the order their labels first occur (for example eta x steps)."""
    rows = list(dict.fromkeys(r for r, _ in samples))
    cols = list(dict.fromkeys(c for _, c in samples))
    fig, axes = figure(size * len(cols), size * len(rows), len(rows), len(cols), squeeze=False)
    for (r, c), x in samples.items():
        ax = axes[rows.index(r)][cols.index(c)]
        if data is not None:
            scatter(ax, data, lim=lim, s=s, color="0.85", alpha=0.5)
        scatter(ax, x, lim=lim, s=s)
        if rows.index(r) == 0:
            ax.set_title(str(c), fontsize=10)
        if cols.index(c) == 0:
            ax.set_ylabel(str(r), fontsize=10)
    fig.tight_layout()
    return fig


@torch.no_grad()
def decision_regions(classifiers, points=None, labels=None, lim=LIM, size=2.6, res=200, marked=None):
    """One panel per classifier (a dict title -> module mapping points [n, 2] to class logits):
    the predicted class over the square, shaded, with ``points`` coloured by ``labels`` on top.
    ``marked`` (points [m, 2]) are drawn as black-edged circles, e.g. a student's few labels."""
    g = torch.linspace(-lim, lim, res)
    grid = torch.stack(torch.meshgrid(g, g, indexing="xy"), -1).reshape(-1, 2)
    fig, axes = figure(size * len(classifiers), size, 1, len(classifiers), squeeze=False)
    for ax, (title, net) in zip(axes[0], classifiers.items()):
        cls = as_numpy(net(grid).argmax(-1)).reshape(res, res)
        ax.imshow(cls, origin="lower", extent=(-lim, lim, -lim, lim), cmap="coolwarm", alpha=0.25,
                  interpolation="nearest", vmin=0, vmax=max(1, cls.max()))
        if points is not None:
            colors = np.array(["C0", "C3"])[np.asarray(as_numpy(labels), dtype=int) % 2]
            scatter(ax, points, lim=lim, s=1.0, color=colors, alpha=0.4)
        else:
            scatter(ax, np.zeros((0, 2)), lim=lim)
        if marked is not None:
            m = as_numpy(marked)
            ax.scatter(m[:, 0], m[:, 1], s=18, facecolors="none", edgecolors="k", linewidths=1.0)
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig
