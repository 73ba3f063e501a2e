"""Timing samplers: where the milliseconds go.

The unit of cost of a diffusion sampler is the number of function evaluations
(NFE): an N-step DDIM sampler calls the network N times. If nothing but the
network cost time, an N-step sampler would take N times as long as a 1-step one,
and a student distilled to 1 step (Salimans & Ho, 2022) would be exactly
``teacher_steps`` times faster than its teacher. The functions here measure how
close real samplers come to that:

    latency(N) ~ overhead + N * (network + per-step bookkeeping)

- ``time_fn`` / ``time_fns`` / ``paired`` (from ``timing``): median and spread of
  repeated, interleaved calls on the thread-CPU or wall clock, and paired ratios;
- ``sampler_latency``: one row (ms per batch, ms per sample, samples per second)
  for a DDIM sampler at a given step count, batch size, thread count, precision;
- ``sweep``: rows over step counts, batch sizes and thread counts;
- ``nfe_speedup_table``: measured speedup over the full-step teacher beside the
  NFE ratio;
- ``diffusers_ddim_loop`` / ``compare_with_diffusers``: the same network driven by
  diffusers' ``DDIMScheduler``, to check that pdlearn's loop adds no overhead;
- ``gpu_variants``: autocast (fp16 / bf16) and ``torch.compile`` rows, on a GPU only.

Timings on a shared machine move by 1.5x between runs: compare rows measured in
one call (``time_fns`` interleaves its functions), and read ratios, not absolutes.
"""
import itertools
import math

import torch

from .progress import bar
from .sampling import NoiseSource, ddim_sample
from .schedules import LinearBetaSchedule, check_steps
from .timing import (beyond_bound, num_threads, paired, paired_ratio, stopwatch, synchronize,  # noqa: F401
                     time_fn, time_fns)
from .metrics.compare import verdict
from .validate import network_device, positive_int

PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
MIN_S = 0.05  # a sampling call shorter than this is timed over several back-to-back calls


def _bar(iterable, progress):
    if not progress:
        return iterable
    return bar(iterable, desc=progress if isinstance(progress, str) else "timing", leave=False, summary=True)


def start_noise(net, batch_size, seed=0):
    """z_1 for ``batch_size`` samples of ``net.sample_shape`` on the network's device (per-sample seeded)."""
    return NoiseSource(batch_size, net.sample_shape, seed=seed, device=network_device(net)).randn()


def _sampler_fn(net, sched, steps, z, sampler="pdlearn", precision="fp32", model_kwargs=None):
    """A no-argument function that runs one sampling call: the thing that is timed."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {tuple(PRECISIONS)}, got {precision!r}")
    if sampler == "pdlearn":
        run = lambda: ddim_sample(net, sched, z=z, steps=steps, model_kwargs=model_kwargs)  # noqa: E731
    elif sampler == "diffusers":
        scheduler = diffusers_scheduler(sched, steps, net.prediction)  # built once, like a pipeline's
        run = lambda: diffusers_ddim_loop(net, sched, steps, z, scheduler, model_kwargs)  # noqa: E731
    else:
        raise ValueError(f"sampler must be 'pdlearn' or 'diffusers', got {sampler!r}")
    if PRECISIONS[precision] is None:
        return run
    return lambda: _autocast(run, z.device.type, PRECISIONS[precision])


def _autocast(run, device_type, dtype):
    with torch.autocast(device_type, dtype=dtype):
        return run()


def _row(sampler, steps, batch_size, threads, device, precision, compiled, timing, repeats):
    ms = timing["median_s"] * 1e3
    return dict(sampler=sampler, steps=steps, nfe=steps, batch_size=batch_size, threads=threads,
                device=str(device), precision=precision, compiled=compiled, median_ms=ms,
                spread_ms=timing["spread_s"] * 1e3, clock=timing["clock"], wall_ms=timing["wall"]["median_s"] * 1e3,
                cpu_ms=timing["thread"]["median_s"] * 1e3, ms_per_sample=ms / batch_size,
                samples_per_s=batch_size / timing["median_s"], repeats=repeats)


def sampler_latency(net, sched, steps, batch_size, repeats=5, warmup=1, sampler="pdlearn", threads=None,
                    precision="fp32", compile=False, seed=0, model_kwargs=None, min_s=MIN_S):
    """Latency of one DDIM sampling call of ``batch_size`` samples in ``steps`` steps (NFE = steps).

    z_1 is drawn once, outside the clock; each timed call runs the whole loop from it.
    ``sampler``: 'pdlearn' (``ddim_sample``) or 'diffusers' (``diffusers_ddim_loop``);
    ``threads``: torch's intra-op threads during the measurement; ``precision``: 'fp32',
    or 'fp16' / 'bf16' under ``torch.autocast``; ``compile``: wrap the network in
    ``torch.compile`` (the warm-up calls pay for compilation). On CUDA the clock is read
    after synchronising; calls shorter than ``min_s`` are timed over several back-to-back
    calls (``time_fns``). The clock is the thread's CPU time with one thread on the CPU and wall
    time otherwise (``timing.pick_clock``); both are in the row. Returns a dict: sampler, steps,
    nfe, batch_size, threads, device, precision, compiled, median_ms, spread_ms (of the clock
    named in 'clock'), wall_ms, cpu_ms, ms_per_sample, samples_per_s, repeats.
    """
    steps, batch_size = check_steps(steps), positive_int(batch_size, "batch_size")
    device = network_device(net)
    z = start_noise(net, batch_size, seed)
    model = torch.compile(net) if compile else net
    run = _sampler_fn(model, sched, steps, z, sampler, precision, model_kwargs)
    with num_threads(threads):
        timing = time_fn(run, repeats, warmup, sync=device.type == "cuda", min_s=min_s)
        used = torch.get_num_threads()
    return _row(sampler, steps, batch_size, used, device, precision, bool(compile), timing, repeats)


def sweep(net, sched, steps=(1, 4, 16, 64), batch_sizes=(1, 256), threads=(None,), repeats=5, warmup=1,
          progress=True, **kwargs):
    """``sampler_latency`` over every combination of steps, batch sizes and thread counts: a list of rows."""
    combos = itertools.product(threads, batch_sizes, steps)
    total = len(threads) * len(batch_sizes) * len(steps)
    return [sampler_latency(net, sched, n, b, repeats, warmup, threads=k, **kwargs)
            for k, b, n in _bar(list(combos), progress and f"latency sweep ({total} settings)")]


def nfe_speedup_table(net, sched, steps=(256, 64, 16, 4, 1), batch_size=256, repeats=5, warmup=1, threads=None,
                      seed=0, progress=True, model_kwargs=None, min_s=MIN_S):
    """Measured speedup over the full-step teacher beside the NFE ratio.

    The teacher is the largest step count N_T; for each N the rows give
    speedup = latency(N_T) / latency(N) (the median of paired, interleaved repeats,
    ``timing.paired``, with its spread), nfe_ratio = N_T / N and efficiency = speedup /
    nfe_ratio (1: only the network costs time; below 1: fixed per-call costs, such as
    Python, set-up and the first noise draw, weigh more when the network runs fewer times).
    The cost model caps the efficiency at 1, so a measured efficiency above 1 by more than
    its spread is the clock's noise: 'noise' says so (``timing.beyond_bound``). Timing does
    not depend on the weights, so ``net`` can stand in for every student of the same
    architecture.
    """
    steps = sorted({check_steps(n) for n in steps}, reverse=True)
    z = start_noise(net, batch_size, seed)
    fns = {n: _sampler_fn(net, sched, n, z, model_kwargs=model_kwargs) for n in steps}
    with num_threads(threads):
        timings = time_fns(fns, repeats, warmup, sync=network_device(net).type == "cuda", min_s=min_s,
                           progress=progress and f"batch {batch_size}: {len(steps)} step counts, repeats")
    teacher_steps, rows = steps[0], []
    for n in steps:
        pair = paired(timings[teacher_steps], timings[n])
        ratio = teacher_steps / n
        efficiency, spread = pair["ratio"] / ratio, pair["spread"] / ratio
        rows.append(dict(steps=n, batch_size=batch_size, median_ms=timings[n]["median_s"] * 1e3,
                         spread_ms=timings[n]["spread_s"] * 1e3, clock=pair["clock"], speedup=pair["ratio"],
                         speedup_spread=pair["spread"], nfe_ratio=ratio, efficiency=efficiency,
                         efficiency_spread=spread, noise=beyond_bound(efficiency, spread, 1.0)))
    return rows


# ----------------------------------------------------------------------------------------
# The peer: diffusers' DDIMScheduler driving the same network
# ----------------------------------------------------------------------------------------

DIFFUSERS_PREDICTION = {"eps": "epsilon", "x": "sample", "v": "v_prediction"}


def diffusers_scheduler(sched, steps, prediction="v"):
    """A diffusers ``DDIMScheduler`` that takes the same steps as ``ddim_sample(..., steps)``.

    Timestep convention (as in the book's reference test): diffusers' training timestep
    tau = 0..T-1 is pdlearn's time t = (tau + 1) / T, and ``alphas_cumprod[tau]`` is
    alpha_t^2 of ``sched`` there. With 'trailing' spacing and T a multiple of ``steps``,
    diffusers' timesteps are pdlearn's uniform grid t_k = k / N, and ``set_alpha_to_one``
    is the last step to t = 0. T is the schedule's own (``LinearBetaSchedule.T``) or,
    for a continuous schedule, the multiple of ``steps`` nearest above 1000.
    diffusers is optional: ``pip install diffusers``.
    """
    try:
        from diffusers import DDIMScheduler
    except ImportError as err:
        raise ImportError("the diffusers comparison needs diffusers: pip install diffusers") from err
    steps = check_steps(steps)
    T = sched.T if isinstance(sched, LinearBetaSchedule) else steps * math.ceil(1000 / steps)
    if T % steps:
        raise ValueError(f"diffusers' trailing timesteps match pdlearn's grid only when T = {T} is a multiple of "
                         f"steps = {steps}; use a step count that divides {T}")
    if prediction not in DIFFUSERS_PREDICTION:
        raise ValueError(f"prediction must be one of {tuple(DIFFUSERS_PREDICTION)}, got {prediction!r}")
    alpha, _ = sched.alpha_sigma(torch.arange(1, T + 1, dtype=torch.float64) / T)
    if prediction == "eps" and alpha[-1] <= 0:
        raise ValueError("an eps-prediction network has no x_hat at alpha_1 = 0 (the cosine schedule's t = 1): "
                         "use a v- or x-prediction network, or LinearBetaSchedule()")
    ref = DDIMScheduler(num_train_timesteps=T, clip_sample=False, set_alpha_to_one=True,
                        timestep_spacing="trailing", prediction_type=DIFFUSERS_PREDICTION[prediction])
    ref.alphas_cumprod = alpha**2
    ref.final_alpha_cumprod = torch.tensor(1.0, dtype=torch.float64)
    return ref


@torch.no_grad()
def diffusers_ddim_loop(net, sched, steps, z, scheduler=None, model_kwargs=None):
    """Deterministic DDIM from z_1 = ``z`` with diffusers' ``DDIMScheduler.step`` (eta = 0):

        for tau in scheduler.timesteps:  z = scheduler.step(net(z, (tau + 1) / T), tau, z).prev_sample

    The same sampler as ``ddim_sample(net, sched, z=z, steps=steps)`` (the samples agree to
    float tolerance), driven by another library's loop: timing both compares the loops.
    ``scheduler`` defaults to ``diffusers_scheduler(sched, steps, net.prediction)``.
    """
    scheduler = scheduler or diffusers_scheduler(sched, steps, net.prediction)
    T = scheduler.config.num_train_timesteps
    kw = model_kwargs or {}
    scheduler.set_timesteps(steps)
    for tau in scheduler.timesteps:
        t = torch.full((z.shape[0],), (int(tau) + 1) / T, dtype=z.dtype, device=z.device)
        z = scheduler.step(net(z, t, **kw), tau, z).prev_sample
    return z


def compare_with_diffusers(net, sched, steps, batch_size, repeats=5, warmup=1, threads=None, seed=0, min_s=MIN_S):
    """pdlearn's ``ddim_sample`` and ``diffusers_ddim_loop`` on the same network and noise, timed interleaved.

    Returns {'steps', 'batch_size', 'pdlearn_ms', 'diffusers_ms' (each loop's own median),
    'ratio' (pdlearn / diffusers: the median of the per-repeat paired ratios, which is not the
    ratio of the two medians), 'ratio_spread', 'verdict' (``metrics.verdict`` of the ratio
    against 1 with its spread: 'better' means pdlearn's loop is faster), 'clock',
    'max_abs_diff' (between the two samples)}.
    """
    z = start_noise(net, batch_size, seed)
    fns = {name: _sampler_fn(net, sched, steps, z, name) for name in ("pdlearn", "diffusers")}
    diff = float((fns["pdlearn"]() - fns["diffusers"]()).abs().max())
    with num_threads(threads):
        timing = time_fns(fns, repeats, warmup, sync=network_device(net).type == "cuda", min_s=min_s)
    ours, theirs = timing["pdlearn"], timing["diffusers"]
    pair = paired(ours, theirs)
    return dict(steps=steps, batch_size=batch_size, pdlearn_ms=ours["median_s"] * 1e3,
                diffusers_ms=theirs["median_s"] * 1e3, ratio=pair["ratio"], ratio_spread=pair["spread"],
                verdict=verdict(pair["ratio"], 1.0, pair["spread"]), clock=pair["clock"], max_abs_diff=diff)


# ----------------------------------------------------------------------------------------
# On a GPU: half precision and compilation
# ----------------------------------------------------------------------------------------

def gpu_variants(net, sched, steps, batch_size, repeats=5, warmup=2, seed=0):
    """Rows of ``sampler_latency`` for fp32, autocast fp16, autocast bf16 and ``torch.compile`` (fp32)
    on the network's CUDA device. On a CPU it prints a note and returns [] (no numbers are made up)."""
    if network_device(net).type != "cuda":
        print("gpu_variants: the network is not on a CUDA device; autocast and torch.compile rows are measured "
              "on a GPU only (run with the gpu budget on a GPU machine).")
        return []
    variants = [dict(precision="fp32"), dict(precision="fp16"), dict(precision="bf16"),
                dict(precision="fp32", compile=True)]
    return [sampler_latency(net, sched, steps, batch_size, repeats, warmup, seed=seed, **v) for v in variants]


def table(rows, columns, formats=None):
    """Rows (dicts) as a Markdown table of the given columns; ``formats`` maps a column to a format spec."""
    formats = formats or {}
    lines = ["| " + " | ".join(columns) + " |", "|" + "---:|" * len(columns)]
    for row in rows:
        cells = [format(row[c], formats.get(c, "")) if row[c] is not None else "" for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
