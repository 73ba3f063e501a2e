"""The one training loop of the book: AdamW with warm-up and decay, EMA weights,
gradient clipping, a progress bar, a NaN guard, and checkpoints that resume.

``train_loop`` is a generator (in the spirit of smalldiffusion): it yields after
every step, so a notebook can plot or stop early without callbacks. ``fit`` runs
it to the end; ``train_diffusion`` is ``fit`` with the diffusion loss on minibatches.
Distillation rounds and guided distillation use ``fit`` too.

Resume: with ``checkpoint=path`` the state (weights, EMA, optimizer, step, random
generator, loss history) is written every ``checkpoint_every`` steps and at the
end; ``resume=True`` continues from that file to the same final weights as an
uninterrupted run (exactly, for tensor data on the same CPU; on a GPU to within the
round-off of its non-deterministic kernels).

Several processes (``torchrun``, see ``distributed``): when a process group is
initialised, the loop wraps the network in DistributedDataParallel for the forward
and backward passes, so gradients are averaged over the ranks and all ranks keep
the same weights; the EMA copy and the checkpoints hold the unwrapped network.
Each rank draws its own minibatches from its own generator, seeded with
``distributed.rank_seed(seed)`` (seed + 1,000,003 * rank; rank 0 keeps ``seed``), so W
ranks with batch B train like one process with batch W * B. The recorded loss is
the mean over the ranks. Only rank 0 writes checkpoints and shows the progress bar;
a checkpoint holds every rank's generator, so resuming with the same number of
ranks continues exactly; with another number, rank r takes the r-th saved generator
if there is one and a fresh ``rank_seed`` one otherwise (the same training, other
minibatches). Every rank resumes from the same file. Without a process group none
of this changes anything.
"""
import copy
import math
import os

import torch

from . import distributed
from . import validate
from .checkpoints import (FORMAT, architecture, check_same_architecture, check_writable,  # noqa: F401
                          checkpoint_bytes, data_identity, fingerprint, identity_differences, load_checkpoint, owning,
                          save_checkpoint, schedule_identity)
from .data import as_data
from .losses import WEIGHTINGS, diffusion_loss
from .models import null_label
from .progress import bar as progress_bar

DECAYS = ("cosine", "linear", None)

def lr_at(step, steps, lr, warmup, decay):
    """Learning rate at a step: linear warm-up over ``warmup`` steps, then ``decay``:
    'cosine' (to 0), 'linear' (to 0, as in a progressive-distillation round) or None."""
    scale = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    progress = step / max(1, steps)
    if decay == "cosine":
        scale *= 0.5 * (1 + math.cos(math.pi * progress))
    elif decay == "linear":
        scale *= 1 - progress
    elif decay is not None:
        raise ValueError(f"decay must be 'cosine', 'linear' or None, got {decay!r}")
    return lr * scale


@torch.no_grad()
def ema_update(ema, net, decay, step):
    """ema <- d ema + (1 - d) net, with d = min(decay, (1 + step) / (10 + step)) early on."""
    d = min(decay, (1 + step) / (10 + step))
    torch._foreach_lerp_(list(ema.parameters()), list(net.parameters()), 1 - d)


def check_settings(steps, lr, warmup, decay, weight_decay, ema_decay, grad_clip, seed, checkpoint_every):
    """The training settings, checked: each bad value raises an error that names it and its range."""
    steps = validate.positive_int(steps, "steps")
    lr = validate.number(lr, "lr", low=0, low_open=True, hint="the learning rate must be positive")
    warmup = min(100, steps // 10) if warmup is None else validate.count(warmup, "warmup")
    if decay not in DECAYS:
        raise ValueError(f"decay must be 'cosine', 'linear' or None, got {decay!r}")
    weight_decay = validate.number(weight_decay, "weight_decay", low=0)
    if ema_decay is not None:
        ema_decay = validate.number(ema_decay, "ema_decay", 0.0, 1.0, high_open=True,
                                    hint="the EMA keeps d of the average each step (0.999 is usual), or None for none")
    if grad_clip:
        grad_clip = validate.number(grad_clip, "grad_clip", low=0, low_open=True,
                                    hint="it is the largest gradient norm allowed (1.0 is usual), or None for no "
                                         "clipping; a negative norm would train by gradient ascent")
    seed = validate._integer(seed, "seed", "an integer")
    checkpoint_every = validate.positive_int(checkpoint_every, "checkpoint_every")
    return steps, lr, warmup, decay, weight_decay, ema_decay, grad_clip or None, seed, checkpoint_every


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or inf. Nothing is lost: ``.ema`` is the last good EMA network (eval mode),
    ``.net`` the trained network before the step that failed, ``.history`` the losses so far, ``.step``
    the step that failed; with a checkpoint, the state before that step is saved in it, so that a
    resume with a lower learning rate (``resume=True, may_differ=('lr',)``) continues from there."""


def train_loop(net, loss_fn, steps, lr=1e-3, warmup=None, decay="cosine", weight_decay=0.0, ema_decay=0.999,
               grad_clip=1.0, seed=0, checkpoint=None, checkpoint_every=1000, resume=False, progress=True,
               desc="train", config=None, may_differ=()):
    """Train ``net`` in place, yielding ``{'step', 'loss', 'ema', 'history'}`` after every step.

    ``loss_fn(net, generator)`` returns a scalar loss; it must draw all its
    randomness from ``generator`` (a CPU torch.Generator whose state is checkpointed).
    ``ema`` is an EMA copy of ``net`` (or ``net`` itself when ema_decay is None).

    ``config`` holds the settings of the caller that change the result (its data's digest,
    schedule, batch size, ...); with the loop's own settings it is the run's identity, saved
    in the checkpoint. ``resume=True`` refuses a checkpoint of another identity and says
    which setting differs, except the settings named in ``may_differ`` (for example
    ``('lr',)`` to continue with a lower learning rate after a NaN). While it trains, the run
    holds its checkpoint folder (``checkpoints.FolderLock``): a second run on the same folder
    stops at once. The folder's writability and free space are checked before the first step.
    """
    steps, lr, warmup, decay, weight_decay, ema_decay, grad_clip, seed, checkpoint_every = check_settings(
        steps, lr, warmup, decay, weight_decay, ema_decay, grad_clip, seed, checkpoint_every)
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be a function loss_fn(net, generator) -> scalar loss, got {type(loss_fn).__name__}")
    net.requires_grad_(True)  # a network returned by training is a frozen EMA copy; train it all the same
    gen = torch.Generator().manual_seed(distributed.rank_seed(seed))
    # the fused AdamW: one kernel over all parameters, a quarter of the foreach step's time on the CPU
    fused = all(p.device.type in ("cpu", "cuda") for p in net.parameters())
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay, fused=fused, foreach=not fused)
    model = distributed.wrap(net) if distributed.active() else net  # gives every rank rank 0's weights
    ema = copy.deepcopy(net).requires_grad_(False) if ema_decay is not None else net
    history = []
    config = dict(config or {}, steps=steps, lr=lr, warmup=warmup, decay=decay, weight_decay=weight_decay,
                  ema_decay=ema_decay, grad_clip=grad_clip, seed=seed)
    with owning(checkpoint if distributed.is_main() else None):
        start = 0
        if checkpoint is not None:
            check_writable(os.path.dirname(os.path.abspath(checkpoint)), checkpoint_bytes(net))
        if checkpoint is not None and resume and os.path.exists(checkpoint):
            # on the CPU: the generators' states must stay CPU tensors; load_state_dict copies the
            # weights (and the optimizer its moments) to wherever the network is
            state = load_checkpoint(checkpoint, map_location="cpu")
            check_same_architecture(architecture(net), state["architecture"])
            changed = [k for k in identity_differences(config, state["config"]) if k not in may_differ]
            if changed:
                raise ValueError(f"{checkpoint} was written with other settings ({', '.join(map(str, changed))}); "
                                 "resume with the same settings, name the ones that may change in may_differ "
                                 "(only those that cannot spoil the run, such as lr after a NaN), or start afresh "
                                 "with resume=False (or delete the file)")
            net.load_state_dict(state["model"])
            if ema is not net:
                ema.load_state_dict(state["ema"])
            opt.load_state_dict(state["optimizer"])
            rngs = state.get("rngs", [state["rng"]])  # one generator per rank that wrote the checkpoint
            if distributed.rank() < len(rngs):
                gen.set_state(rngs[distributed.rank()])
            history, start = list(state["history"]), state["step"]

        def save(step, rng):
            rngs = distributed.gather(rng)  # every rank's generator; rank 0 writes
            if distributed.is_main():
                save_checkpoint(checkpoint, {
                    "architecture": architecture(net), "config": config, "step": step,
                    "model": net.state_dict(), "ema": ema.state_dict() if ema is not net else None,
                    "optimizer": opt.state_dict(), "rng": rngs[0], "rngs": rngs, "history": history})

        net.train()
        bar = progress_bar(total=steps, initial=start, desc=desc, disable=not (progress and distributed.is_main()),
                           mininterval=0.5, unit="step")
        for step in range(start, steps):
            for group in opt.param_groups:
                group["lr"] = lr_at(step, steps, lr, warmup, decay)
            rng = gen.get_state() if checkpoint is not None else None  # the state this step starts from
            loss = loss_fn(model, gen)
            # read once per step (on a GPU every read waits for the device): the same on every rank, so all
            # ranks stop together on NaN, before the backward pass can spread it into the weights
            shown = float(distributed.mean(loss.detach()))
            if not math.isfinite(shown):
                bar.close()
                raise _diverged(shown, step, lr, grad_clip, checkpoint, save, rng, net, ema, history)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
            opt.step()
            if ema is not net:
                ema_update(ema, net, ema_decay, step)
            history.append(shown)
            bar.update(1)
            if step % 50 == 0 or step == steps - 1:
                bar.set_postfix(loss=f"{sum(history[-50:]) / len(history[-50:]):.4f}")
            if checkpoint is not None and ((step + 1) % checkpoint_every == 0 or step + 1 == steps):
                save(step + 1, gen.get_state())
            yield {"step": step + 1, "loss": history[-1], "ema": ema, "history": history}
        bar.close()
        if start == steps:  # resumed a finished run: hand back its state once
            yield {"step": steps, "loss": history[-1] if history else float("nan"), "ema": ema, "history": history}


def _diverged(shown, step, lr, grad_clip, checkpoint, save, rng, net, ema, history):
    """The error of a NaN loss, after saving the state the failing step started from (weights are
    still finite: the NaN is caught before the backward pass)."""
    where = ""
    if checkpoint is not None:
        save(step, rng)
        where = (f"; the state before step {step} is saved in {checkpoint}: continue from it with a lower rate, "
                 f"e.g. lr={lr / 3:.3g}, resume=True, may_differ=('lr',)")
    err = TrainingDiverged(f"the loss became {shown} at step {step}: lower the learning rate (lr={lr}), keep "
                           f"gradient clipping on (grad_clip={grad_clip}), and check the data for NaN/inf or "
                           f"extreme values{where}. The last good EMA network is kept in this error's .ema")
    err.ema, err.net, err.history, err.step = ema.eval(), net, list(history), step
    return err


def fit(net, loss_fn, steps, **kwargs):
    """Run ``train_loop`` to the end; return the EMA network (eval mode) with ``.history``,
    a dict of per-step 'loss' values. A NaN loss raises ``TrainingDiverged``, which keeps the
    last good EMA network (``err.ema``) and, with a checkpoint, saves the state before it."""
    state = None
    for state in train_loop(net, loss_fn, steps, **kwargs):
        pass
    ema = state["ema"]
    ema.eval()
    ema.history = {"loss": list(state["history"])}
    return ema


def distributed_sampler(loader):
    """The DistributedSampler a DataLoader draws from (as its sampler or inside its batch
    sampler), or None."""
    for s in (loader.sampler, getattr(loader.batch_sampler, "sampler", None)):
        if isinstance(s, torch.utils.data.DistributedSampler):
            return s
    return None


def check_loader(loader):
    """Under a process group of several ranks, a DataLoader must shard its data with a
    DistributedSampler: with any other sampler every rank would draw the same minibatches,
    and W ranks would cost W times the compute of one for the same training."""
    if distributed.world_size() == 1 or isinstance(loader.dataset, torch.utils.data.IterableDataset):
        return  # one process; or a stream, which shards itself by rank
    if distributed_sampler(loader) is None:
        raise ValueError(f"under torchrun ({distributed.world_size()} ranks) every rank would draw the same "
                         "minibatches from this DataLoader: build it with "
                         "sampler=torch.utils.data.DistributedSampler(dataset) (and shuffle=False), or pass the "
                         "data as a tensor, from which every rank draws its own minibatches")


def train_diffusion(net, data, sched, steps=2_000, seed=0, batch_size=256, lr=1e-3, weighting="snr+1",
                    labels=None, p_uncond=0.0, **kwargs):
    """Train a denoiser on ``data`` (a float tensor [n, ...] or a DataLoader) with the
    diffusion loss (``losses.diffusion_loss``, default weighting SNR + 1, i.e. v-MSE).

    With ``labels`` (long [n]) the network is called with ``y=``; each label is replaced
    by the null label with probability ``p_uncond`` (classifier-free guidance, Ho &
    Salimans, 2022). Other keyword arguments go to ``train_loop`` (ema_decay,
    checkpoint, resume, progress, ...). Returns the EMA network with ``.history``.
    Under torchrun, tensor data gives every rank its own minibatches; a DataLoader must
    do that itself, with ``sampler=torch.utils.data.DistributedSampler(dataset)`` (whose
    epoch is advanced here each time the loader runs out). A DataLoader's place in its
    epoch is not checkpointed: a resumed run continues with a fresh pass over the data.
    """
    if not isinstance(net, torch.nn.Module):
        raise TypeError(f"net must be a torch.nn.Module (a denoiser), got {type(net).__name__}")
    device = validate.network_device(net)
    batch_size = validate.positive_int(batch_size, "batch_size")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    p_uncond = validate.probability(p_uncond, "p_uncond")
    num_classes = (getattr(net, "config", None) or {}).get("num_classes")
    if p_uncond > 0 and labels is None and not isinstance(data, torch.utils.data.DataLoader):
        raise ValueError("p_uncond > 0 replaces labels by the null label: pass labels= as well")
    loader = None
    if isinstance(data, torch.utils.data.DataLoader):
        check_loader(data)
        loader, it, sampler = data, iter(data), distributed_sampler(data)
    else:
        data = as_data(data, "data")
        if data.shape[1:] != tuple(getattr(net, "sample_shape", data.shape[1:])):
            raise ValueError(f"data has examples of shape {tuple(data.shape[1:])} but the network makes samples of "
                             f"shape {tuple(net.sample_shape)}; build the network for this data")
        if labels is not None:
            if not num_classes:
                raise ValueError(f"labels were given but the {type(net).__name__} has no class embedding: build it "
                                 "with num_classes= (the number of classes) to train it on labels")
            labels = validate.class_labels(labels, len(data), num_classes, "labels")

    def next_batch(gen):
        nonlocal it
        if loader is None:
            idx = torch.randint(0, data.shape[0], (batch_size,), generator=gen)
            return data[idx], (labels[idx] if labels is not None else None)
        try:
            batch = next(it)
        except StopIteration:
            if sampler is not None:
                sampler.set_epoch(sampler.epoch + 1)  # else every epoch would shuffle the same way
            it = iter(loader)
            batch = next(it)
        if isinstance(batch, (list, tuple)):  # (x,) from a TensorDataset of data alone, or (x, y)
            return batch[0], (batch[1] if len(batch) > 1 else None)
        return batch, None

    def loss_fn(net, gen):
        x, y = next_batch(gen)
        x = x.to(device, torch.float32)
        kw = {}
        if y is not None:
            y = y.to(device).long().clone()
            if p_uncond > 0:
                drop = torch.rand(y.shape[0], generator=gen).to(device) < p_uncond
                y[drop] = null_label(net)
            kw["y"] = y
        return diffusion_loss(net, x, sched, weighting=weighting, generator=gen, **kw)

    config = dict(batch_size=batch_size, weighting=weighting, p_uncond=p_uncond, schedule=schedule_identity(sched),
                  data=data_identity(data), labels=None if labels is None else fingerprint(labels, length=16))
    return fit(net, loss_fn, steps, lr=lr, seed=seed, config=config, desc=kwargs.pop("desc", "train"), **kwargs)
