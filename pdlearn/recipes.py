"""Recipes: the teachers the chapters share, trained once per budget and cached.

Each recipe is a few calls to the public API with sizes from ``budget.SIZES``.
Its checkpoint makes the second call (from a later chapter) a load, not a retrain.
"""
import hashlib

import torch

from . import data as data_mod
from .budget import checkpoint_path, sizes
from .models import MLPDenoiser
from .schedules import CosineSchedule
from .train import train_diffusion


def toy_teacher(name="moons", prediction="v", seed=0, progress=True, budget_name=None):
    """A diffusion teacher for the toy set ``name`` at the current budget.

    Returns (net, data): the EMA network (eval mode, with ``.history``) and the
    training data [n_data, 2]. Uses the cosine schedule and the SNR + 1 weighting.
    """
    cfg = sizes("checkerboard_teacher" if name == "checkerboard" else "toy_teacher", budget_name)
    x = data_mod.toy(name, n=cfg["n_data"], seed=seed)
    torch.manual_seed(seed)
    net = MLPDenoiser(dim=2, width=cfg["width"], depth=cfg["depth"], prediction=prediction)
    # the sizes are part of the name: a changed recipe trains afresh instead of resuming a stale file
    digest = hashlib.sha1(repr(sorted(cfg.items())).encode()).hexdigest()[:8]
    tag = f"{name}_teacher_{prediction}_seed{seed}_{digest}"
    net = train_diffusion(net, x, CosineSchedule(), steps=cfg["steps"], seed=seed, batch_size=cfg["batch_size"],
                          checkpoint=checkpoint_path(tag, budget_name), checkpoint_every=1000, resume=True,
                          progress=progress, desc=f"{name} teacher")
    return net, x
