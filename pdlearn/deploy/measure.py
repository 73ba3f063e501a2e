"""What a deployment costs: bytes on disk, bytes in memory, milliseconds per image.

    file_mb(net)          the size of what ships: the saved weights (``torch.save`` of the state
                          dict; int8 and bf16 tensors at their own width) or the ONNX file
    peak_memory_mb(fn)    the most memory the tensors of one call hold at once, above what was
                          held before it (activations and workspace; the weights are in
                          ``file_mb``), from torch's profiler
    latency(variants)     each variant's sampler timed interleaved at one torch thread, on the
                          thread-CPU clock and on the wall clock (``pdlearn.timing``)
    work(net)             what one forward pass runs: its ATen operators and its FLOPs
    forward_ms(nets)      the forward passes alone, timed interleaved, without the sampler

Megabytes are 10^6 bytes. Memory is what torch's CPU allocator hands out to eager operators:
an engine with its own allocator (ONNX Runtime) or a compiled graph that plans its own
buffers is not measured by ``peak_memory_mb``, and the tables leave those cells empty.
"""
import contextlib
import io
import os
import sys

import torch

from ..sampling import NoiseSource
from ..timing import num_threads, time_fns
from ..validate import network_device, positive_int
from .export import example_inputs, export_program


def file_mb(net):
    """Megabytes of what ships for ``net``: its ONNX file (a path, or an ``OnnxRuntimeNet``), or
    its state dict as ``torch.save`` writes it (each tensor at its own dtype)."""
    path = net if isinstance(net, (str, os.PathLike)) else getattr(net, "path", None)
    if path is not None:
        return os.path.getsize(path) / 1e6
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    return buffer.getbuffer().nbytes / 1e6


@contextlib.contextmanager
def _stderr_silenced():
    """Send the process's file descriptor 2 to /dev/null for the block: the profiler's C++ side
    logs a line to it at every start and stop. Python exceptions still propagate."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_memory_mb(fn):
    """Peak megabytes allocated by torch's CPU allocator during ``fn()`` above the level at its
    start: the bytes each operator allocates and frees itself, as ``torch.profiler`` records
    them (``profile_memory``), summed in the order the operators start (frees outside any
    operator come as '[memory]' events). Returns (peak MB, fn's result)."""
    from torch.profiler import ProfilerActivity, profile

    with _stderr_silenced(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
    live = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        live += event.cpu_memory_usage if event.name == "[memory]" else event.self_cpu_memory_usage
        peak = max(peak, live)
    return peak / 1e6, result


def latency(variants, sched, batch_size=1, repeats=7, warmup=2, threads=1, seed=0, min_s=0.05, progress=False):
    """Sampling latency of several variants, timed interleaved (``timing.time_fns``) with
    ``threads`` torch threads: ``variants`` maps a name to (network, steps), and each timed call
    is ``ddim_sample(network, sched, z=z_1, steps=steps)`` from the same seeded noise of
    ``batch_size`` samples. Returns {name: {'thread_ms', 'wall_ms' (medians per call),
    'thread_spread_ms', 'wall_spread_ms' (interquartile ranges), 'ms_per_image' (thread),
    'images_per_s' (thread clock), 'timing' (time_fns' record)}}."""
    from ..sampling import ddim_sample

    batch_size = positive_int(batch_size, "batch_size")
    fns = {}
    for name, (net, steps) in variants.items():
        z = NoiseSource(batch_size, net.sample_shape, seed=seed, device=network_device(net)).randn()
        fns[name] = lambda net=net, steps=steps, z=z: ddim_sample(net, sched, z=z, steps=steps)
    with num_threads(threads), torch.no_grad():
        timings = time_fns(fns, repeats, warmup, min_s=min_s, clock="thread", progress=progress)
    out = {}
    for name, t in timings.items():
        thread, wall = t["thread"], t["wall"]
        out[name] = dict(thread_ms=thread["median_s"] * 1e3, wall_ms=wall["median_s"] * 1e3,
                         thread_spread_ms=thread["spread_s"] * 1e3, wall_spread_ms=wall["spread_s"] * 1e3,
                         ms_per_image=thread["median_s"] * 1e3 / batch_size,
                         images_per_s=batch_size / thread["median_s"], timing=t)
    return out


def work(net, batch_size=1):
    """What one forward pass of ``net`` at ``batch_size`` runs: {'operators': the number of
    ATen operator calls in its exported graph (``export.export_program``), 'mflop': its
    floating-point operations in millions, a multiply-add counted as two (torch's
    ``FlopCounterMode``)}. A CPU pays a roughly fixed cost to launch each operator, so when
    the arithmetic is small (batch 1, 8 by 8 images) the first predicts the time, not the
    second."""
    from torch.utils.flop_counter import FlopCounterMode

    graph = export_program(net).graph
    operators = sum(node.op == "call_function" for node in graph.nodes)
    counter = FlopCounterMode(display=False)
    z, t = example_inputs(net, batch_size)
    with counter, torch.no_grad():
        net(z, t)
    return dict(operators=operators, mflop=counter.get_total_flops() / 1e6)


def forward_ms(nets, batch_size=1, repeats=7, warmup=2, threads=1, seed=0, min_s=0.05):
    """The forward pass ``net(z, t)`` alone, each network of ``nets`` ({name: network}) timed
    interleaved as ``latency`` times the sampler: the same seeded ``batch_size`` inputs, t = 1,
    ``threads`` torch threads, thread-CPU clock. ``latency`` minus this is what the sampler
    itself costs. Returns {name: {'thread_ms' (median per call), 'timing' (``time_fns``'
    record, for ``timing.paired``)}}."""
    batch_size = positive_int(batch_size, "batch_size")
    fns = {}
    for name, net in nets.items():
        z, _ = example_inputs(net, batch_size, seed)
        t = torch.ones(batch_size, device=z.device)
        fns[name] = lambda net=net, z=z, t=t: net(z, t)
    with num_threads(threads), torch.no_grad():
        timings = time_fns(fns, repeats, warmup, min_s=min_s, clock="thread")
    return {name: dict(thread_ms=t["median_s"] * 1e3, timing=t) for name, t in timings.items()}
