"""Chapter 1: 1,000-step DDPM samples of the 2D teachers against the data-vs-data floor.

    PDLEARN_BUDGET=cpu OMP_NUM_THREADS=1 python bench/ch1_ddpm_2d.py [--blur] [--ablation]

For two moons and the checkerboard it takes the chapter-1 teacher
(``pdl.recipes.toy_teacher``, trained once per budget and cached in
book/checkpoints, shared with the book), draws ``n_eval`` samples with 1,000-step
ancestral sampling (seed 0) and prints the squared MMD (which decides) and the
sliced Wasserstein distance (for intuition) against a held-out draw of the data,
beside the data-vs-data floor of each at the same n. The chapter prints the same
numbers (same teacher, seeds and reference draw).

--blur      how far a visibly blurred "model" (data + N(0, b^2) noise) sits above the
            floor, in floor standard deviations, and how much SWD's floor moves.
--ablation  the checkerboard with fewer iterations, and with a wider net: iterations,
            not width, get its sharp corners (trains three extra nets; minutes).
"""
import argparse
import os
import time

import torch

import pdlearn as pdl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE_SEED = 12_345  # a held-out draw, not the training data
DATA = ("moons", "checkerboard")


def drawer(name):
    return lambda n, seed: pdl.data.toy(name, n=n, seed=seed)


def floors(name, n, repeats):
    mmd = pdl.metrics.floor(drawer(name), n, repeats=repeats)
    swd = pdl.metrics.floor(drawer(name), n, metric=pdl.metrics.sliced_wasserstein, repeats=repeats)
    return mmd, swd


def evaluate(z, name):
    reference = pdl.data.toy(name, n=z.shape[0], seed=REFERENCE_SEED)
    return pdl.metrics.mmd_rbf(z, reference), pdl.metrics.sliced_wasserstein(z, reference, seed=0)


def row(label, mmd, swd, mmd_floor, swd_floor):
    within = mmd <= mmd_floor[0] + 3 * mmd_floor[1]
    return (f"{label:<34} {mmd:>10.2e}  {mmd_floor[0]:>10.2e} +- {mmd_floor[1]:.2e}  "
            f"{(mmd - mmd_floor[0]) / mmd_floor[1]:>+6.1f}  {'yes' if within else 'NO':>6}  "
            f"{swd:>7.4f}  {swd_floor[0]:.4f} +- {swd_floor[1]:.4f}")


HEADER = (f"{'':<34} {'MMD^2':>10}  {'floor mean +- std':>24}  {'z':>6}  {'<= +3sd':>6}  "
          f"{'SWD':>7}  {'SWD floor':>17}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blur", action="store_true", help="also measure blurred data against the floor")
    parser.add_argument("--ablation", action="store_true", help="also train the checkerboard shorter and wider")
    args = parser.parse_args()
    os.environ.setdefault("PDLEARN_CHECKPOINTS", os.path.join(ROOT, "book", "checkpoints"))
    budget = pdl.budget()
    repeats = pdl.sizes("diffusion_2d")["floor_repeats"]
    print(f"budget {budget}, torch threads {torch.get_num_threads()}; z = (MMD^2 - floor mean) / floor std")

    results, floor_of = [], {}
    for name in DATA:
        cfg = pdl.sizes("checkerboard_teacher" if name == "checkerboard" else "toy_teacher")
        n = cfg["n_eval"]
        start = time.perf_counter()
        net, _ = pdl.recipes.toy_teacher(name, progress=False)
        trained = time.perf_counter() - start
        start = time.perf_counter()
        z = pdl.ddpm_sample(net, pdl.CosineSchedule(), n=n, steps=1000, seed=0)
        sampled = time.perf_counter() - start
        floor_of[name] = floors(name, n, repeats)
        results.append(row(f"{name} DDPM-1000 (n={n})", *evaluate(z, name), *floor_of[name]))
        print(f"  {name}: teacher {cfg['steps']} steps x batch {cfg['batch_size']} ready in {trained:.0f} s "
              f"(0 s when cached); 1,000-step DDPM of {n} samples {sampled:.0f} s", flush=True)

    if args.blur:
        for name in DATA:
            n = pdl.sizes("toy_teacher")["n_eval"]
            x = pdl.data.toy(name, n=n, seed=1)
            for b in (0.05, 0.1, 0.2):
                blurred = x + b * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
                results.append(row(f"{name} data + N(0, {b}^2)", *evaluate(blurred, name), *floor_of[name]))
            swd_mean, swd_std = floor_of[name][1]
            results.append(f"{name}: SWD floor spread {swd_std / swd_mean:.0%} of its mean over {repeats} draws")

    if args.ablation:
        cfg = pdl.sizes("checkerboard_teacher")
        x = pdl.data.toy("checkerboard", n=cfg["n_data"], seed=0)
        for steps, width in ((cfg["steps"] // 5, cfg["width"]), (cfg["steps"] // 5, 2 * cfg["width"]),
                             (cfg["steps"] // 2, cfg["width"])):
            torch.manual_seed(0)
            net = pdl.models.MLPDenoiser(dim=2, width=width, depth=cfg["depth"])
            net = pdl.train_diffusion(net, x, pdl.CosineSchedule(), steps=steps, batch_size=cfg["batch_size"],
                                      progress=False)
            z = pdl.ddpm_sample(net, pdl.CosineSchedule(), n=cfg["n_eval"], steps=1000, seed=0)
            results.append(row(f"checkerboard {steps} it, w{width}", *evaluate(z, "checkerboard"),
                               *floor_of["checkerboard"]))
            print(f"  ablation: {steps} iterations, width {width} done", flush=True)

    print()
    print(HEADER)
    for line in results:
        print(line)


if __name__ == "__main__":
    main()
