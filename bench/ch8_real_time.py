"""Sampling speed: measured speedup against the NFE ratio, pdlearn's loop against diffusers', threads.

For the 2D network of chapter 4 (the moons teacher's architecture, which its
progressive students share) and the digits UNet of chapters 5-6, prints

- latency of DDIM at each step count and the speedup over the full-step teacher
  beside the NFE ratio, at the budget's large batch and at batch 1 (all step
  counts timed interleaved; the speedup and the efficiency are medians of paired
  ratios with their spread, and an efficiency above 1 beyond its spread is flagged
  as the clock's noise);
- pdlearn's ``ddim_sample`` against the same network driven by diffusers'
  ``DDIMScheduler`` (same samples; the median of the paired ratios of their times,
  its spread and the verdict of the ratio against 1);
- latency against torch's thread count, on the wall clock, the thread counts timed
  interleaved and paired;
- on a GPU: autocast fp16 / bf16 and torch.compile.

Timing does not depend on the weights, so the teachers stand in for their
students here. With one thread on a CPU the clock is the thread's CPU time
(``pdl.timing``), which other processes cannot inflate; several threads and the GPU
read wall time. Every table says its clock. Read the ratios, which are measured
within one run.

    PDLEARN_BUDGET=cpu OMP_NUM_THREADS=1 python bench/ch8_real_time.py [--nets 2d digits]
"""
import argparse
import functools
import os

import torch

import pdlearn as pdl
from pdlearn import speed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def networks(names):
    nets = {}
    if "2d" in names:
        nets["2d"] = pdl.recipes.toy_teacher("moons")[0]
    if "digits" in names:
        nets["digits"] = pdl.recipes.image_teacher()[0]
    return nets


def speedup_table(name, net, sched, cfg, batch_size):
    rows = speed.nfe_speedup_table(net, sched, cfg["step_counts"], batch_size=batch_size, repeats=cfg["repeats"],
                                   warmup=cfg["warmup"], threads=1, progress=False)
    print(f"\n### {name}: batch {batch_size}, 1 thread, {rows[0]['clock']} clock, medians of {cfg['repeats']} "
          "interleaved repeats; speedup and efficiency: medians of paired ratios, with their spread\n")
    print(speed.table(rows, ["steps", "median_ms", "spread_ms", "speedup", "speedup_spread", "nfe_ratio",
                             "efficiency", "efficiency_spread", "noise"],
                      dict(median_ms=".2f", spread_ms=".2f", speedup=".1f", speedup_spread=".1f", nfe_ratio=".0f",
                           efficiency=".2f", efficiency_spread=".2f")))
    one = rows[-1]
    said = ("above the cost model's cap of 1 by more than its spread: the clock's noise" if one["noise"] else
            f"{one['efficiency_spread'] / max(one['efficiency'], 1e-12):.0%} spread")
    print(f"1 step against {rows[0]['steps']} steps: speedup {one['speedup']:.1f}x +- {one['speedup_spread']:.1f}, "
          f"NFE ratio {one['nfe_ratio']:.0f}x, efficiency {one['efficiency']:.2f} +- "
          f"{one['efficiency_spread']:.2f} ({said})")


def diffusers_table(name, net, sched, cfg):
    rows = [speed.compare_with_diffusers(net, sched, steps, b, repeats=cfg["repeats"], warmup=cfg["warmup"],
                                         threads=1)
            for b in (1, cfg["big_batch"]) for steps in cfg["compare_steps"]]
    print(f"\n### {name}: pdlearn's DDIM loop against diffusers' DDIMScheduler loop, same network and noise; "
          f"1 thread, {rows[0]['clock']} clock; ratio: pdlearn / diffusers, the median of the paired per-repeat "
          "ratios (not the ratio of the medians); verdict of the ratio against 1 ('better': pdlearn faster)\n")
    print(speed.table(rows, ["steps", "batch_size", "pdlearn_ms", "diffusers_ms", "ratio", "ratio_spread", "verdict",
                             "max_abs_diff"],
                      dict(pdlearn_ms=".2f", diffusers_ms=".2f", ratio=".3f", ratio_spread=".3f",
                           max_abs_diff=".1e")))
    print("verdicts: " + ", ".join(f"{sum(r['verdict'] == v for r in rows)} {v}" for v in pdl.metrics.VERDICTS))


def with_threads(threads, fn):
    """fn run with ``threads`` torch threads, so that thread counts can be timed interleaved."""
    def run():
        with speed.num_threads(threads):
            return fn()
    return run


def threads_table(name, net, sched, cfg):
    steps = cfg["step_counts"][-2]  # a few steps: the network dominates, the loop still shows
    first, rows = cfg["threads"][0], []
    for b in (1, cfg["big_batch"]):
        sample = functools.partial(pdl.ddim_sample, net, sched, z=speed.start_noise(net, b), steps=steps)
        timing = speed.time_fns({k: with_threads(k, sample) for k in cfg["threads"]}, repeats=cfg["repeats"],
                                warmup=cfg["warmup"], min_s=speed.MIN_S, clock="wall")
        for k, t in timing.items():
            pair = speed.paired(t, timing[first]) if k != first else None
            rows.append(dict(threads=k, batch_size=b, wall_ms=t["median_s"] * 1e3, spread_ms=t["spread_s"] * 1e3,
                             samples_per_s=b / t["median_s"], ratio=pair and pair["ratio"],
                             ratio_spread=pair and pair["spread"],
                             verdict=pair and pdl.metrics.verdict(pair["ratio"], 1.0, pair["spread"])))
    print(f"\n### {name}: latency of {steps}-step DDIM against torch threads (this machine has "
          f"{torch.get_num_threads()} by default here); wall clock, medians of {cfg['repeats']} interleaved repeats; "
          f"ratio: the time against {first} thread, the median of paired ratios; verdict against 1\n")
    print(speed.table(rows, ["threads", "batch_size", "wall_ms", "spread_ms", "samples_per_s", "ratio",
                             "ratio_spread", "verdict"],
                      dict(wall_ms=".2f", spread_ms=".2f", samples_per_s=".0f", ratio=".2f", ratio_spread=".2f")))


def gpu_table(name, net, sched, cfg):
    rows = speed.gpu_variants(net, sched, cfg["step_counts"][-2], cfg["big_batch"], repeats=cfg["repeats"])
    if rows:
        print(f"\n### {name}: GPU precision and compilation\n")
        print(speed.table(rows, ["precision", "compiled", "steps", "batch_size", "median_ms", "ms_per_sample",
                                 "clock"], dict(median_ms=".2f", ms_per_sample=".4f")))


def main():
    os.environ.setdefault("PDLEARN_CHECKPOINTS", os.path.join(ROOT, "book", "checkpoints"))  # the book's networks
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", nargs="+", default=["2d", "digits"], choices=["2d", "digits"])
    args = parser.parse_args()
    cfg = pdl.sizes("real_time")
    sched = pdl.CosineSchedule()
    print(f"budget {pdl.budget()}, device {pdl.device()}; medians of {cfg['repeats']} interleaved repeats, each "
          "table on the clock it names (on a shared machine wall time moves by 1.5x between runs: read the ratios)")
    for name, net in networks(args.nets).items():
        for batch_size in (cfg["big_batch"], 1):
            speedup_table(name, net, sched, cfg, batch_size)
        diffusers_table(name, net, sched, cfg)
        threads_table(name, net, sched, cfg)
        gpu_table(name, net, sched, cfg)


if __name__ == "__main__":
    main()
