"""Samplers: the DDIM update and its eta = 1 limit, exact denoisers, seeding, grids, inversion."""
import pytest
import torch

import pdlearn as pdl
from pdlearn.losses import q_sample
from pdlearn.sampling import NoiseSource, ddim_step, ddpm_posterior, inversion_error

SCHEDULES = [pdl.CosineSchedule(), pdl.LinearBetaSchedule()]
SCHED_IDS = ["cosine", "linear_beta"]


def random_pairs(count, seed=0):
    """Pairs s < t in [0, 1], including the ends s = 0 and t = 1."""
    g = torch.Generator().manual_seed(seed)
    a, b = torch.rand(count, generator=g, dtype=torch.float64), torch.rand(count, generator=g, dtype=torch.float64)
    s, t = torch.minimum(a, b), torch.maximum(a, b)
    s[0], t[1], s[2], t[2] = 0.0, 1.0, 0.0, 1.0
    return s, t


@pytest.mark.parametrize("sched", SCHEDULES, ids=SCHED_IDS)
def test_eta_one_is_the_ddpm_posterior(sched):
    """For any s < t: DDIM with eta = 1 has the mean and variance of q(z_s | z_t, x = x_hat)."""
    s, t = random_pairs(200)
    alpha_s, sigma_s = (c[:, None] for c in sched.alpha_sigma(s))
    alpha_t, sigma_t = (c[:, None] for c in sched.alpha_sigma(t))
    g = torch.Generator().manual_seed(1)
    z_t = torch.randn(200, 3, generator=g, dtype=torch.float64)
    x_hat = torch.randn(200, 3, generator=g, dtype=torch.float64)
    eps_hat = (z_t - alpha_t * x_hat) / sigma_t  # the eps_hat that goes with x_hat at z_t
    noise = torch.randn(200, 3, generator=g, dtype=torch.float64)

    mean, var = ddpm_posterior(z_t, x_hat, alpha_s, sigma_s, alpha_t, sigma_t)
    # ddim_step is affine in the noise: noise = 0 gives its mean, the noise coefficient its std
    ddim_mean = ddim_step(x_hat, eps_hat, alpha_s, sigma_s, alpha_t, sigma_t, eta=1.0, noise=torch.zeros_like(noise))
    ddim_std = ddim_step(x_hat, eps_hat, alpha_s, sigma_s, alpha_t, sigma_t, eta=1.0, noise=noise) - ddim_mean
    torch.testing.assert_close(ddim_mean, mean, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(ddim_std**2, var * noise**2, atol=1e-10, rtol=1e-8)
    assert (var[s == 0] == 0).all() and (var[s > 0] > 0).all()
    # and eta = 0 is not the posterior (the test can tell them apart)
    eta0 = ddim_step(x_hat, eps_hat, alpha_s, sigma_s, alpha_t, sigma_t, eta=0.0)
    assert (eta0 - mean).abs()[s > 0.05].max() > 1e-3


@pytest.mark.parametrize("sched", SCHEDULES, ids=SCHED_IDS)
def test_ddim_eta_one_sampler_equals_ddpm_sampler(sched):
    torch.manual_seed(0)
    net = pdl.models.MLPDenoiser(dim=2, width=32, depth=2).double().eval()
    z1 = NoiseSource(50, (2,), seed=4, dtype=torch.float64).randn()
    for steps in (1, 3, 20):
        a = pdl.ddim_sample(net, sched, z=z1, steps=steps, eta=1.0, seed=4)
        b = pdl.ddpm_sample(net, sched, z=z1, steps=steps, seed=4)
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


class SinglePoint(torch.nn.Module):
    """The exact denoiser of the data set {x0}: E[x | z_t] = x0, given as a v- or x-prediction."""

    def __init__(self, x0, sched, prediction):
        super().__init__()
        self.x0, self.sched, self.prediction = x0, sched, prediction

    def forward(self, z, t):
        x = self.x0.expand_as(z)
        if self.prediction == "x":
            return x
        alpha, sigma = (c[:, None].to(z.dtype) for c in self.sched.alpha_sigma(t))
        eps = (z - alpha * x) / sigma
        return alpha * eps - sigma * x  # v


@pytest.mark.parametrize("sched", SCHEDULES, ids=SCHED_IDS)
@pytest.mark.parametrize("prediction", ["x", "v"])
@pytest.mark.parametrize("steps", [1, 2, 3, 7, 64, 1000])
def test_exact_denoiser_of_one_point_returns_it_at_every_step_count(sched, prediction, steps):
    x0 = torch.tensor([[0.7, -1.3]], dtype=torch.float64)
    net = SinglePoint(x0, sched, prediction)
    z1 = NoiseSource(16, (2,), seed=2, dtype=torch.float64).randn()
    for grid in ("uniform", "logsnr") if steps < 1000 else ("uniform",):
        for eta in (0.0, 0.5, 1.0):
            out = pdl.ddim_sample(net, sched, z=z1, steps=steps, eta=eta, grid=grid, seed=2)
            torch.testing.assert_close(out, x0.expand_as(out), atol=1e-9, rtol=0)
        out = pdl.ddpm_sample(net, sched, z=z1, steps=steps, grid=grid, seed=2)
        torch.testing.assert_close(out, x0.expand_as(out), atol=1e-9, rtol=0)


@pytest.mark.parametrize("sched", SCHEDULES, ids=SCHED_IDS)
def test_deterministic_ddim_with_exact_denoiser_stays_on_the_forward_marginal(sched):
    """With x_hat = x0 exact, eps_hat stays equal to the starting noise, so every z_t of the
    eta = 0 trajectory is alpha_t x0 + sigma_t z_1: DDIM follows the forward process back."""
    x0 = torch.tensor([[0.7, -1.3]], dtype=torch.float64)
    z1 = NoiseSource(16, (2,), seed=2, dtype=torch.float64).randn()
    if float(sched.alpha_sigma(torch.tensor(1.0))[0]) > 0:  # linear-beta: z_1 must itself lie on the marginal
        alpha1, sigma1 = sched.alpha_sigma(torch.tensor(1.0, dtype=torch.float64))
        z1 = alpha1 * x0 + sigma1 * z1
        eps = (z1 - alpha1 * x0) / sigma1
    else:
        eps = z1
    _, traj = pdl.ddim_sample(SinglePoint(x0, sched, "x"), sched, z=z1, steps=10, return_trajectory=True)
    for t, z in zip(traj["t"], traj["z"]):
        torch.testing.assert_close(z, q_sample(x0.expand_as(z), t.expand(16), sched, eps), atol=1e-9, rtol=0)


def test_per_sample_seeding_for_every_sampler():
    from pdlearn.sampling import NoiseSource

    few, many = NoiseSource(10, (2,), seed=7), NoiseSource(130, (2,), seed=7)
    for _ in range(3):  # z_1 and two later draws: sample i's stream depends on (seed, i) only
        torch.testing.assert_close(few.randn(), many.randn()[:10], atol=0, rtol=0)
    torch.manual_seed(0)
    net = pdl.models.MLPDenoiser(dim=2, width=32, depth=2).eval()
    sched = pdl.CosineSchedule()
    for kwargs, sampler in [(dict(eta=0.0), pdl.ddim_sample), (dict(eta=1.0), pdl.ddim_sample), ({}, pdl.ddpm_sample)]:
        small = sampler(net, sched, n=10, steps=5, seed=7, **kwargs)
        large = sampler(net, sched, n=130, steps=5, seed=7, **kwargs)  # three noise blocks
        # the noise is identical; the network's float32 matmuls may round differently in the last bit
        # when the batch size changes (BLAS picks its blocking by shape), hence the tiny tolerance
        torch.testing.assert_close(small, large[:10], atol=1e-5, rtol=0)
        assert not torch.equal(small, sampler(net, sched, n=10, steps=5, seed=8, **kwargs))


def test_passing_the_seeds_own_noise_reproduces_n():
    """z= equal to the seed's z_1 gives the same samples as n=, also for stochastic samplers."""
    torch.manual_seed(0)
    net = pdl.models.MLPDenoiser(dim=2, width=32, depth=2).eval()
    sched = pdl.CosineSchedule()
    z1 = NoiseSource(20, (2,), seed=3).randn()
    for sampler, kwargs in [(pdl.ddim_sample, dict(eta=1.0)), (pdl.ddpm_sample, {})]:
        torch.testing.assert_close(sampler(net, sched, n=20, steps=6, seed=3, **kwargs),
                                   sampler(net, sched, z=z1, steps=6, seed=3, **kwargs), atol=0, rtol=0)


def test_trajectory_and_grids():
    torch.manual_seed(0)
    net = pdl.models.MLPDenoiser(dim=2, width=32, depth=2).eval()
    sched = pdl.CosineSchedule()
    z0, traj = pdl.ddim_sample(net, sched, n=12, steps=6, seed=0, return_trajectory=True)
    assert traj["t"].shape == (7,) and traj["z"].shape == (7, 12, 2) and traj["x_hat"].shape == (6, 12, 2)
    assert traj["t"][0] == 1 and traj["t"][-1] == 0 and torch.equal(traj["z"][-1], z0)
    torch.testing.assert_close(traj["z"][0], NoiseSource(12, (2,), seed=0).randn())
    # an explicit grid equal to a named one gives the same samples; 'logsnr' is a different grid
    for name in ("uniform", "logsnr"):
        torch.testing.assert_close(pdl.ddim_sample(net, sched, n=12, steps=6, grid=name),
                                   pdl.ddim_sample(net, sched, n=12, grid=sched.grid(6, name)))
    assert not torch.allclose(sched.grid(6, "uniform"), sched.grid(6, "logsnr"))
    lam = sched.logsnr(sched.grid(6, "logsnr")[1:-1])
    torch.testing.assert_close(lam.diff(), lam.diff()[:1].expand(4))  # equal steps in log-SNR


def test_clear_errors():
    net = pdl.models.MLPDenoiser(dim=2, width=16, depth=1).eval()
    sched = pdl.CosineSchedule()
    with pytest.raises(ValueError, match="give either n"):
        pdl.ddim_sample(net, sched, steps=4)
    with pytest.raises(ValueError, match="positive integer"):
        pdl.ddim_sample(net, sched, n=4, steps=0)
    with pytest.raises(ValueError, match="strictly decreasing"):
        pdl.ddim_sample(net, sched, n=4, grid=torch.tensor([0.0, 0.5, 1.0]))
    with pytest.raises(ValueError, match="eta must be >= 0"):
        pdl.ddim_sample(net, sched, n=4, steps=2, eta=-1.0)
    with pytest.raises(ValueError, match="spacing must be"):
        pdl.ddpm_sample(net, sched, n=4, steps=2, grid="quadratic")
    with pytest.raises(TypeError, match="float tensor"):
        pdl.ddim_invert(net, sched, torch.ones(4, 2, dtype=torch.long))


@pytest.fixture(scope="module")
def moons_model():
    """A small 2D model trained for a few seconds: enough to make inversion meaningful."""
    sched = pdl.CosineSchedule()
    x = pdl.data.toy("moons", n=4_000, seed=0)
    torch.manual_seed(0)
    net = pdl.models.MLPDenoiser(dim=2, width=64, depth=2)
    net = pdl.train_diffusion(net, x, sched, steps=1_000, seed=0, batch_size=256, progress=False)
    return net, sched


def test_inversion_then_sampling_reconstructs_the_input(moons_model):
    """Stated tolerance: on held-out two-moons points (scale ~1), inverting with 100 uniform
    steps and sampling back on the same grid reconstructs each point to a mean error below
    0.05 (measured: about 0.02), and doubling the steps at least nearly halves the error
    (the encoder and decoder are two first-order discretisations of one ODE)."""
    net, sched = moons_model
    x = pdl.data.toy("moons", n=300, seed=1)
    z1 = pdl.ddim_invert(net, sched, x, steps=100)
    assert z1.shape == x.shape and torch.isfinite(z1).all()
    assert 0.7 < float(z1.std()) < 1.2  # the codes look like unit Gaussian noise, not like data
    x_rec = pdl.ddim_sample(net, sched, z=z1, steps=100)
    err = (x_rec - x).norm(dim=1)
    torch.testing.assert_close(err, inversion_error(net, sched, x, steps=100))
    assert float(err.mean()) < 0.05
    assert float(inversion_error(net, sched, x, steps=200).mean()) < 0.7 * float(err.mean())
    # the tolerance is meaningful: 10 steps, or stochastic sampling back, do not meet it
    assert float(inversion_error(net, sched, x, steps=10).mean()) > 0.1
    noisy = pdl.ddim_sample(net, sched, z=z1, steps=100, eta=1.0)
    assert float((noisy - x).norm(dim=1).mean()) > 0.1


def test_inversion_trajectory_runs_forward_in_time(moons_model):
    net, sched = moons_model
    x = pdl.data.toy("moons", n=20, seed=2)
    z1, traj = pdl.ddim_invert(net, sched, x, steps=8, return_trajectory=True)
    assert traj["t"][0] == 0 and traj["t"][-1] == 1 and traj["z"].shape == (9, 20, 2)
    assert torch.equal(traj["z"][0], x) and torch.equal(traj["z"][-1], z1)


def test_the_mlp_embeds_one_time_once_without_reading_device_values():
    """A batch that shares one t (a scalar, or the stride-0 view ``predict`` passes) is embedded
    once; the answer equals per-example embedding. Values are read only on the CPU, never on an
    accelerator (there that would stall the device every call): a meta tensor has no values."""
    from pdlearn.models.mlp import one_time

    assert one_time(torch.tensor(0.3)) and one_time(torch.tensor([0.3])) and one_time(torch.tensor(0.3).expand(5))
    assert one_time(torch.full((5,), 0.3))  # equal values, read on the CPU
    assert not one_time(torch.tensor([0.3, 0.4]))
    assert not one_time(torch.full((5,), 0.3, device="meta"))  # not read, so not known to be equal
    net = pdl.models.MLPDenoiser(dim=2, width=32, depth=2, num_classes=3).double().eval()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.3, generator=torch.Generator().manual_seed(p.numel()))
    z = torch.randn(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    once = net(z, torch.tensor(0.7, dtype=torch.float64).expand(6), y=torch.tensor([0, 1, 2, 3, 0, 1]))
    each = net(z, torch.tensor([0.7] * 5 + [0.2], dtype=torch.float64), y=torch.tensor([0, 1, 2, 3, 0, 1]))
    assert torch.allclose(once[:5], each[:5], atol=1e-12) and not torch.allclose(once[5], each[5])
    with pytest.raises(ValueError, match=r"labels must be in 0\.\.2 \(or 3 for the null label\)"):
        net(z, 0.7, y=torch.tensor([0, 1, 2, 4, 0, 1]))
    with pytest.raises(ValueError, match="labels must be in"):
        net(z, 0.7, y=torch.tensor(-1))


# ---------------------------------------------------------------- samplers as generators of their state

def test_every_sampler_is_a_generator_whose_wrapper_keeps_its_numbers():
    """Iterating a sampler's loop yields (t, z_t, x_hat) per step; the wrapper's return value and
    trajectory are exactly those states, for every sampler of the room."""
    from pdlearn import sampling

    torch.manual_seed(0)
    net = pdl.models.MLPDenoiser(dim=2, width=32, depth=2).eval()
    sched = pdl.CosineSchedule()
    cases = [(sampling.ddim_steps, pdl.ddim_sample, dict(eta=0.5)), (sampling.ddpm_steps, pdl.ddpm_sample, {}),
             (sampling.stochastic_steps, sampling.stochastic_sample, {})]
    for loop, wrapper, kwargs in cases:
        z1, noise, times = sampling.start(net, sched, n=12, steps=5, seed=3)
        states = list(loop(net, sched, z1, times, noise, **kwargs))
        assert [float(t) for t, _, _ in states] == times[1:].tolist()
        z0, traj = wrapper(net, sched, n=12, steps=5, seed=3, return_trajectory=True, **kwargs)
        assert torch.equal(states[-1][1], z0)
        assert torch.equal(torch.stack([z1] + [z for _, z, _ in states]), traj["z"])
        assert torch.equal(torch.stack([x for _, _, x in states]), traj["x_hat"])
    x = pdl.data.toy("moons", n=12, seed=0)
    times = sched.grid(5).flip(0)
    states = list(sampling.inversion_steps(net, sched, x, times))
    assert torch.equal(states[-1][1], pdl.ddim_invert(net, sched, x, steps=5))
    # a loop can be stopped early: the state after two of five steps
    z1, noise, times = sampling.start(net, sched, n=12, steps=5, seed=3)
    it = sampling.ddim_steps(net, sched, z1, times)
    next(it)
    t, z_t, _ = next(it)
    assert float(t) == float(times[2]) and torch.equal(z_t, pdl.ddim_sample(net, sched, z=z1, grid=times[:3]))


def test_the_stochastic_sampler_lives_here_takes_a_grid_and_keeps_its_old_home():
    from pdlearn import guidance, sampling

    assert guidance.stochastic_sample is sampling.stochastic_sample
    torch.manual_seed(0)
    net = pdl.models.MLPDenoiser(dim=2, width=32, depth=2).eval()
    sched = pdl.CosineSchedule()
    # the default grid is t_k = k / N, as before; 'logsnr' and explicit times are other grids
    torch.testing.assert_close(sampling.stochastic_sample(net, sched, n=10, steps=4, seed=1),
                               sampling.stochastic_sample(net, sched, n=10, seed=1, grid=torch.linspace(1, 0, 5)),
                               atol=0, rtol=0)
    assert not torch.allclose(sampling.stochastic_sample(net, sched, n=10, steps=4, seed=1),
                              sampling.stochastic_sample(net, sched, n=10, steps=4, seed=1, grid="logsnr"))
    # one step is one DDIM step; with an exact denoiser of one point every grid returns it
    torch.testing.assert_close(sampling.stochastic_sample(net, sched, n=10, steps=1, seed=1),
                               pdl.ddim_sample(net, sched, n=10, steps=1, seed=1), atol=0, rtol=0)
    x0 = torch.tensor([[0.7, -1.3]], dtype=torch.float64)
    z1 = NoiseSource(8, (2,), seed=2, dtype=torch.float64).randn()
    for grid in ("uniform", "logsnr", "karras"):
        out = sampling.stochastic_sample(SinglePoint(x0, sched, "x"), sched, z=z1, steps=6, grid=grid)
        torch.testing.assert_close(out, x0.expand_as(out), atol=1e-9, rtol=0)


def test_one_helper_gives_the_coefficients_of_a_grid():
    """``coefficients`` computes (alpha, sigma) in float64 and rounds once: the values the samplers
    read as floats and the distiller broadcasts per sample."""
    from pdlearn.sampling import coefficients

    sched = pdl.CosineSchedule()
    like = torch.zeros(3, 2)
    times = sched.grid(8, "logsnr")
    alpha, sigma = coefficients(sched, times, like)
    a64, s64 = sched.alpha_sigma(times)
    assert alpha.dtype == torch.float32 and torch.equal(alpha, a64.float()) and torch.equal(sigma, s64.float())
    t = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64)
    assert torch.equal(coefficients(sched, t, like)[0], sched.alpha_sigma(t)[0].float())
    assert coefficients(sched, t, like.double())[1].dtype == torch.float64


def test_ddim_runs_on_the_karras_grid_and_below_t_one():
    torch.manual_seed(0)
    net = pdl.models.MLPDenoiser(dim=2, width=32, depth=2).eval()
    sched = pdl.CosineSchedule()
    out, traj = pdl.ddim_sample(net, sched, n=10, steps=6, grid="karras", return_trajectory=True)
    torch.testing.assert_close(traj["t"], sched.grid(6, "karras"))
    torch.testing.assert_close(out, pdl.ddim_sample(net, sched, n=10, grid=sched.grid(6, "karras")), atol=0, rtol=0)
    assert float(traj["t"][0]) < 1 and torch.isfinite(out).all()
