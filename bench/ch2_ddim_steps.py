"""Chapter 2: sample quality against the number of steps, DDPM vs DDIM (eta = 0 and eta = 1).

    PDLEARN_BUDGET=cpu OMP_NUM_THREADS=1 python bench/ch2_ddim_steps.py

Uses the chapter-1 two-moons teacher (``pdl.recipes.toy_teacher('moons')``,
trained once per budget and cached in book/checkpoints, shared with the book).
For each step count it draws ``n_eval`` samples with each sampler (uniform grid,
seed 0) and prints the squared MMD (which decides) and the sliced Wasserstein
distance (for intuition) against a fresh draw of the data, beside the
data-vs-data floor of each at the same n. Sizes come from ``pdl.sizes('ddim_2d')``.
"""
import os
import time

import torch

import pdlearn as pdl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLERS = {
    "DDPM": lambda net, sched, n, steps: pdl.ddpm_sample(net, sched, n=n, steps=steps, seed=0),
    "DDIM eta=0": lambda net, sched, n, steps: pdl.ddim_sample(net, sched, n=n, steps=steps, eta=0.0, seed=0),
    "DDIM eta=1": lambda net, sched, n, steps: pdl.ddim_sample(net, sched, n=n, steps=steps, eta=1.0, seed=0),
}


def main():
    os.environ.setdefault("PDLEARN_CHECKPOINTS", os.path.join(ROOT, "book", "checkpoints"))
    cfg = pdl.sizes("ddim_2d")
    n = cfg["n_eval"]
    net, _ = pdl.recipes.toy_teacher("moons")
    sched = pdl.CosineSchedule()
    reference = pdl.data.toy("moons", n=n, seed=12_345)  # held out: not the training draw

    def draw(m, seed):
        return pdl.data.toy("moons", n=m, seed=seed)

    mmd_floor = pdl.metrics.floor(draw, n, repeats=cfg["floor_repeats"])
    sw_floor = pdl.metrics.floor(draw, n, metric=pdl.metrics.sliced_wasserstein, repeats=cfg["floor_repeats"])

    rows, seconds = [], {name: 0.0 for name in SAMPLERS}
    for steps in cfg["step_counts"]:
        row = {"steps": steps}
        for name, sample in SAMPLERS.items():
            start = time.perf_counter()
            z = sample(net, sched, n, steps)
            seconds[name] += time.perf_counter() - start
            row[name] = (pdl.metrics.mmd_rbf(z, reference), pdl.metrics.sliced_wasserstein(z, reference, seed=0))
        rows.append(row)
        print(f"  done: {steps} steps", flush=True)

    print(f"\nbudget {pdl.budget()}, two moons, n = {n} samples per cell, cosine schedule, uniform grid")
    print(f"data floor (data vs data, {cfg['floor_repeats']} pairs): MMD^2 = {mmd_floor[0]:.5f} +- {mmd_floor[1]:.5f}, "
          f"SW = {sw_floor[0]:.4f} +- {sw_floor[1]:.4f}\n")
    names = list(SAMPLERS)
    print("squared MMD (x 1e3; the floor is {:.2f} +- {:.2f})".format(1e3 * mmd_floor[0], 1e3 * mmd_floor[1]))
    print(f"{'steps':>6} " + " ".join(f"{name:>12}" for name in names))
    for row in rows:
        print(f"{row['steps']:>6} " + " ".join(f"{1e3 * row[name][0]:>12.2f}" for name in names))
    print("\nsliced Wasserstein (the floor is {:.4f} +- {:.4f})".format(*sw_floor))
    print(f"{'steps':>6} " + " ".join(f"{name:>12}" for name in names))
    for row in rows:
        print(f"{row['steps']:>6} " + " ".join(f"{row[name][1]:>12.4f}" for name in names))
    total = sum(cfg["step_counts"])
    print(f"\nsampling time over all {total} steps per sampler (wall clock; shared machines vary by 1.5x): "
          + ", ".join(f"{name} {s:.1f} s" for name, s in seconds.items()))


if __name__ == "__main__":
    main()
