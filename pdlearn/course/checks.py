"""Checks for the course assignments (book/assignments/).

Each ``check_*`` function takes the function a student wrote, calls it on small
inputs and compares the result with the library (or with a reference written
here). It returns quietly when the answer is right and raises ``CheckFailed``
(an AssertionError) with a message that says what is wrong, and often why,
when it is not. A function that still raises NotImplementedError fails its
check with a message that points back at the task.

Every call of a student's function goes through ``_call``, which runs it inside
``guard.student_call``: the library functions that would answer the task raise
``ImplementYourself`` while it runs, and a function that changes the library,
torch or the checks fails with ``Tampered``.

Most checks run on tiny randomly initialised networks (``tiny_net``) and take
well under a second. The training checks (``check_training``,
``check_distill_loss_trains``, ``check_one_round``, ``check_stage1_trains``,
``check_sampler_quality``) train or sample with the student's function and judge
the result against the same run made with the library, in a few seconds.

``hidden(name, *args)`` runs the extra checks of grading (``course.hidden``, and an
instructor's own module) and does nothing in a student's notebook.
"""
import copy
import importlib
import os

import torch

from ..distill import distill_round, fingerprint
from ..distill import distill_target as _distill_target
from ..guidance import guided_predict, stochastic_sample, w_student
from ..losses import diffusion_loss, weighted_error
from ..losses import q_sample as _q_sample
from ..metrics import floor, mmd_rbf, verdict, with_floor
from ..models import MLPDenoiser
from ..parameterization import predict
from ..sampling import NoiseSource, ddim_invert, ddim_sample, ddim_step, ddpm_posterior, ddpm_sample
from ..schedules import CosineSchedule, LinearBetaSchedule
from ..train import fit
from .errors import CheckFailed, ImplementYourself, Tampered  # noqa: F401  (re-exported: checks.CheckFailed)
from .guard import check_unchanged, student_call

HIDDEN_ENV = "PDLEARN_HIDDEN_CHECKS"  # an instructor's module of extra checks
GRADING_ENV = "PDLEARN_GRADING"  # set by the grader: run the built-in hidden checks too

# The library functions that answer each task, off limits while the student's function runs.
SAMPLERS = ("pdlearn.sampling.ddim_step", "pdlearn.sampling.ddim_sample", "pdlearn.sampling.ddpm_sample",
            "pdlearn.sampling.ddpm_posterior", "pdlearn.sampling.ddim_invert", "pdlearn.sampling.inversion_error",
            "pdlearn.guidance.stochastic_sample", "pdlearn.solvers.sample")
FORBID = {
    "forward": ("pdlearn.losses.q_sample",),
    "v_target": ("pdlearn.parameterization.output_from_x_eps",),
    "loss_fn": ("pdlearn.losses.diffusion_loss", "pdlearn.losses.weighted_error",
                "pdlearn.parameterization.output_from_x_eps", "pdlearn.train.train_diffusion"),
    "ddim_step": SAMPLERS,
    "ddim_sampler": SAMPLERS,
    "invert": SAMPLERS,
    "distill_target": SAMPLERS + ("pdlearn.distill.distill_target", "pdlearn.distill.distill_loss"),
    "distill_loss": ("pdlearn.distill.distill_target", "pdlearn.distill.distill_loss", "pdlearn.losses.weighted_error",
                     "pdlearn.distill.distill_round"),
    "one_round": ("pdlearn.distill.distill_target", "pdlearn.distill.distill_loss", "pdlearn.distill.distill_round",
                  "pdlearn.distill.distill_rounds", "pdlearn.distill.progressive_distill",
                  "pdlearn.losses.weighted_error"),
    "guided_x_hat": ("pdlearn.guidance.guided_predict", "pdlearn.guidance.guided_output", "pdlearn.guidance.Guided"),
    "stage1_loss": ("pdlearn.guidance.guided_predict", "pdlearn.guidance.guided_output", "pdlearn.guidance.Guided",
                    "pdlearn.guidance.distill_w", "pdlearn.losses.weighted_error"),
    "stage2_loss": ("pdlearn.distill.distill_loss", "pdlearn.distill.distill_round", "pdlearn.losses.weighted_error",
                    "pdlearn.guidance.distill_w_progressive", "pdlearn.guidance.GuidanceDraw"),
    "ddpm_step": SAMPLERS,
    "ddpm_sampler": SAMPLERS,
    "stochastic_sampler": SAMPLERS,
}


# ---------------------------------------------------------------- helpers

def _call(fn, name, *args, grad=False, verify=True, **kwargs):
    """Call the student's ``fn`` (under ``guard.student_call`` with the task's forbidden functions);
    turn a crash into a CheckFailed that names the function. ``grad``: keep autograd on;
    ``verify=False``: leave the comparison with the record to the caller (``check_unchanged``)."""
    __tracebackhide__ = True  # pytest leaves this frame out of its tracebacks
    if not callable(fn):
        raise CheckFailed(f"expected the function `{name}`, got {type(fn).__name__}; pass the function itself")
    if str(getattr(fn, "__module__", "")).startswith("pdlearn"):
        raise ImplementYourself(f"`{name}` is the library's {fn.__module__}.{getattr(fn, '__qualname__', '')} itself: "
                                "implement this yourself, with def")
    try:
        with student_call(name, FORBID.get(name, ()), getattr(fn, "__globals__", None), verify):
            with torch.set_grad_enabled(grad):
                return fn(*args, **kwargs)
    except NotImplementedError:
        raise CheckFailed(f"`{name}` is not written yet (it raises NotImplementedError): replace the "
                          f"`raise NotImplementedError()` in the cell that defines `{name}` with your code, run "
                          "that cell, then run this check again") from None
    except CheckFailed:
        raise
    except Exception as err:
        raise CheckFailed(f"`{name}` raised {type(err).__name__}: {err}") from err


def _tensor(got, name, what):
    """``got`` must be a plain torch tensor (a subclass could redefine comparisons)."""
    __tracebackhide__ = True
    if type(got) is not torch.Tensor:
        raise CheckFailed(f"`{name}` must return a torch tensor ({what}), got {type(got).__name__}")
    return got


def _close(got, want, name, what, atol=1e-5, rtol=1e-4, hints=()):
    """Raise unless ``got`` is a tensor of ``want``'s shape with values close to it.

    ``hints`` are (tensor, sentence) pairs: common mistakes and the answer each would
    give; when ``got`` matches one of them its sentence is added to the message.
    """
    __tracebackhide__ = True
    _tensor(got, name, what)
    if got.shape != want.shape:
        raise CheckFailed(f"`{name}` returned shape {tuple(got.shape)}, expected {tuple(want.shape)} ({what})")
    got = got.detach().to(want.dtype)
    if not torch.isfinite(got).all():
        raise CheckFailed(f"`{name}` returned NaN or inf ({what}); look for a division by zero")
    if torch.allclose(got, want, atol=atol, rtol=rtol):
        return
    worst = (got - want).abs().max().item()
    message = f"`{name}` gives the wrong {what}: the largest difference from the expected values is {worst:.3g}"
    for mistake, sentence in hints:
        if mistake.shape == got.shape and torch.allclose(got, mistake.to(got.dtype), atol=atol, rtol=rtol):
            message += f". {sentence}"
            break
    raise CheckFailed(message)


def _scalar_loss(got, name):
    """A loss must be a scalar tensor that training can differentiate."""
    __tracebackhide__ = True
    if type(got) is not torch.Tensor or got.numel() != 1:
        shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        raise CheckFailed(f"`{name}` must return a scalar tensor (one number), got {shape}; average the "
                          "squared error over the batch and the data dimensions")
    if not got.requires_grad:
        raise CheckFailed(f"`{name}` returned a tensor without gradient: compute it from the network's output "
                          "with torch operations (no .item(), no .detach(), no torch.no_grad() around the "
                          "network being trained), so that training can backpropagate")
    return got


def tiny_net(seed=0, dim=2, prediction="v", **kwargs):
    """A small randomly initialised MLPDenoiser (the networks the checks run on)."""
    torch.manual_seed(seed)
    return MLPDenoiser(dim=dim, width=32, depth=2, emb_dim=16, prediction=prediction, **kwargs).eval()


def _inputs(n=16, dim=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g)
    eps = torch.randn(n, dim, generator=g)
    t = torch.rand(n, generator=g).clamp(0.02, 0.98)
    return x, eps, t


def _fit(net, loss, iters, seed=0):
    """The training of every training check: AdamW at lr 1e-3 decaying linearly to zero, no warm-up,
    no EMA (the settings of ``distill.distill_round``)."""
    return fit(net, loss, iters, lr=1e-3, decay="linear", warmup=0, ema_decay=None, seed=seed, progress=False)


def _within(got, reference, rel, abs_):
    """The tolerance of the training checks: at most ``rel`` above the library's run, plus ``abs_``."""
    return got <= reference * (1 + rel) + abs_


# ---------------------------------------------------------------- assignment 1: forward process and loss

def check_forward(forward, scheds=None, n=16, dim=2, seed=0):
    """``forward(x, t, sched, eps)`` must return z_t = alpha_t x + sigma_t eps (t: a tensor [n])."""
    x, eps, t = _inputs(n, dim, seed)
    for sched in scheds or (CosineSchedule(), LinearBetaSchedule()):
        want = _q_sample(x, t, sched, eps)
        alpha, sigma = (a[:, None].float() for a in sched.alpha_sigma(t))
        hints = [(alpha**2 * x + sigma**2 * eps, "It matches alpha_t^2 x + sigma_t^2 eps: alpha_t and sigma_t "
                  "are standard deviations, use them as they are, not squared"),
                 (sigma * x + alpha * eps, "It matches sigma_t x + alpha_t eps: alpha_t multiplies the data "
                  "and sigma_t the noise"),
                 (x + sigma * eps, "It matches x + sigma_t eps: the data must shrink by alpha_t as noise grows")]
        got = _call(forward, "forward", x, t, sched, eps)
        _close(got, want, "forward", f"z_t on {sched!r}", hints=hints)


def check_v_target(v_target, n=16, dim=2, seed=0):
    """``v_target(x, eps, alpha, sigma)`` must return v = alpha eps - sigma x (alpha, sigma: shape [n, 1])."""
    x, eps, t = _inputs(n, dim, seed)
    alpha, sigma = (a[:, None] for a in CosineSchedule().alpha_sigma(t))
    want = alpha * eps - sigma * x
    hints = [(sigma * x - alpha * eps, "It is -v: the sign convention is v = alpha eps - sigma x "
              "(Salimans & Ho, 2022, eq. 4)"),
             (alpha * x - sigma * eps, "It matches alpha x - sigma eps: x and eps are swapped")]
    _close(_call(v_target, "v_target", x, eps, alpha, sigma), want, "v", "v target", hints=hints)


def check_loss(loss_fn, net=None, sched=None, seed=0):
    """``loss_fn(net, x, t, eps, sched)`` must return the v-MSE training loss, a scalar tensor:
    mean over the batch and the data dimensions of (net(z_t, t) - v)^2."""
    x, eps, t = _inputs(n=32, seed=seed)
    net = net or tiny_net(1)
    sched = sched or CosineSchedule()
    want = diffusion_loss(net, x, sched, t=t, eps=eps, weighting="snr+1")
    got = _scalar_loss(_call(loss_fn, "loss_fn", net, x, t, eps, sched, grad=True), "loss_fn")
    z = _q_sample(x, t, sched, eps)
    with torch.no_grad():
        out = net(z, t)
        alpha, sigma = (a[:, None] for a in sched.alpha_sigma(t))
        hints = [((out - (alpha * eps - sigma * x)).pow(2).sum(1).mean(), "It matches the sum over the data "
                  "dimensions: take the mean over them too (as torch.nn.functional.mse_loss does)"),
                 ((out - eps).pow(2).mean(), "It matches the eps-MSE: this network predicts v, so the "
                  "target is v = alpha eps - sigma x"),
                 ((out - (sigma * x - alpha * eps)).pow(2).mean(), "It matches a target of -v: "
                  "v = alpha eps - sigma x")]
    _close(got.detach().reshape(()), want.detach(), "loss_fn", "loss value",
           hints=[(h.reshape(()), s) for h, s in hints])


def _validation_loss(net, sched, data, seed=1):
    """The v-MSE of ``net`` on fixed held-out draws of (x, t, eps): the score of ``check_training``."""
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(data.shape[0], generator=g).clamp(min=1e-3)
    eps = torch.randn(data.shape, generator=g)
    with torch.no_grad():
        return float(diffusion_loss(net, data, sched, t=t, eps=eps))


def check_training(loss_fn, data, sched, iters, held_out, batch_size=256, width=64, depth=2, seed=0):
    """Train a denoiser on ``data`` with the student's ``loss_fn`` and the same denoiser (same initial
    weights, minibatches, times and noise) with ``pdl.diffusion_loss``, then score both on the
    ``held_out`` points with the library's v-MSE.

    Passes when the student's network scores at most 5% (+ 0.005) above the library's and clearly
    below the untrained network. Over five training seeds the library's own score moves by a few
    percent at the assignment sizes, so a right loss passes with room, while a loss whose value is
    right but whose gradient is not (a detached target, a wrong sign inside a square) does not
    train. Returns {'student', 'library', 'untrained'}.
    """
    def make():
        torch.manual_seed(seed)
        return MLPDenoiser(dim=data.shape[1], width=width, depth=depth)

    def draws(gen):
        idx = torch.randint(0, data.shape[0], (batch_size,), generator=gen)
        t = torch.rand(batch_size, generator=gen).clamp(min=1e-3)
        return data[idx], t, torch.randn(batch_size, data.shape[1], generator=gen)

    def student_loss(net, gen):
        x, t, eps = draws(gen)
        return _scalar_loss(_call(loss_fn, "loss_fn", net, x, t, eps, sched, grad=True, verify=False), "loss_fn")

    def library_loss(net, gen):
        x, t, eps = draws(gen)
        return diffusion_loss(net, x, sched, t=t, eps=eps)

    scores = {"untrained": _validation_loss(make(), sched, held_out)}
    trained = _fit(make(), student_loss, iters, seed)
    check_unchanged("loss_fn")
    scores["student"] = _validation_loss(trained, sched, held_out)
    scores["library"] = _validation_loss(_fit(make(), library_loss, iters, seed), sched, held_out)
    if not scores["student"] - scores["library"] <= 0.1 * (scores["untrained"] - scores["library"]):
        raise CheckFailed(f"trained with `loss_fn`, the denoiser's held-out v-MSE is {scores['student']:.4f}, against "
                          f"{scores['library']:.4f} when trained with pdl.diffusion_loss on the same draws "
                          f"(untrained: {scores['untrained']:.4f}). The loss has the right value but does not train "
                          "the network as it should: its gradient must flow through net(z, t) and nowhere else")
    return scores


# ---------------------------------------------------------------- assignment 2: DDIM step and inversion

def check_ddim_step(step, net=None, sched=None, pairs=((1.0, 0.75), (0.5, 0.25), (0.3, 0.0))):
    """``step(net, z, t, s, sched)`` must take one deterministic DDIM step from time t to s < t:
    (x_hat, eps_hat) = predict(net, z, t), z_s = alpha_s x_hat + sigma_s eps_hat."""
    net, sched = net or tiny_net(2), sched or CosineSchedule()
    z = torch.randn(16, 2, generator=torch.Generator().manual_seed(3))
    for t, s in pairs:
        x_hat, eps_hat = predict(net, z, t, sched)
        alpha_s, sigma_s = sched.alpha_sigma(torch.tensor(s, dtype=torch.float64))
        alpha_t, sigma_t = sched.alpha_sigma(torch.tensor(t, dtype=torch.float64))
        want = ddim_step(x_hat, eps_hat, float(alpha_s), float(sigma_s), float(alpha_t), float(sigma_t))
        hints = [(z, "It returns z_t unchanged, which is what alpha x_hat + sigma eps_hat gives when the "
                  "prediction and the coefficients belong to the same time: predict at the current time t, "
                  "then re-mix with alpha_s and sigma_s of the new time s")]
        got = _call(step, "ddim_step", net, z, t, s, sched)
        _close(got, want, "ddim_step", f"z_s for the step t = {t} -> s = {s}", hints=hints)


def check_ddim_sampler(sampler, net=None, sched=None, step_counts=(1, 4, 10)):
    """``sampler(net, sched, z1, steps)`` must run deterministic DDIM from z_1 on the uniform grid
    t_k = k / N and return z_0; compared with ``pdl.ddim_sample(net, sched, z=z1, steps=N)``."""
    net, sched = net or tiny_net(3), sched or CosineSchedule()
    z1 = torch.randn(16, 2, generator=torch.Generator().manual_seed(4))
    for steps in step_counts:
        want = ddim_sample(net, sched, z=z1, steps=steps)
        hints = [(ddim_sample(net, sched, z=z1, steps=steps + 1), f"It matches {steps + 1} steps: a grid of N "
                  "steps has N + 1 times, 1 = t_N > ... > t_0 = 0 (sched.grid(N))"),
                 (ddim_sample(net, sched, z=z1, steps=max(1, steps - 1)) if steps > 1 else want + 1e3,
                  f"It matches {steps - 1} steps: the last step must reach t = 0")]
        got = _call(sampler, "ddim_sampler", net, sched, z1, steps)
        _close(got, want, "ddim_sampler", f"sample after {steps} DDIM steps", atol=1e-4, hints=hints)


def check_inversion(invert, net=None, sched=None, step_counts=(1, 5, 20)):
    """``invert(net, sched, x, steps)`` must run DDIM backwards from z_0 = x to z_1 on the uniform grid,
    evaluating the network at the start of each step; compared with ``pdl.ddim_invert``."""
    net, sched = net or tiny_net(4), sched or CosineSchedule()
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(5))
    for steps in step_counts:
        want = ddim_invert(net, sched, x, steps=steps)
        got = _call(invert, "invert", net, sched, x, steps)
        _close(got, want, "invert", f"z_1 after {steps} inversion steps", atol=1e-4,
               hints=[(ddim_sample(net, sched, z=x, steps=steps), "It matches DDIM sampling from x: inversion "
                       "walks the grid the other way, from t = 0 up to t = 1")])


def check_round_trip(invert, net, sched, x, steps=(10, 30, 100)):
    """Invert ``x`` with the student's ``invert``, sample back with ``pdl.ddim_sample`` on the same grid,
    and require the mean reconstruction error to shrink as the steps grow. Returns {steps: error}."""
    errors = {}
    for n in steps:
        z1 = _tensor(_call(invert, "invert", net, sched, x, n), "invert", "z_1")
        if z1.shape != x.shape:
            raise CheckFailed(f"`invert` must return a tensor of x's shape {tuple(x.shape)}")
        x_rec = ddim_sample(net, sched, z=z1, steps=n)
        errors[n] = (x_rec - x).flatten(1).norm(dim=1).mean().item()
    values = [errors[n] for n in steps]
    if not all(b < a for a, b in zip(values, values[1:])):
        raise CheckFailed(f"the reconstruction error should shrink as the number of steps grows, got "
                          f"{', '.join(f'{n} steps: {e:.4f}' for n, e in errors.items())}")
    return errors


# ---------------------------------------------------------------- assignment 3: progressive distillation

def _grid_times(n, steps, seed=6):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, steps + 1, (n,), generator=g).double() / steps


def check_distill_target(target, teacher=None, sched=None, step_counts=(1, 2, 8)):
    """``target(teacher, z, t, sched, steps)`` must return x~ of Salimans & Ho (2022, Algorithm 2)
    for a student with N = ``steps`` steps (t: a tensor [n] of grid points i / N); compared with
    ``pdl.distill.distill_target``."""
    teacher, sched = teacher or tiny_net(5), sched or CosineSchedule()
    z = torch.randn(32, 2, generator=torch.Generator().manual_seed(7))
    for steps in step_counts:
        t = _grid_times(32, steps)
        want, _ = _distill_target(teacher, z, t, sched, steps)
        z_two, tt = z, t
        with torch.no_grad():
            for dt in (0.5 / steps, 0.5 / steps):  # the point z_t'' itself, a common answer
                x_hat, eps_hat = predict(teacher, z_two, tt, sched)
                a, s = (c[:, None].float() for c in sched.alpha_sigma(tt - dt))
                z_two, tt = a * x_hat + s * eps_hat, tt - dt
            hints = [(z_two, "It returns z_t'' (the point after two teacher steps): solve for the x~ that takes "
                      "the student from z_t to z_t'' in ONE step"),
                     (predict(teacher, z, t, sched)[0], "It returns the teacher's x_hat at z_t: the target comes "
                      "from two teacher DDIM steps")]
        got = _call(target, "distill_target", teacher, z, t, sched, steps)
        _close(got, want, "distill_target", f"x~ for a student of {steps} steps", atol=1e-4, hints=hints)


def check_distill_loss(loss_fn, teacher=None, student=None, sched=None, steps=4):
    """``loss_fn(student, teacher, x, t, eps, sched, steps)`` must return the loss of Algorithm 2 at the
    given t and eps: z_t = alpha_t x + sigma_t eps, then the mean over the batch of
    max(mean (x~ - x_hat)^2, mean (eps~ - eps_hat)^2) (the truncated SNR weighting max(SNR, 1))."""
    teacher, student, sched = teacher or tiny_net(5), student or tiny_net(8), sched or CosineSchedule()
    x, eps, _ = _inputs(n=32, seed=9)
    t = _grid_times(32, steps).float()
    z = _q_sample(x, t, sched, eps)
    x_t, e_t = _distill_target(teacher, z, t, sched, steps)
    x_hat, eps_hat = predict(student, z, t, sched)
    alpha, sigma = sched.alpha_sigma(t)
    want = weighted_error(x_t, e_t, x_hat, eps_hat, alpha, sigma, "truncated_snr").mean()
    got = _scalar_loss(_call(loss_fn, "distill_loss", student, teacher, x, t, eps, sched, steps, grad=True),
                       "distill_loss")
    with torch.no_grad():
        hints = [(weighted_error(x_t, e_t, x_hat, eps_hat, alpha, sigma, "x").mean(), "It matches the x-MSE: "
                  "the weighting is max(SNR, 1), i.e. the larger of the x error and the eps error per example"),
                 (weighted_error(x_t, e_t, x_hat, eps_hat, alpha, sigma, "eps").mean(), "It matches the eps-MSE: "
                  "the weighting is max(SNR, 1), i.e. the larger of the x error and the eps error per example"),
                 (weighted_error(x, eps, x_hat, eps_hat, alpha, sigma, "truncated_snr").mean(), "It regresses "
                  "on the data x: the student's target is the teacher's x~, not x")]
    _close(got.detach().reshape(()), want.detach(), "distill_loss", "loss value", atol=1e-5, hints=hints)


def _round_distance(student, teacher, sched, steps, n=2_000, seed=0):
    """Mean distance of the student's N-step DDIM samples to the teacher's 2N-step samples (same noise)."""
    z1 = torch.randn(n, *teacher.sample_shape, generator=torch.Generator().manual_seed(seed))
    target = ddim_sample(teacher, sched, z=z1, steps=2 * steps)
    return (ddim_sample(student, sched, z=z1, steps=steps) - target).flatten(1).norm(dim=1).mean().item()


_LIBRARY_ROUNDS = {}  # fingerprint of (teacher, data, settings) -> distance of the library's round


def library_round_distance(teacher, data, sched, steps, iters, seed=0):
    """The distance (``_round_distance``) reached by ``pdl.distill.distill_round`` with these settings;
    computed once per teacher, data and settings, since two checks compare with it."""
    key = fingerprint(teacher, data, repr(sched), steps, iters, seed)
    if key not in _LIBRARY_ROUNDS:
        student = distill_round(teacher, copy.deepcopy(teacher), data, sched, steps, iters, seed=seed,
                                progress=False)
        _LIBRARY_ROUNDS[key] = _round_distance(student, teacher, sched, steps)
    return _LIBRARY_ROUNDS[key]


ROUND_TOLERANCE = (0.25, 0.003)  # (relative, absolute): see check_distill_loss_trains


def _judge_round(who, student, teacher, data, sched, steps, iters, seed):
    d_student = _round_distance(student, teacher, sched, steps)
    d_teacher = _round_distance(teacher, teacher, sched, steps)
    d_library = library_round_distance(teacher, data, sched, steps, iters, seed)
    dist = {"student": d_student, "library": d_library, "teacher": d_teacher}
    if not (_within(d_student, d_library, *ROUND_TOLERANCE) and d_student < 0.8 * d_teacher):
        raise CheckFailed(f"after a round trained with {who}, the student's {steps}-step samples are "
                          f"{d_student:.4f} away from the teacher's {2 * steps}-step samples; the library's round "
                          f"reaches {d_library:.4f} with the same iterations, and the teacher's own {steps}-step "
                          f"samples are {d_teacher:.4f} away. The student must come within "
                          f"{ROUND_TOLERANCE[0]:.0%} (+ {ROUND_TOLERANCE[1]}) of the library's round")
    return dist


def check_distill_loss_trains(loss_fn, teacher, data, sched, steps, iters, batch_size=256, seed=0):
    """Train a round with the student's ``loss_fn``: a copy of the teacher, minibatches of ``data``,
    t = i / N with i ~ U{1..N}, fresh noise, and the optimizer of ``distill_round`` (the same draws
    in the same order). Then compare it with ``pdl.distill.distill_round`` at the same settings.

    Passes when the student's N-step samples lie within 25% (+ 0.003) of the library round's
    distance to the teacher's 2N-step samples, and clearly closer than the teacher's own N-step
    samples. At the assignment sizes the library round's distance moves by about 10% between
    training seeds, so a right loss passes with room; a loss whose value is right on one batch but
    whose gradient is not does not. Returns {'student', 'library', 'teacher'} distances.
    """
    student = copy.deepcopy(teacher).requires_grad_(True)
    teacher = teacher.eval()

    def loss(net, gen):
        idx = torch.randint(0, data.shape[0], (batch_size,), generator=gen)
        t = torch.randint(1, steps + 1, (batch_size,), generator=gen).double().div(steps).float()
        eps = torch.randn(batch_size, *data.shape[1:], generator=gen)
        got = _call(loss_fn, "distill_loss", net, teacher, data[idx], t, eps, sched, steps, grad=True, verify=False)
        return _scalar_loss(got, "distill_loss")

    student = _fit(student, loss, iters, seed)
    check_unchanged("distill_loss")
    return _judge_round("`distill_loss`", student, teacher, data, sched, steps, iters, seed)


def check_one_round(one_round, teacher, data, sched, steps, iters, seed=0):
    """Run ``one_round(teacher, data, sched, steps, iters)``, which must return a student trained to
    sample in N = ``steps`` steps what the teacher samples in 2N, and leave the teacher unchanged.

    Judged as ``check_distill_loss_trains`` judges its round: within 25% (+ 0.003) of the library
    round's distance to the teacher's 2N-step samples, and clearly closer than the teacher's own
    N-step samples. Returns (student, distances).
    """
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student = _call(one_round, "one_round", teacher, data, sched, steps, iters, grad=True)
    if not isinstance(student, torch.nn.Module):
        raise CheckFailed(f"`one_round` must return the student network, got {type(student).__name__}")
    if student is teacher or any(not torch.equal(v, teacher.state_dict()[k]) for k, v in before.items()):
        raise CheckFailed("`one_round` changed the teacher: the student must start from a copy "
                          "(copy.deepcopy(teacher)), and only the copy is trained; the teacher stays frozen")
    student = student.eval()
    return student, _judge_round("`one_round`", student, teacher, data, sched, steps, iters, seed)


# ---------------------------------------------------------------- assignment 4: guided distillation

def guided_x_hat(net, z, t, sched, y, w):
    """The classifier-free guided prediction x_hat^w = (1 + w) x_hat(z_t, y) - w x_hat(z_t, y = None)
    (Ho & Salimans, 2022; Meng et al., 2023, eq. 2): ``pdl.guidance.guided_predict``'s x_hat."""
    return guided_predict(net, z, t, sched, y, w)[0]


def check_guided_x_hat(fn, net=None, sched=None, weights=(2.0, 0.0, "per example")):
    """``fn(net, z, t, sched, y, w)`` must return x_hat^w = (1 + w) x_hat(z, t, y) - w x_hat(z, t, None)
    for a class-conditional network (w: a number or a tensor [n])."""
    net, sched = net or tiny_net(10, num_classes=3), sched or CosineSchedule()
    z, _, t = _inputs(n=24, seed=11)
    y = torch.arange(24) % 3
    for w in weights:
        w = torch.linspace(0, 4, 24) if w == "per example" else w
        want = guided_x_hat(net, z, t, sched, y, w)
        with torch.no_grad():
            x_c, _ = predict(net, z, t, sched, y=y)
            x_u, _ = predict(net, z, t, sched, y=None)
        wv = w[:, None] if isinstance(w, torch.Tensor) else w
        hints = [(wv * x_c + (1 - wv) * x_u, "It matches w x_hat(y) + (1 - w) x_hat(None): in this book's "
                  "convention w = 0 is the conditional model, (1 + w) x_hat(y) - w x_hat(None)"),
                 ((1 + wv) * x_u - wv * x_c, "It has the conditional and unconditional predictions swapped")]
        label = "a tensor of weights" if isinstance(w, torch.Tensor) else f"w = {w}"
        got = _call(fn, "guided_x_hat", net, z, t, sched, y, w)
        _close(got, want, "guided_x_hat", f"guided x_hat for {label}", atol=1e-5, hints=hints)


def _stage1_reference(student, teacher, x, t, eps, y, w, sched, weighting="snr+1"):
    """The stage-one loss (Meng et al., 2023, eq. 5) written with the library: the reference of the checks."""
    z = _q_sample(x, t, sched, eps)
    with torch.no_grad():
        x_w, eps_w = guided_predict(teacher, z, t, sched, y, w)
    x_hat, eps_hat = predict(student, z, t, sched, y=y, w=w)
    alpha, sigma = sched.alpha_sigma(t)
    return weighted_error(x_w, eps_w, x_hat, eps_hat, alpha, sigma, weighting).mean()


def check_stage1_loss(loss_fn, teacher=None, student=None, sched=None):
    """``loss_fn(student, teacher, x, t, eps, y, w, sched)`` must return the stage-one loss of guided
    distillation (Meng et al., 2023, eq. 5) with the SNR + 1 weighting of ``pdl.guidance.distill_w``:
    z_t = alpha_t x + sigma_t eps, the teacher's guided (x~, eps~) = (x_hat^w, eps_hat^w), the student's
    (x_hat, eps_hat) called with y and w, and the mean over the batch and the data dimensions of
    (v~ - v_hat)^2, where v = alpha eps - sigma x."""
    teacher = teacher or tiny_net(12, num_classes=3)
    student = student or tiny_net(13, num_classes=3, w_cond=True)
    sched = sched or CosineSchedule()
    x, eps, t = _inputs(n=24, seed=14)
    y = torch.arange(24) % 3
    w = torch.linspace(0, 4, 24)
    want = _stage1_reference(student, teacher, x, t, eps, y, w, sched)
    got = _scalar_loss(_call(loss_fn, "stage1_loss", student, teacher, x, t, eps, y, w, sched, grad=True),
                       "stage1_loss")
    with torch.no_grad():
        z = _q_sample(x, t, sched, eps)
        alpha, sigma = sched.alpha_sigma(t)
        x_c, e_c = predict(teacher, z, t, sched, y=y)
        x_hat, eps_hat = predict(student, z, t, sched, y=y, w=w)
        hints = [(weighted_error(x_c, e_c, x_hat, eps_hat, alpha, sigma, "snr+1").mean(), "It matches "
                  "the unguided target x_hat(z, y): the target is the guided x_hat^w, which needs the teacher "
                  "with y and with y = None"),
                 (_stage1_reference(student, teacher, x, t, eps, y, w, sched, "x"), "It matches the x-MSE: "
                  "the loss is the v error, (v~ - v_hat)^2 with v = alpha eps - sigma x"),
                 (_stage1_reference(student, teacher, x, t, eps, y, w, sched, "eps"), "It matches the "
                  "eps-MSE: the loss is the v error, (v~ - v_hat)^2 with v = alpha eps - sigma x")]
    _close(got.detach().reshape(()), want.detach(), "stage1_loss", "loss value", atol=1e-5, hints=hints)


def _stage1_score(student, teacher, data, labels, sched, w_max, n=2_000, seed=1):
    """The stage-one loss of ``student`` on fixed held-out draws (x, y, w, t, eps): the score of
    ``check_stage1_trains``."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, data.shape[0], (n,), generator=g)
    w = w_max * torch.rand(n, generator=g)
    t = torch.rand(n, generator=g).clamp(min=1e-3)
    eps = torch.randn(n, *data.shape[1:], generator=g)
    with torch.no_grad():
        return float(_stage1_reference(student, teacher, data[idx], t, eps, labels[idx], w, sched))


def check_stage1_trains(loss_fn, teacher, data, labels, sched, iters, w_max=4.0, batch_size=256, seed=0):
    """Train stage one with the student's ``loss_fn``: a w-conditioned copy of the teacher
    (``pdl.guidance.w_student``), minibatches of (data, labels), w ~ U[0, w_max], t ~ U(0, 1) and
    fresh noise; and the same run (same draws) with the library's stage-one loss. Both are scored
    with the library's stage-one loss on fixed held-out draws.

    Passes when the student's run scores at most 25% (+ 0.002) above the library's and clearly
    below the untrained w-student (which is the teacher's conditional model at every w). Returns
    {'student', 'library', 'untrained'}.
    """
    def draws(gen):
        idx = torch.randint(0, data.shape[0], (batch_size,), generator=gen)
        w = w_max * torch.rand(batch_size, generator=gen)
        t = torch.rand(batch_size, generator=gen).clamp(min=1e-3)
        eps = torch.randn(batch_size, *data.shape[1:], generator=gen)
        return data[idx], t, eps, labels[idx], w

    def student_loss(net, gen):
        x, t, eps, y, w = draws(gen)
        got = _call(loss_fn, "stage1_loss", net, teacher, x, t, eps, y, w, sched, grad=True, verify=False)
        return _scalar_loss(got, "stage1_loss")

    def library_loss(net, gen):
        x, t, eps, y, w = draws(gen)
        return _stage1_reference(net, teacher, x, t, eps, y, w, sched)

    teacher = teacher.eval()
    score = lambda net: _stage1_score(net, teacher, data, labels, sched, w_max)  # noqa: E731
    scores = {"untrained": score(w_student(teacher).eval())}
    trained = _fit(w_student(teacher), student_loss, iters, seed).eval()
    check_unchanged("stage1_loss")
    scores["student"] = score(trained)
    scores["library"] = score(_fit(w_student(teacher), library_loss, iters, seed).eval())
    if not (_within(scores["student"], scores["library"], 0.25, 0.002) and
            scores["student"] < 0.8 * scores["untrained"]):
        raise CheckFailed(f"trained with `stage1_loss`, the w-conditioned student's held-out stage-one loss is "
                          f"{scores['student']:.4f}, against {scores['library']:.4f} when trained with the library's "
                          f"loss on the same draws (untrained: {scores['untrained']:.4f}); it must come within 25% "
                          "(+ 0.002). Check that the gradient flows through the student only, and that the target "
                          "is the teacher's guided prediction at the student's own w")
    return scores


def check_stage2_loss(loss_fn, teacher=None, student=None, sched=None, steps=4):
    """``loss_fn(student, teacher, x, t, eps, y, w, sched, steps)`` must return the loss of a stage-two
    round (Meng et al., 2023, sec. 3.2): Algorithm 2's truncated-SNR loss where both the teacher (the
    w-conditioned network of the previous round) and the student are called with the example's y and w."""
    teacher = teacher or tiny_net(15, num_classes=3, w_cond=True)
    student = student or tiny_net(16, num_classes=3, w_cond=True)
    sched = sched or CosineSchedule()
    x, eps, _ = _inputs(n=24, seed=17)
    t = _grid_times(24, steps).float()
    y, w = torch.arange(24) % 3, torch.linspace(0, 4, 24)
    z = _q_sample(x, t, sched, eps)
    alpha, sigma = sched.alpha_sigma(t)
    x_t, e_t = _distill_target(teacher, z, t, sched, steps, y=y, w=w)
    x_hat, eps_hat = predict(student, z, t, sched, y=y, w=w)
    want = weighted_error(x_t, e_t, x_hat, eps_hat, alpha, sigma, "truncated_snr").mean()
    got = _scalar_loss(_call(loss_fn, "stage2_loss", student, teacher, x, t, eps, y, w, sched, steps, grad=True),
                       "stage2_loss")
    with torch.no_grad():
        x_0, e_0 = _distill_target(teacher, z, t, sched, steps, y=y, w=torch.zeros(24))
        x_h0, e_h0 = predict(student, z, t, sched, y=y, w=torch.zeros(24))
        hints = [(weighted_error(x_0, e_0, x_hat, eps_hat, alpha, sigma, "truncated_snr").mean(), "It matches a "
                  "target computed at w = 0: the teacher must be called with each example's w as well"),
                 (weighted_error(x_t, e_t, x_h0, e_h0, alpha, sigma, "truncated_snr").mean(), "It matches a "
                  "student called at w = 0: pass y and w to the student too"),
                 (weighted_error(x_t, e_t, x_hat, eps_hat, alpha, sigma, "snr+1").mean(), "It matches the "
                  "v-MSE of stage one: a stage-two round keeps Algorithm 2's truncated-SNR weighting")]
    _close(got.detach().reshape(()), want.detach(), "stage2_loss", "loss value", atol=1e-5, hints=hints)


# ---------------------------------------------------------------- assignment 5: stochastic samplers

def _noise(n, shape, seed):
    """The noise of a seeded sampler, as the library's samplers read it: z_1 is skipped, then one
    standard normal draw per call of the returned function."""
    source = NoiseSource(n, shape, seed=seed)
    source.skip()
    return source.randn


def check_ddpm_step(step, net=None, sched=None, pairs=((1.0, 0.75), (0.5, 0.25), (0.3, 0.0))):
    """``step(net, z, t, s, sched, noise)`` must take one ancestral step from t to s < t (Ho et al., 2020,
    Algorithm 2): z_s = mean + sqrt(var) noise with the mean and variance of q(z_s | z_t, x = x_hat)."""
    net, sched = net or tiny_net(18), sched or CosineSchedule()
    g = torch.Generator().manual_seed(19)
    z, noise = torch.randn(16, 2, generator=g), torch.randn(16, 2, generator=g)
    for t, s in pairs:
        a_t, s_t = (float(c) for c in sched.alpha_sigma(torch.tensor(t, dtype=torch.float64)))
        a_s, s_s = (float(c) for c in sched.alpha_sigma(torch.tensor(s, dtype=torch.float64)))
        with torch.no_grad():
            x_hat, eps_hat = predict(net, z, t, sched)
        mean, var = ddpm_posterior(z, x_hat, a_s, s_s, a_t, s_t)
        want = mean + var**0.5 * noise
        hints = [(ddim_step(x_hat, eps_hat, a_s, s_s, a_t, s_t), "It matches the deterministic DDIM step: "
                  "the ancestral step adds sqrt(var) * noise around the posterior mean"),
                 (mean + var * noise, "It adds var * noise: the noise is scaled by the standard deviation, "
                  "sqrt(var)")]
        got = _call(step, "ddpm_step", net, z, t, s, sched, noise)
        _close(got, want, "ddpm_step", f"z_s for the step t = {t} -> s = {s}", atol=1e-5, hints=hints)


def check_ddpm_sampler(sampler, net=None, sched=None, step_counts=(1, 3, 10), seed=20):
    """``sampler(net, sched, z1, steps, randn)`` must run ancestral sampling from z_1 on the uniform
    grid, drawing the noise of each step with ``randn()``; compared with ``pdl.ddpm_sample`` fed
    the same noise."""
    net, sched = net or tiny_net(21), sched or CosineSchedule()
    z1 = torch.randn(16, 2, generator=torch.Generator().manual_seed(22))
    for steps in step_counts:
        want = ddpm_sample(net, sched, z=z1, steps=steps, seed=seed)
        hints = [(ddim_sample(net, sched, z=z1, steps=steps), "It matches deterministic DDIM: each step adds "
                  "sqrt(var) * randn() around the posterior mean")]
        got = _call(sampler, "ddpm_sampler", net, sched, z1, steps, _noise(16, (2,), seed))
        _close(got, want, "ddpm_sampler", f"sample after {steps} ancestral steps", atol=1e-4, hints=hints)


def check_stochastic_sampler(sampler, net=None, sched=None, step_counts=(1, 2, 4, 8), seed=23):
    """``sampler(net, sched, z1, steps, randn)`` must run the stochastic N-step sampler of Meng et al.
    (2023, sec. 3.3), drawing its noise with ``randn()``; compared with
    ``pdl.guidance.stochastic_sample`` fed the same noise."""
    net, sched = net or tiny_net(24), sched or CosineSchedule()
    z1 = torch.randn(16, 2, generator=torch.Generator().manual_seed(25))
    for steps in step_counts:
        want = stochastic_sample(net, sched, z=z1, steps=steps, seed=seed)
        hints = [(ddim_sample(net, sched, z=z1, steps=steps), "It matches deterministic DDIM: from t, step "
                  "2/N down to u = t - 2/N, then re-noise up to s = t - 1/N")]
        got = _call(sampler, "stochastic_sampler", net, sched, z1, steps, _noise(16, (2,), seed))
        _close(got, want, "stochastic_sampler", f"sample after {steps} steps", atol=1e-4, hints=hints)


def check_sampler_quality(sampler, name, library, net, sched, draw_data, steps, n=1_000, repeats=3):
    """Sample ``net`` with the student's ``sampler(net, sched, z1, steps, randn)`` and with the library's
    ``library(net, sched, z=..., steps=..., seed=...)`` from *different* noise, score both with the
    squared MMD to fresh data (``draw_data(n, seed)``), and compare them with ``pdl.metrics.verdict``
    against the spread of the data-vs-data floor at the same n. Passes unless the verdict is 'worse'.
    Returns {'student', 'library', 'floor', 'verdict'}."""
    z1 = torch.randn(n, *net.sample_shape, generator=torch.Generator().manual_seed(26))
    got = _tensor(_call(sampler, name, net, sched, z1, steps, _noise(n, net.sample_shape, 27)), name, "samples")
    if got.shape != z1.shape or not torch.isfinite(got).all():
        raise CheckFailed(f"`{name}` must return finite samples of z1's shape {tuple(z1.shape)}")
    data = draw_data(n, 28)
    result = {"student": mmd_rbf(got.detach(), data),
              "library": mmd_rbf(library(net, sched, n=n, steps=steps, seed=29), data),
              "floor": floor(draw_data, n, repeats=repeats, seed=30)}
    result["verdict"] = verdict(result["student"], result["library"], result["floor"][1])
    if result["verdict"] == "worse":
        raise CheckFailed(f"the samples of `{name}` are worse than the library's: squared MMD to data "
                          f"{with_floor(result['student'], result['floor'])}, against {result['library']:.5f}")
    return result


# ---------------------------------------------------------------- the hidden checks of grading

def hidden(name, *args, **kwargs):
    """Run the extra checks ``name`` when grading; do nothing otherwise.

    When the grader runs a submission (``PDLEARN_GRADING=1``) this runs ``course.hidden.<name>``,
    the built-in checks on other inputs (other schedules, parameterizations, step counts). When
    ``PDLEARN_HIDDEN_CHECKS`` names an importable module (an instructor's own, for example
    ``course_checks`` with course_checks.py on PYTHONPATH) it also calls ``module.name(*args,
    **kwargs)``, which raises (AssertionError or CheckFailed) to fail the check cell. A name the
    module does not define passes.
    """
    if os.environ.get(GRADING_ENV) == "1":
        from . import hidden as builtin

        check = getattr(builtin, name, None)
        if check is not None:
            check(*args, **kwargs)
    module_name = os.environ.get(HIDDEN_ENV, "").strip()
    if not module_name:
        return None
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise CheckFailed(f"{HIDDEN_ENV}={module_name!r} names no importable module ({err}); put its folder on "
                          "PYTHONPATH or unset the variable") from err
    check = getattr(module, name, None)
    if check is None:
        return None  # no hidden check for this cell
    return check(*args, **kwargs)


__all__ = ["CheckFailed", "ImplementYourself", "Tampered", "check_forward", "check_v_target", "check_loss",
           "check_training", "check_ddim_step", "check_ddim_sampler", "check_inversion", "check_round_trip",
           "check_distill_target", "check_distill_loss", "check_distill_loss_trains", "check_one_round",
           "library_round_distance", "guided_x_hat", "check_guided_x_hat", "check_stage1_loss",
           "check_stage1_trains", "check_stage2_loss", "check_ddpm_step", "check_ddpm_sampler",
           "check_stochastic_sampler", "check_sampler_quality", "hidden", "tiny_net"]
