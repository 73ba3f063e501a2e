"""Interactive explorers (ipywidgets), in sections by chapter.

Widgets run only in a live notebook, not on the rendered page: every chapter shows a
static figure from ``pdlearn.viz`` beside each explorer.

Sections:
    Chapter 1: the forward process q(z_t | x) on a 2D data set
    Chapter 7: the guidance weight w on labelled 2D data
"""
import matplotlib.pyplot as plt
import torch

from . import viz


# ----------------------------------------------------------------------------------------
# Chapter 1: the forward process
# ----------------------------------------------------------------------------------------

def forward_explorer(x, sched, seed=0, lim=3.2, size=3.6):
    """A slider over t in [0, 1] showing z_t = alpha_t x + sigma_t eps for the points x [n, 2].

    One noise draw eps (seeded) is kept for every t, so moving the slider shows each point
    sliding from its data position towards pure noise. The static counterpart is
    ``viz.forward_strip``. Returns the widget (display it as a cell's last value).
    """
    import ipywidgets as widgets

    from .data import as_data
    from .losses import q_sample

    x = as_data(x, "x", dim=2).double().cpu()
    eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)

    def show(t):
        alpha, sigma = sched.alpha_sigma(torch.tensor(t, dtype=torch.float64))
        z = q_sample(x, torch.full((x.shape[0],), t, dtype=torch.float64), sched, eps)
        fig, ax = viz.figure(size, size)
        viz.scatter(ax, z, rf"t = {t:.2f}:  $\alpha_t$ = {float(alpha):.3f},  $\sigma_t$ = {float(sigma):.3f}",
                    lim=lim, s=1.0)
        plt.show()
        plt.close(fig)

    slider = widgets.FloatSlider(value=0.1, min=0.0, max=1.0, step=0.01, description="t",
                                 continuous_update=True, readout_format=".2f")
    return widgets.interactive(show, t=slider)


# ----------------------------------------------------------------------------------------
# Chapter 2: DDIM with a steps slider and an eta slider
# ----------------------------------------------------------------------------------------

def ddim_explorer(net, sched, n=1_000, seed=0, data=None, steps=(1, 2, 4, 8, 16, 32, 64, 128, 256),
                  lim=viz.LIM, size=3.6):
    """Sliders over the number of steps and eta for ``pdl.ddim_sample(net, sched, n=n, ...)``.

    The same seed is used throughout, so moving a slider changes the sampler, not the
    noise. The static counterpart is ``viz.sampler_grid``. Returns the widget.
    """
    import ipywidgets as widgets

    from .metrics import mmd_rbf
    from .sampling import ddim_sample

    reference = None if data is None else data[:n]

    def show(steps, eta):
        z = ddim_sample(net, sched, n=n, steps=steps, eta=eta, seed=seed)
        title = f"{steps} steps, eta = {eta:.1f}"
        if reference is not None and len(reference) >= 2:
            title += f"\nsquared MMD to data: {mmd_rbf(z, reference):.4f}"
        fig, ax = viz.figure(size, size)
        if data is not None:
            viz.scatter(ax, data, lim=lim, s=0.5, color="0.85", alpha=0.6)
        viz.scatter(ax, z, title, lim=lim, s=1.0)
        plt.show()
        plt.close(fig)

    steps_slider = widgets.SelectionSlider(options=list(steps), value=steps[len(steps) // 2], description="steps",
                                           continuous_update=False)
    eta_slider = widgets.FloatSlider(value=0.0, min=0.0, max=1.0, step=0.1, description="eta",
                                     continuous_update=False, readout_format=".1f")
    return widgets.interactive(show, steps=steps_slider, eta=eta_slider)


# ----------------------------------------------------------------------------------------
# Chapter 7: a slider over the guidance weight w
# ----------------------------------------------------------------------------------------

def guidance_explorer(net, sched, labels, steps=32, ws=(-1.0, 0.0, 0.5, 1.0, 2.0, 3.0, 4.0), seed=0, data=None,
                      lim=viz.LIM, size=3.6):
    """A slider over the guidance weight w for ``ddim_sample(net, ..., model_kwargs=dict(y=labels, w=w))``,
    points coloured by their label. ``net`` is a guided teacher (``guidance.Guided``) or a
    w-conditioned student. Same noise throughout. The static counterpart is
    ``viz.labelled_panels`` over a row of w values. Returns the widget.
    """
    import ipywidgets as widgets
    import numpy as np

    from .sampling import ddim_sample

    labels = torch.as_tensor(labels).long()
    palette = np.array([f"C{k % 10}" for k in range(int(labels.max()) + 1)])

    def show(w):
        z = ddim_sample(net, sched, n=len(labels), steps=steps, seed=seed, model_kwargs=dict(y=labels, w=w))
        fig, ax = viz.figure(size, size)
        if data is not None:
            viz.scatter(ax, data, lim=lim, s=0.5, color="0.85", alpha=0.6)
        viz.scatter(ax, z, f"w = {w:g} ({steps} steps)", lim=lim, s=1.5, color=palette[labels.numpy()], alpha=0.6)
        plt.show()
        plt.close(fig)

    slider = widgets.SelectionSlider(options=list(ws), value=ws[len(ws) // 2], description="w",
                                     continuous_update=False)
    return widgets.interactive(show, w=slider)
