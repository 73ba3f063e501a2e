"""The diffusion training loss and its weightings.

Every weighting is a weight w(lambda_t) on the x-space error (Salimans & Ho, 2022, sec. 4):

    L = E_{t, eps} [ w(lambda_t) ||x - x_hat(z_t)||^2 ]

    'snr' (= 'eps'):    w = SNR            == ||eps - eps_hat||^2  (Ho et al.'s L_simple)
    'x':                w = 1
    'truncated_snr':    w = max(SNR, 1)    == max(||x - x_hat||^2, ||eps - eps_hat||^2)
    'snr+1' (= 'v'):    w = SNR + 1        == ||v - v_hat||^2

Each is computed from (x_hat, eps_hat) without dividing by SNR, so it stays
finite at both ends of the schedule.
"""
import torch

from .parameterization import expand, predict

WEIGHTINGS = ("snr", "eps", "x", "truncated_snr", "snr+1", "v")


def q_sample(x, t, sched, eps):
    """The forward process: z_t = alpha_t x + sigma_t eps (t a tensor [n])."""
    alpha, sigma = sched.alpha_sigma(t)
    return expand(alpha, x) * x + expand(sigma, x) * eps


def weighted_error(x, eps, x_hat, eps_hat, alpha, sigma, weighting="snr+1"):
    """Per-example w(lambda) ||x - x_hat||^2, averaged over the data dimensions: shape [n]."""
    dims = tuple(range(1, x.ndim))
    x_err = (x - x_hat).pow(2).mean(dims)
    eps_err = (eps - eps_hat).pow(2).mean(dims)
    if weighting in ("snr", "eps"):
        return eps_err
    if weighting == "x":
        return x_err
    if weighting == "truncated_snr":
        return torch.maximum(x_err, eps_err)
    if weighting in ("snr+1", "v"):
        a, s = expand(alpha, x), expand(sigma, x)
        return (a * eps - s * x - (a * eps_hat - s * x_hat)).pow(2).mean(dims)
    raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")


def diffusion_loss(net, x, sched, t=None, eps=None, weighting="snr+1", generator=None, **model_kwargs):
    """The training loss on a batch x: t ~ U(0, 1), eps ~ N(0, I), loss = mean weighted error."""
    n = x.shape[0]
    if t is None:
        # torch.rand returns multiples of 2^-24 including exactly 0, where sigma = 0 and an
        # x-prediction network has no eps_hat; the clamp moves only that value
        t = torch.rand(n, generator=generator, device="cpu").clamp(min=2.0**-24).to(x.device, x.dtype)
    if eps is None:
        eps = torch.randn(x.shape, generator=generator, device="cpu").to(x.device, x.dtype)
    z = q_sample(x, t, sched, eps)
    x_hat, eps_hat = predict(net, z, t, sched, **model_kwargs)
    alpha, sigma = sched.alpha_sigma(t)
    return weighted_error(x, eps, x_hat, eps_hat, alpha, sigma, weighting).mean()
