"""MMD and sliced Wasserstein for 2D samples, and their data-vs-data floors."""
import math

import pytest
import torch

import pdlearn as pdl
from pdlearn.metrics import BANDWIDTHS, floor, mmd_rbf, sliced_wasserstein


def reference_mmd(x, y, bandwidths=BANDWIDTHS):
    """The unbiased estimator written out on full kernel matrices (Gretton et al., 2012, eq. 3)."""
    x, y = x.double(), y.double()

    def k(a, b):
        d2 = torch.cdist(a, b).pow(2)
        return sum(torch.exp(-d2 / (2 * h * h)) for h in bandwidths)

    n, m = len(x), len(y)
    kxx, kyy = k(x, x), k(y, y)
    off_x = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    off_y = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return float(off_x + off_y - 2 * k(x, y).mean())


def test_mmd_matches_the_written_out_estimator():
    x = pdl.data.toy("moons", 300, seed=0)  # 300 > the 128-row chunks: chunking must not matter
    y = pdl.data.toy("checkerboard", 170, seed=1)
    f64 = dict(dtype=torch.float64)
    assert mmd_rbf(x, y, **f64) == pytest.approx(reference_mmd(x, y), rel=1e-9, abs=1e-12)
    assert mmd_rbf(x, y, bandwidths=(0.3,), **f64) == pytest.approx(reference_mmd(x, y, (0.3,)), rel=1e-9)
    assert mmd_rbf(x, y, **f64) == pytest.approx(mmd_rbf(y, x, **f64), rel=1e-9)
    # far-apart sets: most exponents fall below EXP_FLOOR, whose clamp must not move the value
    assert mmd_rbf(x, y + 30.0, **f64) == pytest.approx(reference_mmd(x, y + 30.0), rel=1e-12)
    # in more than 8 dimensions the distances come from one matrix product
    a, b = ten_dimensional()
    assert mmd_rbf(a, b, **f64) == pytest.approx(reference_mmd(a, b), rel=1e-9)


def ten_dimensional():
    g = torch.Generator().manual_seed(0)
    return torch.randn(150, 10, generator=g), 1.2 * torch.randn(140, 10, generator=g)


# float32 kernels agree with float64 to this (absolute, on unit-scale data): under 1/100 of the
# spread of the data-vs-data floor at n = 5,000 (about 4e-4), far below any difference the book reads
FLOAT32_TOLERANCE = 1e-6


@pytest.mark.parametrize("case", ["floor", "blurred", "shifted", "other set", "10 dimensions"])
def test_float32_mmd_agrees_with_float64(case):
    g = torch.Generator().manual_seed(0)
    x, y = {"floor": (pdl.data.toy("moons", 800, seed=0), pdl.data.toy("moons", 800, seed=1)),
            "blurred": (pdl.data.toy("moons", 800, seed=0),
                        pdl.data.toy("moons", 800, seed=1) + 0.05 * torch.randn(800, 2, generator=g)),
            "shifted": (pdl.data.toy("moons", 800, seed=0), pdl.data.toy("moons", 600, seed=2) + 0.02),
            "other set": (pdl.data.toy("moons", 800, seed=0), pdl.data.toy("checkerboard", 500, seed=3)),
            "10 dimensions": ten_dimensional()}[case]
    exact = mmd_rbf(x, y, dtype=torch.float64)
    assert abs(mmd_rbf(x, y) - exact) <= FLOAT32_TOLERANCE
    ref = pdl.metrics.MMDReference(y)
    assert ref.y.dtype == torch.float32 and abs(mmd_rbf(x, ref) - exact) <= FLOAT32_TOLERANCE


def test_the_float32_tolerance_catches_cancelling_distances(monkeypatch):
    """The planted defect: distances as |a|^2 + |b|^2 - 2 a.b in float32, whose cancellation
    blurs the self-pairs and near pairs; in 10 dimensions it misses the tolerance by far."""
    from pdlearn.metrics import lowdim

    def cancelling(a, b):
        return (a.pow(2).sum(1)[:, None] + b.pow(2).sum(1)[None, :] - 2 * a @ b.T).clamp(min=0)

    a, b = ten_dimensional()
    exact = mmd_rbf(a, b, dtype=torch.float64)
    monkeypatch.setattr(lowdim, "_sq_dists", cancelling)
    assert abs(mmd_rbf(a, b) - exact) > 3 * FLOAT32_TOLERANCE


def test_mmd_is_unbiased():
    """Over many pairs of draws from one distribution the estimate averages to ~0; the biased
    (V-statistic) estimate would average to about 2 * len(BANDWIDTHS) / n = 0.07 here."""
    values = [mmd_rbf(pdl.data.toy("moons", 200, seed=2 * i), pdl.data.toy("moons", 200, seed=2 * i + 1))
              for i in range(20)]
    mean = sum(values) / len(values)
    assert abs(mean) < 0.005
    assert min(values) < 0  # an unbiased estimate of 0 goes negative


def test_mmd_grows_with_the_difference():
    x = pdl.data.toy("moons", 500, seed=0)
    y = pdl.data.toy("moons", 500, seed=1)
    shifts = [mmd_rbf(x, y + torch.tensor([d, 0.0])) for d in (0.0, 0.1, 0.3, 1.0)]
    assert shifts == sorted(shifts) and shifts[-1] > 100 * abs(shifts[0])


def test_mmd_separates_a_blurred_model_from_data_by_several_floor_stds():
    def draw(n, seed):
        return pdl.data.toy("moons", n, seed)

    mean, std = floor(draw, 1_000, repeats=5)
    x = draw(1_000, 1)
    blurred = x + 0.2 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    assert mmd_rbf(blurred, draw(1_000, 2)) > mean + 5 * std


def test_sliced_wasserstein_of_a_shift():
    """For y = x + c in d dimensions every projection moves by theta . c, so
    SW_2 = sqrt(E (theta . c)^2) = |c| / sqrt(d)."""
    x = pdl.data.toy("rings", 1_000, seed=0)
    c = torch.tensor([0.3, -0.4])  # |c| = 0.5
    assert sliced_wasserstein(x, x) == 0.0
    assert sliced_wasserstein(x, x + c, n_projections=2_000) == pytest.approx(0.5 / math.sqrt(2), rel=0.03)


def test_sliced_wasserstein_is_seeded_and_takes_unequal_sizes():
    x, y = pdl.data.toy("moons", 400, seed=0), pdl.data.toy("swiss_roll", 300, seed=0)
    assert sliced_wasserstein(x, y, seed=3) == sliced_wasserstein(x, y, seed=3)
    assert sliced_wasserstein(x, y, seed=3) != sliced_wasserstein(x, y, seed=4)
    assert sliced_wasserstein(x, y) > 2 * sliced_wasserstein(x, pdl.data.toy("moons", 300, seed=1))


def test_floor_uses_fresh_draws_and_is_reproducible():
    seen = []

    def draw(n, seed):
        seen.append(seed)
        return pdl.data.toy("eight_gaussians", n, seed)

    mean, std = floor(draw, 300, repeats=4)
    assert len(seen) == 8 and len(set(seen)) == 8  # two fresh draws per repeat
    assert std > 0 and abs(mean) < 3 * std
    assert floor(draw, 300, repeats=4) == (mean, std)
    swd_mean, swd_std = floor(draw, 300, metric=sliced_wasserstein, repeats=4)
    assert swd_mean > 0 and 0 < swd_std < swd_mean


def test_metrics_reject_mismatched_inputs():
    with pytest.raises(ValueError, match="same dimension"):
        mmd_rbf(torch.randn(5, 2), torch.randn(5, 3))
    with pytest.raises(ValueError, match="same dimension"):
        sliced_wasserstein(torch.randn(5, 2), torch.randn(5, 3))
    with pytest.raises(ValueError, match="at least 2 points"):
        mmd_rbf(torch.randn(1, 2), torch.randn(5, 2))


def test_verdict_is_a_tie_inside_two_spreads():
    from pdlearn.metrics import verdict

    assert verdict(16.16, 16.98, 1.46) == "tie"  # chapter 6's 1-step student against 8-step DDIM
    assert verdict(12.09, 16.98, 1.46) == "better"
    assert verdict(20.0, 16.98, 1.46) == "worse"
    assert verdict(0.99, 0.95, 0.01, lower_is_better=False) == "better"
    assert verdict(1.0, 1.0, 0.0) == "tie"
    with pytest.raises(ValueError, match="spread"):
        verdict(1.0, 2.0, -1.0)


def test_with_floor_prints_a_score_beside_its_floor():
    from pdlearn.metrics import with_floor

    assert with_floor(0.00123, (0.0004, 0.00041)) == "0.00123 (floor 0.00040 +- 0.00041)"


def test_an_mmd_reference_gives_exactly_the_mmd_against_its_points():
    ref_points = pdl.data.toy("moons", n=400, seed=1)
    ref = pdl.metrics.MMDReference(ref_points)
    for seed in (2, 3):
        z = pdl.data.toy("moons", n=300, seed=seed) * 1.1
        assert pdl.metrics.mmd_rbf(z, ref) == pdl.metrics.mmd_rbf(z, ref_points)
    with pytest.raises(ValueError, match="bandwidths"):
        pdl.metrics.mmd_rbf(z, ref, bandwidths=(0.1,))
    with pytest.raises(ValueError, match="dtype"):
        pdl.metrics.mmd_rbf(z, ref, dtype=torch.float64)
    exact = pdl.metrics.MMDReference(ref_points, dtype=torch.float64)
    assert pdl.metrics.mmd_rbf(z, exact) == pdl.metrics.mmd_rbf(z, ref_points, dtype=torch.float64)
    with pytest.raises(ValueError, match="float32"):
        pdl.metrics.MMDReference(ref_points, dtype=torch.float16)
