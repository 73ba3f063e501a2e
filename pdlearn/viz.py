"""Plots for the book, in sections by chapter. Every function returns its matplotlib
figure (or an HTML animation) and never calls ``plt.show()``, so notebooks, scripts and
tests can all use them.

Sections:
    Shared helpers
    Chapter 1: point clouds in 2D (scatter panels, schedule curves, forward-process
               strips, loss curves, trajectories, the animated reverse process)
    Chapter 5: images (sample grids, denoising strips, an animated grid, nearest
               training neighbours)
    Chapters 3-4: distillation (decision regions, quality against a cost)
"""
import matplotlib.pyplot as plt
import numpy as np
import torch

DPI = 80  # small figures keep the executed notebooks light


# ----------------------------------------------------------------------------------------
# Shared helpers
# ----------------------------------------------------------------------------------------

def _np(x):
    """A tensor or array as a float NumPy array on the CPU."""
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def as_html(anim):
    """A matplotlib animation as an HTML/JavaScript player that plays in the rendered book.

    Closes the animation's figure, so the notebook shows the player only, not a stray still.
    """
    from IPython.display import HTML

    html = anim.to_jshtml(default_mode="once")
    plt.close(anim._fig)
    return HTML(html)


# ----------------------------------------------------------------------------------------
# Chapter 1: point clouds in 2D
# ----------------------------------------------------------------------------------------

LIM = 2.6  # the toy sets fit in [-LIM, LIM]^2


def scatter(ax, x, title=None, lim=LIM, s=2.0, color="C0", alpha=0.6):
    """Draw points x [n, 2] on ``ax``: equal aspect, no ticks, a fixed square window."""
    x = _np(x)
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
    fig, axes = plt.subplots(1, len(sets), figsize=(size * len(sets), size), dpi=DPI, squeeze=False)
    for i, (ax, (title, x)) in enumerate(zip(axes[0], sets.items())):
        scatter(ax, x, title, lim=lim, s=s, color=(colors[i] if colors else f"C{i % 10}"))
    fig.tight_layout()
    return fig


def schedule_curves(scheds, n=501, size=3.0):
    """alpha_t, sigma_t (left) and the log-SNR lambda_t (right) against t for each schedule
    of ``scheds`` (a dict label -> schedule)."""
    t = torch.linspace(0, 1, n, dtype=torch.float64)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(2.3 * size, size), dpi=DPI)
    for i, (label, sched) in enumerate(scheds.items()):
        alpha, sigma = sched.alpha_sigma(t)
        ax1.plot(t, alpha, color=f"C{i}", label=rf"{label}: $\alpha_t$")
        ax1.plot(t, sigma, color=f"C{i}", ls="--", label=rf"{label}: $\sigma_t$")
        inner = slice(1, -1)  # lambda is infinite at the ends
        ax2.plot(t[inner], sched.logsnr(t[inner]), color=f"C{i}", label=label)
    ax1.set_xlabel("t")
    ax1.legend(frameon=False, fontsize=8)
    ax2.set_xlabel("t")
    ax2.set_ylabel(r"log-SNR $\lambda_t$")
    ax2.set_ylim(-15, 15)
    ax2.axhline(0, color="0.7", lw=0.5)
    ax2.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def forward_strip(x, sched, times=(0.0, 0.05, 0.1, 0.2, 0.35, 0.5, 1.0), seed=0, lim=3.2, size=2.0):
    """Small multiples of the forward process: z_t = alpha_t x + sigma_t eps at several t,
    one noise draw eps ~ N(0, I) (seeded) shared by all panels, so a point can be followed."""
    from .losses import q_sample

    x = torch.as_tensor(x, dtype=torch.float32)
    eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    fig, axes = plt.subplots(1, len(times), figsize=(size * len(times), size + 0.3), dpi=DPI, squeeze=False)
    for ax, t in zip(axes[0], times):
        t_vec = torch.full((x.shape[0],), float(t), dtype=torch.float64)
        z = q_sample(x.double(), t_vec, sched, eps.double())
        alpha, sigma = sched.alpha_sigma(torch.tensor(float(t), dtype=torch.float64))
        alpha, sigma = abs(float(alpha)), abs(float(sigma))  # no "-0.00" at t = 0
        scatter(ax, z, f"t = {t:g}\n" + rf"$\alpha$={alpha:.2f}, $\sigma$={sigma:.2f}", lim=lim, s=1.5)
    fig.tight_layout()
    return fig


def loss_curve(history, window=100, ax=None, label=None, logy=True):
    """The per-step training loss (faint) and its moving average over ``window`` steps.

    ``history`` is a list of losses or a dict with key 'loss' (a trained network's ``.history``).
    """
    loss = np.asarray(history["loss"] if isinstance(history, dict) else history, dtype=np.float64)
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 3), dpi=DPI)
    else:
        fig = ax.figure
    steps = np.arange(1, len(loss) + 1)
    line, = ax.plot(steps, loss, alpha=0.25, lw=0.5)
    if len(loss) >= window:
        smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1:], smooth, color=line.get_color(), lw=1.5, label=label)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("loss")
    if label:
        ax.legend(frameon=False)
    fig.tight_layout()
    return fig


def trajectories(traj, n_paths=6, data=None, lim=3.2, size=4.0, points=40):
    """Paths of ``n_paths`` samples through a sampler's trajectory (``return_trajectory=True``):
    each path starts at its noise z_1 (open circle) and ends at its sample z_0 (dot),
    drawn over the data (when given) in grey. Long trajectories
    are thinned to about ``points`` states per path (always keeping the first and last)."""
    z = _np(traj["z"])  # [steps + 1, n, 2]
    keep = np.unique(np.linspace(0, len(z) - 1, min(points, len(z))).round().astype(int))
    z = z[keep]
    fig, ax = plt.subplots(figsize=(size, size), dpi=DPI)
    if data is not None:
        scatter(ax, data, lim=lim, s=1.5, color="0.75", alpha=0.6)
    for i in range(min(n_paths, z.shape[1])):
        ax.plot(z[:, i, 0], z[:, i, 1], lw=1.0, color=f"C{i % 10}", alpha=0.8)
        ax.plot(*z[0, i], "o", mfc="white", color=f"C{i % 10}", ms=6)
        ax.plot(*z[-1, i], "o", color=f"C{i % 10}", ms=6, mec="black", mew=0.6)
    ax.set_title("sampling paths: noise (o) to sample (•)", fontsize=10)
    fig.tight_layout()
    return fig


def animate_reverse(traj, frames=30, lim=LIM, size=3.2, data=None, interval=120, html=True):
    """Animate a sampler's trajectory z_1 -> z_0 (``return_trajectory=True``) in ``frames`` frames.

    Frames are spaced evenly in the step index and always include the first and last
    state; the final samples stay on screen a moment at the end. Returns an HTML/JS
    player (``as_html``) that plays in the rendered book, or the FuncAnimation with html=False.
    """
    from matplotlib.animation import FuncAnimation

    z, t = _np(traj["z"]), _np(traj["t"])
    idx = np.unique(np.linspace(0, len(z) - 1, frames).round().astype(int))
    idx = np.concatenate([idx, [idx[-1]] * 4])  # hold the result
    fig, ax = plt.subplots(figsize=(size, size), dpi=DPI)
    if data is not None:
        scatter(ax, data, lim=lim, s=0.5, color="0.85", alpha=0.6)
    scatter(ax, z[0], lim=lim, s=1.0)
    points = ax.collections[-1]
    title = ax.set_title("", fontsize=10)

    def draw(k):
        points.set_offsets(z[idx[k]])
        title.set_text(f"t = {t[idx[k]]:.3f}")
        return points, title

    draw(0)
    anim = FuncAnimation(fig, draw, frames=len(idx), interval=interval, blit=False)
    return as_html(anim) if html else anim


# ----------------------------------------------------------------------------------------
# Chapter 2: DDIM (quality against steps, ODE paths, inversion, sampler grids)
# ----------------------------------------------------------------------------------------

def _floor_band(ax, curves, floor):
    """Draw the data floor (mean, std) as a grey band from mean - 2 std to mean + 2 std; return
    the bottom of the log axis: a fifth of the band's top, or half the smallest positive value."""
    values = np.concatenate([np.asarray(v, dtype=np.float64) for v in curves])
    top = floor[0] + 2 * floor[1] if floor is not None else None
    bottom = top / 5 if top is not None and top > 0 else max(values[values > 0].min() / 2, 1e-12)
    if floor is not None:
        ax.axhspan(max(bottom, floor[0] - 2 * floor[1]), top, color="0.85", label="data floor (mean ± 2 sd)")
    return bottom


def _finish_quality(fig, ax, xlabel, ylabel, title):
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def quality_vs_steps(steps, curves, floor=None, ylabel="squared MMD", ax=None, title=None):
    """A sample-quality metric against the number of sampling steps, one line per sampler.

    ``curves`` maps a sampler name to its values at ``steps`` (both log axes).
    ``floor`` = (mean, std) of the metric's data-vs-data floor, drawn as a grey band
    up to mean + 2 std: a point inside it cannot be told apart from data at this n.
    Values below the band's bottom (MMD can be slightly negative) are drawn at the bottom.
    """
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.8, 3.4), dpi=DPI)
    else:
        fig = ax.figure
    bottom = _floor_band(ax, [v for v in curves.values()], floor)
    markers = "osD^v<>"
    for i, (name, v) in enumerate(curves.items()):  # open markers shrinking line by line: equal curves stay visible
        ax.plot(steps, np.maximum(np.asarray(v, dtype=np.float64), bottom), marker=markers[i % len(markers)],
                ms=max(8 - 2 * i, 3), mfc="none", lw=max(2.4 - 0.7 * i, 0.8), alpha=0.9, label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(bottom=bottom * 0.9)
    ax.set_xticks(steps)
    ax.set_xticklabels([str(s) for s in steps])
    ax.minorticks_off()
    return _finish_quality(fig, ax, "sampling steps", ylabel, title)


def ode_paths(fine, coarse=None, n_paths=10, data=None, lim=LIM, size=3.6):
    """Two panels for deterministic sampling paths (trajectories from ``return_trajectory=True``).

    Left: z_t along the many-step trajectory ``fine`` (solid curves, noise marked o), with
    the few-step trajectory ``coarse`` from the same noise drawn as dashed straight
    segments in the same colour. Right: the network's prediction x_hat(z_t, t) along
    ``fine``, which starts at the data mean for every path and fans out to the samples.
    """
    z, xh = _np(fine["z"]), _np(fine["x_hat"])
    fig, axes = plt.subplots(1, 2, figsize=(2 * size, size), dpi=DPI)
    for ax, paths, title in ((axes[0], z, r"paths of $z_t$"), (axes[1], xh, r"paths of $\hat x(z_t, t)$")):
        scatter(ax, data if data is not None else paths[-1], lim=lim, s=0.5, color="0.85", alpha=0.6)
        for i in range(min(n_paths, paths.shape[1])):
            ax.plot(paths[:, i, 0], paths[:, i, 1], lw=1.0, color=f"C{i % 10}", alpha=0.8)
            ax.plot(*paths[-1, i], "o", color=f"C{i % 10}", ms=3)
        ax.set_title(title, fontsize=10)
    for i in range(min(n_paths, z.shape[1])):
        axes[0].plot(*z[0, i], "o", mfc="none", color=f"C{i % 10}", ms=5)
    if coarse is not None:
        zc = _np(coarse["z"])
        for i in range(min(n_paths, zc.shape[1])):
            axes[0].plot(zc[:, i, 0], zc[:, i, 1], "--", lw=1.0, color=f"C{i % 10}", marker="s", ms=3, mfc="white")
        axes[0].set_title(rf"paths of $z_t$; {len(zc) - 1}-step DDIM dashed", fontsize=10)
    fig.tight_layout()
    return fig


def labelled_panels(sets, labels, lim=LIM, size=2.8, s=1.5, colors=("C0", "C3")):
    """One scatter panel per entry of ``sets`` (title -> points [n, 2]), every panel colouring
    point i by ``labels[i]`` (e.g. which moon it came from), so points can be followed across panels."""
    labels = np.asarray(_np(labels), dtype=int)
    palette = np.array([colors[k % len(colors)] for k in range(labels.max() + 1)])
    fig, axes = plt.subplots(1, len(sets), figsize=(size * len(sets), size), dpi=DPI, squeeze=False)
    for ax, (title, x) in zip(axes[0], sets.items()):
        scatter(ax, x, title, lim=lim, s=s, color=palette[labels], alpha=0.6)
    fig.tight_layout()
    return fig


def interpolation_paths(noise_path, data_path, data=None, lim=3.2, size=3.2, cmap="viridis"):
    """A path in noise space and its image in data space, coloured by position along the path
    (dark: start, light: end), so one can see where a smooth path of noises lands."""
    noise_path, data_path = _np(noise_path), _np(data_path)
    colors = plt.get_cmap(cmap)(np.linspace(0, 1, len(noise_path)))
    fig, axes = plt.subplots(1, 2, figsize=(2 * size, size), dpi=DPI)
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
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(size * len(cols), size * len(rows)), dpi=DPI,
                             squeeze=False)
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


# ----------------------------------------------------------------------------------------
# Chapter 5: images (sample grids, denoising strips, the animated reverse process of a
# grid, nearest training neighbours)
# ----------------------------------------------------------------------------------------

def tile(x, nrow=None, pad=1):
    """Images [n, C, H, W] in [-1, 1] as one array [rows * (H + pad), cols * (W + pad), C]
    in [0, 1], ``nrow`` images per row (default: a square), with a ``pad``-pixel grey gap."""
    from einops import rearrange

    x = torch.as_tensor(_np(x)).clamp(-1, 1).add(1).div(2)
    n = x.shape[0]
    nrow = nrow or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / nrow))
    blank = torch.full((rows * nrow - n, *x.shape[1:]), 0.5)
    x = torch.nn.functional.pad(torch.cat([x, blank]), (0, pad, 0, pad), value=0.5)
    grid = rearrange(x, "(r c) ch h w -> (r h) (c w) ch", c=nrow)
    return grid[:-pad or None, :-pad or None].numpy()


def _show(ax, x, nrow=None, title=None):
    grid = tile(x, nrow)
    if grid.shape[-1] == 1:  # digits: dark ink on white paper
        ax.imshow(grid[..., 0], cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(grid, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=10)
    return ax.images[-1]


def image_grid(x, nrow=None, title=None, size=3.0):
    """One grid of images [n, C, H, W] in [-1, 1]."""
    fig, ax = plt.subplots(figsize=(size, size), dpi=DPI)
    _show(ax, x, nrow, title)
    fig.tight_layout()
    return fig


def image_grids(sets, nrow=None, size=2.4):
    """Grids side by side: ``sets`` maps a title (for example '16 steps') to images [n, C, H, W]."""
    fig, axes = plt.subplots(1, len(sets), figsize=(size * len(sets), size + 0.3), dpi=DPI, squeeze=False)
    for ax, (title, x) in zip(axes[0], sets.items()):
        _show(ax, x, nrow, str(title))
    fig.tight_layout()
    return fig


def denoising_strip(traj, n=4, columns=8, size=0.9):
    """The reverse process of ``n`` samples, read left to right: for each sample a row of
    noisy states z_t and, under it, a row of the network's current guess x_hat(z_t), at
    ``columns`` times of a sampler trajectory (``return_trajectory=True``)."""
    z, x_hat, t = _np(traj["z"]), _np(traj["x_hat"]), _np(traj["t"])
    idx = np.unique(np.linspace(0, len(x_hat) - 1, columns).round().astype(int))
    fig, axes = plt.subplots(2 * n, len(idx), figsize=(size * len(idx), size * 2 * n), dpi=DPI, squeeze=False)
    for i in range(n):
        for j, k in enumerate(idx):
            for row, images in ((2 * i, z[k]), (2 * i + 1, x_hat[k])):
                _show(axes[row][j], images[i:i + 1], 1, f"t = {t[k]:.2f}" if row == 0 else None)
        axes[2 * i][0].text(-0.15, 0.5, r"$z_t$", transform=axes[2 * i][0].transAxes, ha="right", va="center")
        axes[2 * i + 1][0].text(-0.15, 0.5, r"$\hat x$", transform=axes[2 * i + 1][0].transAxes, ha="right",
                                va="center")
    fig.tight_layout(h_pad=0.2, w_pad=0.2)
    return fig


def animate_grid(traj, frames=30, nrow=None, show="z", size=3.0, interval=120, html=True):
    """Animate a grid of samples through a sampler trajectory (``return_trajectory=True``):
    ``show='z'`` the states z_t from noise to image, ``'x_hat'`` the network's guesses.
    Frames are spread evenly over the steps; the result holds a moment at the end."""
    from matplotlib.animation import FuncAnimation

    states, t = _np(traj[show]), _np(traj["t"])
    times = t if show == "z" else t[:-1]
    idx = np.unique(np.linspace(0, len(states) - 1, frames).round().astype(int))
    idx = np.concatenate([idx, [idx[-1]] * 4])
    fig, ax = plt.subplots(figsize=(size, size + 0.3), dpi=DPI)
    image = _show(ax, states[0], nrow, "")

    def draw(k):
        grid = tile(states[idx[k]], nrow)
        image.set_data(grid[..., 0] if grid.shape[-1] == 1 else grid)
        ax.set_title(f"t = {times[idx[k]]:.3f}", fontsize=10)
        return (image,)

    draw(0)
    anim = FuncAnimation(fig, draw, frames=len(idx), interval=interval, blit=False)
    return as_html(anim) if html else anim


def nearest_neighbours(samples, train, n=8, size=0.9):
    """Samples (top row) above their nearest training images in pixel distance (bottom row),
    each pair titled with the distance: the picture behind a memorisation check."""
    s, r = torch.as_tensor(_np(samples[:n])), torch.as_tensor(_np(train))
    d = torch.cdist(s.flatten(1), r.flatten(1)).min(1)
    fig, axes = plt.subplots(2, len(s), figsize=(size * len(s), 2 * size + 0.4), dpi=DPI, squeeze=False)
    for j in range(len(s)):
        _show(axes[0][j], s[j:j + 1], 1, f"d = {float(d.values[j]):.1f}")
        _show(axes[1][j], r[int(d.indices[j])][None], 1)
    axes[0][0].text(-0.15, 0.5, "sample", transform=axes[0][0].transAxes, ha="right", va="center", fontsize=9)
    axes[1][0].text(-0.15, 0.5, "nearest\ntrain", transform=axes[1][0].transAxes, ha="right", va="center",
                    fontsize=9)
    fig.tight_layout(h_pad=0.2, w_pad=0.2)
    return fig


def distance_histograms(result, bins=30, ax=None):
    """Histograms of nearest-training-image distances from ``pdl.metrics.memorisation``:
    samples against held-out digits, with the copy threshold marked."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.8, 3.0), dpi=DPI)
    else:
        fig = ax.figure
    a, b = _np(result["sample_distances"]), _np(result["heldout_distances"])
    edges = np.linspace(0, max(a.max(), b.max()) * 1.02, bins + 1)
    ax.hist(b, edges, alpha=0.5, density=True, label="held-out digits")
    ax.hist(a, edges, alpha=0.5, density=True, label="samples")
    ax.axvline(result["threshold"], color="k", lw=1, ls="--", label="copy threshold")
    ax.set_xlabel("distance to the nearest training image")
    ax.set_ylabel("density")
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------
# Chapters 3-4: distillation (decision regions, quality against a cost)
# ----------------------------------------------------------------------------------------

@torch.no_grad()
def decision_regions(classifiers, points=None, labels=None, lim=LIM, size=2.6, res=200, marked=None):
    """One panel per classifier (a dict title -> module mapping points [n, 2] to class logits):
    the predicted class over the square, shaded, with ``points`` coloured by ``labels`` on top.
    ``marked`` (points [m, 2]) are drawn as black-edged circles, e.g. a student's few labels."""
    g = torch.linspace(-lim, lim, res)
    grid = torch.stack(torch.meshgrid(g, g, indexing="xy"), -1).reshape(-1, 2)
    fig, axes = plt.subplots(1, len(classifiers), figsize=(size * len(classifiers), size), dpi=DPI, squeeze=False)
    for ax, (title, net) in zip(axes[0], classifiers.items()):
        cls = _np(net(grid).argmax(-1)).reshape(res, res)
        ax.imshow(cls, origin="lower", extent=(-lim, lim, -lim, lim), cmap="coolwarm", alpha=0.25,
                  interpolation="nearest", vmin=0, vmax=max(1, cls.max()))
        if points is not None:
            colors = np.array(["C0", "C3"])[np.asarray(_np(labels), dtype=int) % 2]
            scatter(ax, points, lim=lim, s=1.0, color=colors, alpha=0.4)
        else:
            scatter(ax, np.zeros((0, 2)), lim=lim)
        if marked is not None:
            m = _np(marked)
            ax.scatter(m[:, 0], m[:, 1], s=18, facecolors="none", edgecolors="k", linewidths=1.0)
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def quality_vs_cost(curves, floor=None, xlabel="cost", ylabel="squared MMD", ax=None, title=None):
    """A quality metric against a cost (both log axes), one line per method: ``curves`` maps a
    name to (costs, values). ``floor`` = (mean, std) draws the data floor band up to mean + 2 std;
    values below the band's bottom are drawn at the bottom."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.8, 3.4), dpi=DPI)
    else:
        fig = ax.figure
    bottom = _floor_band(ax, [v for _, v in curves.values()], floor)
    markers = "osD^v<>"
    for i, (name, (c, v)) in enumerate(curves.items()):
        ax.plot(c, np.maximum(np.asarray(v, dtype=np.float64), bottom), marker=markers[i % len(markers)], mfc="none",
                label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(bottom=bottom * 0.9)
    return _finish_quality(fig, ax, xlabel, ylabel, title)


def image_table(rows, nrow=None, size=1.6):
    """Grids in a table: ``rows`` maps a row title to {column title: images [n, C, H, W]},
    for example {'DDIM': {'4 steps': x4, '1 step': x1}, 'student': {...}}."""
    cols = list(next(iter(rows.values())))
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(size * len(cols) + 0.6, (size + 0.3) * len(rows)),
                             dpi=DPI, squeeze=False)
    for r, (name, sets) in enumerate(rows.items()):
        for c, col in enumerate(cols):
            _show(axes[r, c], sets[col], nrow, col if r == 0 else None)
        axes[r, 0].text(-0.08, 0.5, name, transform=axes[r, 0].transAxes, rotation=90, ha="right", va="center",
                        fontsize=10)
    fig.tight_layout()
    return fig
