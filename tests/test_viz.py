"""Plots and explorers run headless and draw what they say (chapter 1 sections)."""
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
    assert "<script" in html and html.count("data:image/png;base64") == 5 + 4  # 5 frames, the last held 4 more


def test_forward_explorer_builds_a_slider():
    explorer = pdl.widgets.forward_explorer(pdl.data.toy("moons", 200, seed=0), pdl.LinearBetaSchedule())
    slider = explorer.children[0]
    assert slider.description == "t" and slider.min == 0.0 and slider.max == 1.0
    with pytest.raises(ValueError, match=r"shape \[n, 2\]"):
        pdl.widgets.forward_explorer(torch.randn(10, 3), pdl.LinearBetaSchedule())
