"""Beyond one GPU: data-parallel training with torch's DistributedDataParallel, launched by torchrun.

    torchrun --nproc_per_node 4 -m pdlearn teacher --data mnist

torchrun starts one process per GPU and tells each its place through the
environment: ``RANK`` (0 .. WORLD_SIZE - 1), ``WORLD_SIZE`` and ``LOCAL_RANK``
(which GPU of this machine). ``init()`` reads them and joins the process group
(NCCL on CUDA, gloo on CPU). From then on ``train.train_loop`` wraps its network
in ``DistributedDataParallel`` (Li et al., 2020): every rank computes the loss on
its own minibatch of B examples, and the backward pass averages the gradients of
the ranks,

    g = (1 / W) sum_r grad L_r = grad of the mean loss over all W * B examples,

so every rank takes the same optimizer step as one process would with a W-times
larger batch, and all ranks keep identical weights. Without torchrun nothing here
does anything: the process is rank 0 of a world of one.
"""
import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from .seeding import derive_seed
from .validate import network_device


def launched():
    """Whether torchrun (or another launcher) started this process: RANK and WORLD_SIZE are set."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def active():
    """Whether this process belongs to an initialised process group."""
    return dist.is_available() and dist.is_initialized()


def rank():
    """This process's rank: 0 .. world_size() - 1 (0 without a process group)."""
    return dist.get_rank() if active() else 0


def world_size():
    """The number of processes that train together (1 without a process group)."""
    return dist.get_world_size() if active() else 1


def is_main():
    """Rank 0: the one process that writes checkpoints, shows progress and prints."""
    return rank() == 0


def rank_device():
    """This rank's device: cuda:LOCAL_RANK on a GPU machine, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def init():
    """Join the process group of a torchrun launch (NCCL on CUDA, gloo on CPU) and return
    this rank's device; without torchrun, just return the device. Safe to call twice."""
    if launched() and not active():
        if not dist.is_available():
            raise RuntimeError("this torch build has no torch.distributed; install a standard torch build to "
                               "train with torchrun, or run the command without torchrun")
        if torch.cuda.is_available():
            torch.cuda.set_device(rank_device())  # so that pdl.device()'s plain 'cuda' means this rank's GPU
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return rank_device()


def shutdown():
    """Leave the process group (a clean exit for torchrun); does nothing without one."""
    if active():
        dist.barrier()
        dist.destroy_process_group()


def describe():
    """A line saying where this process stands, e.g. 'rank 0 of 2 (gloo, cpu)'."""
    if not active():
        return f"one process ({rank_device()})"
    return f"rank {rank()} of {world_size()} ({dist.get_backend()}, {rank_device()})"


def rank_seed(seed, rank_=None):
    """The seed of a rank's random generator, ``derive_seed(seed, 'rank', rank)`` (seed +
    1,000,003 * rank; see ``seeding``): rank 0 keeps ``seed``, so a run without a process
    group is unchanged, and the other ranks get streams of their own (their own minibatches,
    times and noise)."""
    return derive_seed(seed, "rank", rank() if rank_ is None else rank_)


class DDP(DistributedDataParallel):
    """DistributedDataParallel that also answers for the network's own attributes
    (``prediction``, ``sample_shape``, ``config``), so losses and ``predict`` take it
    as they take the network."""

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "module":
                raise
            return getattr(self.module, name)


def wrap(net):
    """``net`` wrapped in DistributedDataParallel. Its construction broadcasts rank 0's
    weights to every rank, so all ranks start from the same network."""
    dev = network_device(net)
    return DDP(net, device_ids=[dev] if dev.type == "cuda" else None)


def mean(x):
    """The mean of tensor ``x`` over the ranks (``x`` itself without a process group)."""
    if not active():
        return x
    x = x.detach().clone()
    dist.all_reduce(x)
    return x / world_size()


def gather(obj):
    """A list of ``obj`` from every rank, in rank order (``[obj]`` without a process group)."""
    if not active():
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier():
    """Wait until every rank reaches this point (nothing without a process group)."""
    if active():
        dist.barrier()
