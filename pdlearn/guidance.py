"""Classifier-free guidance and guided distillation.

Classifier-free guidance (Ho & Salimans, 2022): one network, trained with its
class label replaced by a null label at a set rate (``train_diffusion(...,
labels=y, p_uncond=0.1)``), gives a conditional prediction x_hat_c = x_hat(z_t, y)
and an unconditional one x_hat_u = x_hat(z_t, null). The guided prediction is

    x_hat^w = (1 + w) x_hat_c - w x_hat_u            (Ho & Salimans, 2022; Meng et al., 2023)

Convention: w = 0 is the plain conditional model, w = -1 the unconditional one,
w > 0 pushes samples towards what makes the label likely. Other libraries
(diffusers, Stable Diffusion) write the same combination as
x_hat_u + s (x_hat_c - x_hat_u) with guidance_scale s = 1 + w.

Because (x_hat, eps_hat) is linear in the network output for fixed (z_t, t),
combining raw outputs is the same as combining x_hat (and eps_hat): ``Guided``
wraps a conditional network into a module whose output is the guided output, so
every sampler and distiller of the library uses a guided teacher unchanged. It
costs two network evaluations per call (2 NFE per sampling step).

Guided distillation (Meng et al., 2023) in two stages:

    stage 1  ``distill_w``: a student conditioned on w (an embedding of w beside the
             time embedding) learns the guided teacher's x_hat^w at every t, for
             w ~ U[w_min, w_max]; one evaluation per step instead of two.
    stage 2  ``distill_w_progressive``: progressive distillation (pdlearn.distill) of
             that student, with w and the labels drawn per example.

Samplers: ``ddim_sample`` with ``model_kwargs=dict(y=..., w=...)`` is the
deterministic N-step sampler; ``stochastic_sample`` (in ``sampling``, importable from here
too) is the paper's stochastic N-step variant.
"""
import copy

import torch

from . import validate
from .checkpoints import fingerprint, run_file
from .data import as_data
from .distill import distill_rounds, progressive_distill
from .metrics.lowdim import class_fidelity  # noqa: F401  (its home is the metrics room; kept here for old calls)
from .losses import WEIGHTINGS, q_sample, weighted_error
from .models import null_label
from .parameterization import expand, predict
from .sampling import stochastic_sample  # noqa: F401  (its home is the sampling room; kept here for old calls)
from .train import fit


def guided_output(net, z, t, y, w):
    """The guided network output (1 + w) out(z, t, y) - w out(z, t, null): one batched call of 2n.

    ``y`` is a label tensor [n] (or an int); ``w`` a float or a tensor [n].
    """
    n = z.shape[0]
    null = null_label(net)
    t = torch.as_tensor(t, dtype=z.dtype, device=z.device)
    t = t.expand(n) if t.ndim == 0 else t
    y = torch.as_tensor(null if y is None else y, device=z.device).long()
    y = y.expand(n) if y.ndim == 0 else y
    t2 = t.expand(2, n).reshape(2 * n)  # [t, t]; still a stride-0 view when t is one shared time
    out = net(torch.cat([z, z]), t2, y=torch.cat([y, torch.full_like(y, null)]))
    out_c, out_u = out.chunk(2)
    w = expand(torch.as_tensor(w, dtype=z.dtype, device=z.device), z)
    return out_c + w * (out_c - out_u)


class Guided(torch.nn.Module):
    """A class-conditional network seen as a guided one: forward(z, t, y, w) = ``guided_output``.

    It has the wrapped network's ``prediction`` and ``sample_shape``, so samplers
    and distillers take it as they take any network (2 NFE per call).
    """

    def __init__(self, net):
        super().__init__()
        null_label(net)
        self.net = net
        self.prediction = net.prediction
        self.sample_shape = tuple(net.sample_shape)
        self.config = dict(net.config)

    def forward(self, z, t, y=None, w=0.0):
        return guided_output(self.net, z, t, y, w)


def guided_predict(net, z, t, sched, y, w):
    """(x_hat^w, eps_hat^w) of a class-conditional network at guidance weight w."""
    return predict(Guided(net), z, t, sched, y=y, w=w)


# ---------------------------------------------------------------- stage 1: one network for every w

def w_student(teacher):
    """A student of the teacher's architecture plus a w embedding (``w_cond=True``), starting from
    the teacher's weights (Meng et al., 2023, sec. 3.1). The last layer of the w embedding starts
    at zero, so at the start the student is the teacher's conditional model for every w.
    Any network whose ``config`` rebuilds it and takes ``w_cond`` works: ``MLPDenoiser`` for 2D
    data, ``UNet`` for images (``recipes.guided_image_students`` distils the digits UNet)."""
    config = dict(teacher.config, w_cond=True)
    student = type(teacher)(**config).to(validate.network_device(teacher))
    missing, unexpected = student.load_state_dict(teacher.state_dict(), strict=False)
    if unexpected or any(not k.startswith("w_emb.") for k in missing):
        raise ValueError(f"the teacher's weights do not fit the w-conditioned student: missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}")
    last = [m for m in student.w_emb.modules() if isinstance(m, torch.nn.Linear)][-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    return student.train()


def draw_w(n, w_range, generator, w_values=None):
    """n guidance weights: uniform on [w_min, w_max], or uniform over the finite set ``w_values``."""
    if w_values is not None:
        values = torch.as_tensor(w_values, dtype=torch.float32)
        return values[torch.randint(0, len(values), (n,), generator=generator)]
    w_min, w_max = w_range
    if not w_min <= w_max:
        raise ValueError(f"w_range must be (w_min, w_max) with w_min <= w_max, got {w_range}")

    return w_min + (w_max - w_min) * torch.rand(n, generator=generator)


def distill_w(teacher, data, labels, sched, iters=2_000, w_range=(0.0, 4.0), w_values=None, lr=1e-3,
              batch_size=256, weighting="snr+1", ema_decay=0.999, seed=0, student=None, checkpoint=None,
              resume=False, progress=True):
    """Stage 1 of guided distillation (Meng et al., 2023, sec. 3.1): a w-conditioned student
    x_hat_eta(z_t, y, w) learns the guided teacher at every t,

        L = E_{w ~ U[w_min, w_max], t ~ U(0, 1), (x, y), eps}
                w(lambda_t) || x_hat^w_teacher(z_t) - x_hat_eta(z_t, y, w) ||^2,

    z_t = alpha_t x + sigma_t eps, with the weighting of ``losses.weighted_error`` (default
    SNR + 1: the v error). ``w_values`` draws w from a finite set instead (to test how the
    student interpolates). The student defaults to ``w_student(teacher)``. Returns the EMA
    student (eval mode, ``.history``), called as student(z, t, y=y, w=w).
    """
    data = as_data(data, "data")
    labels = validate.class_labels(labels, data.shape[0], null_label(teacher), "labels")
    iters, batch_size = validate.positive_int(iters, "iters"), validate.positive_int(batch_size, "batch_size")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    teacher = copy.deepcopy(teacher).eval().requires_grad_(False)
    student = w_student(teacher) if student is None else student
    device = validate.network_device(teacher)

    def loss_fn(net, gen):
        idx = torch.randint(0, data.shape[0], (batch_size,), generator=gen)
        x, y = data[idx].to(device, torch.float32), labels[idx].to(device)
        w = draw_w(batch_size, w_range, gen, w_values).to(device)
        t = torch.rand(batch_size, generator=gen).clamp(min=2.0**-24).to(device)
        eps = torch.randn(x.shape, generator=gen).to(device)
        z = q_sample(x, t, sched, eps)
        with torch.no_grad():
            x_w, eps_w = guided_predict(teacher, z, t, sched, y, w)
        x_hat, eps_hat = predict(net, z, t, sched, y=y, w=w)
        alpha, sigma = sched.alpha_sigma(t)
        return weighted_error(x_w, eps_w, x_hat, eps_hat, alpha, sigma, weighting).mean()

    path = None
    if checkpoint is not None:
        path = run_file(checkpoint, teacher, data, labels, sched, iters, list(w_range), w_values, lr, batch_size,
                        weighting, ema_decay, seed)
    config = dict(kind="guided_stage1", w_range=list(w_range), batch_size=batch_size, weighting=weighting)
    return fit(student, loss_fn, iters, lr=lr, decay="cosine", ema_decay=ema_decay, seed=seed, checkpoint=path,
               resume=resume, progress=progress, desc="stage 1: w-conditioned student", config=config)


# ---------------------------------------------------------------- stage 2: progressive distillation

class GuidanceDraw:
    """Per-batch model arguments for ``distill.distill_round``: the labels of the drawn examples
    and a fresh w per example, ``{'y': labels[idx], 'w': w ~ U[w_min, w_max]}``."""

    def __init__(self, labels, w_range=(0.0, 4.0)):
        self.labels, self.w_range = torch.as_tensor(labels).long(), tuple(w_range)

    def __call__(self, idx, generator):
        w = draw_w(len(idx), self.w_range, generator)
        return {"y": self.labels[idx], "w": w.to(self.labels.device)}

    def identity(self):  # what names the checkpoint files of the rounds: the labels by value, the range
        return {"labels": fingerprint(self.labels, length=16), "w_range": list(self.w_range)}

    def __repr__(self):
        return f"GuidanceDraw(labels={fingerprint(self.labels)}, w_range={self.w_range})"


def distill_w_rounds(student, data, labels, sched, start_steps=64, end_steps=1, iters_per_round=500,
                     w_range=(0.0, 4.0), seed=0, **kwargs):
    """Stage 2 of guided distillation (Meng et al., 2023, sec. 3.2) as a generator of (student,
    record) after each round: progressive distillation (Salimans & Ho, 2022;
    ``distill.distill_rounds``) of the w-conditioned student from ``start_steps`` to
    ``end_steps`` DDIM steps, each example with its own label and its own w ~ U[w_min, w_max].
    Other keyword arguments (lr, batch_size, checkpoint, resume, progress, ...) go to
    ``distill_rounds``.
    """
    data = as_data(data, "data")
    labels = validate.class_labels(labels, data.shape[0], null_label(student), "labels")
    labels = labels.to(validate.network_device(student))
    yield from distill_rounds(student, data, sched, start_steps, end_steps, iters_per_round, seed,
                              model_kwargs=GuidanceDraw(labels, w_range), **kwargs)


def distill_w_progressive(student, data, labels, sched, start_steps=64, end_steps=1, iters_per_round=500,
                          w_range=(0.0, 4.0), seed=0, **kwargs):
    """All rounds of stage 2 (``distill_w_rounds``), as ``distill.progressive_distill`` runs them:
    returns (student, history), each record holding its round's network as 'student'. Other keyword
    arguments (lr, batch_size, checkpoint, resume, eval_fn, progress, ...) go to ``progressive_distill``.
    """
    data = as_data(data, "data")
    labels = validate.class_labels(labels, data.shape[0], null_label(student), "labels")
    labels = labels.to(validate.network_device(student))
    return progressive_distill(student, data, sched, start_steps, end_steps, iters_per_round, seed,
                               model_kwargs=GuidanceDraw(labels, w_range), **kwargs)


# ---------------------------------------------------------------- the 2D labelled teacher

def toy_guided_teacher(*args, **kwargs):
    """The labelled 2D teacher of chapter 7; its home is now ``recipes.toy_guided_teacher``."""
    from .recipes import toy_guided_teacher as recipe

    return recipe(*args, **kwargs)
