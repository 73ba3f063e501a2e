"""Consistency distillation and consistency sampling (Song, Dhariwal, Chen & Sutskever, 2023).

A consistency function maps every point of a probability-flow ODE path to the path's end:
f(z_t, t) is the same for all points (z_t, t) of one path, and f(x, t_min) = x at its end.
With it, one evaluation at t = 1 is a sample. Consistency distillation (their Algorithm 2)
trains f_theta from a teacher by asking two adjacent points of a grid
t_min = t_0 < t_1 < ... < t_N = 1 to agree:

    z_{t_{n+1}} = alpha x + sigma eps                     (x from the data, n ~ U{0, ..., N-1})
    z^_{t_n}    = one teacher ODE step from z_{t_{n+1}} to t_n     (DDIM, or Heun)
    L           = || f_theta(z_{t_{n+1}}, t_{n+1}) - f_theta-(z^_{t_n}, t_n) ||^2
    theta-      <- mu theta- + (1 - mu) theta             (the target network, after every step)

with the squared L2 distance and weight 1, as in the paper's L2 runs. At n = 0 the target is
f(z^_{t_0}, t_min) = z^_{t_0} (at t_min = 0), the teacher's own step to the data, and the
boundary condition carries that anchor up the grid. The grid size may grow with the iteration k, by the paper's
schedule (``grid_schedule``, app. C):

    N(k)  = ceil( sqrt( k / K ((s_1 + 1)^2 - s_0^2) + s_0^2 ) - 1 ) + 1     points, so N(k) - 1 intervals
    mu(k) = exp( s_0 log(mu_0) / N(k) )

The parameterization (Song et al., 2023, sec. 3 and app. C) in this book's VP convention.
The paper writes the ODE in EDM's variables, x~ = z / alpha with noise level
sigma~ = sigma / alpha, and builds f from a free network F as

    f = c_skip(sigma~) x~ + c_out(sigma~) F,   c_skip = s_d^2 / ((sigma~ - sigma~_min)^2 + s_d^2),
                                              c_out  = s_d (sigma~ - sigma~_min) / sqrt(s_d^2 + sigma~^2),

so that c_skip = 1 and c_out = 0 at sigma~_min: f(x~, sigma~_min) = x~ for any F. With the
data scale s_d = 1 and written in z (alpha^2 + sigma^2 = 1):

    f(z_t, t) = alpha / (alpha^2 + (sigma - sigma~_min alpha)^2) z_t + (sigma - sigma~_min alpha) F.

At t_min = 0 (sigma~_min = 0, which the VP schedules reach exactly) this is
f = alpha z_t - sigma v_hat with F = -v_hat: the v-parameterization's x_hat. So a
``ConsistencyModel`` around a v-prediction network starts as that network's denoiser, and a
student copied from the book's v-prediction teachers starts as the teacher.
"""
import copy
import math

import torch

from . import validate
from .data import as_data
from .losses import q_sample
from .parameterization import expand, predict
from .sampling import _on_device, _setup, _table, _times, coefficients, ddim_step, run, sampler
from .train import fit


class ConsistencyModel(torch.nn.Module):
    """f(z_t, t) = c_skip(t) z_t + c_out(t) F(z_t, t) around a v-prediction network F = -v
    (module docstring), with f(z, t_min) = z / alpha_{t_min} (= z at t_min = 0).

    It is an x-prediction network (``prediction = 'x'``): ``ddim_sample(model, sched, steps=1)``
    is one-step consistency sampling, and every sampler of the library accepts it.
    """

    def __init__(self, net, sched, t_min=0.0):
        super().__init__()
        if getattr(net, "prediction", None) != "v":
            raise ValueError(f"a ConsistencyModel builds f from a v-prediction network (F = -v, so that f starts "
                             f"as its x_hat); got prediction={getattr(net, 'prediction', None)!r}: train or copy "
                             "a network with prediction='v'")
        self.net, self.sched, self.t_min = net, sched, validate.number(t_min, "t_min", 0.0, 1.0, high_open=True)
        alpha, sigma = sched.alpha_sigma(torch.tensor(self.t_min, dtype=torch.float64))
        self.sigma_min = float(sigma / alpha)
        self.prediction = "x"
        self.sample_shape = tuple(getattr(net, "sample_shape", ()))
        self.config = dict(getattr(net, "config", {}))

    def c_skip_out(self, t, like):
        """(c_skip, c_out) at times t, in z (module docstring), broadcast against ``like``."""
        alpha, sigma = coefficients(self.sched, t, like)
        alpha, sigma = expand(alpha, like), expand(sigma, like)
        gap = sigma - self.sigma_min * alpha
        return alpha / (alpha**2 + gap**2), gap

    def forward(self, z, t, **model_kwargs):
        t = torch.as_tensor(t, dtype=z.dtype, device=z.device)
        t = t.expand(z.shape[0]) if t.ndim == 0 else t
        c_skip, c_out = self.c_skip_out(t, z)
        return c_skip * z - c_out * self.net(z, t, **model_kwargs)


# ---------------------------------------------------------------- training

def grid_schedule(k, iters, s0=2, s1=150, mu0=0.9):
    """(N(k), mu(k)): grid points and target EMA rate at iteration k of ``iters`` (Song et al.,
    2023, app. C): N grows from s0 to s1 + 1 like a square root, mu follows it toward 1."""
    n = math.ceil(math.sqrt(k / iters * ((s1 + 1) ** 2 - s0**2) + s0**2) - 1) + 1
    return n, math.exp(s0 * math.log(mu0) / n)


def teacher_step(teacher, z, t, s, sched, solver="ddim", model_kwargs=None):
    """One step of the teacher's probability-flow ODE from t to s < t (per-sample times [n]):
    'ddim' (Euler in sigma / alpha, 1 call) or 'heun' (Karras et al., 2022, 2 calls; an Euler
    step where s = 0 or where alpha_t = 0, where Heun's correction is not defined)."""
    kw = model_kwargs or {}
    a_t, s_t = (expand(c, z) for c in coefficients(sched, t, z))
    a_s, s_s = (expand(c, z) for c in coefficients(sched, s, z))
    x_hat, eps_hat = predict(teacher, z, t, sched, **kw)
    z_s = ddim_step(x_hat, eps_hat, a_s, s_s, a_t, s_t)
    if solver == "ddim":
        return z_s
    if solver != "heun":
        raise ValueError(f"solver must be 'ddim' or 'heun', got {solver!r}")
    ok = (s > 0) & (a_t.flatten() > 0)
    _, eps_next = predict(teacher, z_s, torch.where(ok, s, t), sched, **kw)  # where not ok: unused
    heun = (a_s / a_t) * z + (s_s - a_s * s_t / a_t) * 0.5 * (eps_hat + eps_next)
    return torch.where(ok.reshape(-1, *[1] * (z.ndim - 1)), heun, z_s)


class _Training(torch.nn.Module):
    """What ``fit`` trains: the online model theta (parameters), the target theta- (the same
    network with its parameters held as buffers, so that the optimizer and fit's EMA leave it
    alone while every checkpoint saves it) and the iteration count k the schedule reads."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.target = copy.deepcopy(model)
        for m in self.target.modules():
            for name, p in list(m._parameters.items()):
                if p is not None:
                    del m._parameters[name]
                    m.register_buffer(name, p.detach().clone())
        self.register_buffer("k", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update_target(self, mu):
        """theta- <- mu theta- + (1 - mu) theta."""
        target = dict(self.target.named_buffers())
        for name, p in self.model.named_parameters():
            target[name].lerp_(p.detach(), 1 - mu)


def consistency_loss(training, teacher, x, sched, times, generator, solver="ddim",
                     model_kwargs=None):
    """The loss of Algorithm 2 on a batch x, on the increasing grid ``times``
    (t_0 = t_min ... t_N): n ~ U{0..N-1}, z_{t_{n+1}} = alpha x + sigma eps,
    z^_{t_n} one teacher step, and || f_theta(z_{t_{n+1}}) - f_theta-(z^_{t_n}) ||^2
    averaged over dimensions and the batch (chapter 9 prints it, in lines of 88)."""
    n = torch.randint(0, len(times) - 1, (x.shape[0],), generator=generator)
    t_next, t_now = times[n + 1].to(x.device), times[n].to(x.device)
    eps = torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
    z = q_sample(x, t_next, sched, eps)
    with torch.no_grad():
        z_hat = teacher_step(teacher, z, t_next, t_now, sched, solver, model_kwargs)
        target = training.target(z_hat, t_now, **(model_kwargs or {}))
    online = training.model(z, t_next, **(model_kwargs or {}))
    return (online - target).pow(2).flatten(1).mean(1).mean()


def consistency_distill(teacher, data, sched, iters=4_000, grid_sizes=(2, 32), mu0=0.9, solver="ddim",
                        grid="uniform", lr=3e-4, batch_size=256, ema_decay=0.999, seed=0, student=None,
                        checkpoint=None, checkpoint_every=1000, resume=False, progress=True):
    """Consistency distillation (Song et al., 2023, Algorithm 2) of ``teacher`` on ``data``.

    ``grid_sizes``: (s_0, s_1) for the growing grid of ``grid_schedule`` (N(k) points, target
    rate mu(k) from ``mu0``), or an int N of intervals held fixed with the target rate ``mu0``.
    The grid is ``sched.grid(N, grid)`` (reversed to increase) with t_0 = the model's t_min. ``solver``:
    the teacher's step, 'ddim' (1 teacher call per example) or 'heun' (2). The student starts
    as ``ConsistencyModel(copy of the teacher)`` unless ``student`` (a ConsistencyModel) is
    given. It trains with ``train.fit`` (AdamW, constant lr after warm-up, gradient clipping,
    the NaN guard, fit's EMA with ``ema_decay`` for evaluation, checkpoints every
    ``checkpoint_every`` iterations and exact resume). Returns the EMA ConsistencyModel (eval
    mode, ``.history``), on the teacher's device.
    """
    data = as_data(data, "data")
    iters = validate.positive_int(iters, "iters")
    if isinstance(grid_sizes, int):
        grid_sizes = validate.positive_int(grid_sizes, "grid_sizes")
    elif not (len(grid_sizes) == 2 and 2 <= grid_sizes[0] <= grid_sizes[1] + 1):
        raise ValueError(f"grid_sizes must be a number of intervals or (s0, s1) with 2 <= s0 <= s1 + 1, "
                         f"got {grid_sizes}")
    mu0 = validate.number(mu0, "mu0", 0.0, 1.0, high_open=True)
    if solver not in ("ddim", "heun"):
        raise ValueError(f"solver must be 'ddim' or 'heun', got {solver!r}")
    teacher = copy.deepcopy(teacher).eval().requires_grad_(False)
    device = next(teacher.parameters()).device
    model = ConsistencyModel(copy.deepcopy(teacher), sched) if student is None else student
    training = _Training(model.to(device))

    def grid_at(k):
        if isinstance(grid_sizes, int):
            return grid_sizes, mu0
        n, mu = grid_schedule(k, iters, grid_sizes[0], grid_sizes[1], mu0)
        return n - 1, mu

    def loss_fn(net, gen):
        k = int(net.k)
        intervals, mu = grid_at(k)
        net.update_target(mu)
        net.k += 1
        times = sched.grid(intervals, grid).flip(0)
        times[0] = model.t_min  # t_0 = t_min: the boundary f(z, t_min) = z / alpha anchors the grid
        idx = torch.randint(0, data.shape[0], (batch_size,), generator=gen)
        return consistency_loss(net, teacher, data[idx].to(device, torch.float32), sched, times, gen, solver)

    path = None
    if checkpoint is not None:
        from .distill import fingerprint

        tag = fingerprint(teacher, data, repr(sched), iters, grid_sizes, mu0, solver, grid, lr, batch_size,
                          ema_decay, model.t_min, seed)
        path = f"{checkpoint[:-3] if checkpoint.endswith('.pt') else checkpoint}-{tag}.pt"
    config = dict(kind="consistency", grid_sizes=list(grid_sizes) if not isinstance(grid_sizes, int) else grid_sizes,
                  mu0=mu0, solver=solver, grid=grid, batch_size=batch_size, t_min=model.t_min, schedule=repr(sched))
    ema = fit(training, loss_fn, iters, lr=lr, decay=None, ema_decay=ema_decay, seed=seed, checkpoint=path,
              checkpoint_every=checkpoint_every, resume=resume, progress=progress, desc="consistency distillation",
              config=config)
    result = ema.model.eval()
    result.history = ema.history
    return result


# ---------------------------------------------------------------- sampling

@torch.no_grad()
def consistency_steps(model, sched, z, times, noise, model_kwargs=None):
    """Multistep consistency sampling (Song et al., 2023, Algorithm 1) as a generator of
    (t, z_t, x_hat), on a decreasing grid t_N = 1 > ... > t_0 = 0: at each t_i of the grid

        x_hat = f(z_{t_i}, t_i);   z_{t_{i+1}} = alpha x_hat + sigma noise   (a fresh draw of q(z | x_hat)),

    and z_{t_0} = x_hat at the end. One step is f(z_1, 1), the one-step sample."""
    kw = model_kwargs or {}
    alphas, sigmas = _table(sched, times, z)
    net_times = _on_device(times, z)
    for i in range(len(times) - 1):
        x_hat, _ = predict(model, z, net_times[i], sched, **kw)
        last = i == len(times) - 2
        z = x_hat if last else alphas[i + 1] * x_hat + sigmas[i + 1] * noise.randn()
        yield times[i + 1], z, x_hat


@sampler
def consistency_sample(model, sched, n=None, z=None, steps=1, seed=0, grid="uniform", return_trajectory=False,
                       model_kwargs=None, progress=False):
    """Consistency sampling in ``steps`` evaluations (``consistency_steps``), with the signature
    and return value of ``ddim_sample``. The evaluation times are the first ``steps`` times of
    ``sched.grid(steps, grid)`` (the paper chooses them by search; this book keeps the grid)."""
    z, noise = _setup(model, n, z, seed)
    times = _times(sched, steps, grid)
    return run(consistency_steps(model, sched, z, times, noise, model_kwargs), z, times, return_trajectory,
               progress, "consistency sampling")
