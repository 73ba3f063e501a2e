"""Invariants of the two schedules: variance preservation, monotone log-SNR, the
closed forms of the cosine schedule and Ho et al.'s discrete linear-beta schedule."""
import math

import pytest
import torch

import pdlearn as pdl

SCHEDULES = [pdl.CosineSchedule(), pdl.LinearBetaSchedule()]
T64 = torch.linspace(0, 1, 1001, dtype=torch.float64)


@pytest.mark.parametrize("sched", SCHEDULES, ids=repr)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_variance_preserving(sched, dtype):
    alpha, sigma = sched.alpha_sigma(T64.to(dtype))
    assert alpha.dtype == dtype and sigma.dtype == dtype
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(alpha**2 + sigma**2, torch.ones_like(alpha), atol=tol, rtol=0)
    assert (alpha >= 0).all() and (sigma >= 0).all()


@pytest.mark.parametrize("sched", SCHEDULES, ids=repr)
def test_endpoints(sched):
    alpha, sigma = sched.alpha_sigma(torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert alpha[0] == 1 and sigma[0] == 0  # t = 0 is the data
    assert sigma[1] > 0.99  # t = 1 is (almost) pure noise


@pytest.mark.parametrize("sched", SCHEDULES, ids=repr)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_logsnr_strictly_decreasing(sched, dtype):
    lam = sched.logsnr(T64.to(dtype))
    assert not torch.isnan(lam).any()
    assert lam[0] == math.inf
    assert (lam[1:] < lam[:-1]).all()


@pytest.mark.parametrize("sched", SCHEDULES, ids=repr)
def test_logsnr_matches_alpha_sigma(sched):
    t = torch.linspace(0.01, 0.99, 99, dtype=torch.float64)
    alpha, sigma = sched.alpha_sigma(t)
    torch.testing.assert_close(sched.logsnr(t), torch.log(alpha**2 / sigma**2))


def test_cosine_closed_form():
    sched = pdl.CosineSchedule()
    alpha, sigma = sched.alpha_sigma(T64)
    torch.testing.assert_close(alpha, torch.cos(math.pi * T64 / 2), atol=1e-15, rtol=0)
    torch.testing.assert_close(sigma, torch.sin(math.pi * T64 / 2), atol=1e-15, rtol=0)
    inner = T64[1:-1]
    torch.testing.assert_close(sched.logsnr(inner), -2 * torch.log(torch.tan(math.pi * inner / 2)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cosine_alpha_is_exactly_zero_at_t1(dtype):
    alpha, sigma = pdl.CosineSchedule().alpha_sigma(torch.tensor(1.0, dtype=dtype))
    assert alpha == 0 and sigma == 1
    assert pdl.CosineSchedule().logsnr(torch.tensor(1.0, dtype=dtype)) == -math.inf


def test_linear_beta_reproduces_ho_alpha_bar():
    """alpha_t^2 at t = i / T is Ho et al.'s alpha_bar_i = prod_{s <= i} (1 - beta_s), beta linear 1e-4..0.02."""
    T = 1000
    sched = pdl.LinearBetaSchedule()
    assert sched.T == T
    betas = [1e-4 + (0.02 - 1e-4) * k / (T - 1) for k in range(T)]
    alpha_bar, prod = [1.0], 1.0
    for b in betas:
        prod *= 1 - b
        alpha_bar.append(prod)
    alpha_bar = torch.tensor(alpha_bar, dtype=torch.float64)
    t = torch.arange(T + 1, dtype=torch.float64) / T
    alpha, sigma = sched.alpha_sigma(t)
    torch.testing.assert_close(alpha**2, alpha_bar, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(sigma**2, 1 - alpha_bar, rtol=1e-10, atol=1e-14)
    assert 4.0e-5 < alpha_bar[-1] < 4.1e-5  # the familiar value: alpha_bar_T is about 4.04e-5


def test_linear_beta_interpolates_between_steps():
    sched = pdl.LinearBetaSchedule(T=10)
    t = torch.tensor([0.3, 0.35, 0.4], dtype=torch.float64)
    lam = sched.logsnr(t)
    assert lam[0] > lam[1] > lam[2]


@pytest.mark.parametrize("sched", SCHEDULES, ids=repr)
@pytest.mark.parametrize("spacing", ["uniform", "logsnr"])
def test_grid(sched, spacing):
    grid = sched.grid(8, spacing)
    assert grid.shape == (9,) and grid.dtype == torch.float64
    assert grid[0] == 1 and grid[-1] == 0
    assert (grid[1:] < grid[:-1]).all()
    if spacing == "uniform":
        torch.testing.assert_close(grid, 1 - torch.arange(9, dtype=torch.float64) / 8)
    else:  # interior points equally spaced in log-SNR
        gaps = sched.logsnr(grid[1:-1]).diff()
        torch.testing.assert_close(gaps, gaps.mean().expand_as(gaps), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("sched", SCHEDULES, ids=repr)
def test_t_from_logsnr_inverts(sched):
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    torch.testing.assert_close(sched.t_from_logsnr(sched.logsnr(t)), t, atol=1e-9, rtol=0)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "8"])
def test_grid_rejects_bad_steps(bad):
    with pytest.raises((ValueError, TypeError), match="positive integer"):  # a wrong type: TypeError
        pdl.CosineSchedule().grid(bad)


def test_grid_rejects_unknown_spacing():
    with pytest.raises(ValueError, match="uniform"):
        pdl.CosineSchedule().grid(4, "cubic")  # an unknown name ("karras" is EDM's grid)
