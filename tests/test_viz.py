"""Plots and explorers run headless and draw what they say; figures fit the book's column;
animations are light; ``import pdlearn`` does not load matplotlib; every plot a chapter calls exists."""
import base64
import io
import re
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.animation import FuncAnimation  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import pdlearn as pdl  # noqa: E402
from pdlearn import viz  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def small_trajectory(n=40, steps=12):
    torch.manual_seed(0)
    net = pdl.models.MLPDenoiser(dim=2, width=16, depth=1).eval()
    return pdl.ddpm_sample(net, pdl.CosineSchedule(), n=n, steps=steps, seed=0, return_trajectory=True)


def test_scatter_panels_one_panel_per_set():
    sets = {name: pdl.data.toy(name, 200, seed=0) for name in ("moons", "rings", "checkerboard")}
    fig = viz.scatter_panels(sets)
    assert [ax.get_title() for ax in fig.axes] == list(sets)
    offsets = fig.axes[1].collections[0].get_offsets()
    np.testing.assert_allclose(offsets, sets["rings"].numpy(), rtol=1e-6)


def test_forward_strip_shows_z_t_with_one_shared_noise():
    x = pdl.data.toy("moons", 300, seed=0)
    sched = pdl.LinearBetaSchedule()
    fig = viz.forward_strip(x, sched, times=(0.0, 0.3, 1.0), seed=5)
    assert len(fig.axes) == 3
    eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(5))
    expected = pdl.q_sample(x.double(), torch.full((300,), 0.3, dtype=torch.float64), sched, eps.double())
    drawn = np.asarray(fig.axes[1].collections[0].get_offsets())
    inside = lambda p: p[(np.abs(p) <= 3.2).all(1)]  # what shows in the window (points beyond may be left out)
    np.testing.assert_allclose(inside(drawn), inside(expected.numpy()), atol=1e-5)
    np.testing.assert_allclose(fig.axes[0].collections[0].get_offsets(), x.numpy(), atol=1e-6)  # t = 0 is the data


def test_loss_curve_draws_raw_and_smoothed():
    fig = viz.loss_curve({"loss": list(np.linspace(2, 1, 500))}, window=100)
    raw, smooth = fig.axes[0].lines
    assert len(raw.get_xdata()) == 500 and len(smooth.get_xdata()) == 401


def test_trajectories_and_animation():
    z, traj = small_trajectory()
    fig = viz.trajectories(traj, n_paths=5, data=pdl.data.toy("moons", 100, seed=0))
    paths = [line for line in fig.axes[0].lines if len(line.get_xdata()) == 13]
    assert len(paths) == 5
    np.testing.assert_allclose(paths[0].get_xdata()[-1], z[0, 0].item(), rtol=1e-6)
    anim = viz.animate_reverse(traj, frames=5, html=False)
    assert isinstance(anim, FuncAnimation)
    html = viz.as_html(anim).data
    assert "<script" in html and html.count("data:image/png;base64") == 5  # the player stops on the last one


def test_forward_explorer_builds_a_slider():
    explorer = pdl.widgets.forward_explorer(pdl.data.toy("moons", 200, seed=0), pdl.LinearBetaSchedule())
    slider = explorer.children[0]
    assert slider.description == "t" and slider.min == 0.0 and slider.max == 1.0
    with pytest.raises(ValueError, match=r"shape \[n, 2\]"):
        pdl.widgets.forward_explorer(torch.randn(10, 3), pdl.LinearBetaSchedule())


def test_figures_fit_the_column_at_one_resolution():
    fig, axes = viz.figure(14.0, 2.0, 1, 7, squeeze=False)
    width, height = fig.get_size_inches()
    assert fig.dpi == viz.DPI and axes.shape == (1, 7)
    assert width == pytest.approx(viz.WIDTH) and height == pytest.approx(2.0 * viz.WIDTH / 14.0)
    assert tuple(viz.figure(3.0, 2.0)[0].get_size_inches()) == (3.0, 2.0)  # narrow ones keep their size
    ax = plt.subplots(1, 2)[1][1]
    assert viz.figure(4.8, 3.0, ax=ax) == (ax.figure, ax)  # drawing into a panel of a larger figure
    wide = viz.forward_strip(pdl.data.toy("moons", 100, seed=0), pdl.CosineSchedule())
    assert wide.get_size_inches()[0] <= viz.WIDTH + 1e-9 and wide.dpi == viz.DPI


def test_loss_curve_legend_sits_beside_the_axes():
    fig = viz.loss_curve({"loss": list(np.linspace(2, 1, 300))}, window=50, label="v-loss")
    fig.canvas.draw()
    ax = fig.axes[0]
    legend_box = ax.get_legend().get_window_extent()
    assert legend_box.x0 >= ax.get_window_extent().x1  # it cannot cover a curve


def frames_of(html):
    """The PNG frames embedded in a player, decoded."""
    from PIL import Image

    found = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=\\\n]+)", html)
    return [Image.open(io.BytesIO(base64.b64decode(f.replace("\\\n", "").replace("\n", "")))) for f in found]


@pytest.mark.slow
def test_animation_frames_are_palette_pngs_and_lighter():
    _, traj = small_trajectory(n=400, steps=12)
    data = pdl.data.toy("moons", 400, seed=0)
    full = viz.animate_reverse(traj, frames=6, data=data, html=False).to_jshtml(default_mode="once")
    light = viz.animate_reverse(traj, frames=6, data=data).data
    frames = frames_of(light)
    assert len(frames) == 6 and all(f.mode == "P" and len(f.getcolors()) <= viz.animation.COLORS for f in frames)
    assert len(light) < 0.7 * len(full)
    original = np.asarray(frames_of(full)[-1].convert("RGB"), dtype=float)
    assert np.abs(np.asarray(frames[-1].convert("RGB"), dtype=float) - original).mean() < 2.0  # out of 255


@pytest.mark.slow
def test_image_grid_animation_stores_grey_frames_close_to_the_full_ones():
    x = pdl.data.digits("train")[:16]
    t = torch.linspace(1, 0, 5)
    noise = torch.randn((5, *x.shape), generator=torch.Generator().manual_seed(0))
    traj = {"z": (1 - t.view(-1, 1, 1, 1, 1)) * x + t.view(-1, 1, 1, 1, 1) * noise, "t": t}
    full = viz.animate_grid(traj, frames=5, html=False).to_jshtml(default_mode="once")
    light = viz.animate_grid(traj, frames=5).data
    frames = frames_of(light)
    assert len(frames) == 5 and all(len(f.getcolors()) <= viz.animation.GRAYS for f in frames)
    assert len(light) < 0.8 * len(full)
    original = np.asarray(frames_of(full)[-1].convert("RGB"), dtype=float)
    assert np.abs(np.asarray(frames[-1].convert("RGB"), dtype=float) - original).mean() < 4.0  # out of 255


def test_image_grids_draw_every_pixel_the_same_width():
    x = torch.rand(4, 1, 8, 8) * 2 - 1
    assert viz.pixels(x, nrow=2).shape == tuple(np.array(viz.tile(x, nrow=2).shape[:2]) * viz.images.ZOOM)
    fig = viz.image_grid(x, nrow=2)
    assert fig.axes[0].images[0].get_interpolation() == "antialiased"
    film = viz.animate_grid({"z": torch.randn(3, 4, 1, 8, 8), "t": torch.linspace(1, 0, 3)}, frames=3, html=False)
    assert isinstance(film, FuncAnimation)


@pytest.mark.slow
def test_import_pdlearn_leaves_matplotlib_ipywidgets_and_diffusers_unloaded():
    code = ("import sys, pdlearn as pdl; heavy = ('matplotlib', 'ipywidgets', 'diffusers');"
            "print([m for m in heavy if m in sys.modules]); pdl.viz; print('matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[:2] == ["[]", "True"]


BOOK = Path(__file__).resolve().parents[1] / "book"


def missing_plots(source):
    """The ``viz.NAME`` and ``pdl.widgets.NAME`` that ``source`` calls and the library lacks."""
    names = [("viz", n) for n in re.findall(r"\bviz\.([A-Za-z_]\w*)", source)]
    names += [("widgets", n) for n in re.findall(r"\bpdl\.widgets\.([A-Za-z_]\w*)", source)]
    return sorted({f"{room}.{n}" for room, n in names if not hasattr(getattr(pdl, room), n)})


def test_every_plot_the_chapters_call_exists():
    text = "\n".join(p.read_text(encoding="utf-8") for p in sorted(BOOK.rglob("*.ipynb")) if "_build" not in p.parts)
    assert "viz.scatter_panels" in text and missing_plots(text) == []
    assert missing_plots("pdl.viz.loss_curve(h); viz.no_such_plot(x); pdl.widgets.no_explorer()") == [
        "viz.no_such_plot", "widgets.no_explorer"]  # the check sees a missing name
