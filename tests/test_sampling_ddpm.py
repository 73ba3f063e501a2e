"""DDPM as Ho et al. (2020) wrote it: the L_simple loss and Algorithm 2, written out from the
betas and compared with the library; per-sample seeding; sampling an exactly known model."""
import pytest
import torch

import pdlearn as pdl
from pdlearn.sampling import NoiseSource


def eps_net(seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    return pdl.models.MLPDenoiser(dim=2, width=32, depth=2, prediction="eps").to(dtype).eval()


def test_loss_simple_from_the_betas_equals_the_library():
    """L_simple = || eps - eps_theta(sqrt(abar_i) x + sqrt(1 - abar_i) eps, i) ||^2 (Ho et al., eq. 14)."""
    T = 1000
    sched = pdl.LinearBetaSchedule(T)
    betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
    abar = torch.cumprod(1 - betas, 0)
    net = eps_net()
    g = torch.Generator().manual_seed(0)
    x = pdl.data.toy("moons", 64, seed=0).double()
    i = torch.randint(1, T + 1, (64,), generator=g)
    eps = torch.randn(64, 2, generator=g, dtype=torch.float64)
    a = abar[i - 1, None]
    z = a.sqrt() * x + (1 - a).sqrt() * eps
    ours = (eps - net(z, i / T)).pow(2).mean()
    lib = pdl.diffusion_loss(net, x, sched, t=i / T, eps=eps, weighting="eps")
    torch.testing.assert_close(lib, ours, atol=1e-8, rtol=1e-8)


def ho_algorithm_2(net, T, z, noise):
    """Ho et al. (2020), Algorithm 2 with sigma_i^2 = beta_tilde_i, from the betas alone."""
    betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
    alphas = 1 - betas
    abar = torch.cumprod(alphas, 0)
    for i in range(T, 0, -1):
        eps_hat = net(z, torch.full((z.shape[0],), i / T, dtype=z.dtype))
        mean = (z - betas[i - 1] / (1 - abar[i - 1]).sqrt() * eps_hat) / alphas[i - 1].sqrt()
        var = betas[i - 1] * (1 - abar[i - 2]) / (1 - abar[i - 1]) if i > 1 else 0.0
        z = mean + var ** 0.5 * noise.randn()
    return z


@pytest.mark.parametrize("T", [10, 100])
def test_ho_algorithm_2_equals_ddpm_sample(T):
    sched = pdl.LinearBetaSchedule(T)  # the DDPM chain of length T on the continuous interface
    net = eps_net()
    noise = NoiseSource(50, (2,), seed=3, dtype=torch.float64)
    z1 = noise.randn()  # the library reads the stream in the same order: z_1, then one draw per step
    ours = ho_algorithm_2(net, T, z1, noise)
    lib = pdl.ddpm_sample(net, sched, z=z1, steps=T, seed=3)
    torch.testing.assert_close(lib, ours, atol=1e-9, rtol=1e-9)


def test_per_sample_seeding():
    """Sample i depends on (seed, i) only: the first k of n = k equal the first k of n = N > k."""
    net = eps_net(dtype=torch.float32)
    sched = pdl.LinearBetaSchedule()
    few = pdl.ddpm_sample(net, sched, n=5, steps=50, seed=11)
    many = pdl.ddpm_sample(net, sched, n=300, steps=50, seed=11)  # several noise blocks of 64
    # the noise streams are identical (test_sampling checks them bit for bit); the network's float32
    # matmuls may round differently in the last bit when the batch size changes (BLAS picks its
    # blocking by shape), and 50 steps carry that along, hence a relative tolerance of float32 size
    torch.testing.assert_close(few, many[:5], atol=1e-5, rtol=1e-5)
    other = pdl.ddpm_sample(net, sched, n=5, steps=50, seed=12)
    assert (other - few).abs().min() > 0  # another seed moves every sample


def test_trajectory_on_request():
    net = eps_net(dtype=torch.float32)
    sched = pdl.LinearBetaSchedule()
    z, traj = pdl.ddpm_sample(net, sched, n=20, steps=40, seed=0, return_trajectory=True)
    assert traj["t"].shape == (41,) and traj["t"][0] == 1 and traj["t"][-1] == 0
    assert traj["z"].shape == (41, 20, 2) and traj["x_hat"].shape == (40, 20, 2)
    torch.testing.assert_close(traj["z"][-1], z, atol=0, rtol=0)
    torch.testing.assert_close(traj["z"][0], NoiseSource(20, (2,), seed=0).randn(), atol=0, rtol=0)
    torch.testing.assert_close(z, pdl.ddpm_sample(net, sched, n=20, steps=40, seed=0), atol=0, rtol=0)


class GaussianData(torch.nn.Module):
    """The exact denoiser for data x ~ N(mu, s^2 I): E[x | z_t] = mu + alpha s^2 (z - alpha mu) / (alpha^2 s^2 + sigma^2)."""

    prediction = "x"

    def __init__(self, sched, mu, s):
        super().__init__()
        self.sched, self.mu, self.s = sched, mu, s

    def forward(self, z, t):
        alpha, sigma = (c[:, None].to(z.dtype) for c in self.sched.alpha_sigma(t))
        return self.mu + alpha * self.s**2 * (z - alpha * self.mu) / (alpha**2 * self.s**2 + sigma**2)


@pytest.mark.parametrize("sched", [pdl.LinearBetaSchedule(), pdl.CosineSchedule()], ids=["linear_beta", "cosine"])
def test_ddpm_with_the_exact_denoiser_samples_the_data_distribution(sched):
    mu, s = torch.tensor([1.0, -0.5], dtype=torch.float64), 0.3
    net = GaussianData(sched, mu, s)
    z1 = NoiseSource(4_000, (2,), seed=0, dtype=torch.float64).randn()
    x = pdl.ddpm_sample(net, sched, z=z1, steps=1000, seed=0)
    torch.testing.assert_close(x.mean(0), mu, atol=0.02, rtol=0)
    torch.testing.assert_close(x.std(0), torch.full((2,), s, dtype=torch.float64), atol=0, rtol=0.05)


def test_sampler_errors_name_the_fix():
    net = eps_net()
    with pytest.raises(ValueError, match="give either n"):
        pdl.ddpm_sample(net, pdl.LinearBetaSchedule(), steps=10)
    with pytest.raises(ValueError, match="positive integer"):
        pdl.ddpm_sample(net, pdl.LinearBetaSchedule(), n=4, steps=0)
    with pytest.raises(ValueError, match="cannot give x_hat where alpha_t = 0"):
        pdl.ddpm_sample(eps_net(dtype=torch.float32), pdl.CosineSchedule(), n=4, steps=10)
