"""The training-free solvers: equal to diffusers' schedulers, their order of convergence on an
exact denoiser, where each reduces to DDIM, the NFE they cost, and the grids they run on.

The diffusers comparison needs a table both libraries accept. pdlearn's cosine schedule has
alpha_1 = 0 exactly (lambda = -inf at t = 1); diffusers' multistep schedulers need a finite
sigma = sqrt(1 - abar) / sqrt(abar) at their first timestep, and with
``rescale_betas_zero_snr`` they clamp the zero-terminal-SNR table to abar = 2^-24 there. The
tests below build that clamped table in float64 (Ho et al.'s linear betas, rescaled to zero
terminal SNR by diffusers' own function, then clamped) and give it to both: to diffusers as
its ``alphas_cumprod``, to pdlearn as a ``LinearBetaSchedule`` whose table is replaced. The
times are matched as in test_reference_diffusers.py: timestep tau is t = (tau + 1) / T, and
pdlearn runs on the grid of diffusers' "trailing" timesteps plus t = 0 (final_sigmas_type
'zero'). diffusers' DPM-Solver step rounds its sample to float32 ("upcast"), so DPM-Solver++
agrees to a few 1e-7 of the trajectory's scale; UniPC's step keeps float64 and agrees to 1e-12.
"""
import math

import pytest
import torch

import pdlearn as pdl
from pdlearn import solvers
from pdlearn.sampling import NoiseSource

diffusers = pytest.importorskip("diffusers")
from diffusers.schedulers.scheduling_ddim import rescale_zero_terminal_snr  # noqa: E402

T = 1000
N_SAMPLES = 70


class TableSchedule(pdl.LinearBetaSchedule):
    """pdlearn's discrete-schedule interface on a given table alpha_bar_1..T (alpha_bar_0 = 1)."""

    def __init__(self, alpha_bar):
        super().__init__(T=len(alpha_bar))
        self.log_alpha_bar = torch.cat([torch.zeros(1, dtype=torch.float64), alpha_bar.log()])


def clamped_zero_snr_table():
    betas = rescale_zero_terminal_snr(torch.linspace(1e-4, 0.02, T, dtype=torch.float64))
    alpha_bar = torch.cumprod(1 - betas, 0)
    alpha_bar[-1] = 2.0**-24  # what diffusers does with rescale_betas_zero_snr=True
    return alpha_bar


ALPHA_BAR = clamped_zero_snr_table()
DIFFUSERS_PREDICTION = {"eps": "epsilon", "v": "v_prediction", "x": "sample"}


def make_net(prediction, seed=0):
    torch.manual_seed(seed)
    return pdl.models.MLPDenoiser(dim=2, width=32, depth=2, prediction=prediction).double().eval()


def reference_scheduler(method, prediction, steps):
    common = dict(num_train_timesteps=T, prediction_type=DIFFUSERS_PREDICTION[prediction], solver_order=2,
                  timestep_spacing="trailing", final_sigmas_type="zero")
    if method == "dpmpp_2m":
        ref = diffusers.DPMSolverMultistepScheduler(**common, algorithm_type="dpmsolver++", solver_type="midpoint")
    else:
        ref = diffusers.UniPCMultistepScheduler(**common, solver_type="bh2", predict_x0=True,
                                                lower_order_final=True)
    ref.alphas_cumprod = ALPHA_BAR.clone()
    ref.set_timesteps(steps)
    # set_timesteps rounds sigma to float32; recompute it in float64 from its own definition
    sigma = ((1 - ALPHA_BAR) / ALPHA_BAR).sqrt()[ref.timesteps]
    ref.sigmas = torch.cat([sigma, torch.zeros(1, dtype=torch.float64)])
    return ref


def run_reference(method, net, prediction, steps, z1):
    ref = reference_scheduler(method, prediction, steps)
    z, path = z1, [z1]
    with torch.no_grad():
        for tau in ref.timesteps:
            t = torch.full((z.shape[0],), (int(tau) + 1) / T, dtype=z.dtype)
            z = ref.step(net(z, t), tau, z).prev_sample
            path.append(z)
    grid = torch.cat([(ref.timesteps.double() + 1) / T, torch.zeros(1, dtype=torch.float64)])
    return torch.stack(path), grid


def relative_gap(method, prediction, steps, seed=3):
    net, sched = make_net(prediction), TableSchedule(ALPHA_BAR)
    z1 = NoiseSource(N_SAMPLES, (2,), seed=seed, dtype=torch.float64).randn()
    path, grid = run_reference(method, net, prediction, steps, z1)
    _, traj = solvers.sample(net, sched, z=z1, nfe=steps, method=method, grid=grid, return_trajectory=True)
    assert traj["z"].shape == path.shape == (steps + 1, N_SAMPLES, 2)
    return float((traj["z"] - path).abs().max() / path.abs().max())


TOLERANCE = {"dpmpp_2m": 2e-6, "unipc": 1e-12}


@pytest.mark.parametrize("method", ["dpmpp_2m", "unipc"])
@pytest.mark.parametrize("prediction,steps", [("v", 1), ("v", 2), ("v", 3), ("v", 25), ("eps", 3), ("eps", 10),
                                              ("x", 3), ("x", 10)])
def test_solvers_match_diffusers_multistep_schedulers(method, prediction, steps):
    assert relative_gap(method, prediction, steps) < TOLERANCE[method]


def test_the_diffusers_comparison_catches_a_wrong_coefficient(monkeypatch):
    """Planted defects: DPM-Solver++(2M) with 1 / r for 1 / (2 r), and UniPC's corrector with
    rho = 0.4 for 1/2 after its first step, each move the trajectory a thousand times beyond the
    tolerance."""
    real_update, real_corrector = solvers.dpmpp_update, solvers.unipc_corrector
    assert relative_gap("dpmpp_2m", "v", 8) < TOLERANCE["dpmpp_2m"]

    def wrong_update(z, alpha_t, sigma_t, sigma_s, h, x_hat, x_prev=None, r=None):
        return real_update(z, alpha_t, sigma_t, sigma_s, h, x_hat, x_prev, None if r is None else r / 2)

    monkeypatch.setattr(solvers, "dpmpp_update", wrong_update)
    assert relative_gap("dpmpp_2m", "v", 8) > 1e3 * TOLERANCE["dpmpp_2m"]
    monkeypatch.setattr(solvers, "dpmpp_update", real_update)

    def wrong_corrector(z_prev, alpha_t, sigma_t, sigma_s, h, x_new, x_hat, x_prev=None, r=None):
        right = real_corrector(z_prev, alpha_t, sigma_t, sigma_s, h, x_new, x_hat, x_prev, r)
        if x_prev is not None:
            return right
        return right + alpha_t * math.expm1(-h) * 0.1 * (x_new - x_hat)  # rho = 0.4

    monkeypatch.setattr(solvers, "unipc_corrector", wrong_corrector)
    assert relative_gap("unipc", "v", 8) > 1e3 * TOLERANCE["unipc"]


# ---------------------------------------------------------------- order of convergence

class GaussianDenoiser(torch.nn.Module):
    """The exact denoiser E[x | z_t] of data x ~ N(mu, s^2 I), as an x-prediction network."""

    prediction, sample_shape = "x", (2,)

    def __init__(self, mu, s, sched):
        super().__init__()
        self.mu, self.s, self.sched = mu, s, sched
        self.calls = 0

    def forward(self, z, t):
        self.calls += 1
        alpha, sigma = (c[:, None].to(z.dtype) for c in self.sched.alpha_sigma(t.double()))
        return self.mu + alpha * self.s**2 / (alpha**2 * self.s**2 + sigma**2) * (z - alpha * self.mu)


def exact_solution(z, t, mu, s, sched):
    """The probability-flow ODE from (z, t) to t = 0 for Gaussian data: it keeps the whitened
    variable (z - alpha mu) / sqrt(alpha^2 s^2 + sigma^2), so x = mu + s * that."""
    alpha, sigma = sched.alpha_sigma(torch.tensor(float(t), dtype=torch.float64))
    return mu + s * (z - alpha * mu) / torch.sqrt(alpha**2 * s**2 + sigma**2)


MU, S = torch.tensor([0.5, -1.0], dtype=torch.float64), 0.3


def errors(method, nfes, sched=None, grid="karras"):
    sched = sched or pdl.CosineSchedule()
    net = GaussianDenoiser(MU, S, sched)
    z1 = NoiseSource(256, (2,), seed=0, dtype=torch.float64).randn()
    found = []
    for nfe in nfes:
        out, traj = solvers.sample(net, sched, z=z1, nfe=nfe, method=method, grid=grid, return_trajectory=True)
        found.append(float((out - exact_solution(z1, traj["t"][0], MU, S, sched)).abs().max()))
    return found


def observed_order(errs):
    """The least-squares slope of -log2(error) against log2(N), N doubling each time."""
    y = torch.tensor([-math.log2(e) for e in errs], dtype=torch.float64)
    x = torch.arange(len(errs), dtype=torch.float64)
    return float(((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum())


NFES = (16, 32, 64, 128)
ORDER = {"ddim": (0.85, 1.15), "dpmpp_2m": (1.8, 2.4), "heun": (1.8, 2.4), "unipc": (2.6, 3.6)}


@pytest.mark.parametrize("sched", [pdl.CosineSchedule(), pdl.LinearBetaSchedule()], ids=["cosine", "linear_beta"])
@pytest.mark.parametrize("method", solvers.METHODS)
def test_observed_order_of_convergence_on_an_exact_gaussian_denoiser(method, sched):
    """On EDM's grid (which starts at a finite lambda), measured slopes: DDIM 0.98, DPM-Solver++(2M)
    2.1, Heun 2.1, UniPC 3.2: its corrector adds one order to the second-order predictor
    (Zhao et al., 2023)."""
    low, high = ORDER[method]
    errs = errors(method, NFES, sched)
    assert all(b < a for a, b in zip(errs, errs[1:])), errs
    assert low < observed_order(errs) < high, errs


def test_the_order_check_catches_a_first_order_slip(monkeypatch):
    """A planted defect: DPM-Solver++ extrapolating with the slope of the wrong sign is first order."""
    real_update = solvers.dpmpp_update

    def wrong_update(z, alpha_t, sigma_t, sigma_s, h, x_hat, x_prev=None, r=None):
        return real_update(z, alpha_t, sigma_t, sigma_s, h, x_hat, x_prev, None if r is None else -r)

    monkeypatch.setattr(solvers, "dpmpp_update", wrong_update)
    assert observed_order(errors("dpmpp_2m", NFES)) < 1.3


def test_every_solver_is_exact_for_a_single_point():
    """With x_hat constant (the data is one point), the exponential integrator is exact and so
    is every method, at every NFE and on every grid."""
    x0 = torch.tensor([[0.7, -1.3]], dtype=torch.float64)
    sched = pdl.CosineSchedule()
    net = GaussianDenoiser(x0, 0.0, sched)
    z1 = NoiseSource(16, (2,), seed=2, dtype=torch.float64).randn()
    for method in solvers.METHODS:
        for nfe in (1, 2, 3, 4, 7):
            for grid in ("uniform", "logsnr", "karras"):
                if method == "heun" and grid != "karras":
                    continue
                out = solvers.sample(net, sched, z=z1, nfe=nfe, method=method, grid=grid)
                torch.testing.assert_close(out, x0.expand_as(out), atol=1e-9, rtol=0)


# ---------------------------------------------------------------- where each method is DDIM

def test_each_method_reduces_to_ddim_where_its_paper_says():
    torch.manual_seed(0)
    net = pdl.models.MLPDenoiser(dim=2, width=32, depth=2).double().eval()
    sched = pdl.CosineSchedule()
    z1 = NoiseSource(40, (2,), seed=1, dtype=torch.float64).randn()
    close = dict(atol=1e-12, rtol=1e-12)

    def ddim(times):
        return pdl.ddim_sample(net, sched, z=z1, grid=times)

    # DPM-Solver++'s first-order step is DDIM (Lu et al., 2022): one step on any grid
    for t_max in (1.0, 0.9, 0.5):
        times = sched.grid(1, "uniform", t_max=t_max)
        for method in ("dpmpp_2m", "unipc"):
            torch.testing.assert_close(solvers.sample(net, sched, z=z1, nfe=1, method=method, grid=times),
                                       ddim(times), **close)
    # from t = 1 (lambda = -inf) the first two steps are first order: at 2 NFE both are DDIM
    for method in ("dpmpp_2m", "unipc"):
        torch.testing.assert_close(solvers.sample(net, sched, z=z1, nfe=2, method=method), ddim(sched.grid(2)),
                                   **close)
    # Euler in sigma / alpha is DDIM (Karras et al., 2022): Heun at 1 and 2 NFE, or without corrections
    for nfe in (1, 2):
        times = sched.grid(nfe // 2 + 1, "karras")
        torch.testing.assert_close(solvers.sample(net, sched, z=z1, nfe=nfe, method="heun"), ddim(times), **close)
    times = sched.grid(6, "karras")
    steps = solvers.heun_steps(net, sched, z1, times, corrected=[False] * 6)
    torch.testing.assert_close(pdl.sampling.run(steps, z1, times), ddim(times), **close)
    # UniPC's predictor with B(h) = e^h - 1 is DPM-Solver++(2M): UniPC without its corrector
    for nfe in (3, 5, 10):
        times = sched.grid(nfe)
        torch.testing.assert_close(pdl.sampling.run(solvers.unipc_steps(net, sched, z1, times, corrector=False),
                                                    z1, times),
                                   solvers.sample(net, sched, z=z1, nfe=nfe, method="dpmpp_2m"), **close)
    # and the checks can tell the methods apart where they are not DDIM
    for method in ("dpmpp_2m", "unipc", "heun"):
        times = sched.grid(4 // 2 + 1 if method == "heun" else 4, solvers.DEFAULT_GRID[method])
        assert (solvers.sample(net, sched, z=z1, nfe=4, method=method) - ddim(times)).abs().max() > 1e-4
    assert (solvers.sample(net, sched, z=z1, nfe=5, method="unipc")
            - solvers.sample(net, sched, z=z1, nfe=5, method="dpmpp_2m")).abs().max() > 1e-4


# ---------------------------------------------------------------- NFE, grids, seeds, errors

@pytest.mark.parametrize("method", solvers.METHODS)
def test_nfe_is_exactly_the_number_of_network_calls(method):
    sched = pdl.CosineSchedule()
    net = GaussianDenoiser(MU, S, sched)
    for nfe in range(1, 12):
        net.calls = 0
        out, traj = solvers.sample(net, sched, n=5, nfe=nfe, method=method, return_trajectory=True)
        assert net.calls == nfe and torch.isfinite(out).all()
        intervals = nfe // 2 + 1 if method == "heun" else nfe
        assert traj["z"].shape == (intervals + 1, 5, 2) and traj["t"][-1] == 0


def test_heun_corrections_fit_the_budget():
    assert solvers.heun_corrected(1, 1) == [False]
    assert solvers.heun_corrected(3, 5) == [True, True, False]   # odd: all but the last
    assert solvers.heun_corrected(3, 4) == [False, True, False]  # even: the first goes without too
    with pytest.raises(ValueError, match="between 3 and 5 calls"):
        solvers.heun_corrected(3, 6)


def test_grids_start_where_asked():
    sched = pdl.CosineSchedule()
    karras = sched.grid(8, "karras")
    sigma_tilde = (lambda a_s: a_s[1] / a_s[0])(sched.alpha_sigma(karras[:-1]))
    torch.testing.assert_close(sigma_tilde[[0, -1]], torch.tensor([80.0, 0.002], dtype=torch.float64))
    rho = sigma_tilde ** (1 / 7)
    torch.testing.assert_close(rho.diff(), rho.diff()[:1].expand(7))  # uniform in sigma~^(1/7)
    assert karras[-1] == 0 and (karras.diff() < 0).all() and 0.99 < karras[0] < 0.995
    for spacing in ("uniform", "logsnr", "karras"):
        times = sched.grid(6, spacing, t_max=0.9)
        assert times[0] == 0.9 and times[-1] == 0 and (times.diff() < 0).all() and len(times) == 7
    assert torch.equal(sched.grid(5, "uniform", t_max=1.0), sched.grid(5))
    with pytest.raises(ValueError, match="finite sigma_t / alpha_t"):
        sched.grid(4, "karras", t_max=1.0)
    with pytest.raises(ValueError, match="t_max must be in"):
        sched.grid(4, "uniform", t_max=1.5)
    with pytest.raises(ValueError, match="'karras'"):
        sched.grid(4, "cubic")


def test_solvers_start_from_the_samplers_noise_and_refuse_bad_input():
    sched = pdl.CosineSchedule()
    torch.manual_seed(0)
    net = pdl.models.MLPDenoiser(dim=2, width=16, depth=1).eval()
    torch.testing.assert_close(solvers.sample(net, sched, n=30, nfe=6, method="ddim", seed=4),
                               pdl.ddim_sample(net, sched, n=30, steps=6, seed=4), atol=0, rtol=0)
    few = solvers.sample(net, sched, n=10, nfe=6, seed=4)
    many = solvers.sample(net, sched, n=130, nfe=6, seed=4)  # per-sample seeds: the same first 10
    torch.testing.assert_close(few, many[:10], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="method must be one of"):
        solvers.sample(net, sched, n=4, method="dpm_fast")
    with pytest.raises(ValueError, match="nfe must be a positive integer"):
        solvers.sample(net, sched, n=4, nfe=0)
    with pytest.raises(ValueError, match="costs 4 calls, not nfe=8"):
        solvers.sample(net, sched, n=4, nfe=8, grid=sched.grid(4))
    with pytest.raises(ValueError, match="Heun's correction is undefined"):
        solvers.sample(net, sched, n=4, nfe=5, method="heun", grid="uniform")
    with pytest.raises(ValueError, match="pass one or the other"):
        solvers.sample(net, sched, n=4, nfe=4, grid=sched.grid(4), t_max=0.9)
