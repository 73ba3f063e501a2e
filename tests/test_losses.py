"""The forward process and the loss weightings, each against its closed form
w(lambda_t) ||x - x_hat||^2 (Salimans & Ho, 2022, sec. 4)."""
import pytest
import torch

import pdlearn as pdl
from pdlearn.losses import WEIGHTINGS, weighted_error

CLOSED_FORMS = {
    "snr": lambda snr: snr,
    "eps": lambda snr: snr,
    "x": lambda snr: torch.ones_like(snr),
    "truncated_snr": lambda snr: torch.clamp(snr, min=1.0),
    "snr+1": lambda snr: snr + 1,
    "v": lambda snr: snr + 1,
}


class Random(torch.nn.Module):
    """A network with a fixed random output (so x_hat is wrong in a generic way)."""

    def __init__(self, out, prediction):
        super().__init__()
        self.out, self.prediction = out, prediction

    def forward(self, z, t):
        return self.out


def batch(n=256, dim=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g, dtype=torch.float64)
    eps = torch.randn(n, dim, generator=g, dtype=torch.float64)
    # t spans both sides of SNR = 1 (t = 0.5 on the cosine schedule), away from the ends
    t = 0.05 + 0.9 * torch.rand(n, generator=g, dtype=torch.float64)
    out = torch.randn(n, dim, generator=g, dtype=torch.float64)
    return x, eps, t, out


def test_q_sample():
    sched = pdl.CosineSchedule()
    x, eps, t, _ = batch()
    alpha, sigma = sched.alpha_sigma(t)
    torch.testing.assert_close(pdl.q_sample(x, t, sched, eps), alpha[:, None] * x + sigma[:, None] * eps)
    z0 = pdl.q_sample(x, torch.zeros(len(x), dtype=torch.float64), sched, eps)
    z1 = pdl.q_sample(x, torch.ones(len(x), dtype=torch.float64), sched, eps)
    assert torch.equal(z0, x) and torch.equal(z1, eps)


def test_q_sample_broadcasts_over_image_shapes():
    x = torch.randn(4, 1, 5, 5)
    eps = torch.randn(4, 1, 5, 5)
    t = torch.tensor([0.0, 0.3, 0.6, 1.0])
    z = pdl.q_sample(x, t, pdl.CosineSchedule(), eps)
    assert z.shape == x.shape
    assert torch.equal(z[0], x[0]) and torch.allclose(z[3], eps[3], atol=1e-6)


@pytest.mark.parametrize("weighting", WEIGHTINGS)
@pytest.mark.parametrize("prediction", ["eps", "x", "v"])
def test_weighting_closed_form(weighting, prediction):
    """diffusion_loss == mean over the batch of w(lambda_t) * mean_d (x - x_hat)^2, for any prediction."""
    sched = pdl.CosineSchedule()
    x, eps, t, out = batch()
    net = Random(out, prediction)
    loss = pdl.diffusion_loss(net, x, sched, t=t, eps=eps, weighting=weighting)
    x_hat, _ = pdl.predict(net, pdl.q_sample(x, t, sched, eps), t, sched)
    alpha, sigma = sched.alpha_sigma(t)
    snr = alpha**2 / sigma**2
    expected = (CLOSED_FORMS[weighting](snr) * (x - x_hat).pow(2).mean(1)).mean()
    torch.testing.assert_close(loss, expected, rtol=1e-9, atol=0)


def test_weightings_differ():
    """The closed forms really are different functions of lambda (the test above can tell them apart)."""
    sched = pdl.CosineSchedule()
    x, eps, t, out = batch()
    net = Random(out, "v")
    values = {w: float(pdl.diffusion_loss(net, x, sched, t=t, eps=eps, weighting=w))
              for w in ("snr", "x", "truncated_snr", "snr+1")}
    assert len({round(v, 9) for v in values.values()}) == 4
    assert values["snr+1"] > values["truncated_snr"] > max(values["snr"], values["x"])


def test_default_weighting_is_v_mse():
    sched = pdl.CosineSchedule()
    x, eps, t, out = batch()
    net = Random(out, "v")
    alpha, sigma = sched.alpha_sigma(t)
    v = alpha[:, None] * eps - sigma[:, None] * x
    torch.testing.assert_close(pdl.diffusion_loss(net, x, sched, t=t, eps=eps), (v - out).pow(2).mean())


def test_weighted_error_is_per_example():
    x, eps, t, out = batch(n=7)
    sched = pdl.CosineSchedule()
    x_hat, eps_hat = pdl.predict(Random(out, "v"), pdl.q_sample(x, t, sched, eps), t, sched)
    alpha, sigma = sched.alpha_sigma(t)
    assert weighted_error(x, eps, x_hat, eps_hat, alpha, sigma, "truncated_snr").shape == (7,)


def test_unknown_weighting_names_the_choices():
    x, eps, t, out = batch(n=4)
    with pytest.raises(ValueError, match="truncated_snr"):
        pdl.diffusion_loss(Random(out, "v"), x, pdl.CosineSchedule(), t=t, eps=eps, weighting="min_snr")


def test_random_draws_follow_the_generator():
    """t and eps come from the generator: the same seed gives the same loss, another seed another."""
    x, _, _, _ = batch(n=32)
    net = pdl.models.MLPDenoiser(dim=2).double()
    sched = pdl.CosineSchedule()

    def loss(seed):
        return pdl.diffusion_loss(net, x, sched, generator=torch.Generator().manual_seed(seed)).item()

    assert loss(0) == loss(0) and loss(0) != loss(1)


def test_x_prediction_never_sees_t_zero(monkeypatch):
    """torch.rand can return exactly 0 (sigma = 0: no eps_hat); the loss must not pass it on."""
    seen = []

    class Spy(torch.nn.Module):
        prediction = "x"

        def forward(self, z, t):
            seen.append(t.min())
            return torch.zeros_like(z)

    rand = torch.rand
    monkeypatch.setattr(torch, "rand", lambda *a, **k: torch.zeros_like(rand(*a, **k)))  # the unlucky draw
    loss = pdl.diffusion_loss(Spy(), torch.randn(8, 2), pdl.CosineSchedule(), weighting="x")
    assert seen[0] > 0 and torch.isfinite(loss)
