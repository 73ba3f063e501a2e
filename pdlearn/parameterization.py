"""eps / x / v parameterizations, and the one function that reads them.

With z = alpha x + sigma eps and v = alpha eps - sigma x (Salimans & Ho, 2022, eq. 4):

    eps-prediction:  x_hat = (z - sigma eps_hat) / alpha
    x-prediction:    eps_hat = (z - alpha x_hat) / sigma
    v-prediction:    x_hat = alpha z - sigma v_hat,  eps_hat = sigma z + alpha v_hat

``x_eps_from_output`` is the only place in the library that knows about these
rules; ``predict`` calls a network and goes through it. Samplers, losses and
distillers use ``predict``.
"""
import torch

PREDICTIONS = ("eps", "x", "v")


def check_prediction(prediction):
    """Raise unless ``prediction`` is one of PREDICTIONS; return it."""
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
    return prediction


def expand(a, z):
    """Broadcast a per-sample coefficient of shape [n] (or a scalar) against z [n, ...]."""
    a = torch.as_tensor(a, dtype=z.dtype, device=z.device)
    if a.ndim == 0:
        return a
    return a.reshape(-1, *([1] * (z.ndim - 1)))


def x_eps_from_output(prediction, out, z, alpha, sigma):
    """(x_hat, eps_hat) from a network output ``out`` at z_t = alpha x + sigma eps."""
    alpha, sigma = expand(alpha, z), expand(sigma, z)
    if prediction == "v":
        return alpha * z - sigma * out, sigma * z + alpha * out
    if prediction == "eps":
        if (alpha <= 0).any():
            raise ValueError(
                "an eps-prediction network cannot give x_hat where alpha_t = 0 (t = 1 on the cosine "
                "schedule): x_hat = (z - sigma eps_hat) / alpha divides by zero. Train with "
                "prediction='v' or 'x' (as Salimans & Ho do), or sample from a schedule whose "
                "alpha_1 > 0 such as LinearBetaSchedule()."
            )
        return (z - sigma * out) / alpha, out
    if prediction == "x":
        if (sigma <= 0).any():
            raise ValueError("an x-prediction network gives no eps_hat at sigma_t = 0 (t = 0); "
                             "samplers never evaluate there, so do not call the network at t = 0.")
        return out, (z - alpha * out) / sigma
    raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")


def output_from_x_eps(prediction, x, eps, alpha, sigma):
    """The network output that would give (x, eps): the regression target of that parameterization."""
    alpha, sigma = expand(alpha, x), expand(sigma, x)
    if prediction == "v":
        return alpha * eps - sigma * x
    if prediction == "eps":
        return eps
    if prediction == "x":
        return x
    raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")


def predict(net, z, t, sched, **model_kwargs):
    """Call ``net(z, t, **model_kwargs)`` and return (x_hat, eps_hat).

    t may be a scalar or a tensor [n]; it is passed to the network as a tensor [n]
    of z's dtype. The network's ``prediction`` attribute says how to read its output.

    A time shared by the whole batch (a sampler's step) is passed as ``t.expand(n)``, a
    view of one value with stride 0, not as a copy: a network may tell it by its stride
    and embed the time once instead of n times (``MLPDenoiser`` does, which saves a wait
    for the GPU on every call). Nothing depends on it for correctness: a time written as
    ``t.repeat(n)`` or ``torch.full((n,), t)`` gives the same output, only a little slower.
    """
    prediction = getattr(net, "prediction", None)
    if prediction not in PREDICTIONS:
        raise AttributeError(
            f"{type(net).__name__} needs a `prediction` attribute set to one of {PREDICTIONS} "
            f"(got {prediction!r}); pdlearn reads it to interpret the network's output"
        )
    t = torch.as_tensor(t, dtype=z.dtype, device=z.device)
    if t.ndim == 0:
        t = t.expand(z.shape[0])
    alpha, sigma = sched.alpha_sigma(t)
    out = net(z, t, **model_kwargs)
    if out.shape != z.shape:
        raise ValueError(f"{type(net).__name__} returned shape {tuple(out.shape)} for input "
                         f"{tuple(z.shape)}; a denoiser must return the shape of its input")
    return x_eps_from_output(prediction, out, z, alpha.to(z.dtype), sigma.to(z.dtype))
