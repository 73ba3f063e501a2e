"""Distillation: a student that samples in fewer steps than its teacher.

Progressive distillation (Salimans & Ho, 2022, Algorithm 2): the student learns
to take in one DDIM step what the teacher takes in two; then it becomes the
teacher of the next round, and the number of steps halves, N -> N/2 -> ... -> 1.

    distill_target      the target x~ of Algorithm 2 (two teacher DDIM steps, solved for x)
    distill_round       one round: fresh optimizer, lr annealed to zero, t on the student's grid
    distill_rounds      the rounds as a generator, one checkpoint per round (and inside long rounds)
    progressive_distill runs them all: (final student, per-round history)

Also the direct one-step student of Luhman & Luhman (2021), which regresses the
teacher's whole N-step DDIM map from (noise, sample) pairs (``one_step_distill``),
and the soft-target loss of classic knowledge distillation (Hinton et al., 2015).
"""
import copy
import os
import time

import torch

from . import distributed, validate
from .checkpoints import (architecture, check_same_architecture, data_identity, fingerprint, owning,  # noqa: F401
                          read_json, run_file, schedule_identity, write_json)
from .data import as_data
from .losses import WEIGHTINGS, q_sample, weighted_error
from .parameterization import expand, predict
from .sampling import NoiseSource, coefficients, ddim_sample, ddim_step
from .seeding import derive_seed
from .train import fit


# ---------------------------------------------------------------- classic knowledge distillation

def soft_target_loss(student_logits, teacher_logits, temperature=2.0):
    """Hinton, Vinyals & Dean (2015): match the teacher's softened class probabilities,

        L = T^2 KL( softmax(teacher / T) || softmax(student / T) ),

    the T^2 keeping gradient sizes comparable across temperatures.
    """
    T = float(temperature)
    p_teacher = torch.softmax(teacher_logits / T, dim=-1)
    log_p_student = torch.log_softmax(student_logits / T, dim=-1)
    return T * T * torch.nn.functional.kl_div(log_p_student, p_teacher, reduction="batchmean")


# ---------------------------------------------------------------- checks

def check_steps_halve(start_steps, end_steps):
    """Raise unless start_steps = end_steps * 2^k (k >= 0); return k, the number of rounds."""
    start_steps = validate.positive_int(start_steps, "start_steps")
    end_steps = validate.positive_int(end_steps, "end_steps")
    ratio, rem = divmod(start_steps, end_steps)
    if rem or ratio & (ratio - 1):
        raise ValueError(
            f"start_steps must be end_steps times a power of two, since every round halves the steps; got "
            f"start_steps={start_steps}, end_steps={end_steps} (for example 256 -> 1, 96 -> 3 or 64 -> 4)")
    return ratio.bit_length() - 1


def check_snr0(net, sched, who="teacher"):
    """Raise when an eps-prediction network would have to give x_hat at alpha_1 = 0 (SNR 0)."""
    if getattr(net, "prediction", None) != "eps":
        return
    alpha_1, _ = sched.alpha_sigma(torch.tensor(1.0, dtype=torch.float64))
    if float(alpha_1) <= 0:
        raise ValueError(
            f"the {who} predicts eps, but distillation evaluates it at t = 1 where alpha_1 = 0 (SNR 0) on "
            f"{sched!r}, and x_hat = (z - sigma eps_hat) / alpha is undefined there. Distil a teacher trained "
            "with prediction='v' or prediction='x', as Salimans & Ho (2022, sec. 4) do. A schedule with "
            "alpha_1 > 0, e.g. CosineSchedule(logsnr_min=-10), removes the division by zero but not the "
            "problem: x_hat then amplifies the errors of eps_hat by 1/alpha_t at the few-step end.")


def check_student(teacher, student):
    """The student starts from the teacher's weights, so it must have the teacher's architecture."""
    check_same_architecture(architecture(teacher), architecture(student), what="teacher")


# ---------------------------------------------------------------- progressive distillation

def _alpha_sigma(sched, t, z):
    """alpha_t, sigma_t (``sampling.coefficients``: float64, rounded to z's dtype), shaped to broadcast against z."""
    alpha, sigma = coefficients(sched, t, z)
    return expand(alpha, z), expand(sigma, z)


@torch.no_grad()
def distill_target(teacher, z, t, sched, steps, **model_kwargs):
    """The student's target of Algorithm 2 (Salimans & Ho, 2022) at z_t, for a student with N = ``steps``.

    Two teacher DDIM steps (eta = 0) of size 1/(2N), t -> t' = t - 0.5/N -> t'' = t - 1/N:

        z_t'  = alpha_t'  x_hat(z_t)  + sigma_t'  eps_hat(z_t)
        z_t'' = alpha_t'' x_hat(z_t') + sigma_t'' eps_hat(z_t')

    then the x~ for which ONE student DDIM step of size 1/N from z_t lands on z_t'':

        x~   = (z_t'' - (sigma_t'' / sigma_t) z_t) / (alpha_t'' - (sigma_t'' / sigma_t) alpha_t)
        eps~ = (z_t - alpha_t x~) / sigma_t

    t is a scalar or a tensor [n] of points i/N of the student's grid. Returns (x~, eps~).
    """
    t = torch.as_tensor(t, dtype=torch.float64, device=z.device)
    t = t.expand(z.shape[0]) if t.ndim == 0 else t
    t1, t2 = t - 0.5 / steps, t - 1.0 / steps
    a, s = _alpha_sigma(sched, t, z)
    a1, s1 = _alpha_sigma(sched, t1, z)
    a2, s2 = _alpha_sigma(sched, t2, z)
    x_hat, eps_hat = predict(teacher, z, t, sched, **model_kwargs)
    z1 = ddim_step(x_hat, eps_hat, a1, s1, a, s)
    x_hat, eps_hat = predict(teacher, z1, t1, sched, **model_kwargs)
    z2 = ddim_step(x_hat, eps_hat, a2, s2, a1, s1)
    x_tilde = (z2 - (s2 / s) * z) / (a2 - (s2 / s) * a)
    return x_tilde, (z - a * x_tilde) / s


def distill_loss(student, teacher, x, sched, steps, generator, weighting="truncated_snr", model_kwargs=None):
    """The loss of Algorithm 2 on a batch x: t = i/N with i ~ U{1..N}, eps ~ N(0, I),
    z_t = alpha_t x + sigma_t eps, and w(lambda_t) ||x~ - x_hat_student(z_t)||^2.

    The weighting goes through (x~, eps~) and the student's (x_hat, eps_hat), so the
    student's parameterization does not matter; 'truncated_snr' = max(SNR, 1) is the paper's.
    """
    kw = model_kwargs or {}
    n = x.shape[0]
    t = torch.randint(1, steps + 1, (n,), generator=generator).double().div(steps).to(x.device)
    eps = torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
    z = q_sample(x, t, sched, eps)
    x_tilde, eps_tilde = distill_target(teacher, z, t, sched, steps, **kw)
    x_hat, eps_hat = predict(student, z, t, sched, **kw)
    alpha, sigma = sched.alpha_sigma(t)
    return weighted_error(x_tilde, eps_tilde, x_hat, eps_hat, alpha, sigma, weighting).mean()


def distill_round(teacher, student, data, sched, steps, iters, lr=1e-3, batch_size=256, weighting="truncated_snr",
                  warmup=0, ema_decay=None, seed=0, checkpoint=None, checkpoint_every=1000, resume=False,
                  progress=True, desc=None, model_kwargs=None):
    """One round of progressive distillation: train ``student`` (in place, starting from its
    current weights, normally a copy of the teacher) to sample in ``steps`` = N steps what
    the frozen ``teacher`` samples in 2N.

    A fresh AdamW whose learning rate decays linearly to zero over the ``iters`` iterations
    (after ``warmup``); minibatches of ``data`` drawn at random; the loss of ``distill_loss``.
    It runs ``train.fit``: progress bar, NaN guard, checkpoint every ``checkpoint_every``
    iterations and resume. ``model_kwargs`` (for example y=, w=) is a dict passed to both
    networks, or a callable ``model_kwargs(idx, generator) -> dict`` drawn per batch, given the
    indices of the batch's examples (guided distillation draws labels and w this way).
    Returns the trained student (eval mode, ``.history['loss']``).
    """
    data = as_data(data, "data")
    steps, iters = validate.positive_int(steps, "steps"), validate.positive_int(iters, "iters")
    batch_size = validate.positive_int(batch_size, "batch_size")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    if model_kwargs is not None and not (isinstance(model_kwargs, dict) or callable(model_kwargs)):
        raise TypeError("model_kwargs must be a dict of network arguments (y=, w=) or a function "
                        f"model_kwargs(idx, generator) -> dict, got {type(model_kwargs).__name__}")
    check_student(teacher, student)
    check_snr0(teacher, sched, "teacher")
    check_snr0(student, sched, "student")
    student.requires_grad_(True)  # a copy of a trained (EMA) teacher comes with its weights frozen
    device = validate.network_device(teacher)
    teacher.eval()

    def loss_fn(net, gen):
        idx = torch.randint(0, data.shape[0], (batch_size,), generator=gen)
        x = data[idx].to(device, torch.float32)
        kw = model_kwargs(idx, gen) if callable(model_kwargs) else model_kwargs  # per-batch labels, w
        return distill_loss(net, teacher, x, sched, steps, gen, weighting, kw)

    config = dict(kind="distill_round", steps=steps, batch_size=batch_size, weighting=weighting,
                  schedule=schedule_identity(sched), data=data_identity(data), teacher=fingerprint(teacher),
                  model_kwargs=None if model_kwargs is None else fingerprint(model_kwargs))
    return fit(student, loss_fn, iters, lr=lr, decay="linear", warmup=warmup, ema_decay=ema_decay, seed=seed,
               checkpoint=checkpoint, checkpoint_every=checkpoint_every, resume=resume, progress=progress,
               desc=desc or f"{2 * steps} -> {steps} steps", config=config)


def distill_rounds(teacher, data, sched, start_steps=256, end_steps=1, iters_per_round=500, seed=0, lr=1e-3,
                   batch_size=256, weighting="truncated_snr", warmup=0, ema_decay=None, checkpoint=None,
                   checkpoint_every=1000, resume=False, progress=True, model_kwargs=None):
    """Progressive distillation as a generator: yields (student, record) after each round.

    Round k (k = 1, 2, ...) starts its student from the previous round's student (the
    first from the teacher), distils it to N = start_steps / 2^k steps, and then that
    student is the frozen teacher of round k + 1. record = {'round', 'steps',
    'teacher_steps', 'iters', 'loss' (mean of the round's last 10% of iterations),
    'losses', 'wall_s', 'loaded'}.

    With ``checkpoint`` (a path such as ``pdl.checkpoint_path('moons_distill')``) round k is
    saved to ``<checkpoint minus .pt>-<digest>-round<k>.pt`` (``checkpoints.run_file``), where
    the digest covers the teacher's weights, the data and every setting: rerunning loads
    finished rounds, and ``resume=True`` continues an interrupted round to the same weights as
    an uninterrupted run. A loaded round reports the wall time it took when it was trained.
    The run holds the checkpoint folder from its first round to its last.
    """
    rounds = check_steps_halve(start_steps, end_steps)
    iters_per_round = validate.positive_int(iters_per_round, "iters_per_round")
    data = as_data(data, "data")
    teacher = copy.deepcopy(teacher).eval().requires_grad_(False)
    stem = None
    if checkpoint is not None:
        stem = run_file(checkpoint, teacher, data, sched, start_steps, end_steps, iters_per_round, seed, lr,
                        batch_size, weighting, warmup, ema_decay, model_kwargs, suffix="")
    with owning(checkpoint if distributed.is_main() else None):
        yield from _rounds(teacher, data, sched, start_steps, rounds, iters_per_round, seed, lr, batch_size, weighting,
                           warmup, ema_decay, stem, checkpoint_every, resume, progress, model_kwargs)


def _rounds(teacher, data, sched, start_steps, rounds, iters_per_round, seed, lr, batch_size, weighting, warmup,
            ema_decay, stem, checkpoint_every, resume, progress, model_kwargs):
    steps = start_steps
    for k in range(1, rounds + 1):
        steps //= 2
        path = f"{stem}-round{k}.pt" if stem else None
        record_path = f"{stem}-round{k}.json" if stem else None
        loaded = bool(resume and record_path and os.path.exists(record_path) and os.path.exists(path))
        student = copy.deepcopy(teacher)
        began = time.perf_counter()
        student = distill_round(teacher, student, data, sched, steps, iters_per_round, lr=lr, batch_size=batch_size,
                                weighting=weighting, warmup=warmup, ema_decay=ema_decay, seed=derive_seed(seed, "round", k),
                                checkpoint=path, checkpoint_every=checkpoint_every, resume=resume,
                                progress=progress and not loaded, model_kwargs=model_kwargs,
                                desc=f"round {k}/{rounds}: {2 * steps} -> {steps} steps")
        wall = time.perf_counter() - began
        losses = student.history["loss"]
        tail = losses[-max(1, len(losses) // 10):]
        record = dict(round=k, steps=steps, teacher_steps=2 * steps, iters=iters_per_round,
                      loss=sum(tail) / len(tail), wall_s=wall, loaded=loaded)
        if loaded:
            record["wall_s"] = read_json(record_path)["wall_s"]
        elif record_path and distributed.is_main():  # under torchrun, one writer per file
            write_json(record_path, {k_: record[k_] for k_ in ("round", "steps", "iters", "loss", "wall_s")})
        record["losses"] = losses
        yield student, record
        teacher = student.requires_grad_(False).eval()


def progressive_distill(teacher, data, sched, start_steps=256, end_steps=1, iters_per_round=500, seed=0,
                        eval_fn=None, **kwargs):
    """Progressive distillation (Salimans & Ho, 2022, Algorithm 2) from ``start_steps`` DDIM
    steps of ``teacher`` down to ``end_steps``, halving the steps every round.

        student, history = progressive_distill(net, x, sched, start_steps=256, end_steps=1,
                                               iters_per_round=500, seed=0)

    history is a list with one record per round (see ``distill_rounds``), each holding its
    round's network as 'student', so every round can be read afterwards (or walk the rounds
    as they finish with the generator ``distill_rounds``); with ``eval_fn(student, steps)``
    each record also holds its result as 'metric'. Other keyword arguments (lr, batch_size,
    weighting, warmup, ema_decay, checkpoint, checkpoint_every, resume, progress,
    model_kwargs) go to ``distill_rounds``. The teacher is not modified. Returns the final
    student (eval mode).
    """
    history, student = [], None
    for student, record in distill_rounds(teacher, data, sched, start_steps, end_steps, iters_per_round, seed,
                                          **kwargs):
        record["student"] = student
        if eval_fn is not None:
            record["metric"] = eval_fn(student, record["steps"])
        history.append(record)
    if student is None:  # start_steps == end_steps: nothing to distil
        student = copy.deepcopy(teacher).eval()
    return student, history


# ---------------------------------------------------------------- the direct one-step student

@torch.no_grad()
def teacher_pairs(teacher, sched, n, steps, seed=0, progress=False, model_kwargs=None):
    """n pairs (z_1, x) of the teacher's deterministic N-step DDIM map x = DDIM_N(z_1)
    (Luhman & Luhman, 2021). Costs n * steps network evaluations. Returns (z_1, x)."""
    device = validate.network_device(teacher)
    z1 = NoiseSource(validate.positive_int(n, "n"), teacher.sample_shape, seed=seed, device=device).randn()
    x = ddim_sample(teacher, sched, z=z1, steps=steps, progress=progress, model_kwargs=model_kwargs)
    return z1, x


def one_step_distill(teacher, sched, n_pairs, teacher_steps, iters, lr=1e-3, batch_size=256, seed=0,
                     ema_decay=None, checkpoint=None, resume=False, progress=True):
    """The one-step student of Luhman & Luhman (2021): build ``n_pairs`` pairs (z_1, x) with
    the teacher's ``teacher_steps``-step DDIM sampler, then regress

        L = E || x - x_hat_student(z_1, t = 1) ||^2

    on them; the student starts from the teacher's weights and samples with one DDIM step.
    Pairs use noise seeds disjoint from the samplers' default seeds (``derive_seed(seed, 'pairs')``).

    Returns (student, info) with info = {'teacher_evals': n_pairs * teacher_steps,
    'n_pairs', 'teacher_steps', 'pairs_s' (seconds spent building the pairs)}. ``checkpoint``
    works as in ``distill_rounds`` (a digest of teacher and settings is added); a loaded
    student still rebuilds its pairs, which is cheap for 2D data.
    """
    check_snr0(teacher, sched, "teacher")
    n_pairs, teacher_steps = validate.positive_int(n_pairs, "n_pairs"), validate.positive_int(teacher_steps, "teacher_steps")
    batch_size = validate.positive_int(batch_size, "batch_size")
    teacher = copy.deepcopy(teacher).eval().requires_grad_(False)
    path = None
    if checkpoint is not None:
        path = run_file(checkpoint, teacher, sched, n_pairs, teacher_steps, iters, lr, batch_size, seed, ema_decay)
    began = time.perf_counter()
    z1, x = teacher_pairs(teacher, sched, n_pairs, teacher_steps, seed=derive_seed(seed, "pairs"), progress=progress)
    pairs_s = time.perf_counter() - began
    student = copy.deepcopy(teacher).requires_grad_(True)

    def loss_fn(net, gen):
        idx = torch.randint(0, n_pairs, (batch_size,), generator=gen).to(z1.device)
        x_hat, _ = predict(net, z1[idx], 1.0, sched)
        return (x_hat - x[idx]).pow(2).flatten(1).mean(1).mean()

    config = dict(kind="one_step", n_pairs=n_pairs, teacher_steps=teacher_steps, batch_size=batch_size)
    student = fit(student, loss_fn, iters, lr=lr, decay="cosine", ema_decay=ema_decay, seed=seed, checkpoint=path,
                  resume=resume, progress=progress, desc="one-step student", config=config)
    info = dict(teacher_evals=n_pairs * teacher_steps, n_pairs=n_pairs, teacher_steps=teacher_steps, pairs_s=pairs_s)
    return student, info
