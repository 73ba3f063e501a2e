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
from .data import as_data
from .losses import diffusion_loss
from .progress import bar as progress_bar

FORMAT = "pdlearn-checkpoint-1"


def architecture(net):
    """A description of a network's architecture: class name and parameter shapes."""
    return {"class": type(net).__name__,
            "shapes": {k: list(v.shape) for k, v in net.state_dict().items()}}


def check_same_architecture(expected, found, what="checkpoint"):
    """Raise a clear error when two ``architecture`` descriptions differ."""
    if expected == found:
        return
    if expected["class"] != found["class"]:
        raise ValueError(f"the {what} is for a {found['class']}, but the network is a {expected['class']}; "
                         "build the network the checkpoint was trained with, or start afresh (resume=False)")
    e, f = expected["shapes"], found["shapes"]
    diff = [k for k in sorted(set(e) | set(f)) if e.get(k) != f.get(k)][:3]
    detail = "; ".join(f"{k}: network {e.get(k)} vs {what} {f.get(k)}" for k in diff)
    raise ValueError(f"the {what} comes from a different architecture ({detail}); build the network with the "
                     "sizes it was trained with, or start afresh (resume=False or delete the file)")


def save_checkpoint(path, state):
    """Write ``state`` atomically (a crash mid-write never leaves a broken file)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path, map_location="cpu"):
    """Load a checkpoint with ``weights_only=True`` (no arbitrary code runs on load)."""
    state = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not a pdlearn checkpoint (format {FORMAT!r})")
    return state


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


def train_loop(net, loss_fn, steps, lr=1e-3, warmup=None, decay="cosine", weight_decay=0.0, ema_decay=0.999,
               grad_clip=1.0, seed=0, checkpoint=None, checkpoint_every=1000, resume=False, progress=True,
               desc="train", config=None):
    """Train ``net`` in place, yielding ``{'step', 'loss', 'ema', 'history'}`` after every step.

    ``loss_fn(net, generator)`` returns a scalar loss; it must draw all its
    randomness from ``generator`` (a CPU torch.Generator whose state is checkpointed).
    ``ema`` is an EMA copy of ``net`` (or ``net`` itself when ema_decay is None).
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    warmup = min(100, steps // 10) if warmup is None else warmup
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
    start = 0
    if checkpoint is not None and resume and os.path.exists(checkpoint):
        # on the CPU: the generators' states must stay CPU tensors; load_state_dict copies the
        # weights (and the optimizer its moments) to wherever the network is
        state = load_checkpoint(checkpoint, map_location="cpu")
        check_same_architecture(architecture(net), state["architecture"])
        if state["config"] != config:
            changed = [k for k in config if state["config"].get(k) != config[k]]
            raise ValueError(f"{checkpoint} was written with other settings ({', '.join(changed)}); resume with the "
                             "same settings, or start afresh with resume=False (or delete the file)")
        net.load_state_dict(state["model"])
        if ema is not net:
            ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        rngs = state.get("rngs", [state["rng"]])  # one generator per rank that wrote the checkpoint
        if distributed.rank() < len(rngs):
            gen.set_state(rngs[distributed.rank()])
        history, start = list(state["history"]), state["step"]

    def save(step):
        rngs = distributed.gather(gen.get_state())  # every rank's generator; rank 0 writes
        if distributed.is_main():
            save_checkpoint(checkpoint, {
                "format": FORMAT, "architecture": architecture(net), "config": config, "step": step,
                "model": net.state_dict(), "ema": ema.state_dict() if ema is not net else None,
                "optimizer": opt.state_dict(), "rng": rngs[0], "rngs": rngs, "history": history})

    net.train()
    bar = progress_bar(total=steps, initial=start, desc=desc, disable=not (progress and distributed.is_main()),
                       mininterval=0.5, unit="step")
    for step in range(start, steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr, warmup, decay)
        loss = loss_fn(model, gen)
        # read once per step (on a GPU every read waits for the device): the same on every rank, so all
        # ranks stop together on NaN, before the backward pass can spread it into the weights
        shown = float(distributed.mean(loss.detach()))
        if not math.isfinite(shown):
            bar.close()
            last = f"; the last checkpoint is {checkpoint}" if checkpoint and os.path.exists(checkpoint) else ""
            raise FloatingPointError(
                f"the loss became {shown} at step {step}: lower the learning rate (lr={lr}), keep gradient "
                f"clipping on (grad_clip={grad_clip}), and check the data for NaN/inf or extreme values{last}")
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
            save(step + 1)
        yield {"step": step + 1, "loss": history[-1], "ema": ema, "history": history}
    bar.close()
    if start == steps:  # resumed a finished run: hand back its state once
        yield {"step": steps, "loss": history[-1] if history else float("nan"), "ema": ema, "history": history}


def fit(net, loss_fn, steps, **kwargs):
    """Run ``train_loop`` to the end; return the EMA network (eval mode) with ``.history``,
    a dict of per-step 'loss' values."""
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
    device = next(net.parameters()).device
    loader = None
    if isinstance(data, torch.utils.data.DataLoader):
        check_loader(data)
        loader, it, sampler = data, iter(data), distributed_sampler(data)
    else:
        data = as_data(data, "data")
        if labels is not None and len(labels) != len(data):
            raise ValueError(f"labels must have one entry per example: got {len(labels)} labels for {len(data)} examples")

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
                y[drop] = net.config["num_classes"]
            kw["y"] = y
        return diffusion_loss(net, x, sched, weighting=weighting, generator=gen, **kw)

    config = dict(batch_size=batch_size, weighting=weighting, p_uncond=p_uncond, schedule=repr(sched))
    return fit(net, loss_fn, steps, lr=lr, seed=seed, config=config, desc=kwargs.pop("desc", "train"), **kwargs)
