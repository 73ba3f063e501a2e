"""Noise schedules on continuous time t in [0, 1] (variance preserving).

    z_t = alpha_t x + sigma_t eps,   alpha_t^2 + sigma_t^2 = 1,
    lambda_t = log(alpha_t^2 / sigma_t^2)   (log-SNR, decreasing in t).

A schedule maps t to (alpha_t, sigma_t). Both schedules of the book share this
interface, so the discrete DDPM of chapter 1 and the continuous chapters run
through the same samplers.
"""
import math

import torch

from .validate import number, positive_int


class Schedule:
    """Interface: ``alpha_sigma(t)``; everything else follows from it."""

    def alpha_sigma(self, t):
        raise NotImplementedError

    def logsnr(self, t):
        """lambda_t = log(alpha_t^2 / sigma_t^2); +inf at alpha = 1, -inf at alpha = 0."""
        alpha, sigma = self.alpha_sigma(t)
        return 2 * (torch.log(alpha) - torch.log(sigma))

    def t_from_logsnr(self, lam, iters=60):
        """Invert lambda_t by bisection (lambda is monotone decreasing in t)."""
        lam = torch.as_tensor(lam, dtype=torch.float64)
        lo, hi = torch.zeros_like(lam), torch.ones_like(lam)
        for _ in range(iters):
            mid = (lo + hi) / 2
            above = self.logsnr(mid) > lam  # still too clean: move right
            lo, hi = torch.where(above, mid, lo), torch.where(above, hi, mid)
        return (lo + hi) / 2

    def grid(self, steps, spacing="uniform", logsnr_range=(-10.0, 10.0), t_max=None, rho=7.0,
             sigma_range=(0.002, 80.0)):
        """Times t_N = t_max > t_{N-1} > ... > t_0 = 0 of an N-step sampler, float64 [N + 1].

        spacing='uniform': t_i = t_max i / N.
        spacing='logsnr':  interior points uniform in lambda between the ends of
        ``logsnr_range`` (clipped to the schedule's own range, and to lambda(t_max));
        endpoints stay t_max and 0.
        spacing='karras':  the EDM grid of Karras et al. (2022, eq. 5) in the noise level
        sigma~ = sigma_t / alpha_t (the noise of z_t / alpha_t):
            sigma~_i = (sigma~_max^(1/rho) + i / (N - 1) (sigma~_min^(1/rho) - sigma~_max^(1/rho)))^rho,
        i = 0..N-1, then t = 0; ``sigma_range`` = (sigma~_min, sigma~_max) = (0.002, 80) and
        rho = 7 are EDM's defaults, and ``t_max``, when given, sets sigma~_max instead.

        ``t_max`` (default 1; for 'karras' the t of sigma~_max = 80, about 0.992 on the cosine
        schedule) starts the grid below t = 1. A sampler on such a grid still starts from
        z ~ N(0, I), which it then takes for z_{t_max}: a slightly wrong prior, since the
        law of z_{t_max} = alpha x + sigma eps still holds alpha_{t_max} x of signal. In
        exchange no step has to start from zero signal (lambda = -inf), so a multistep
        solver's first steps need not be DDIM steps.
        """
        steps = check_steps(steps)
        if spacing == "karras":
            return self._karras_grid(steps, rho, sigma_range, t_max)
        t_max = 1.0 if t_max is None else float(t_max)
        if not 0 < t_max <= 1:
            raise ValueError(f"t_max must be in (0, 1] (where the grid starts), got {t_max}")
        if spacing == "uniform":
            return torch.linspace(t_max, 0.0, steps + 1, dtype=torch.float64)
        if spacing == "logsnr":
            lo = max(logsnr_range[0], float(self.logsnr(torch.tensor(t_max, dtype=torch.float64))))
            hi = min(logsnr_range[1], float(self.logsnr(torch.tensor(1e-6, dtype=torch.float64))))
            lam = torch.linspace(lo, hi, steps + 1, dtype=torch.float64)
            t = self.t_from_logsnr(lam)
            t[0], t[-1] = t_max, 0.0
            return t
        raise ValueError(f"spacing must be 'uniform', 'logsnr' or 'karras', got {spacing!r}")

    def _karras_grid(self, steps, rho, sigma_range, t_max):
        sigma_min, sigma_max = (float(s) for s in sigma_range)
        if t_max is not None:
            alpha, sigma = self.alpha_sigma(torch.tensor(float(t_max), dtype=torch.float64))
            if not 0 < t_max <= 1 or float(alpha) <= 0:
                raise ValueError(f"the 'karras' grid needs a finite sigma_t / alpha_t where it starts: t_max must "
                                 f"be in (0, 1) with alpha_t > 0, got t_max={t_max} (alpha = {float(alpha):.3g})")
            sigma_max = float(sigma / alpha)
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"the 'karras' grid needs 0 < sigma_min < sigma_max, got {sigma_min} and {sigma_max}")
        i = torch.arange(steps, dtype=torch.float64) / max(steps - 1, 1)
        s = (sigma_max ** (1 / rho) + i * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
        t = self.t_from_logsnr(-2 * torch.log(s))
        if t_max is not None:
            t[0] = float(t_max)
        return torch.cat([t, torch.zeros(1, dtype=torch.float64)])

def check_steps(steps):
    """``steps`` as a Python int >= 1 (numpy and 0-d torch integers too), or a clear error."""
    return positive_int(steps, "steps")


class CosineSchedule(Schedule):
    """alpha_t = cos(pi t / 2), sigma_t = sin(pi t / 2) (Nichol & Dhariwal, 2021;
    the schedule of Salimans & Ho, 2022). lambda_t = -2 log tan(pi t / 2).

    ``logsnr_min`` (default None: off) rescales time, t -> t * t_max with
    t_max = (2 / pi) atan(exp(-logsnr_min / 2)), so that lambda_1 = logsnr_min and
    alpha_1 > 0. Only an eps-prediction model needs that (its x_hat divides by
    alpha); the ablation of chapter 4 uses it.
    """

    def __init__(self, logsnr_min=None):
        if logsnr_min is not None:
            logsnr_min = number(logsnr_min, "logsnr_min", high=20.0,
                                hint="it is the log-SNR at t = 1, e.g. -10; None keeps alpha_1 = 0")
        self.logsnr_min = logsnr_min
        self.t_max = 1.0 if logsnr_min is None else (2 / math.pi) * math.atan(math.exp(-logsnr_min / 2))

    def alpha_sigma(self, t):
        t = torch.as_tensor(t)
        if not t.is_floating_point():
            t = t.double()
        if self.logsnr_min is not None:
            t = t * self.t_max
        # alpha written as sin(pi (1 - t) / 2) = cos(pi t / 2): exactly 0 at t = 1 in every
        # dtype (cos of the rounded pi/2 is 6e-17 in float64 and -4e-8 in float32)
        alpha = torch.sin((math.pi / 2) * (1 - t))
        sigma = torch.sin((math.pi / 2) * t)
        return alpha.clamp(0.0, 1.0), sigma.clamp(0.0, 1.0)

    def t_from_logsnr(self, lam):
        lam = torch.as_tensor(lam, dtype=torch.float64)
        return ((2 / math.pi) * torch.atan(torch.exp(-lam / 2)) / self.t_max).clamp(max=1.0)

    def __repr__(self):
        return "CosineSchedule()" if self.logsnr_min is None else f"CosineSchedule(logsnr_min={self.logsnr_min})"


class LinearBetaSchedule(Schedule):
    """The discrete DDPM schedule of Ho et al. (2020) on the continuous interface.

    beta_i = linspace(beta_1, beta_T, T), alpha_bar_i = prod_{j<=i} (1 - beta_j),
    i = 1..T. Time t = i / T carries alpha_t^2 = alpha_bar_i exactly (alpha_0 = 1);
    between grid points log(alpha_bar) is interpolated linearly in t. An N-step
    sampler on the uniform grid with N = T is Ho et al.'s sampler.
    """

    def __init__(self, T=1000, beta_start=1e-4, beta_end=0.02):
        T = positive_int(T, "T")
        beta_start = number(beta_start, "beta_start", 0.0, 1.0, low_open=True, high_open=True)
        beta_end = number(beta_end, "beta_end", 0.0, 1.0, low_open=True, high_open=True)
        self.T, self.beta_start, self.beta_end = T, beta_start, beta_end
        betas = torch.linspace(beta_start, beta_end, T, dtype=torch.float64)
        log_abar = torch.cumsum(torch.log1p(-betas), 0)
        self.betas = betas
        self.log_alpha_bar = torch.cat([torch.zeros(1, dtype=torch.float64), log_abar])  # [T + 1]

    def _log_alpha_bar(self, t):
        t = torch.as_tensor(t)
        dtype = t.dtype if t.is_floating_point() else torch.float64
        s = t.double().clamp(0, 1) * self.T
        i = s.floor().long().clamp(max=self.T - 1)
        frac = s - i
        table = self.log_alpha_bar.to(t.device)
        return ((1 - frac) * table[i] + frac * table[i + 1]).to(dtype)

    def alpha_sigma(self, t):
        log_abar = self._log_alpha_bar(t)
        return torch.exp(log_abar / 2), torch.sqrt(-torch.expm1(log_abar))

    def logsnr(self, t):
        log_abar = self._log_alpha_bar(t)
        return log_abar - torch.log(-torch.expm1(log_abar))

    def __repr__(self):
        return f"LinearBetaSchedule(T={self.T}, beta_start={self.beta_start}, beta_end={self.beta_end})"
