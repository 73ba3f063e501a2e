"""Chapter 9: choosing the consistency-distillation settings of the 'few_step' sizes.

    PDLEARN_BUDGET=cpu OMP_NUM_THREADS=1 python bench/ch9_consistency_sweep.py [--data moons] [--iters 4000]

Distils the book's cached 2D teacher (``recipes.toy_teacher``) into a consistency model
(``pdl.consistency.consistency_distill``) with each setting below and prints the squared MMD
x 1e3 of its 1-, 2-, 4- and 8-step consistency samples (n = 5,000, the mean of 3 pairs of
sampling seed and held-out draw), beside the data floor and the chapter-4 PD students:

- the paper's growing grid (s0, s1) = (2, 16), (2, 32), (2, 64), mu0 = 0.9;
- a fixed grid of 16, 32 or 64 intervals with a fixed target rate mu (0, 0.95, 0.99);
- the teacher's step: DDIM (one call) or Heun (two calls).

Each run trains once (one training seed): differences inside two floor spreads are ties.
"""
import argparse
import statistics
import time

import torch

import pdlearn as pdl
from pdlearn import consistency

SETTINGS = [
    dict(grid_sizes=(2, 16)), dict(grid_sizes=(2, 32)), dict(grid_sizes=(2, 64)),
    dict(grid_sizes=32, mu0=0.0), dict(grid_sizes=32, mu0=0.95), dict(grid_sizes=32, mu0=0.99),
    dict(grid_sizes=16, mu0=0.95), dict(grid_sizes=64, mu0=0.95),
    dict(grid_sizes=(2, 32), solver="heun"), dict(grid_sizes=32, mu0=0.95, solver="heun"),
    dict(grid_sizes=64, mu0=0.95, solver="heun"),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="moons")
    parser.add_argument("--iters", type=int, default=4_000)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    sched, name, n, seeds = pdl.CosineSchedule(), args.data, 5_000, 3
    teacher, x = pdl.recipes.toy_teacher(name, progress=False)
    students, _ = pdl.recipes.toy_students(name, progress=False)
    refs = [pdl.metrics.MMDReference(pdl.data.toy(name, n=n, seed=12_345 + k)) for k in range(seeds)]

    def score(sample):
        return statistics.mean(1e3 * pdl.metrics.mmd_rbf(sample(k), refs[k]) for k in range(seeds))

    floor = pdl.metrics.floor(lambda m, s: pdl.data.toy(name, m, s), n, repeats=5)
    steps = (1, 2, 4, 8)
    print(f"{name}: squared MMD x 1e3, n = {n:,}, mean of {seeds} seeds; floor {1e3 * floor[0]:.3f} +- "
          f"{1e3 * floor[1]:.3f}; {args.iters:,} iterations, lr {args.lr:g}, batch 256")
    print(f"{'setting':>44} | " + " | ".join(f"{'NFE ' + str(k):>7}" for k in steps) + " | thread-CPU s")
    pd = [score(lambda s, k=k: pdl.ddim_sample(students[k], sched, n=n, steps=k, seed=s)) for k in steps]
    print(f"{'PD students (chapter 4)':>44} | " + " | ".join(f"{v:>7.3f}" for v in pd) + " |")
    for setting in SETTINGS:
        began = time.thread_time()
        model = consistency.consistency_distill(teacher, x, sched, iters=args.iters, lr=args.lr, batch_size=256,
                                                progress=False, **setting)
        spent = time.thread_time() - began
        row = [score(lambda s, k=k: consistency.consistency_sample(model, sched, n=n, steps=k, seed=s))
               for k in steps]
        label = ", ".join(f"{k}={v}" for k, v in setting.items())
        print(f"{label:>44} | " + " | ".join(f"{v:>7.3f}" for v in row) + f" | {spent:>8.0f}", flush=True)


if __name__ == "__main__":
    main()
