"""Chapter 2: sample quality against the number of steps, DDPM vs DDIM (eta = 0 and eta = 1).

    PDLEARN_BUDGET=cpu python bench/ch2_ddim_steps.py [--seeds 5]

Uses the chapter-1 two-moons teacher (``pdl.recipes.toy_teacher('moons')``,
trained once per budget and cached in book/checkpoints, shared with the book).
For each step count it draws ``n_eval`` samples with each sampler (uniform grid)
and scores them against one fresh draw of the data, the reference: the squared
MMD (which decides) and the sliced Wasserstein distance (for intuition).

The floor is drawn like the samples: ``n_eval`` fresh data points in place of the
samples, scored against the same reference, over ``floor_repeats`` draws (mean and
standard deviation). Every comparison is ``pdl.metrics.verdict``:

- 'vs data': each sampler's squared MMD (sampling seed 0) against the floor;
- 'eta=0 vs DDPM': the mean squared MMD of deterministic DDIM against DDPM's over
  ``--seeds`` sampling seeds, both samplers starting from the same noise in each
  seed, with the standard deviation over seeds of the paired difference as the spread.

Sizes come from ``pdl.sizes('ddim_2d')``. The sampling cost of each sampler is its
process CPU time (all threads) and wall time (``pdl.timing.stopwatch``); on a shared
machine both move between runs, so read them as a rough scale only. The results rest on
one teacher (one training seed) and one reference draw.
"""
import argparse
import os

import torch

import pdlearn as pdl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLERS = {
    "DDPM": lambda net, sched, n, steps, seed: pdl.ddpm_sample(net, sched, n=n, steps=steps, seed=seed),
    "DDIM eta=0": lambda net, sched, n, steps, seed: pdl.ddim_sample(net, sched, n=n, steps=steps, eta=0.0,
                                                                     seed=seed),
    "DDIM eta=1": lambda net, sched, n, steps, seed: pdl.ddim_sample(net, sched, n=n, steps=steps, eta=1.0,
                                                                     seed=seed),
}


def mean_sd(values):
    v = torch.tensor(values, dtype=torch.float64)
    return float(v.mean()), float(v.std()) if len(v) > 1 else 0.0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=None,
                        help="sampling seeds for the DDIM-vs-DDPM comparison (default: the budget's floor_repeats)")
    args = parser.parse_args()
    os.environ.setdefault("PDLEARN_CHECKPOINTS", os.path.join(ROOT, "book", "checkpoints"))
    cfg = pdl.sizes("ddim_2d")
    n, repeats = cfg["n_eval"], cfg["floor_repeats"]
    seeds = pdl.validate.positive_int(args.seeds if args.seeds is not None else repeats, "--seeds")
    net, _ = pdl.recipes.toy_teacher("moons")
    sched = pdl.CosineSchedule()
    reference = pdl.data.toy("moons", n=n, seed=12_345)  # held out: not the training draw
    ref = pdl.metrics.MMDReference(reference)

    def quality(z):
        return pdl.metrics.mmd_rbf(z, ref), pdl.metrics.sliced_wasserstein(z, reference, seed=0)

    fresh = [pdl.data.toy("moons", n=n, seed=pdl.seeding.derive_seed(0, "floor", r, 0)) for r in range(repeats)]
    null = [quality(x) for x in fresh]
    mmd_floor, sw_floor = mean_sd([v[0] for v in null]), mean_sd([v[1] for v in null])

    scores = {name: {} for name in SAMPLERS}  # scores[name][steps] = [(mmd, sw) per seed]
    cost = {name: {"cpu_s": 0.0, "wall_s": 0.0} for name in SAMPLERS}
    for steps in pdl.progress.bar(cfg["step_counts"], desc="step counts"):
        for name, sample in SAMPLERS.items():
            scores[name][steps] = []
            for seed in range(seeds):
                with pdl.timing.stopwatch() as sw:
                    z = sample(net, sched, n, steps, seed)
                cost[name]["cpu_s"] += sw.cpu_s
                cost[name]["wall_s"] += sw.wall_s
                scores[name][steps].append(quality(z))

    names = list(SAMPLERS)
    print(f"\nbudget {pdl.budget()}, two moons, n = {n} samples per cell, cosine schedule, uniform grid; "
          "one teacher, one reference draw")
    print(f"floor ({repeats} fresh draws against the reference): squared MMD {mmd_floor[0]:.5f} +- {mmd_floor[1]:.5f}, "
          f"SW {sw_floor[0]:.4f} +- {sw_floor[1]:.4f}\n")

    print(f"squared MMD x 1e3 of sampling seed 0, with pdl.metrics.verdict against the floor "
          f"({1e3 * mmd_floor[0]:.2f} +- {1e3 * mmd_floor[1]:.2f})")
    print(f"{'steps':>6} " + " ".join(f"{name:>12} {'vs data':>8}" for name in names))
    for steps in cfg["step_counts"]:
        cells = []
        for name in names:
            m = scores[name][steps][0][0]
            cells.append(f"{1e3 * m:>12.2f} {pdl.metrics.verdict(m, *mmd_floor):>8}")
        print(f"{steps:>6} " + " ".join(cells))

    print(f"\nsquared MMD x 1e3 over {seeds} sampling seeds (mean +- sd); the verdict's spread is the sd over "
          "seeds of the paired difference")
    print(f"{'steps':>6} {'DDPM':>17} {'DDIM eta=0':>17} {'eta=0 vs DDPM':>14}")
    for steps in cfg["step_counts"]:
        a = torch.tensor([v[0] for v in scores["DDPM"][steps]], dtype=torch.float64)
        b = torch.tensor([v[0] for v in scores["DDIM eta=0"][steps]], dtype=torch.float64)
        spread = float((a - b).std()) if seeds > 1 else 0.0
        call = pdl.metrics.verdict(b.mean(), a.mean(), spread) if seeds > 1 else "(one seed)"
        (ma, sa), (mb, sb) = mean_sd(a.tolist()), mean_sd(b.tolist())
        print(f"{steps:>6} {1e3 * ma:>9.2f} +- {1e3 * sa:<5.2f} {1e3 * mb:>9.2f} +- {1e3 * sb:<5.2f} {call:>14}")

    print(f"\nsliced Wasserstein of sampling seed 0 (the floor is {sw_floor[0]:.4f} +- {sw_floor[1]:.4f})")
    print(f"{'steps':>6} " + " ".join(f"{name:>12}" for name in names))
    for steps in cfg["step_counts"]:
        print(f"{steps:>6} " + " ".join(f"{scores[name][steps][0][1]:>12.4f}" for name in names))

    total = sum(cfg["step_counts"]) * seeds
    print(f"\nsampling cost over {total} steps per sampler (process CPU seconds, all threads; wall seconds): "
          + ", ".join(f"{name} {c['cpu_s']:.1f} CPU-s ({c['wall_s']:.1f} s wall)" for name, c in cost.items()))


if __name__ == "__main__":
    main()
