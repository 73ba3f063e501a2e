"""Timing primitives: clocks that mean what they say on a shared machine.

Wall time on a shared machine moves by 1.5x between identical runs: another process
takes the core, and the clock keeps running. So the book times CPU work with the
CPU time of the thread that does it (``time.thread_time``), which only counts while
that thread runs, and keeps wall time where latency is the point:

    clock='thread'   CPU seconds of the calling thread: right for single-thread CPU work
                     (``torch.set_num_threads(1)``), unmoved by other processes;
    clock='wall'     ``time.perf_counter``: latency; the only honest clock for a GPU
                     (after synchronising) or for several threads;
    clock='auto'     'thread' on the CPU with one torch thread, 'wall' otherwise.

Every timing records both clocks; ``median_s`` / ``spread_s`` / ``times`` are those of
the chosen clock, and ``wall`` / ``thread`` hold each clock's own summary.

Comparisons are paired: ``time_fns`` interleaves its functions (each repeat times every
function once, in turn), so a slow moment of the machine hits all of them, and
``paired`` takes the median of the per-repeat ratios, with their spread. A ratio that
a cost model bounds (an efficiency cannot exceed 1) and that lands beyond the bound by
more than its spread is noise, and ``beyond_bound`` says so.

    stopwatch()      wall, thread and process CPU seconds of a block (process CPU time sums
                     all threads: the cost of a multi-threaded training cell)
"""
import contextlib
import statistics
import time

import torch

from .progress import bar
from .validate import count, positive_int

CLOCKS = {"wall": time.perf_counter, "thread": time.thread_time}


def synchronize():
    """Wait for the GPU's queued kernels, when CUDA is in use (a no-op on a CPU): call it
    before reading a clock around GPU work, which otherwise times only the launches."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def cuda_in_use():
    """Whether CUDA has been initialised in this process (then only wall time is honest)."""
    return torch.cuda.is_available() and torch.cuda.is_initialized()


def _sync_fn(sync):
    """sync='auto': ``synchronize`` (CUDA's, when it is in use); True: ``torch.cuda.synchronize``;
    a callable: itself; False / None: nothing."""
    if sync == "auto":
        return synchronize
    if sync is True:
        return torch.cuda.synchronize
    if callable(sync):
        return sync
    if sync in (False, None):
        return lambda: None
    raise ValueError(f"sync must be 'auto', True, False or a callable, got {sync!r}")


def pick_clock(clock="auto"):
    """The clock a timing reads: 'thread' or 'wall' as asked; 'auto' gives 'thread' on the CPU
    with one torch thread and 'wall' otherwise (module docstring)."""
    if clock == "auto":
        return "thread" if torch.get_num_threads() == 1 and not cuda_in_use() else "wall"
    if clock not in CLOCKS:
        raise ValueError(f"clock must be 'auto', 'thread' or 'wall', got {clock!r}")
    return clock


def summary(times):
    """Median, spread (interquartile range) and minimum of a list of seconds."""
    if len(times) > 1:
        q1, _, q3 = statistics.quantiles(times, n=4, method="inclusive")
    else:
        q1 = q3 = times[0]
    return dict(median_s=statistics.median(times), spread_s=q3 - q1, min_s=min(times), times=list(times))


def _timed(fn, sync, number=1):
    """(wall, thread) seconds per call of ``number`` back-to-back calls, read after synchronising."""
    sync()
    wall, thread = time.perf_counter(), time.thread_time()
    for _ in range(number):
        fn()
    sync()
    return (time.perf_counter() - wall) / number, (time.thread_time() - thread) / number


def _calls_lasting(fn, sync, min_s):
    """The smallest number of back-to-back calls, 1, 2, 4, ..., that lasts at least min_s seconds."""
    number = 1
    while min_s > 0 and _timed(fn, sync, number)[0] * number < min_s:
        number *= 2
    return number


def time_fns(fns, repeats=5, warmup=1, sync="auto", min_s=0.0, progress=False, clock="auto"):
    """Time several functions interleaved: each repeat times every function once, in order.

    Interleaving exposes all of them to the same slow moments of a shared machine, so
    their ratios are steadier than those of back-to-back runs. GPU kernels run
    asynchronously, so the clock is read only after ``sync()``: by default ('auto')
    ``torch.cuda.synchronize()`` whenever CUDA is in use (``sync=False`` times the launches
    on purpose). With ``min_s`` > 0 each timing covers ``number`` back-to-back calls, enough
    to last ``min_s`` seconds of wall time (found by doubling, as ``timeit``'s autorange
    does), divided by ``number``: a clock reading of a fraction of a millisecond is mostly
    noise. ``clock``: see ``pick_clock``. ``progress`` (True or a description) shows a bar
    over the repeats.

    Returns {name: {'median_s', 'spread_s' (interquartile range), 'min_s', 'times' (of the
    chosen clock), 'clock', 'wall', 'thread' (each clock's summary), 'number'}}, in seconds
    per call.
    """
    repeats, warmup = positive_int(repeats, "repeats"), count(warmup, "warmup")
    used = pick_clock(clock)
    sync = _sync_fn(sync)
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    numbers = {name: _calls_lasting(fn, sync, min_s) for name, fn in fns.items()}
    wall = {name: [] for name in fns}
    thread = {name: [] for name in fns}
    for _ in (bar(range(repeats), desc=progress if isinstance(progress, str) else "timing", leave=False,
                  summary=True) if progress else range(repeats)):
        for name, fn in fns.items():
            w, t = _timed(fn, sync, numbers[name])
            wall[name].append(w)
            thread[name].append(t)
    out = {}
    for name in fns:
        clocks = {"wall": summary(wall[name]), "thread": summary(thread[name])}
        out[name] = dict(clocks[used], clock=used, number=numbers[name], **clocks)
    return out


def time_fn(fn, repeats=5, warmup=1, sync="auto", min_s=0.0, clock="auto"):
    """Median and spread of ``repeats`` timed calls of ``fn()`` after ``warmup`` calls that are
    not counted (see ``time_fns``)."""
    return time_fns({"fn": fn}, repeats, warmup, sync, min_s, clock=clock)["fn"]


def paired(a, b):
    """The paired ratio of two timings of one ``time_fns`` call: a's time / b's time in each
    repeat, then their median and spread (interquartile range), on the clock both used.

    Each repeat timed both back to back, so a busy moment slows both and largely cancels in
    their ratio: steadier than the ratio of the two medians. Returns {'ratio', 'spread',
    'ratios', 'clock'}."""
    if a.get("clock") != b.get("clock"):
        raise ValueError(f"the two timings read different clocks ({a.get('clock')} and {b.get('clock')})")
    ratios = [x / y for x, y in zip(a["times"], b["times"])]
    s = summary(ratios)
    return dict(ratio=s["median_s"], spread=s["spread_s"], ratios=ratios, clock=a.get("clock"))


def paired_ratio(a, b):
    """The median of the per-repeat ratios a / b (``paired``'s 'ratio')."""
    return paired(a, b)["ratio"]


def beyond_bound(value, spread, bound=1.0):
    """Whether ``value`` exceeds ``bound`` by more than its ``spread``: a ratio that its cost
    model caps at ``bound`` (an efficiency at 1) and that lands above it beyond the spread of
    its repeats is the clock's noise, not a finding."""
    return value - spread > bound


@contextlib.contextmanager
def num_threads(threads):
    """Run the block with ``torch.set_num_threads(threads)`` (None: leave it), then restore."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(positive_int(threads, "threads"))
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Stopwatch:
    """Seconds of a block on three clocks: 'wall_s', 'thread_s' (the calling thread's CPU time)
    and 'cpu_s' (the process's CPU time, all threads: the cost of multi-threaded work)."""

    def __enter__(self):
        synchronize()
        self._began = time.perf_counter(), time.thread_time(), time.process_time()
        return self

    def __exit__(self, *exc):
        synchronize()
        wall, thread, cpu = self._began
        self.wall_s = time.perf_counter() - wall
        self.thread_s = time.thread_time() - thread
        self.cpu_s = time.process_time() - cpu
        return False

    def __repr__(self):
        return f"{self.cpu_s:.1f} CPU-s ({self.wall_s:.1f} s wall)"


def stopwatch():
    """``with stopwatch() as sw: ...`` then ``sw.cpu_s``, ``sw.thread_s``, ``sw.wall_s``."""
    return Stopwatch()
