"""Samplers: DDPM ancestral sampling, DDIM (with eta), DDIM inversion and the stochastic
sampler of guided distillation.

Every sampler is one loop over a time grid t_N = 1 > ... > t_0 = 0, written as a
generator that yields its state after each step, (t, z_t, x_hat), in the spirit of
smalldiffusion: a notebook can plot, animate or stop early without callbacks.

    z, noise, times = start(net, sched, n=1_000, steps=8, seed=0)
    for t, z_t, x_hat in ddim_steps(net, sched, z, times, noise):
        ...

A thin wrapper per sampler runs its generator to the end (``run``) and shares one
signature: ``sampler(net, sched, n=None, z=None, steps=..., seed=0, grid=...)``.
The training-free ODE solvers of ``pdlearn.solvers`` are generators of the same kind.

Grids (``grid=``, see ``Schedule.grid``):
    'uniform'  t_k = k / N. On ``LinearBetaSchedule`` (t = (tau + 1) / T for
               diffusers' timestep tau) this is the "trailing" spacing of
               diffusers: timesteps 999, 999 - T/N, ..., T/N - 1, then alpha = 1.
    'logsnr'   interior times uniform in lambda_t (log-SNR); endpoints 1 and 0.
    'karras'   the EDM grid in sigma_t / alpha_t (Karras et al., 2022), from sigma~ = 80.
    a tensor   any decreasing times in [0, 1], used as given.

Noise is seeded per sample (see ``NoiseSource``): sample i depends only on
(seed, i), never on how many samples are drawn with it. The stream is read in
one order by every sampler: z_1 first, then one draw per step. When z_1 is
passed in (``z=``) its draw is skipped, not reused, so passing the seed's own
z_1 reproduces the call with ``n=`` exactly.
"""
import functools

import torch

from . import validate
from .data import as_data
from .parameterization import predict
from .progress import bar
from .schedules import check_steps
from .seeding import derive_seed

BLOCK = 64  # samples per random generator


class NoiseSource:
    """Per-sample seeded Gaussian noise, in the spirit of EDM's StackedRandomGenerator.

    Samples are grouped in fixed blocks of 64; block b has its own generator seeded
    with (seed, b), and every draw takes a full block. So sample i's noise depends
    only on (seed, i): drawing 10 or 10,000 samples gives the same first 10.
    """

    def __init__(self, n, shape, seed=0, dtype=torch.float32, device="cpu"):
        self.n, self.shape, self.dtype, self.device = n, tuple(shape), dtype, device
        n_blocks = (n + BLOCK - 1) // BLOCK
        self.generators = [torch.Generator().manual_seed(derive_seed(seed, "noise", b)) for b in range(n_blocks)]
        self.skipped = 0

    def skip(self):
        """Pass over one draw. It is made (and thrown away) only if a later draw is asked for, so a
        deterministic sampler started from a given z_1 never pays for it."""
        self.skipped += 1

    def randn(self):
        for _ in range(self.skipped):
            self._draw()
        self.skipped = 0
        return self._draw()

    def _draw(self):
        blocks = [torch.randn((BLOCK, *self.shape), generator=g, dtype=torch.float64) for g in self.generators]
        return torch.cat(blocks)[: self.n].to(self.device, self.dtype)


def _sample_shape(net, z, n):
    if z is not None:
        return z
    if n is None:
        raise ValueError("give either n (how many samples) or z (the starting noise z_1, shape [n, ...])")
    if not hasattr(net, "sample_shape"):
        raise ValueError(f"{type(net).__name__} has no `sample_shape`; pass z= (the starting noise) instead of n=")
    return None


def _setup(net, n, z, seed):
    """Starting noise z_1 and the noise source for later steps."""
    _sample_shape(net, z, n)
    if z is not None:
        validate.like_network(z, net, "z")
    else:
        n = validate.positive_int(n, "n")
    param = next(net.parameters(), None) if isinstance(net, torch.nn.Module) and z is None else None
    device = z.device if z is not None else (param.device if param is not None else torch.device("cpu"))
    dtype = z.dtype if z is not None else torch.float32
    shape = tuple(z.shape[1:]) if z is not None else tuple(net.sample_shape)
    count = z.shape[0] if z is not None else int(n)
    noise = NoiseSource(count, shape, seed=seed, dtype=dtype, device=device)
    if z is not None:
        noise.skip()  # z_1 of this seed; the per-step draws come after it either way
        return z, noise
    return noise.randn(), noise


def _times(sched, steps, grid):
    """The grid as a float64 tensor of decreasing times: a spacing name or explicit times."""
    if isinstance(grid, str):
        return sched.grid(check_steps(steps), grid)
    times = torch.as_tensor(grid, dtype=torch.float64).flatten()
    if times.numel() < 2 or not (times[1:] < times[:-1]).all() or times[0] > 1 or times[-1] < 0:
        raise ValueError("an explicit grid must be a strictly decreasing sequence of at least two times in [0, 1], "
                         f"for example sched.grid(8) or torch.linspace(1, 0, 9); got {times.tolist()[:6]}...")
    return times


def ddim_step(x_hat, eps_hat, alpha_s, sigma_s, alpha_t, sigma_t, eta=0.0, noise=None):
    """One DDIM step from t to s < t (Song, Meng & Ermon, 2021, eqs. 12 and 16, in VP notation):

        c   = eta * sqrt(sigma_s^2 / sigma_t^2 * (1 - alpha_t^2 / alpha_s^2))
        z_s = alpha_s x_hat + sqrt(sigma_s^2 - c^2) eps_hat + c * noise

    eta = 0 is deterministic DDIM; with eta = 1, c^2 is the variance of the DDPM
    posterior q(z_s | z_t, x) and the mean is its mean (``ddpm_posterior``) when
    eps_hat = (z_t - alpha_t x_hat) / sigma_t. Coefficients are scalars or tensors
    broadcastable against x_hat; ``noise`` is needed only when eta > 0.
    """
    if eta < 0:
        raise ValueError(f"eta must be >= 0 (0: deterministic DDIM, 1: DDPM posterior variance), got {eta}")
    if eta == 0:  # c = 0: deterministic DDIM
        return alpha_s * x_hat + sigma_s * eps_hat
    alpha_s, sigma_s, alpha_t, sigma_t = (torch.as_tensor(a, dtype=x_hat.dtype, device=x_hat.device)
                                          for a in (alpha_s, sigma_s, alpha_t, sigma_t))
    c = eta * torch.sqrt((sigma_s**2 / sigma_t**2) * (1 - alpha_t**2 / alpha_s**2))
    z_s = alpha_s * x_hat + torch.sqrt((sigma_s**2 - c**2).clamp(min=0)) * eps_hat
    if eta > 0:
        if noise is None:
            raise ValueError("ddim_step with eta > 0 adds c * noise: pass noise= (a standard normal tensor like x_hat)")
        z_s = z_s + c * noise
    return z_s


def ddpm_posterior(z_t, x_hat, alpha_s, sigma_s, alpha_t, sigma_t):
    """Mean and variance of q(z_s | z_t, x = x_hat) for s < t (Ho et al., 2020, eq. 7;
    Kingma et al., 2021, eq. 32):

        alpha_ts = alpha_t / alpha_s,  sigma_ts^2 = sigma_t^2 - alpha_ts^2 sigma_s^2
        mean = alpha_ts sigma_s^2 / sigma_t^2 z_t + alpha_s sigma_ts^2 / sigma_t^2 x_hat
        var  = sigma_ts^2 sigma_s^2 / sigma_t^2
    """
    alpha_ts = alpha_t / alpha_s
    sigma2_ts = sigma_t**2 - alpha_ts**2 * sigma_s**2
    mean = (alpha_ts * sigma_s**2 / sigma_t**2) * z_t + (alpha_s * sigma2_ts / sigma_t**2) * x_hat
    return mean, sigma2_ts * sigma_s**2 / sigma_t**2


def coefficients(sched, t, like):
    """(alpha_t, sigma_t) at the times ``t`` (a grid, or one time per sample): computed in
    float64 where t lives, then rounded once to ``like``'s dtype. Samplers read a grid's
    as Python floats (``.tolist()``: no tensor arithmetic per step for the scalars);
    distillers broadcast per-sample ones against z with ``parameterization.expand``."""
    alpha, sigma = sched.alpha_sigma(torch.as_tensor(t, dtype=torch.float64))
    return alpha.to(like.dtype), sigma.to(like.dtype)


def _table(sched, times, like):
    alpha, sigma = coefficients(sched, times, like)
    return alpha.tolist(), sigma.tolist()


def _on_device(times, z):
    """The grid as the network reads it (z's device and dtype), copied once: a copy of each
    step's time to a GPU would make the host wait for the device at every step."""
    return times.to(z.device, z.dtype)


def start(net, sched, n=None, z=None, steps=50, seed=0, grid="uniform"):
    """What every sampler starts from: (z_1, noise, times). z_1 is ``z`` or the first draw of
    per-sample seeded noise for ``n`` samples of shape ``net.sample_shape``; ``noise`` is the
    ``NoiseSource`` for the draws of later steps; ``times`` the grid (module docstring)."""
    z, noise = _setup(net, n, z, seed)
    return z, noise, _times(sched, steps, grid)


def run(steps, z, times, return_trajectory=False, progress=False, desc="sampling"):
    """Run a sampler's generator of per-step states to the end.

    ``steps`` yields (t, z_t, x_hat) after each step: the time reached, the state there, and
    the prediction the step was taken with. Returns the last z, or (z, trajectory) with
    trajectory['t'] = ``times`` [N+1], ['z'] [N+1, n, ...] (the start ``z`` first) and
    ['x_hat'] [N, n, ...].
    """
    zs, x_hats = [z], []
    count = len(times) - 1
    for _, z, x_hat in (trange_over(steps, count, desc) if progress else steps):
        if return_trajectory:
            zs.append(z)
            x_hats.append(x_hat)
    if not return_trajectory:
        return z
    return z, {"t": times, "z": torch.stack(zs), "x_hat": torch.stack(x_hats)}


def trange_over(steps, count, desc):
    return bar(steps, total=count, desc=desc, leave=False)


# ---------------------------------------------------------------- the samplers, one loop each

@torch.no_grad()
def ddim_steps(net, sched, z, times, noise=None, eta=0.0, model_kwargs=None):
    """DDIM as a generator: for each step t -> s of ``times``, yields (s, z_s, x_hat) with

        (x_hat, eps_hat) = predict(net, z_t, t),  z_s = ddim_step(x_hat, eps_hat, ..., eta, noise).

    ``noise`` (a ``NoiseSource``) is read once per step when eta > 0."""
    kw = model_kwargs or {}
    alphas, sigmas = _table(sched, times, z)
    net_times = _on_device(times, z)
    for i in range(len(times) - 1):
        x_hat, eps_hat = predict(net, z, net_times[i], sched, **kw)
        step_noise = noise.randn() if eta > 0 else None
        z = ddim_step(x_hat, eps_hat, alphas[i + 1], sigmas[i + 1], alphas[i], sigmas[i], eta, step_noise)
        yield times[i + 1], z, x_hat


@torch.no_grad()
def ddpm_steps(net, sched, z, times, noise, model_kwargs=None):
    """Ancestral sampling as a generator: for each step t -> s, yields (s, z_s, x_hat) with
    z_s = mean + sqrt(var) * noise, (mean, var) of q(z_s | z_t, x = x_hat) (``ddpm_posterior``)."""
    kw = model_kwargs or {}
    alphas, sigmas = _table(sched, times, z)
    net_times = _on_device(times, z)
    for i in range(len(times) - 1):
        x_hat, _ = predict(net, z, net_times[i], sched, **kw)
        mean, var = ddpm_posterior(z, x_hat, alphas[i + 1], sigmas[i + 1], alphas[i], sigmas[i])
        step_noise = noise.randn()
        z = mean + var**0.5 * step_noise if var > 0 else mean
        yield times[i + 1], z, x_hat


@torch.no_grad()
def inversion_steps(net, sched, x, times, model_kwargs=None):
    """DDIM inversion as a generator along increasing ``times`` (0 first): for each step s -> t,
    yields (t, z_t, x_hat) with (x_hat, eps_hat) = predict(net, z_s, s), z_t = alpha_t x_hat + sigma_t eps_hat."""
    kw = model_kwargs or {}
    alphas, sigmas = _table(sched, times, x)
    net_times = _on_device(times, x)
    z = x
    for i in range(len(times) - 1):
        x_hat, eps_hat = predict(net, z, net_times[i], sched, **kw)
        z = alphas[i + 1] * x_hat + sigmas[i + 1] * eps_hat
        yield times[i + 1], z, x_hat


@torch.no_grad()
def stochastic_steps(net, sched, z, times, noise, model_kwargs=None):
    """The stochastic sampler of Meng et al. (2023, sec. 3.3) as a generator: from t_i, one
    deterministic DDIM step two grid points down to u = t_{i+2}, then re-noise forward to
    s = t_{i+1} with q(z_s | z_u); yields (s, z_s, x_hat). The last step (to t_N = 0) is one
    deterministic DDIM step."""
    kw = model_kwargs or {}
    alphas, sigmas = _table(sched, times, z)
    net_times = _on_device(times, z)
    last = len(times) - 2
    for i in range(last + 1):
        x_hat, eps_hat = predict(net, z, net_times[i], sched, **kw)
        if i == last:
            z = ddim_step(x_hat, eps_hat, alphas[i + 1], sigmas[i + 1], alphas[i], sigmas[i])
        else:
            alpha_u, sigma_u = alphas[i + 2], sigmas[i + 2]
            z_u = ddim_step(x_hat, eps_hat, alpha_u, sigma_u, alphas[i], sigmas[i])
            ratio = alphas[i + 1] / alpha_u
            z = ratio * z_u + max(sigmas[i + 1] ** 2 - ratio**2 * sigma_u**2, 0.0) ** 0.5 * noise.randn()
        yield times[i + 1], z, x_hat


# ---------------------------------------------------------------- the wrappers: today's calls

def sampler(fn):
    """Decorator of the public samplers: no gradients, and the network in eval mode while it
    samples (dropout off), put back in training mode afterwards if it was there. Sampling a
    network left in training mode would otherwise draw with dropout on, silently."""
    @functools.wraps(fn)
    def wrapper(net, *args, **kwargs):
        training = isinstance(net, torch.nn.Module) and net.training
        if training:
            net.eval()
        try:
            with torch.no_grad():
                return fn(net, *args, **kwargs)
        finally:
            if training:
                net.train()
    return wrapper


@sampler
def ddim_sample(net, sched, n=None, z=None, steps=50, eta=0.0, seed=0, grid="uniform",
                return_trajectory=False, model_kwargs=None, progress=False):
    """DDIM sampling (Song, Meng & Ermon, 2021, eq. 12): for each step t -> s of the grid,

        (x_hat, eps_hat) = predict(net, z_t, t)
        z_s = alpha_s x_hat + sqrt(sigma_s^2 - c^2) eps_hat + c * noise,
        c   = eta * sqrt(sigma_s^2 / sigma_t^2 * (1 - alpha_t^2 / alpha_s^2))   (``ddim_step``).

    eta = 0: deterministic, an Euler step of the probability-flow ODE in
    (z / alpha, sigma / alpha); eta = 1: the DDPM posterior (same as ``ddpm_sample``).
    Start from z_1 = ``z`` or from per-sample seeded noise of ``n`` samples of
    shape ``net.sample_shape``. ``grid``: 'uniform', 'logsnr', 'karras' or explicit times
    (module docstring). Returns z_0 [n, ...], or (z_0, trajectory) with
    trajectory['t'] [N+1], ['z'] [N+1, n, ...] (z_1 first) and ['x_hat'] [N, n, ...].
    The loop itself is ``ddim_steps``.
    """
    z, noise, times = start(net, sched, n, z, steps, seed, grid)
    return run(ddim_steps(net, sched, z, times, noise, eta, model_kwargs), z, times, return_trajectory, progress,
               "DDIM")


@sampler
def ddpm_sample(net, sched, n=None, z=None, steps=1000, seed=0, grid="uniform",
                return_trajectory=False, model_kwargs=None, progress=False):
    """Ancestral sampling (Ho et al., 2020, Algorithm 2) on the grid: for each step t -> s,

        z_s = mean + sqrt(var) * noise,  (mean, var) of q(z_s | z_t, x = x_hat)   (``ddpm_posterior``).

    With the LinearBetaSchedule and steps = 1000 this is Ho et al.'s sampler with the
    posterior variance (diffusers' 'fixed_small'); on any grid it is
    ``ddim_sample`` with eta = 1. Same signature and return value as ``ddim_sample``;
    the loop is ``ddpm_steps``.
    """
    z, noise, times = start(net, sched, n, z, steps, seed, grid)
    return run(ddpm_steps(net, sched, z, times, noise, model_kwargs), z, times, return_trajectory, progress, "DDPM")


@sampler
def ddim_invert(net, sched, x, steps=50, grid="uniform", return_trajectory=False, model_kwargs=None,
                progress=False):
    """DDIM inversion: the deterministic encoder x = z_0 -> z_1, the eta = 0 update run
    backwards along the grid (Song, Meng & Ermon, 2021, sec. 4.3; Dhariwal & Nichol,
    2021, app. F). Each step s -> t > s evaluates the network at the current point s:

        (x_hat, eps_hat) = predict(net, z_s, s);  z_t = alpha_t x_hat + sigma_t eps_hat.

    Sampling with ``ddim_sample`` on the same grid from the returned z_1 reconstructs
    x up to the discretisation error, which shrinks like 1 / steps
    (``inversion_error`` measures it). The first step evaluates the network at
    t = 0, so it needs an 'eps' or 'v' network (an 'x' network has no eps_hat there).
    Returns z_1, or (z_1, trajectory) with times increasing from 0 to 1; the loop is
    ``inversion_steps``.
    """
    x = as_data(x, "x")
    times = _times(sched, steps, grid).flip(0)  # 0 -> 1
    return run(inversion_steps(net, sched, x, times, model_kwargs), x, times, return_trajectory, progress,
               "DDIM inversion")


@sampler
def stochastic_sample(net, sched, n=None, z=None, steps=4, seed=0, grid="uniform", return_trajectory=False,
                      model_kwargs=None, progress=False):
    """The stochastic N-step sampler of Meng et al. (2023, sec. 3.3), on the grid t_N > ... > t_0
    (default t_k = k / N). From t = t_k: one deterministic DDIM step two grid points down, to
    u = t_{k-2} (on the uniform grid a step of length 2/N), then re-noise forward to
    s = t_{k-1} with q(z_s | z_u):

        z_u = alpha_u x_hat + sigma_u eps_hat
        z_s = (alpha_s / alpha_u) z_u + sqrt(sigma_s^2 - (alpha_s / alpha_u)^2 sigma_u^2) * noise

    The last step (from t_1 to 0) is deterministic, so N = 1 is one DDIM step. Same
    signature and return value as ``ddim_sample``; the loop is ``stochastic_steps``.
    """
    z, noise, times = start(net, sched, n, z, steps, seed, grid)
    return run(stochastic_steps(net, sched, z, times, noise, model_kwargs), z, times, return_trajectory, progress,
               "stochastic sampler")


def inversion_error(net, sched, x, steps=50, grid="uniform", model_kwargs=None):
    """Per-example reconstruction error of inversion then sampling on the same grid:

        err_i = || ddim_sample(ddim_invert(x_i)) - x_i ||   (Euclidean, over all dimensions), shape [n].
    """
    x = as_data(x, "x")
    z1 = ddim_invert(net, sched, x, steps=steps, grid=grid, model_kwargs=model_kwargs)
    x_rec = ddim_sample(net, sched, z=z1, steps=steps, grid=grid, model_kwargs=model_kwargs)
    return (x_rec - x).flatten(1).norm(dim=1)
