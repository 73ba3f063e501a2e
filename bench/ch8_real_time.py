"""Sampling speed: measured speedup against the NFE ratio, pdlearn's loop against diffusers', threads.

For the 2D network of chapter 4 (the moons teacher's architecture, which its
progressive students share) and the digits UNet of chapters 5-6, prints

- latency of DDIM at each step count and the speedup over the full-step teacher
  beside the NFE ratio, at the budget's large batch and at batch 1 (all step
  counts timed interleaved, medians of several repeats);
- pdlearn's ``ddim_sample`` against the same network driven by diffusers'
  ``DDIMScheduler`` (same samples; the ratio of their times);
- latency against torch's thread count;
- on a GPU: autocast fp16 / bf16 and torch.compile.

Timing does not depend on the weights, so the teachers stand in for their
students here. Timings are wall-clock; on a shared machine they move by 1.5x
between runs: read the ratios, which are measured within one run.

    PDLEARN_BUDGET=cpu OMP_NUM_THREADS=1 python bench/ch8_real_time.py [--nets 2d digits]
"""
import argparse
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
    print(f"\n### {name}: batch {batch_size}, 1 thread, median of {cfg['repeats']} repeats\n")
    print(speed.table(rows, ["steps", "median_ms", "spread_ms", "speedup", "nfe_ratio", "efficiency"],
                      dict(median_ms=".2f", spread_ms=".2f", speedup=".1f", nfe_ratio=".0f", efficiency=".2f")))
    one = rows[-1]
    print(f"1 step against {rows[0]['steps']} steps: speedup {one['speedup']:.1f}x, NFE ratio "
          f"{one['nfe_ratio']:.0f}x, {one['efficiency']:.2f} of it (at least 0.8: {one['efficiency'] >= 0.8})")


def diffusers_table(name, net, sched, cfg):
    rows = [speed.compare_with_diffusers(net, sched, steps, b, repeats=cfg["repeats"], warmup=cfg["warmup"],
                                         threads=1)
            for b in (1, cfg["big_batch"]) for steps in cfg["compare_steps"]]
    print(f"\n### {name}: pdlearn's DDIM loop against diffusers' DDIMScheduler loop, same network and noise\n")
    print(speed.table(rows, ["steps", "batch_size", "pdlearn_ms", "diffusers_ms", "ratio", "max_abs_diff"],
                      dict(pdlearn_ms=".2f", diffusers_ms=".2f", ratio=".3f", max_abs_diff=".1e")))
    worst = max(r["ratio"] for r in rows)
    print(f"largest ratio pdlearn / diffusers: {worst:.3f} (within 1.05: {worst <= 1.05})")


def threads_table(name, net, sched, cfg):
    steps = cfg["step_counts"][-2]  # a few steps: the network dominates, the loop still shows
    rows = speed.sweep(net, sched, steps=(steps,), batch_sizes=(1, cfg["big_batch"]), threads=cfg["threads"],
                       repeats=cfg["repeats"], warmup=cfg["warmup"], progress=False)
    print(f"\n### {name}: latency of {steps}-step DDIM against torch threads "
          f"(this machine has {torch.get_num_threads()} by default here)\n")
    print(speed.table(rows, ["threads", "batch_size", "median_ms", "ms_per_sample", "samples_per_s"],
                      dict(median_ms=".2f", ms_per_sample=".3f", samples_per_s=".0f")))


def gpu_table(name, net, sched, cfg):
    rows = speed.gpu_variants(net, sched, cfg["step_counts"][-2], cfg["big_batch"], repeats=cfg["repeats"])
    if rows:
        print(f"\n### {name}: GPU precision and compilation\n")
        print(speed.table(rows, ["precision", "compiled", "steps", "batch_size", "median_ms", "ms_per_sample"],
                          dict(median_ms=".2f", ms_per_sample=".4f")))


def main():
    os.environ.setdefault("PDLEARN_CHECKPOINTS", os.path.join(ROOT, "book", "checkpoints"))  # the book's networks
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nets", nargs="+", default=["2d", "digits"], choices=["2d", "digits"])
    args = parser.parse_args()
    cfg = pdl.sizes("real_time")
    sched = pdl.CosineSchedule()
    print(f"budget {pdl.budget()}, device {pdl.device()}; wall-clock timings, medians of {cfg['repeats']} repeats "
          "(on a shared machine they move by 1.5x between runs: read the ratios)")
    for name, net in networks(args.nets).items():
        for batch_size in (cfg["big_batch"], 1):
            speedup_table(name, net, sched, cfg, batch_size)
        diffusers_table(name, net, sched, cfg)
        threads_table(name, net, sched, cfg)
        gpu_table(name, net, sched, cfg)


if __name__ == "__main__":
    main()
