"""Animations that play in the rendered book: a point cloud (chapters 1-2) or a grid of
images (chapter 5) through a sampler's trajectory, as an HTML/JavaScript player."""
import base64
import io
import re

import matplotlib.pyplot as plt
import numpy as np

from .figure import as_numpy, figure
from .images import pixels
from .images import show as show_images
from .points import LIM, scatter

COLORS = 32  # colours per stored frame: the plots have few, and 32 look the same as all of them
GRAYS = 16  # grey levels per stored frame of an image grid: a noisy frame of 64 digits then
            # stores in 16 kB, not 22 kB (at 32 levels), and the digits look the same
_FRAME = re.compile(r"data:image/png;base64,([A-Za-z0-9+/=\\\n]+)")


def _fewer_colours(match, colors):
    """One embedded PNG frame, re-encoded with an adaptive palette of ``colors`` colours."""
    from PIL import Image

    png = base64.b64decode(match.group(1).replace("\\\n", "").replace("\n", ""))
    image = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=colors)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode("ascii")


def as_html(anim, colors=COLORS):
    """A matplotlib animation as an HTML/JavaScript player (matplotlib's ``to_jshtml``) that
    plays in the rendered book and stops on the last frame.

    Each frame is stored as a PNG of at most ``colors`` colours, a third to a half of the full
    colour size. Closes the animation's figure, so the notebook shows the player only, not a
    stray still.
    """
    from IPython.display import HTML

    html = anim.to_jshtml(default_mode="once")
    plt.close(anim._fig)
    return HTML(_FRAME.sub(lambda m: _fewer_colours(m, colors), html))


def _frames(count, frames):
    """``frames`` state indices spread evenly over ``count`` states, first and last included."""
    return np.unique(np.linspace(0, count - 1, frames).round().astype(int))


def animate_reverse(traj, frames=30, lim=LIM, size=3.2, data=None, interval=120, html=True):
    """Animate a sampler's trajectory z_1 -> z_0 (``return_trajectory=True``) in ``frames`` frames.

    Frames are spaced evenly in the step index and always include the first and last state;
    the player stops on the final samples. Returns an HTML/JS player (``as_html``) that plays in
    the rendered book, or the FuncAnimation with html=False.
    """
    from matplotlib.animation import FuncAnimation

    z, t = as_numpy(traj["z"]), as_numpy(traj["t"])
    idx = _frames(len(z), frames)
    fig, ax = figure(size, size)
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


def animate_grid(traj, frames=30, nrow=None, show="z", size=3.0, interval=120, html=True, colors=GRAYS):
    """Animate a grid of samples through a sampler trajectory (``return_trajectory=True``):
    ``show='z'`` the states z_t from noise to image, ``'x_hat'`` the network's guesses.
    Frames are spread evenly over the steps, each stored with ``colors`` levels (``as_html``);
    the player stops on the last one."""
    from matplotlib.animation import FuncAnimation

    states, t = as_numpy(traj[show]), as_numpy(traj["t"])
    times = t if show == "z" else t[:-1]
    idx = _frames(len(states), frames)
    fig, ax = figure(size, size + 0.3)
    image = show_images(ax, states[0], nrow)

    def draw(k):
        image.set_data(pixels(states[idx[k]], nrow))
        ax.set_title(f"t = {times[idx[k]]:.3f}", fontsize=10)
        return (image,)

    draw(0)
    anim = FuncAnimation(fig, draw, frames=len(idx), interval=interval, blit=False)
    return as_html(anim, colors) if html else anim

