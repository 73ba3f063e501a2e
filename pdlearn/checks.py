"""Checks for the course assignments (book/assignments/).

Each ``check_*`` function takes the function a student wrote, calls it on small
inputs and compares the result with the library (or with a reference written
here). It returns quietly when the answer is right and raises ``CheckFailed``
(an AssertionError) with a message that says what is wrong, and often why,
when it is not. A function that still raises NotImplementedError fails its
check with a message that points back at the task.

Checks run on tiny randomly initialised networks (``tiny_net``) or on the
network a notebook hands them, so each takes well under a second; only
``check_one_round`` trains (it runs the student's distillation round).

``hidden(name, *args)`` runs an instructor's extra check, kept in a module that
is not handed out (see book/assignments/instructors.md).
"""
import importlib
import os

import torch

from .distill import distill_target as _distill_target
from .losses import q_sample as _q_sample
from .losses import weighted_error
from .models import MLPDenoiser
from .parameterization import predict
from .sampling import ddim_invert, ddim_sample, ddim_step
from .schedules import CosineSchedule, LinearBetaSchedule

HIDDEN_ENV = "PDLEARN_HIDDEN_CHECKS"


class CheckFailed(AssertionError):
    """An assignment check found a wrong answer; the message says what is wrong."""


# ---------------------------------------------------------------- helpers

def _call(fn, name, *args, **kwargs):
    """Call the student's ``fn``; turn a crash into a CheckFailed that names the function."""
    __tracebackhide__ = True  # pytest leaves this frame out of its tracebacks
    if not callable(fn):
        raise CheckFailed(f"expected the function `{name}`, got {type(fn).__name__}; pass the function itself")
    try:
        with torch.no_grad() if kwargs.pop("no_grad", True) else _nothing():
            return fn(*args, **kwargs)
    except NotImplementedError:
        raise CheckFailed(f"`{name}` is not written yet (it raises NotImplementedError): replace the "
                          f"`raise NotImplementedError` in the cell that defines `{name}` with your code, run "
                          "that cell, then run this check again") from None
    except CheckFailed:
        raise
    except Exception as err:
        raise CheckFailed(f"`{name}` raised {type(err).__name__}: {err}") from err


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _close(got, want, name, what, atol=1e-5, rtol=1e-4, hints=()):
    """Raise unless ``got`` is a tensor of ``want``'s shape with values close to it.

    ``hints`` are (tensor, sentence) pairs: common mistakes and the answer each would
    give; when ``got`` matches one of them its sentence is added to the message.
    """
    __tracebackhide__ = True
    if not isinstance(got, torch.Tensor):
        raise CheckFailed(f"`{name}` must return a torch tensor ({what}), got {type(got).__name__}")
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


# ---------------------------------------------------------------- assignment 1: forward process and loss

def check_forward(forward):
    """``forward(x, t, sched, eps)`` must return z_t = alpha_t x + sigma_t eps (t: a tensor [n])."""
    x, eps, t = _inputs()
    for sched in (CosineSchedule(), LinearBetaSchedule()):
        want = _q_sample(x, t, sched, eps)
        alpha, sigma = (a[:, None] for a in sched.alpha_sigma(t))
        hints = [(alpha**2 * x + sigma**2 * eps, "It matches alpha_t^2 x + sigma_t^2 eps: alpha_t and sigma_t "
                  "are standard deviations, use them as they are, not squared"),
                 (sigma * x + alpha * eps, "It matches sigma_t x + alpha_t eps: alpha_t multiplies the data "
                  "and sigma_t the noise"),
                 (x + sigma * eps, "It matches x + sigma_t eps: the data must shrink by alpha_t as noise grows")]
        got = _call(forward, "forward", x, t, sched, eps)
        _close(got, want, "forward", f"z_t on {sched!r}", hints=hints)


def check_v_target(v_target):
    """``v_target(x, eps, alpha, sigma)`` must return v = alpha eps - sigma x (alpha, sigma: shape [n, 1])."""
    x, eps, t = _inputs()
    alpha, sigma = (a[:, None] for a in CosineSchedule().alpha_sigma(t))
    want = alpha * eps - sigma * x
    hints = [(sigma * x - alpha * eps, "It is -v: the sign convention is v = alpha eps - sigma x "
              "(Salimans & Ho, 2022, eq. 4)"),
             (alpha * x - sigma * eps, "It matches alpha x - sigma eps: x and eps are swapped")]
    _close(_call(v_target, "v_target", x, eps, alpha, sigma), want, "v", "v target", hints=hints)


def check_loss(loss_fn):
    """``loss_fn(net, x, t, eps, sched)`` must return the v-MSE training loss, a scalar tensor:
    mean over the batch and the data dimensions of (net(z_t, t) - v)^2."""
    from .losses import diffusion_loss

    x, eps, t = _inputs(n=32)
    net = tiny_net(1)
    sched = CosineSchedule()
    want = diffusion_loss(net, x, sched, t=t, eps=eps, weighting="snr+1")
    got = _call(loss_fn, "loss_fn", net, x, t, eps, sched, no_grad=False)
    if not isinstance(got, torch.Tensor) or got.numel() != 1:
        raise CheckFailed(f"`loss_fn` must return a scalar tensor (one number), got "
                          f"{tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__}; average "
                          "the squared error over the batch and the data dimensions")
    if not got.requires_grad:
        raise CheckFailed("`loss_fn` returned a tensor without gradient: compute it from the network's output "
                          "with torch operations (no .item(), no torch.no_grad()), so training can backpropagate")
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
    _close(got.detach().reshape(()), want.detach(), "loss_fn", "loss value", hints=[(h.reshape(()), s) for h, s in hints])


# ---------------------------------------------------------------- assignment 2: DDIM step and inversion

def check_ddim_step(step):
    """``step(net, z, t, s, sched)`` must take one deterministic DDIM step from time t to s < t:
    (x_hat, eps_hat) = predict(net, z, t), z_s = alpha_s x_hat + sigma_s eps_hat."""
    net, sched = tiny_net(2), CosineSchedule()
    z = torch.randn(16, 2, generator=torch.Generator().manual_seed(3))
    for t, s in ((1.0, 0.75), (0.5, 0.25), (0.3, 0.0)):
        x_hat, eps_hat = predict(net, z, t, sched)
        alpha_s, sigma_s = sched.alpha_sigma(torch.tensor(s, dtype=torch.float64))
        alpha_t, sigma_t = sched.alpha_sigma(torch.tensor(t, dtype=torch.float64))
        want = ddim_step(x_hat, eps_hat, float(alpha_s), float(sigma_s), float(alpha_t), float(sigma_t))
        hints = [(z, "It returns z_t unchanged, which is what alpha x_hat + sigma eps_hat gives when the "
                  "prediction and the coefficients belong to the same time: predict at the current time t, "
                  "then re-mix with alpha_s and sigma_s of the new time s")]
        got = _call(step, "ddim_step", net, z, t, s, sched)
        _close(got, want, "ddim_step", f"z_s for the step t = {t} -> s = {s}", hints=hints)


def check_ddim_sampler(sampler):
    """``sampler(net, sched, z1, steps)`` must run deterministic DDIM from z_1 on the uniform grid
    t_k = k / N and return z_0; compared with ``pdl.ddim_sample(net, sched, z=z1, steps=N)``."""
    net, sched = tiny_net(3), CosineSchedule()
    z1 = torch.randn(16, 2, generator=torch.Generator().manual_seed(4))
    for steps in (1, 4, 10):
        want = ddim_sample(net, sched, z=z1, steps=steps)
        hints = [(ddim_sample(net, sched, z=z1, steps=steps + 1), f"It matches {steps + 1} steps: a grid of N "
                  "steps has N + 1 times, 1 = t_N > ... > t_0 = 0 (sched.grid(N))"),
                 (ddim_sample(net, sched, z=z1, steps=max(1, steps - 1)) if steps > 1 else want + 1e3,
                  f"It matches {steps - 1} steps: the last step must reach t = 0")]
        got = _call(sampler, "ddim_sampler", net, sched, z1, steps)
        _close(got, want, "ddim_sampler", f"sample after {steps} DDIM steps", atol=1e-4, hints=hints)


def check_inversion(invert):
    """``invert(net, sched, x, steps)`` must run DDIM backwards from z_0 = x to z_1 on the uniform grid,
    evaluating the network at the start of each step; compared with ``pdl.ddim_invert``."""
    net, sched = tiny_net(4), CosineSchedule()
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(5))
    for steps in (1, 5, 20):
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
        z1 = _call(invert, "invert", net, sched, x, n)
        if not isinstance(z1, torch.Tensor) or z1.shape != x.shape:
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


def check_distill_target(target):
    """``target(teacher, z, t, sched, steps)`` must return x~ of Salimans & Ho (2022, Algorithm 2)
    for a student with N = ``steps`` steps (t: a tensor [n] of grid points i / N); compared with
    ``pdl.distill.distill_target``."""
    teacher, sched = tiny_net(5), CosineSchedule()
    z = torch.randn(32, 2, generator=torch.Generator().manual_seed(7))
    for steps in (1, 2, 8):
        t = _grid_times(32, steps)
        want, _ = _distill_target(teacher, z, t, sched, steps)
        z_two = z
        tt = t
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


def check_distill_loss(loss_fn):
    """``loss_fn(student, teacher, x, t, eps, sched, steps)`` must return the loss of Algorithm 2 at the
    given t and eps: z_t = alpha_t x + sigma_t eps, then the mean over the batch of
    max(mean (x~ - x_hat)^2, mean (eps~ - eps_hat)^2) (the truncated SNR weighting max(SNR, 1))."""
    teacher, student, sched = tiny_net(5), tiny_net(8), CosineSchedule()
    steps = 4
    x, eps, _ = _inputs(n=32, seed=9)
    t = _grid_times(32, steps).float()
    z = _q_sample(x, t, sched, eps)
    x_t, e_t = _distill_target(teacher, z, t, sched, steps)
    x_hat, eps_hat = predict(student, z, t, sched)
    alpha, sigma = sched.alpha_sigma(t)
    want = weighted_error(x_t, e_t, x_hat, eps_hat, alpha, sigma, "truncated_snr").mean()
    got = _call(loss_fn, "distill_loss", student, teacher, x, t, eps, sched, steps, no_grad=False)
    if not isinstance(got, torch.Tensor) or got.numel() != 1:
        raise CheckFailed("`distill_loss` must return a scalar tensor (the mean over the batch)")
    if not got.requires_grad:
        raise CheckFailed("`distill_loss` returned a tensor without gradient: the student's prediction must "
                          "keep its graph (only the teacher's target is computed without gradient)")
    with torch.no_grad():
        hints = [(weighted_error(x_t, e_t, x_hat, eps_hat, alpha, sigma, "x").mean(), "It matches the x-MSE: "
                  "the weighting is max(SNR, 1), i.e. the larger of the x error and the eps error per example"),
                 (weighted_error(x, eps, x_hat, eps_hat, alpha, sigma, "truncated_snr").mean(), "It regresses "
                  "on the data x: the student's target is the teacher's x~, not x")]
    _close(got.detach().reshape(()), want.detach(), "distill_loss", "loss value", atol=1e-5, hints=hints)


def check_one_round(one_round, teacher, data, sched, steps, iters, n=2_000, seed=0):
    """Run ``one_round(teacher, data, sched, steps, iters)``, which must return a student trained to
    sample in N = ``steps`` steps what the teacher samples in 2N, and leave the teacher unchanged.

    Passes when the student's N-step DDIM samples lie clearly closer to the teacher's 2N-step samples
    than the teacher's own N-step samples do (same starting noise). Returns (student, distances) with
    distances = {'student': ..., 'teacher': ...}, mean distances to the teacher's 2N-step samples.
    """
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student = _call(one_round, "one_round", teacher, data, sched, steps, iters, no_grad=False)
    if not isinstance(student, torch.nn.Module):
        raise CheckFailed(f"`one_round` must return the student network, got {type(student).__name__}")
    if student is teacher or any(not torch.equal(v, teacher.state_dict()[k]) for k, v in before.items()):
        raise CheckFailed("`one_round` changed the teacher: the student must start from a copy "
                          "(copy.deepcopy(teacher)), and only the copy is trained; the teacher stays frozen")
    z1 = torch.randn(n, *teacher.sample_shape, generator=torch.Generator().manual_seed(seed))
    target = ddim_sample(teacher, sched, z=z1, steps=2 * steps)
    dist = {name: (ddim_sample(net, sched, z=z1, steps=steps) - target).flatten(1).norm(dim=1).mean().item()
            for name, net in (("student", student), ("teacher", teacher))}
    if not dist["student"] < 0.8 * dist["teacher"]:
        raise CheckFailed(f"after the round, the student's {steps}-step samples are {dist['student']:.4f} away "
                          f"from the teacher's {2 * steps}-step samples, no closer than the teacher's own "
                          f"{steps}-step samples ({dist['teacher']:.4f}); the student should be clearly closer. "
                          f"Check that the round distils the teacher into a student of N = {steps} steps")
    return student, dist


# ---------------------------------------------------------------- assignment 4: guided distillation

def guided_x_hat(net, z, t, sched, y, w):
    """The classifier-free guided prediction x_hat^w = (1 + w) x_hat(z_t, y) - w x_hat(z_t, y = None)
    (Ho & Salimans, 2022; Meng et al., 2023, eq. 2): ``pdl.guidance.guided_predict``'s x_hat."""
    from .guidance import guided_predict

    return guided_predict(net, z, t, sched, y, w)[0]


def check_guided_x_hat(fn):
    """``fn(net, z, t, sched, y, w)`` must return x_hat^w = (1 + w) x_hat(z, t, y) - w x_hat(z, t, None)
    for a class-conditional network (w: a number or a tensor [n])."""
    net, sched = tiny_net(10, num_classes=3), CosineSchedule()
    z, _, t = _inputs(n=24, seed=11)
    y = torch.arange(24) % 3
    for w in (2.0, 0.0, torch.linspace(0, 4, 24)):
        want = guided_x_hat(net, z, t, sched, y, w)
        x_c, _ = predict(net, z, t, sched, y=y)
        x_u, _ = predict(net, z, t, sched, y=None)
        wv = w[:, None] if isinstance(w, torch.Tensor) else w
        hints = [(wv * x_c + (1 - wv) * x_u, "It matches w x_hat(y) + (1 - w) x_hat(None): in this book's "
                  "convention w = 0 is the conditional model, (1 + w) x_hat(y) - w x_hat(None)"),
                 ((1 + wv) * x_u - wv * x_c, "It has the conditional and unconditional predictions swapped")]
        label = "a tensor of weights" if isinstance(w, torch.Tensor) else f"w = {w}"
        got = _call(fn, "guided_x_hat", net, z, t, sched, y, w)
        _close(got, want, "guided_x_hat", f"guided x_hat for {label}", atol=1e-5, hints=hints)


def check_stage1_loss(loss_fn):
    """``loss_fn(student, teacher, x, t, eps, y, w, sched)`` must return the stage-one loss of guided
    distillation (Meng et al., 2023, eq. 5) with the SNR + 1 weighting of ``pdl.guidance.distill_w``:
    z_t = alpha_t x + sigma_t eps, the teacher's guided (x~, eps~) = (x_hat^w, eps_hat^w), the student's
    (x_hat, eps_hat) called with y and w, and the mean over the batch and the data dimensions of
    (v~ - v_hat)^2, where v = alpha eps - sigma x."""
    teacher = tiny_net(12, num_classes=3)
    student = tiny_net(13, num_classes=3, w_cond=True)
    sched = CosineSchedule()
    x, eps, t = _inputs(n=24, seed=14)
    y = torch.arange(24) % 3
    w = torch.linspace(0, 4, 24)
    z = _q_sample(x, t, sched, eps)
    alpha, sigma = sched.alpha_sigma(t)
    with torch.no_grad():
        x_t = guided_x_hat(teacher, z, t, sched, y, w)
        e_t = (z - alpha[:, None] * x_t) / sigma[:, None]
    x_hat, eps_hat = predict(student, z, t, sched, y=y, w=w)
    want = weighted_error(x_t, e_t, x_hat, eps_hat, alpha, sigma, "snr+1").mean()
    got = _call(loss_fn, "stage1_loss", student, teacher, x, t, eps, y, w, sched, no_grad=False)
    if not isinstance(got, torch.Tensor) or got.numel() != 1:
        raise CheckFailed("`stage1_loss` must return a scalar tensor (the mean over the batch)")
    if not got.requires_grad:
        raise CheckFailed("`stage1_loss` returned a tensor without gradient: the student's prediction must "
                          "keep its graph (only the teacher's target is computed without gradient)")
    with torch.no_grad():
        x_c, _ = predict(teacher, z, t, sched, y=y)
        e_c = (z - alpha[:, None] * x_c) / sigma[:, None]
        hints = [(weighted_error(x_c, e_c, x_hat, eps_hat, alpha, sigma, "snr+1").mean(), "It matches "
                  "the unguided target x_hat(z, y): the target is the guided x_hat^w, which needs the teacher "
                  "with y and with y = None"),
                 (weighted_error(x_t, e_t, x_hat, eps_hat, alpha, sigma, "x").mean(), "It matches the x-MSE: "
                  "the loss is the v error, (v~ - v_hat)^2 with v = alpha eps - sigma x"),
                 (weighted_error(x_t, e_t, x_hat, eps_hat, alpha, sigma, "eps").mean(), "It matches the eps-MSE: "
                  "the loss is the v error, (v~ - v_hat)^2 with v = alpha eps - sigma x")]
    _close(got.detach().reshape(()), want.detach(), "stage1_loss", "loss value", atol=1e-5, hints=hints)


# ---------------------------------------------------------------- the instructor's hidden checks

def hidden(name, *args, **kwargs):
    """Run the instructor's extra check ``name`` when grading; do nothing otherwise.

    When the environment variable PDLEARN_HIDDEN_CHECKS names an importable module (for example
    ``PDLEARN_HIDDEN_CHECKS=course_checks`` with course_checks.py on PYTHONPATH), this calls
    ``module.name(*args, **kwargs)``; that function raises (AssertionError or CheckFailed) to fail
    the check cell. Students' copies carry the call but not the module.
    """
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


__all__ = ["CheckFailed", "check_forward", "check_v_target", "check_loss", "check_ddim_step", "check_ddim_sampler",
           "check_inversion", "check_round_trip", "check_distill_target", "check_distill_loss",
           "check_one_round", "guided_x_hat", "check_guided_x_hat", "check_stage1_loss", "hidden", "tiny_net"]
