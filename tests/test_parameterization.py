"""eps / x / v conversions: round trips, the error identities of Salimans & Ho (2022),
and the clear errors at the ends of the schedule."""
import pytest
import torch

import pdlearn as pdl
from pdlearn.parameterization import PREDICTIONS, output_from_x_eps, x_eps_from_output


def draw(n=64, dim=3, seed=0, t_lo=0.02, t_hi=0.98):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g, dtype=torch.float64)
    eps = torch.randn(n, dim, generator=g, dtype=torch.float64)
    t = t_lo + (t_hi - t_lo) * torch.rand(n, generator=g, dtype=torch.float64)
    return x, eps, t


class Constant(torch.nn.Module):
    """A stand-in network that returns a fixed output, whatever its input."""

    def __init__(self, out, prediction):
        super().__init__()
        self.out, self.prediction = out, prediction

    def forward(self, z, t):
        return self.out


@pytest.mark.parametrize("sched", [pdl.CosineSchedule(), pdl.LinearBetaSchedule()], ids=repr)
@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_round_trip(sched, prediction):
    """The target of each parameterization, read back, gives (x, eps) exactly (float64)."""
    x, eps, t = draw()
    alpha, sigma = sched.alpha_sigma(t)
    z = pdl.q_sample(x, t, sched, eps)
    out = output_from_x_eps(prediction, x, eps, alpha, sigma)
    x_hat, eps_hat = x_eps_from_output(prediction, out, z, alpha, sigma)
    torch.testing.assert_close(x_hat, x, rtol=0, atol=1e-9)
    torch.testing.assert_close(eps_hat, eps, rtol=0, atol=1e-9)
    # and back to the same output
    torch.testing.assert_close(output_from_x_eps(prediction, x_hat, eps_hat, alpha, sigma), out, rtol=0, atol=1e-9)


def test_v_definition():
    """v = alpha eps - sigma x (Salimans & Ho, 2022, eq. 4), and z, v are a rotation of x, eps."""
    sched = pdl.CosineSchedule()
    x, eps, t = draw()
    alpha, sigma = (a[:, None] for a in sched.alpha_sigma(t))
    v = output_from_x_eps("v", x, eps, alpha[:, 0], sigma[:, 0])
    torch.testing.assert_close(v, alpha * eps - sigma * x)
    z = alpha * x + sigma * eps
    torch.testing.assert_close(z.pow(2) + v.pow(2), x.pow(2) + eps.pow(2))


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_error_identities_for_any_output(prediction):
    """For any network output (random here), with x_hat and eps_hat read from z_t:

        ||eps - eps_hat||^2 = SNR ||x - x_hat||^2,   ||v - v_hat||^2 = (1 + SNR) ||x - x_hat||^2.
    """
    sched = pdl.CosineSchedule()
    x, eps, t = draw(seed=1)
    z = pdl.q_sample(x, t, sched, eps)
    out = torch.randn(z.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    x_hat, eps_hat = pdl.predict(Constant(out, prediction), z, t, sched)
    alpha, sigma = sched.alpha_sigma(t)
    snr = alpha**2 / sigma**2
    x_err = (x - x_hat).pow(2).sum(1)
    eps_err = (eps - eps_hat).pow(2).sum(1)
    v = output_from_x_eps("v", x, eps, alpha, sigma)
    v_hat = output_from_x_eps("v", x_hat, eps_hat, alpha, sigma)
    v_err = (v - v_hat).pow(2).sum(1)
    torch.testing.assert_close(eps_err, snr * x_err, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(v_err, (1 + snr) * x_err, rtol=1e-9, atol=1e-12)
    assert not torch.allclose(x_hat, x)  # the output really was wrong: the identities were not trivial


def test_predict_accepts_scalar_t_and_passes_kwargs():
    seen = {}

    class Net(torch.nn.Module):
        prediction = "v"

        def forward(self, z, t, y=None):
            seen["t"], seen["y"] = t, y
            return torch.zeros_like(z)

    z = torch.randn(5, 2)
    x_hat, eps_hat = pdl.predict(Net(), z, 0.5, pdl.CosineSchedule(), y=3)
    assert seen["t"].shape == (5,) and seen["t"].dtype == z.dtype and seen["y"] == 3
    alpha, sigma = pdl.CosineSchedule().alpha_sigma(torch.tensor(0.5))
    torch.testing.assert_close(x_hat, alpha * z)  # v_hat = 0: x_hat = alpha z, eps_hat = sigma z
    torch.testing.assert_close(eps_hat, sigma * z)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_eps_prediction_at_alpha_zero_raises(dtype):
    """At t = 1 on the cosine schedule x_hat = (z - sigma eps_hat) / alpha divides by zero."""
    net = pdl.models.MLPDenoiser(dim=2, prediction="eps").to(dtype)
    z = torch.randn(4, 2, dtype=dtype)
    with pytest.raises(ValueError, match="prediction='v'"):
        pdl.predict(net, z, 1.0, pdl.CosineSchedule())
    x_hat, _ = pdl.predict(net, z, 1.0, pdl.LinearBetaSchedule())  # alpha_1 > 0 there: fine
    assert torch.isfinite(x_hat).all()


def test_x_prediction_at_sigma_zero_raises():
    net = pdl.models.MLPDenoiser(dim=2, prediction="x")
    with pytest.raises(ValueError, match="t = 0"):
        pdl.predict(net, torch.randn(4, 2), 0.0, pdl.CosineSchedule())


def test_v_prediction_works_at_both_ends():
    net = pdl.models.MLPDenoiser(dim=2)
    for t in (0.0, 1.0):
        x_hat, eps_hat = pdl.predict(net, torch.randn(4, 2), t, pdl.CosineSchedule())
        assert torch.isfinite(x_hat).all() and torch.isfinite(eps_hat).all()


def test_models_default_to_v_and_keep_what_they_are_told():
    assert pdl.models.MLPDenoiser(dim=2).prediction == "v"
    for p in PREDICTIONS:
        assert pdl.models.MLPDenoiser(dim=2, prediction=p).prediction == p


def test_missing_prediction_attribute_is_named():
    class Bare(torch.nn.Module):
        def forward(self, z, t):
            return z

    with pytest.raises(AttributeError, match="prediction"):
        pdl.predict(Bare(), torch.randn(3, 2), 0.5, pdl.CosineSchedule())


def test_unknown_prediction_is_rejected():
    with pytest.raises(ValueError, match="one of"):
        x_eps_from_output("score", torch.zeros(2, 2), torch.zeros(2, 2), 0.5, 0.5)


def test_wrong_output_shape_is_named():
    with pytest.raises(ValueError, match="shape"):
        pdl.predict(Constant(torch.zeros(3, 1), "v"), torch.randn(3, 2), 0.5, pdl.CosineSchedule())


def test_a_shared_time_given_as_a_copy_gives_what_the_stride_0_view_gives():
    from factories import make_mlp, make_unet

    for net, z in ((make_mlp(width=16), torch.randn(10, 2)), (make_unet(), torch.randn(3, 1, 8, 8))):
        net.eval()
        shared = torch.tensor(0.3).expand(z.shape[0])  # what predict passes
        assert shared.stride(0) == 0
        with torch.no_grad():
            torch.testing.assert_close(net(z, shared), net(z, torch.full((z.shape[0],), 0.3)))
            torch.testing.assert_close(net(z, shared), net(z, torch.tensor([0.3]).repeat(z.shape[0])))
