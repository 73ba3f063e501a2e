"""A smaller student, and two ways to distil a fast sampler into it.

Distillation need not keep the teacher's architecture: "training a smaller model to mimic
the behaviour of a larger, pre-trained model" is its oldest form (Hinton et al., 2015). A
UNet's parameters grow with the square of its width, so half the channels is about a
quarter of the parameters and of the multiply-adds. Two routes to a 1-step small student:

- ``distil_progressive``: progressive distillation (Salimans & Ho, 2022, Algorithm 2) whose
  first student is the small network, trained from scratch on the full-size teacher's
  two-step targets; the later rounds halve the steps as usual, small teacher to small
  student.
- ``distil_from_pairs``: regression of the small network on (noise, sample) pairs of the
  fast full-size student (Luhman & Luhman, 2021, with the 1-step student of chapter 6 as the
  teacher). Its pairs cost one evaluation each, so they are drawn fresh at every batch and
  there is no fixed set of pairs to overfit.

Both train through ``train.fit``: checkpointed and resumable to the same weights.
"""
import copy

import torch

from ..data import as_data
from ..distill import distill_loss, distill_rounds, fingerprint
from ..models import UNet
from ..parameterization import predict
from ..sampling import ddim_sample
from ..train import fit
from ..validate import positive_int


def small_unet(net, channels=None, ch_mult=None, num_res_blocks=None, attention=None, seed=0):
    """A freshly initialised UNet (seeded) with ``net``'s configuration except the arguments
    given: for example ``small_unet(net, channels=net.config['channels'] // 2)``, about a
    quarter of the parameters. Same data shape, parameterization and conditioning."""
    if not isinstance(net, UNet):
        raise TypeError(f"small_unet shrinks a pdlearn UNet, got {type(net).__name__}")
    changes = dict(channels=channels, ch_mult=ch_mult, num_res_blocks=num_res_blocks, attention=attention)
    config = dict(net.config, **{k: v for k, v in changes.items() if v is not None})
    torch.manual_seed(seed)
    return UNet(**config).to(next(net.parameters()).device)


def _path(checkpoint, *things):
    """checkpoint minus '.pt', plus a digest of what the run depends on."""
    if checkpoint is None:
        return None
    return f"{checkpoint[:-3] if checkpoint.endswith('.pt') else checkpoint}-{fingerprint(*things)}.pt"


def distil_progressive(teacher, small, data, sched, teacher_steps, first_iters, iters_per_round, end_steps=1,
                       lr=1e-3, batch_size=128, seed=0, checkpoint=None, checkpoint_every=500, resume=False,
                       progress=True):
    """Progressive distillation into a smaller architecture (Salimans & Ho, 2022, Algorithm 2).

    Round 1: ``small`` (fresh weights, another architecture than the teacher's) learns to take
    in one DDIM step of size 1/N what ``teacher`` takes in two of size 1/(2N), N =
    ``teacher_steps`` / 2: the loss of ``distill.distill_loss`` on minibatches of ``data``,
    ``first_iters`` iterations with EMA weights (it trains from scratch, so it gets longer
    than a round and a cosine decay). Rounds 2, 3, ...: ``distill.distill_rounds`` from N
    to ``end_steps``, the small student its own teacher. With ``checkpoint`` the first round
    is saved to ``<checkpoint>-<digest>.pt`` (every ``checkpoint_every`` iterations, resumable
    with ``resume``) and the later rounds as ``distill_rounds`` saves them.

    Returns (students, history): {steps: small student} for every round, and each round's
    loss history."""
    data = as_data(data, "data")
    teacher_steps, first_iters = positive_int(teacher_steps, "teacher_steps"), positive_int(first_iters, "first_iters")
    if teacher_steps < 2 * end_steps:
        raise ValueError(f"teacher_steps={teacher_steps} must be at least twice end_steps={end_steps}: "
                         "the first round halves the teacher's steps")
    teacher = copy.deepcopy(teacher).eval().requires_grad_(False)
    device = next(teacher.parameters()).device
    steps = teacher_steps // 2

    def loss_fn(net, gen):
        idx = torch.randint(0, data.shape[0], (batch_size,), generator=gen)
        return distill_loss(net, teacher, data[idx].to(device, torch.float32), sched, steps, gen)

    path = _path(checkpoint, "progressive", teacher, small, data, repr(sched), teacher_steps, first_iters, lr,
                 batch_size, seed)
    config = dict(kind="small_progressive", steps=steps, batch_size=batch_size, schedule=repr(sched))
    first = fit(small, loss_fn, first_iters, lr=lr, seed=seed, checkpoint=path, checkpoint_every=checkpoint_every,
                resume=resume, progress=progress, desc=f"small student from scratch: {teacher_steps} -> {steps} steps",
                config=config)
    students, history = {steps: first}, {steps: first.history["loss"]}
    if steps > end_steps:
        rounds = distill_rounds(first, data, sched, steps, end_steps, iters_per_round, seed=seed, lr=lr,
                                batch_size=batch_size, checkpoint=checkpoint, checkpoint_every=checkpoint_every,
                                resume=resume, progress=progress)
        for student, record in rounds:
            students[record["steps"]], history[record["steps"]] = student, record["losses"]
    return students, history


def distil_from_pairs(source, small, sched, iters, source_steps=1, lr=1e-3, batch_size=128, seed=0,
                      checkpoint=None, checkpoint_every=500, resume=False, progress=True, desc=None):
    """A 1-step ``small`` student regressed on the map of a fast full-size sampler:

        L = E_{z_1 ~ N(0, I)} || x_hat_small(z_1, t = 1) - DDIM_M(source; z_1) ||^2,

    the loss of Luhman & Luhman (2021), with M = ``source_steps`` DDIM steps of ``source``
    (a distilled 1- or 2-step student, so a pair costs one or two evaluations) and z_1
    drawn fresh at every batch from the training generator: every batch is new pairs.
    ``iters`` iterations of ``train.fit`` with EMA weights and a cosine decay; ``checkpoint``
    and ``resume`` as in ``distil_progressive``. Returns the student (eval mode, with
    ``.history``), which samples with ``ddim_sample(student, sched, steps=1)``."""
    iters, source_steps = positive_int(iters, "iters"), positive_int(source_steps, "source_steps")
    source = copy.deepcopy(source).eval().requires_grad_(False)
    device = next(source.parameters()).device
    shape = tuple(source.sample_shape)

    def loss_fn(net, gen):
        z1 = torch.randn((batch_size, *shape), generator=gen).to(device)
        x = ddim_sample(source, sched, z=z1, steps=source_steps)
        x_hat, _ = predict(net, z1, 1.0, sched)
        return (x_hat - x).pow(2).flatten(1).mean(1).mean()

    path = _path(checkpoint, "pairs", source, small, repr(sched), iters, source_steps, lr, batch_size, seed)
    config = dict(kind="small_pairs", source_steps=source_steps, batch_size=batch_size, schedule=repr(sched))
    return fit(small, loss_fn, iters, lr=lr, seed=seed, checkpoint=path, checkpoint_every=checkpoint_every,
               resume=resume, progress=progress, desc=desc or f"small student on fresh {source_steps}-step pairs",
               config=config)
