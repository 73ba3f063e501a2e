"""Progress bars in a live notebook, one line of summary on a rendered page.

Every long loop of the library (training, distillation rounds, sampling with
``progress=True``, timing sweeps) shows its progress through ``bar``. What it shows is
set by ``PDLEARN_PROGRESS``:

    'bar'      (default) a ``tqdm.auto`` bar: a widget in Jupyter, text in a terminal;
    'summary'  no bar; when the loop ends, one line such as
               ``moons teacher: 6000 steps in 95.1 s (loss=0.3121)``, or
               ``moons teacher: loaded from its checkpoint (6000 steps)``. Loops that
               leave no bar behind (``leave=False``: the steps of one sampling call) say
               nothing. ``book/execute.py`` runs the chapters this way, so the stored
               pages carry a sentence, not a wall of widgets;
    'off'      nothing at all.
"""
import os
import time

MODES = ("bar", "summary", "off")


def mode():
    """The progress mode from ``PDLEARN_PROGRESS`` ('bar' when unset)."""
    value = os.environ.get("PDLEARN_PROGRESS", "").strip().lower() or "bar"
    if value not in MODES:
        raise ValueError(f"PDLEARN_PROGRESS={value!r} is not a progress mode; use one of {', '.join(MODES)}")
    return value


class Summary:
    """A stand-in for a tqdm bar that prints one line when it closes (the 'summary' mode)."""

    def __init__(self, iterable=None, total=None, desc=None, initial=0, unit="it", leave=True):
        self.iterable, self.desc, self.unit, self.leave = iterable, desc or "progress", unit, leave
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.initial = self.n = initial
        self.postfix, self.began, self.closed = None, time.perf_counter(), False

    def __iter__(self):
        try:
            for item in self.iterable:
                yield item
                self.n += 1
        finally:
            self.close()

    def __len__(self):
        return self.total

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def update(self, n=1):
        self.n += n

    def set_postfix(self, ordered_dict=None, refresh=True, **kwargs):
        items = dict(ordered_dict or {}, **kwargs)
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_description(self, desc=None, refresh=True):
        self.desc = desc or self.desc

    def refresh(self):
        pass

    def line(self):
        """The summary sentence of the loop so far."""
        done = self.n - self.initial
        units = f"{self.unit}s" if not self.unit.endswith("s") else self.unit
        if done == 0 and self.initial and self.initial == self.total:
            return f"{self.desc}: loaded from its checkpoint ({self.total} {units})"
        resumed = f" (resumed at {self.initial})" if self.initial else ""
        extra = f" ({self.postfix})" if self.postfix else ""
        return f"{self.desc}: {done} {units}{resumed} in {time.perf_counter() - self.began:.1f} s{extra}"

    def close(self):
        if self.closed:
            return
        self.closed = True
        if self.leave:
            print(self.line(), flush=True)


def bar(iterable=None, total=None, desc=None, disable=False, initial=0, unit="it", leave=True, summary=None,
        **kwargs):
    """A progress bar over ``iterable`` (or of ``total`` updates), as ``PDLEARN_PROGRESS`` asks
    (module docstring): a ``tqdm.auto.tqdm``, a ``Summary`` or a disabled tqdm. Keyword
    arguments as tqdm's; ``summary`` (default: ``leave``) says whether the 'summary' mode
    prints the loop's line."""
    from tqdm.auto import tqdm

    current = mode()
    if disable or current == "off":
        return tqdm(iterable, total=total, desc=desc, disable=True)
    if current == "summary":
        return Summary(iterable, total, desc, initial, unit, leave if summary is None else summary)
    return tqdm(iterable, total=total, desc=desc, initial=initial, unit=unit, leave=leave, **kwargs)


def trange(count, desc=None, **kwargs):
    """``bar(range(count), ...)``."""
    return bar(range(count), desc=desc, **kwargs)
