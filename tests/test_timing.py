"""pdlearn.timing: the thread-CPU clock, paired ratios and their spread, the noise flag."""
import time

import pytest
import torch

from pdlearn import timing


def test_the_thread_clock_does_not_count_waiting():
    def sleep():
        time.sleep(0.02)

    result = timing.time_fn(sleep, repeats=3, warmup=0, clock="thread")
    assert result["clock"] == "thread" and result["median_s"] < 0.005  # asleep: no CPU time
    assert result["wall"]["median_s"] >= 0.019  # the wall clock saw the wait


def test_auto_picks_the_thread_clock_for_one_cpu_thread():
    with timing.num_threads(1):
        assert timing.pick_clock("auto") == "thread"
    with timing.num_threads(2):
        assert timing.pick_clock("auto") == "wall"
    with pytest.raises(ValueError, match="clock must be"):
        timing.pick_clock("cpu")


def test_paired_ratio_is_the_median_of_per_repeat_ratios():
    a = {"times": [2.0, 4.0, 6.0], "clock": "thread"}
    b = {"times": [1.0, 1.0, 4.0], "clock": "thread"}
    p = timing.paired(a, b)
    assert p["ratios"] == [2.0, 4.0, 1.5] and p["ratio"] == 2.0 and p["spread"] == pytest.approx(1.25)
    with pytest.raises(ValueError, match="different clocks"):
        timing.paired(a, dict(b, clock="wall"))


def test_an_efficiency_above_its_bound_beyond_the_spread_is_noise():
    assert timing.beyond_bound(1.15, 0.05)
    assert not timing.beyond_bound(1.05, 0.08)
    assert not timing.beyond_bound(0.72, 0.2)


def test_stopwatch_reads_three_clocks():
    with timing.stopwatch() as sw:
        torch.randn(200, 200) @ torch.randn(200, 200)
        time.sleep(0.01)
    assert sw.wall_s >= 0.01 and 0 <= sw.thread_s <= sw.wall_s + 0.01 and sw.cpu_s >= 0
