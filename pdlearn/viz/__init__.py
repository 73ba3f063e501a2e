"""Plots for the book, by kind. Every function returns its matplotlib figure (or an HTML
animation) and never calls ``plt.show()``, so notebooks, scripts and tests can all use them.

    figure      the one figure helper (resolution, the column's width), a legend beside the axes
    points      point clouds in 2D: scatter panels, the forward process, paths, decision regions
    curves      schedules, losses, quality against steps or cost beside the data floor, histograms
    images      sample grids, grids in a table, denoising strips, nearest training neighbours
    animation   a point cloud or an image grid through a sampler's trajectory, as a player

``import pdlearn`` does not load this package (nor matplotlib): ``pdl.viz`` does, on first use.
"""
from .animation import animate_grid, animate_reverse, as_html
from .curves import distance_histograms, loss_curve, quality_vs_cost, quality_vs_steps, schedule_curves
from .figure import DPI, WIDTH, as_numpy, figure, legend
from .images import denoising_strip, image_grid, image_grids, image_table, nearest_neighbours, pixels, show, tile
from .points import (LIM, decision_regions, forward_strip, interpolation_paths, labelled_panels, ode_paths,
                     sampler_grid, scatter, scatter_panels, trajectories)
