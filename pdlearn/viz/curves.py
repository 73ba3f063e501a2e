"""Curves against a number (chapters 1-8): noise schedules, training losses, sample quality
against steps or cost with the data floor as a band, and distance histograms."""
import numpy as np
import torch

from .figure import as_numpy, figure, legend


def schedule_curves(scheds, n=501, size=3.0):
    """alpha_t (solid) and sigma_t (dashed) against t (left) and the log-SNR lambda_t (right),
    one colour per schedule of ``scheds`` (a dict label -> schedule)."""
    t = torch.linspace(0, 1, n, dtype=torch.float64)
    fig, (ax1, ax2) = figure(2.3 * size, size, 1, 2)
    for i, (label, sched) in enumerate(scheds.items()):
        alpha, sigma = sched.alpha_sigma(t)
        ax1.plot(t, alpha, color=f"C{i}")
        ax1.plot(t, sigma, color=f"C{i}", ls="--")
        inner = slice(1, -1)  # lambda is infinite at the ends
        ax2.plot(t[inner], sched.logsnr(t[inner]), color=f"C{i}", label=label)
    ax1.set_xlabel("t")
    ax1.set_ylabel(r"$\alpha_t$ (solid), $\sigma_t$ (dashed)")
    ax2.set_xlabel("t")
    ax2.set_ylabel(r"log-SNR $\lambda_t$")
    ax2.set_ylim(-15, 15)
    ax2.axhline(0, color="0.7", lw=0.5)
    ax2.legend(frameon=False, fontsize=8, loc="upper right")  # the curves fall from the top left
    fig.tight_layout()
    return fig


def loss_curve(history, window=100, ax=None, label=None, logy=True):
    """The per-step training loss (faint) and its moving average over ``window`` steps.

    ``history`` is a list of losses or a dict with key 'loss' (a trained network's ``.history``).
    A ``label`` goes in a legend beside the axes, where the faint band cannot hide under it.
    """
    loss = np.asarray(history["loss"] if isinstance(history, dict) else history, dtype=np.float64)
    fig, ax = figure(4.8, 3.0, ax=ax)
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
        legend(ax)
    fig.tight_layout()
    return fig


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
    fig, ax = figure(4.8, 3.4, ax=ax)
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


def quality_vs_cost(curves, floor=None, xlabel="cost", ylabel="squared MMD", ax=None, title=None):
    """A quality metric against a cost (both log axes), one line per method: ``curves`` maps a
    name to (costs, values). ``floor`` = (mean, std) draws the data floor band up to mean + 2 std;
    values below the band's bottom are drawn at the bottom."""
    fig, ax = figure(4.8, 3.4, ax=ax)
    bottom = _floor_band(ax, [v for _, v in curves.values()], floor)
    markers = "osD^v<>"
    for i, (name, (c, v)) in enumerate(curves.items()):
        ax.plot(c, np.maximum(np.asarray(v, dtype=np.float64), bottom), marker=markers[i % len(markers)], mfc="none",
                label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(bottom=bottom * 0.9)
    return _finish_quality(fig, ax, xlabel, ylabel, title)


def distance_histograms(result, bins=30, ax=None):
    """Histograms of nearest-training-image distances from ``pdl.metrics.memorisation``:
    samples against held-out digits, with the copy threshold marked."""
    fig, ax = figure(4.8, 3.0, ax=ax)
    a, b = as_numpy(result["sample_distances"]), as_numpy(result["heldout_distances"])
    edges = np.linspace(0, max(a.max(), b.max()) * 1.02, bins + 1)
    ax.hist(b, edges, alpha=0.5, density=True, label="held-out digits")
    ax.hist(a, edges, alpha=0.5, density=True, label="samples")
    ax.axvline(result["threshold"], color="k", lw=1, ls="--", label="copy threshold")
    ax.set_xlabel("distance to the nearest training image")
    ax.set_ylabel("density")
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig
