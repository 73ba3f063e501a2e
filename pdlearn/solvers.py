"""Training-free fast ODE solvers: DPM-Solver++(2M), UniPC and Heun, one loop each.

They solve the teacher's probability-flow ODE, the ODE that deterministic DDIM
discretises, with a smaller error for the same number of network calls. With
lambda = log(alpha_t / sigma_t) (half the log-SNR of ``schedules``) and the data
prediction x_hat of ``predict``, its exact solution from time s to t < s is
(Lu et al., 2022, DPM-Solver++)

    z_t = (sigma_t / sigma_s) z_s + sigma_t * integral_{lambda_s}^{lambda_t} e^lambda x_hat(z_lambda) dlambda.

The linear part, (sigma_t / sigma_s) z_s, is integrated exactly: an exponential
integrator approximates only the integral of x_hat. Holding x_hat constant over the step
gives, with h = lambda_t - lambda_s,

    z_t = (sigma_t / sigma_s) z_s - alpha_t (e^{-h} - 1) x_hat   =   alpha_t x_hat + sigma_t eps_hat,

which is exactly DDIM (first order: an error per step of order h^2, in total of order 1/N).
The second-order methods below also use the slope of x_hat in lambda, read from the last
two evaluations (multistep, no extra call) or from one extra call (Heun), and their error
falls like 1/N^2.

    METHODS     'ddim', 'dpmpp_2m', 'unipc', 'heun'
    sample      the one entry point: sample(net, sched, n=..., nfe=8, method='dpmpp_2m')

Every method is a generator of per-step states (t, z_t, x_hat), like the samplers of
``pdlearn.sampling``, and ``sample`` runs it to the end.

NFE: ``nfe`` is exactly the number of network calls of every method. 'ddim', 'dpmpp_2m' and
'unipc' take N = nfe steps of one call each (UniPC's corrector reuses the call the next step
makes anyway). 'heun' runs on a grid of K = nfe // 2 + 1 intervals: every interval but the
last (to sigma = 0, where EDM takes an Euler step) adds Heun's correction, one call more,
except the first interval when nfe is even, which is then an Euler step too (at the largest
noise the ODE's paths are nearly straight). So K + (K - 1) = nfe calls for odd nfe and
K + (K - 2) = nfe for even nfe; nfe = 1 and 2 are Euler steps, that is DDIM.

Where the grid starts at t = 1 (the cosine schedule's alpha_1 = 0, lambda = -inf), the
first step of every multistep method has h = inf and is a DDIM step, and so is the second
(its ratio r = h_prev / h is infinite): at 1 and 2 NFE DPM-Solver++ and UniPC are DDIM.
``t_max`` < 1 (see ``Schedule.grid``) starts them where lambda is finite, at the price of a
slightly wrong prior. Heun needs a finite sigma / alpha where it starts: its default grid is
EDM's ('karras', from sigma~ = 80).
"""
import math

import torch

from . import validate
from .parameterization import predict
from .sampling import _on_device, _setup, _table, _times, ddim_steps, run, sampler

METHODS = ("ddim", "dpmpp_2m", "unipc", "heun")
DEFAULT_GRID = {"ddim": "uniform", "dpmpp_2m": "uniform", "unipc": "uniform", "heun": "karras"}


def _lambdas(sched, times):
    """lambda = log(alpha / sigma) on the grid, float64 floats (-inf at alpha = 0, +inf at sigma = 0)."""
    return (sched.logsnr(times) / 2).tolist()


def dpmpp_update(z, alpha_t, sigma_t, sigma_s, h, x_hat, x_prev=None, r=None):
    """One DPM-Solver++ step from s to t (Lu et al., 2022, DPM-Solver++, Algorithm 2), data prediction:

        D   = x_hat                                                 (first order: DDIM)
        D   = (1 + 1 / (2 r)) x_hat - 1 / (2 r) x_prev,  r = h_prev / h   (second order, 2M)
        z_t = (sigma_t / sigma_s) z_s - alpha_t (e^{-h} - 1) D
    """
    d = x_hat if x_prev is None else x_hat + (x_hat - x_prev) / (2 * r)
    return (sigma_t / sigma_s) * z - alpha_t * math.expm1(-h) * d


@torch.no_grad()
def dpmpp_2m_steps(net, sched, z, times, model_kwargs=None):
    """DPM-Solver++(2M) (Lu et al., 2022, DPM-Solver++, Algorithm 2) as a generator of (t, z_t, x_hat).

    For step i from t_{i-1} to t_i, with h_i = lambda_{t_i} - lambda_{t_{i-1}} and r_i = h_{i-1} / h_i:

        x_i = x_hat(z_{t_{i-1}}, t_{i-1})                                    (one call)
        D_i = x_i                                          for i = 1 and for the last step
        D_i = (1 + 1 / (2 r_i)) x_i - 1 / (2 r_i) x_{i-1}  otherwise
        z_{t_i} = (sigma_{t_i} / sigma_{t_{i-1}}) z_{t_{i-1}} - alpha_{t_i} (e^{-h_i} - 1) D_i

    The last step, to sigma = 0 (h = inf, r = 0), is first order, as in diffusers'
    DPMSolverMultistepScheduler with final_sigmas_type='zero'.
    """
    kw = model_kwargs or {}
    alphas, sigmas = _table(sched, times, z)
    lam = _lambdas(sched, times)
    net_times = _on_device(times, z)
    x_prev, h_prev, last = None, None, len(times) - 2
    for i in range(last + 1):
        x_hat, _ = predict(net, z, net_times[i], sched, **kw)
        h = lam[i + 1] - lam[i]
        second = x_prev is not None and i < last
        z = dpmpp_update(z, alphas[i + 1], sigmas[i + 1], sigmas[i], h, x_hat,
                         x_prev if second else None, h_prev / h if second else None)
        x_prev, h_prev = x_hat, h
        yield times[i + 1], z, x_hat


def unipc_corrector(z_prev, alpha_t, sigma_t, sigma_s, h, x_new, x_hat, x_prev=None, r=None):
    """UniC with B(h) = e^h - 1 (Zhao et al., 2023), data prediction: the point z_t that the
    predictor reached from z_s is recomputed from z_s with the new evaluation x_new = x_hat(z_t, t):

        z_t^c = (sigma_t / sigma_s) z_s - alpha_t (e^{-h} - 1) x_hat
                - alpha_t B(h) (rho_1 (x_new - x_hat) + rho_0 D),     B(h) = e^{-h} - 1,

    with D = (x_prev - x_hat) / r the slope of the step before, r = (lambda_prev - lambda_s) / h.
    After a first-order predictor (no x_prev): rho_1 = 1/2. After a second-order one, (rho_0, rho_1)
    solve the order conditions [[1, 1], [r, 1]] rho = (b_1, b_2), with phi_1 = e^{-h} - 1 and
    b_1 = (phi_1 / (-h) - 1) / B, b_2 = 2 ((phi_1 / (-h) - 1) / (-h) - 1/2) / B. Written so that
    r = -inf (a previous point at lambda = -inf) gives its limit, rho_0 = 0.
    """
    phi_1 = math.expm1(-h)
    z = (sigma_t / sigma_s) * z_prev - alpha_t * phi_1 * x_hat
    if x_prev is None:
        return z - alpha_t * phi_1 * 0.5 * (x_new - x_hat)
    b1 = (phi_1 / -h - 1) / phi_1
    b2 = 2 * ((phi_1 / -h - 1) / -h - 0.5) / phi_1
    rho_0 = (b1 - b2) / (1 - r)
    rho_1 = b1 - rho_0
    return z - alpha_t * phi_1 * (rho_1 * (x_new - x_hat) + rho_0 * (x_prev - x_hat) / r)


@torch.no_grad()
def unipc_steps(net, sched, z, times, model_kwargs=None, corrector=True):
    """UniPC (Zhao et al., 2023), order 2, B(h) = e^h - 1 ('bh2'), data prediction, as a
    generator of (t, z_t, x_hat). Each step i from t_{i-1} to t_i:

        x_i = x_hat(z_{t_{i-1}}, t_{i-1})                       (one call)
        corrector (i > 1): z_{t_{i-1}} <- UniC(z_{t_{i-2}}, x_{i-1}, x_i)  (``unipc_corrector``)
        predictor: UniP-2 from z_{t_{i-1}}, which with B(h) = e^h - 1 and rho = 1/2 is exactly the
                   DPM-Solver++(2M) step (``dpmpp_update``); first order at the first and last steps.

    The corrector uses x_i, the call the step makes anyway, and keeps it as the prediction at
    the corrected point: no extra NFE. The last step (to sigma = 0) is z_0 = x_N, so the
    corrector's last correction never shows. ``corrector=False`` leaves the predictor alone,
    which is DPM-Solver++(2M). Matches diffusers' UniPCMultistepScheduler (solver_order=2,
    solver_type='bh2', predict_x0=True, lower_order_final=True).
    """
    kw = model_kwargs or {}
    alphas, sigmas = _table(sched, times, z)
    lam = _lambdas(sched, times)
    net_times = _on_device(times, z)
    last = len(times) - 2
    z_prev = x_prev = x_prev2 = None  # the point the last step started from, and the last two predictions
    prev_second = False
    for i in range(last + 1):
        x_hat, _ = predict(net, z, net_times[i], sched, **kw)
        if corrector and z_prev is not None:
            h = lam[i] - lam[i - 1]
            r = (lam[i - 2] - lam[i - 1]) / h if prev_second else None
            z = unipc_corrector(z_prev, alphas[i], sigmas[i], sigmas[i - 1], h, x_hat, x_prev,
                                x_prev2 if prev_second else None, r)
        h = lam[i + 1] - lam[i]
        second = x_prev is not None and i < last
        z_prev = z
        z = dpmpp_update(z, alphas[i + 1], sigmas[i + 1], sigmas[i], h, x_hat,
                         x_prev if second else None, (lam[i] - lam[i - 1]) / h if second else None)
        x_prev2, x_prev, prev_second = x_prev, x_hat, second
        yield times[i + 1], z, x_hat


def heun_corrected(intervals, nfe):
    """Which of ``intervals`` Heun steps take the correction so that they cost exactly ``nfe``
    calls: nfe - intervals of them, never the last (to sigma = 0), and the first ones go without
    when there is one fewer (module docstring)."""
    corrections = nfe - intervals
    if not 0 <= corrections <= intervals - 1:
        raise ValueError(f"Heun on a grid of {intervals} intervals costs between {intervals} and {2 * intervals - 1} "
                         f"calls, not nfe={nfe}; give a grid of nfe // 2 + 1 = {nfe // 2 + 1} intervals, or a "
                         "grid name")
    skipped = intervals - 1 - corrections
    return [skipped <= i < intervals - 1 for i in range(intervals)]


@torch.no_grad()
def heun_steps(net, sched, z, times, corrected=None, model_kwargs=None):
    """Heun's second-order method (Karras et al., 2022, Algorithm 1, deterministic) as a
    generator of (t, z_t, x_hat), in the book's VP variables: with x~ = z / alpha and
    sigma~ = sigma / alpha (EDM's x and sigma), the ODE is dx~ / dsigma~ = eps_hat, and from
    sigma~ to sigma~':

        Euler:  x~' = x~ + (sigma~' - sigma~) eps_hat          (in z: alpha' x_hat + sigma' eps_hat, DDIM)
        Heun:   x~' = x~ + (sigma~' - sigma~) (eps_hat + eps_hat') / 2,  eps_hat' at (x~'_Euler, sigma~')

    ``corrected[i]`` says whether interval i takes the correction (default: all but the last,
    2K - 1 calls on K intervals; ``heun_corrected`` fits them to an NFE). Needs alpha > 0 where
    it starts: at alpha = 0 (sigma~ = inf) the correction is undefined.
    """
    kw = model_kwargs or {}
    alphas, sigmas = _table(sched, times, z)
    net_times = _on_device(times, z)
    intervals = len(times) - 1
    corrected = [i < intervals - 1 for i in range(intervals)] if corrected is None else list(corrected)
    if alphas[0] <= 0 and corrected[0]:
        raise ValueError("Heun's correction is undefined where alpha_t = 0 (t = 1 on the cosine schedule, "
                         "sigma / alpha = inf): start the grid below t = 1 (grid='karras', or t_max < 1)")
    for i in range(intervals):
        a, s, a_next, s_next = alphas[i], sigmas[i], alphas[i + 1], sigmas[i + 1]
        x_hat, eps_hat = predict(net, z, net_times[i], sched, **kw)
        z_euler = a_next * x_hat + s_next * eps_hat
        if corrected[i]:
            _, eps_next = predict(net, z_euler, net_times[i + 1], sched, **kw)
            # x~' = x~ + (sigma~' - sigma~) mean(eps), times alpha': z' = (a'/a) z + (s' - a' s / a) mean(eps)
            z = (a_next / a) * z + (s_next - a_next * s / a) * (0.5 * (eps_hat + eps_next))
        else:
            z = z_euler
        yield times[i + 1], z, x_hat


@sampler
def sample(net, sched, n=None, z=None, nfe=8, method="dpmpp_2m", grid=None, seed=0, t_max=None,
           return_trajectory=False, model_kwargs=None, progress=False):
    """Sample with a training-free solver in exactly ``nfe`` network calls.

        z0 = pdl.solvers.sample(net, sched, n=1_000, nfe=8, method="dpmpp_2m", seed=0)

    ``method``: one of ``METHODS`` (module docstring). ``grid``: 'uniform', 'logsnr', 'karras'
    or explicit decreasing times (default: the method's, ``DEFAULT_GRID``: 'karras' for Heun,
    'uniform' for the others); ``t_max`` starts a named grid below t = 1 (``Schedule.grid``).
    ``n``, ``z``, ``seed``, ``model_kwargs``, ``return_trajectory`` and ``progress`` as in
    ``ddim_sample``; z_1 comes from the same per-sample seeded noise, so every method starts
    from the same z_1 for the same seed. Returns z_0, or (z_0, trajectory).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    nfe = validate.positive_int(nfe, "nfe")
    grid = DEFAULT_GRID[method] if grid is None else grid
    intervals = nfe // 2 + 1 if method == "heun" else nfe
    if isinstance(grid, str):
        times = sched.grid(intervals, grid, t_max=t_max)
    else:
        if t_max is not None:
            raise ValueError("t_max shapes a named grid; an explicit grid already starts where it starts: "
                             "pass one or the other")
        times = _times(sched, None, grid)
        if method != "heun" and len(times) - 1 != nfe:
            raise ValueError(f"{method} takes one call per step: an explicit grid of {len(times) - 1} steps costs "
                             f"{len(times) - 1} calls, not nfe={nfe}")
    z, _ = _setup(net, n, z, seed)
    kw = model_kwargs
    if method == "ddim":
        steps = ddim_steps(net, sched, z, times, model_kwargs=kw)
    elif method == "dpmpp_2m":
        steps = dpmpp_2m_steps(net, sched, z, times, kw)
    elif method == "unipc":
        steps = unipc_steps(net, sched, z, times, kw)
    else:
        steps = heun_steps(net, sched, z, times, heun_corrected(len(times) - 1, nfe), kw)
    return run(steps, z, times, return_trajectory, progress, method)
