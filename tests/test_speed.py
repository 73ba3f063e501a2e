"""pdlearn.speed: the timing functions, the sweep's rows, and the diffusers loop it times against."""
import statistics
import sys
import time
import types

import pytest
import torch

import pdlearn as pdl
from factories import make_mlp
from pdlearn import speed, timing
from pdlearn.sampling import NoiseSource


def tiny_mlp(prediction="v", dtype=torch.float32, seed=0):
    return make_mlp(seed, prediction=prediction).to(dtype).eval()


class FakeClock:
    """A clock that moves only when the timed function says so, and a log of what happened in which order."""

    def __init__(self):
        self.now, self.log = 0.0, []

    def perf_counter(self):
        self.log.append("clock")
        return self.now

    def thread_time(self):  # read beside perf_counter, unlogged: the CPU clock of a thread that never waits
        return self.now


def test_time_fn_returns_the_median_of_the_timed_repeats_only(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(timing, "time", types.SimpleNamespace(perf_counter=clock.perf_counter, thread_time=clock.thread_time))
    durations = iter([100.0, 100.0, 5.0, 1.0, 3.0, 2.0])  # two warm-up calls, then four timed ones

    def fn():
        clock.log.append("fn")
        clock.now += next(durations)

    result = speed.time_fn(fn, repeats=4, warmup=2)
    assert result["times"] == [5.0, 1.0, 3.0, 2.0]  # the warm-up calls are not timed
    assert result["median_s"] == 2.5 and result["min_s"] == 1.0
    assert result["spread_s"] == pytest.approx(3.5 - 1.75)  # interquartile range of 1, 2, 3, 5
    assert clock.log.count("fn") == 6


def test_time_fn_synchronises_before_every_clock_reading(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(timing, "time", types.SimpleNamespace(perf_counter=clock.perf_counter, thread_time=clock.thread_time))
    fn = lambda: clock.log.append("fn")  # noqa: E731
    speed.time_fn(fn, repeats=2, warmup=1, sync=lambda: clock.log.append("sync"))
    assert clock.log == ["fn"] + ["sync", "clock", "fn", "sync", "clock"] * 2  # warm-up untimed, then two timed
    # sync=True is torch.cuda.synchronize; the default ('auto') is too, whenever CUDA is in use,
    # and nothing on a CPU; sync=False reads the clock straight after the call (the launches)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: clock.log.append("cuda sync"))
    clock.log.clear()
    speed.time_fn(fn, repeats=1, warmup=0, sync=True)
    assert clock.log == ["cuda sync", "clock", "fn", "cuda sync", "clock"]
    clock.log.clear()
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    speed.time_fn(fn, repeats=1, warmup=0)
    assert clock.log == ["clock", "fn", "clock"]
    clock.log.clear()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    speed.time_fn(fn, repeats=1, warmup=0)
    assert clock.log == ["cuda sync", "clock", "fn", "cuda sync", "clock"]
    clock.log.clear()
    speed.time_fn(fn, repeats=1, warmup=0, sync=False)
    assert clock.log == ["clock", "fn", "clock"]


def test_fast_functions_are_timed_over_several_calls_per_repeat(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(timing, "time", types.SimpleNamespace(perf_counter=clock.perf_counter, thread_time=clock.thread_time))
    calls = []

    def fn():
        calls.append(1)
        clock.now += 1.0

    result = speed.time_fn(fn, repeats=3, warmup=1, min_s=3.5)
    assert result["number"] == 4  # 1 and 2 calls of 1 s last less than 3.5 s, 4 calls more
    assert result["times"] == [1.0, 1.0, 1.0]  # seconds per call
    assert len(calls) == 1 + (1 + 2 + 4) + 3 * 4  # warm-up, the doubling search, 3 repeats of 4


def test_paired_ratio_is_the_median_of_per_repeat_ratios():
    a, b = dict(times=[2.0, 9.0, 3.0]), dict(times=[1.0, 3.0, 1.0])  # ratios 2, 3, 3
    assert speed.paired_ratio(a, b) == 3.0
    assert speed.paired_ratio(b, b) == 1.0


def test_time_fns_interleaves_its_functions():
    calls = []
    speed.time_fns({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3, warmup=1)
    assert calls == ["a", "b"] + ["a", "b"] * 3


def test_sweep_rows_have_the_promised_fields():
    net, sched = tiny_mlp(), pdl.CosineSchedule()
    before = torch.get_num_threads()
    rows = speed.sweep(net, sched, steps=(1, 2), batch_sizes=(1, 3), threads=(1,), repeats=2, warmup=0,
                       progress=False)
    assert torch.get_num_threads() == before  # the thread count is restored
    assert [(r["steps"], r["batch_size"]) for r in rows] == [(1, 1), (2, 1), (1, 3), (2, 3)]
    for r in rows:
        assert {"sampler", "steps", "nfe", "batch_size", "threads", "device", "precision", "compiled", "median_ms",
                "spread_ms", "ms_per_sample", "samples_per_s", "repeats"} <= set(r)
        assert r["threads"] == 1 and r["nfe"] == r["steps"] and r["repeats"] == 2 and r["median_ms"] > 0
        assert r["ms_per_sample"] == pytest.approx(r["median_ms"] / r["batch_size"])
        assert r["samples_per_s"] == pytest.approx(1e3 / r["ms_per_sample"])


class Slow(torch.nn.Module):
    """A network whose every call costs 5 ms of this thread's CPU: the network is the whole cost,
    as for a large model. It computes instead of sleeping, since the CPU's timings read the
    thread's CPU clock, which a sleep does not advance."""
    prediction, sample_shape = "v", (2,)

    def forward(self, z, t):
        end = time.thread_time() + 0.005
        while time.thread_time() < end:
            pass
        return torch.zeros_like(z)


def test_nfe_speedup_follows_the_nfe_ratio_when_the_network_dominates():
    rows = speed.nfe_speedup_table(Slow(), pdl.CosineSchedule(), steps=(1, 16, 4), batch_size=8, repeats=3,
                                   warmup=1, progress=False)
    assert [r["steps"] for r in rows] == [16, 4, 1]  # the full-step teacher first
    assert [r["nfe_ratio"] for r in rows] == [1, 4, 16] and rows[0]["speedup"] == 1
    for r in rows:
        assert r["efficiency"] == pytest.approx(r["speedup"] / r["nfe_ratio"])
    assert 0.7 < rows[-1]["efficiency"] < 1.3  # 16 calls of 5 ms against one


@pytest.mark.parametrize("sched", [pdl.CosineSchedule(), pdl.LinearBetaSchedule()], ids=["cosine", "linear_beta"])
@pytest.mark.parametrize("prediction", ["v", "x", "eps"])
@pytest.mark.parametrize("steps", [1, 4, 10])
def test_diffusers_loop_gives_pdlearns_samples(sched, prediction, steps):
    """Same network, same noise, same samples: the timing compares like with like."""
    pytest.importorskip("diffusers")
    if prediction == "eps" and isinstance(sched, pdl.CosineSchedule):
        pytest.skip("an eps network has no x_hat at the cosine schedule's t = 1 (tested below)")
    net = tiny_mlp(prediction, torch.float64)
    z1 = NoiseSource(70, (2,), seed=1, dtype=torch.float64).randn()
    ours = pdl.ddim_sample(net, sched, z=z1, steps=steps)
    theirs = speed.diffusers_ddim_loop(net, sched, steps, z1)
    torch.testing.assert_close(theirs, ours, atol=1e-10, rtol=1e-10)
    assert (ours - z1).abs().max() > 0.1  # the samplers did move the noise


def test_diffusers_loop_on_the_digits_unet_in_float32():
    pytest.importorskip("diffusers")
    torch.manual_seed(0)
    net = pdl.models.UNet(channels=8, ch_mult=(1, 2)).eval()
    z1 = NoiseSource(5, net.sample_shape, seed=0).randn()
    ours = pdl.ddim_sample(net, pdl.CosineSchedule(), z=z1, steps=4)
    torch.testing.assert_close(speed.diffusers_ddim_loop(net, pdl.CosineSchedule(), 4, z1), ours,
                               atol=1e-5, rtol=1e-5)
    row = speed.compare_with_diffusers(net, pdl.CosineSchedule(), 2, batch_size=2, repeats=1, warmup=0)
    assert row["max_abs_diff"] < 1e-5 and row["ratio"] == pytest.approx(row["pdlearn_ms"] / row["diffusers_ms"])
    # (one repeat: the paired ratio is the ratio of the two times)


def test_clear_errors(monkeypatch):
    net, sched = tiny_mlp(), pdl.CosineSchedule()
    with pytest.raises(ValueError, match="repeats"):
        speed.time_fn(lambda: None, repeats=0)
    with pytest.raises(ValueError, match="warmup"):
        speed.time_fn(lambda: None, warmup=-1)
    with pytest.raises(ValueError, match="batch_size"):
        speed.sampler_latency(net, sched, steps=2, batch_size=0)
    with pytest.raises(ValueError, match="steps"):
        speed.sampler_latency(net, sched, steps=0, batch_size=2)
    with pytest.raises(ValueError, match="'pdlearn' or 'diffusers'"):
        speed.sampler_latency(net, sched, steps=2, batch_size=2, sampler="k-diffusion")
    with pytest.raises(ValueError, match="precision"):
        speed.sampler_latency(net, sched, steps=2, batch_size=2, precision="fp8")
    with pytest.raises(ValueError, match="threads"):
        speed.sampler_latency(net, sched, steps=2, batch_size=2, threads=0)
    monkeypatch.setitem(sys.modules, "diffusers", None)  # as if it were not installed
    with pytest.raises(ImportError, match="pip install diffusers"):
        speed.diffusers_ddim_loop(net, sched, 2, torch.zeros(3, 2))


def test_diffusers_scheduler_refuses_what_it_cannot_match():
    pytest.importorskip("diffusers")
    with pytest.raises(ValueError, match="multiple of"):
        speed.diffusers_scheduler(pdl.LinearBetaSchedule(T=1000), steps=3)
    with pytest.raises(ValueError, match="eps-prediction"):
        speed.diffusers_scheduler(pdl.CosineSchedule(), steps=4, prediction="eps")


def test_gpu_variants_on_a_cpu_measure_nothing_and_say_so(capsys):
    assert speed.gpu_variants(tiny_mlp(), pdl.CosineSchedule(), steps=2, batch_size=2) == []
    assert "GPU only" in capsys.readouterr().out


def test_table_prints_the_columns():
    text = speed.table([dict(steps=4, median_ms=1.23456)], ["steps", "median_ms"], {"median_ms": ".2f"})
    assert text.splitlines() == ["| steps | median_ms |", "|---:|---:|", "| 4 | 1.23 |"]


def test_statistics_are_the_standard_ones():
    result = speed.time_fn(lambda: None, repeats=5, warmup=0)
    assert result["median_s"] == statistics.median(result["times"]) and len(result["times"]) == 5


@pytest.mark.parametrize("budget", ["smoke", "cpu", "gpu"])
def test_chapter_sizes_time_what_the_chapter_reads(budget):
    """Chapter 8 reads the grid's and the big batch's rows from the timed batch sizes, and
    the full-step teacher from the first step count."""
    cfg = pdl.sizes("real_time", budget)
    assert cfg["n_grid"] in cfg["batch_sizes"] and cfg["big_batch"] in cfg["batch_sizes"]
    assert 1 in cfg["batch_sizes"] and cfg["step_counts"][0] == max(cfg["step_counts"]) and 1 in cfg["step_counts"]


def test_an_efficiency_above_one_beyond_its_spread_is_flagged_as_noise(monkeypatch):
    def fake(fns, *args, **kwargs):  # 4 steps timed at 1/3.6 of 16 steps: an efficiency of 0.9 ... and 1.2
        times = {16: [16.0, 16.0, 16.0], 4: [4.44, 4.44, 4.44], 1: [0.8, 0.8, 0.8]}
        return {n: dict(timing.summary(times[n]), clock="thread") for n in fns}

    monkeypatch.setattr(speed, "time_fns", fake)
    rows = {r["steps"]: r for r in speed.nfe_speedup_table(tiny_mlp(), pdl.CosineSchedule(), steps=(16, 4, 1),
                                                             batch_size=2, progress=False)}
    assert rows[4]["efficiency"] == pytest.approx(16 / 4.44 / 4) and not rows[4]["noise"]
    assert rows[1]["efficiency"] == pytest.approx(1.25) and rows[1]["noise"]  # above the cap of 1: noise
    assert rows[1]["clock"] == "thread" and rows[1]["efficiency_spread"] == 0
