"""Toy data sets and the input check every data-taking function shares."""
import numpy as np
import pytest
import torch

import pdlearn as pdl
from pdlearn.data import TOY, as_data


@pytest.mark.parametrize("name", TOY)
def test_toy_shape_dtype_and_scale(name):
    x = pdl.data.toy(name, n=3_000, seed=0)
    assert x.shape == (3_000, 2) and x.dtype == torch.float32
    assert torch.isfinite(x).all()
    assert 0.3 < x.std(0).min() and x.abs().max() < 4.0  # "a scale of about one"


@pytest.mark.parametrize("name", TOY)
def test_toy_is_seeded(name):
    assert torch.equal(pdl.data.toy(name, 500, seed=3), pdl.data.toy(name, 500, seed=3))
    assert not torch.equal(pdl.data.toy(name, 500, seed=3), pdl.data.toy(name, 500, seed=4))


def test_toy_labels_and_geometry():
    x, y = pdl.data.toy("checkerboard", 4_000, seed=0, return_labels=True)
    assert y.shape == (4_000,) and y.dtype == torch.long and set(y.tolist()) == set(range(8))
    cell = torch.floor(x + 2.0).long()  # every point lies on a square with (col + row) even
    assert ((cell[:, 0] + cell[:, 1]) % 2 == 0).all()
    _, y = pdl.data.toy("eight_gaussians", 4_000, seed=0, return_labels=True)
    assert set(y.tolist()) == set(range(8))


def test_toy_is_drawn_at_random_not_evenly_spaced():
    # two draws must differ like two samples of a distribution do: the nearest
    # neighbour of a point of one draw is not at distance ~0 in the other
    a, b = pdl.data.toy("moons", 2_000, seed=0), pdl.data.toy("moons", 2_000, seed=1)
    assert torch.cdist(a, b).min(1).values.median() > 1e-3


def test_toy_rejects_bad_arguments():
    with pytest.raises(ValueError, match="unknown toy set 'spiral'.*moons"):
        pdl.data.toy("spiral")
    for n in (0, -5, 2.5, True):
        with pytest.raises((ValueError, TypeError), match="positive integer"):
            pdl.data.toy("moons", n=n)


def test_as_data_accepts_plain_tensors_and_arrays():
    x = torch.randn(10, 2)
    assert as_data(x) is x
    y = as_data(np.zeros((4, 3), dtype=np.float32))
    assert isinstance(y, torch.Tensor) and y.shape == (4, 3)


@pytest.mark.parametrize("bad, error, message", [
    ([[0.0, 1.0]], TypeError, "float tensor of shape"),
    (torch.ones(5, 2, dtype=torch.long), TypeError, r"dtype torch.int64.*x.float\(\)"),
    (torch.ones(5), ValueError, r"shape \[n, ...\].*x\[None\]"),
    (torch.ones(0, 2), ValueError, "empty"),
    (torch.tensor([[0.0, 1.0], [float("nan"), 0.0], [float("inf"), 1.0]]), ValueError, "NaN or inf in 2 of 3"),
])
def test_as_data_errors_name_what_was_expected(bad, error, message):
    with pytest.raises(error, match=message):
        as_data(bad)


def test_as_data_checks_the_dimension():
    with pytest.raises(ValueError, match=r"shape \[n, 2\]"):
        as_data(torch.ones(5, 3), dim=2)


def test_data_errors_reach_the_public_functions():
    """train_diffusion and the metrics check their data with the same clear messages."""
    net = pdl.models.MLPDenoiser(dim=2, width=16, depth=1)
    with pytest.raises(ValueError, match="NaN or inf"):
        pdl.train_diffusion(net, torch.tensor([[0.0, float("nan")]] * 4), pdl.CosineSchedule(), steps=1,
                            progress=False)
    with pytest.raises(TypeError, match="float tensor"):
        pdl.metrics.mmd_rbf(torch.ones(4, 2, dtype=torch.int32), torch.ones(4, 2))
    with pytest.raises(ValueError, match="empty"):
        pdl.metrics.sliced_wasserstein(torch.ones(0, 2), torch.ones(4, 2))
