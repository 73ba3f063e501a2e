"""Shared test helpers: the tiny networks most tests run on, and the `slow` marker.

    pytest -m "not slow"    the core in well under a minute (no test that trains for long)
    pytest                  everything, as the README's test command runs it
"""
import pytest
import torch

import pdlearn as pdl


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: trains or executes notebooks for seconds or more; "
                                       "deselect with -m 'not slow'")


def make_mlp(seed=0, width=16, depth=1, dim=2, emb_dim=64, prediction="v", **kwargs):
    """A small randomly initialised MLPDenoiser (seeded)."""
    torch.manual_seed(seed)
    return pdl.models.MLPDenoiser(dim=dim, width=width, depth=depth, emb_dim=emb_dim, prediction=prediction,
                                  **kwargs)


def make_unet(seed=0, channels=8, ch_mult=(1, 2), **kwargs):
    """A small randomly initialised UNet for 8 x 8 digits (seeded)."""
    torch.manual_seed(seed)
    return pdl.models.UNet(channels=channels, ch_mult=ch_mult, **kwargs)


def moons(n=512, seed=0):
    """Two moons, n points."""
    return pdl.data.toy("moons", n=n, seed=seed)


@pytest.fixture
def tiny_mlp():
    return make_mlp


@pytest.fixture
def tiny_unet():
    return make_unet
