"""Chapter 1: 1,000-step DDPM samples of the 2D teachers against the data-vs-data floor.

    PDLEARN_BUDGET=cpu OMP_NUM_THREADS=1 python bench/ch1_ddpm_2d.py [--blur] [--ablation]

For two moons and the checkerboard it takes the chapter-1 teacher
(``pdl.recipes.toy_teacher``, trained once per budget and cached in
book/checkpoints, shared with the book), draws ``n_eval`` samples with 1,000-step
ancestral sampling (seed 0) and prints the squared MMD (which decides) and the
sliced Wasserstein distance (for intuition) against a held-out draw of the data.
Beside each is its floor, drawn like the samples: ``floor_repeats`` fresh data sets
of the same size, each scored against the same held-out draw (mean +- std), the
distance from the floor's mean in floor standard deviations, and the book's verdict
(``pdl.metrics.verdict``: a tie within two floor standard deviations). The chapter
prints the same numbers (same teacher, seeds and reference draw).

--blur      how far a visibly blurred "model" (data + N(0, b^2) noise) sits above the
            floor, and how much SWD's floor moves between draws.
--ablation  the checkerboard with a fifth of its iterations, at its width and at twice
            its width, and with half its iterations: do iterations or width get its
            sharp corners? (trains three extra nets; minutes.)

Costs are printed as process CPU seconds (all threads) and wall seconds
(``pdl.timing.stopwatch``); they are one run on a possibly shared machine.
"""
import argparse
import os

import torch

import pdlearn as pdl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE_SEED = 12_345  # a held-out draw, not the training data
DATA = ("moons", "checkerboard")


class Scorer:
    """Squared MMD and SWD against one held-out draw of ``name``, with their floor drawn like
    the samples: fresh data sets of the same size scored against the same draw."""

    def __init__(self, name, n, repeats):
        self.reference = pdl.data.toy(name, n=n, seed=REFERENCE_SEED)
        self.ref = pdl.metrics.MMDReference(self.reference)

        def draw(m, seed):
            return pdl.data.toy(name, n=m, seed=seed)

        self.mmd_floor = pdl.metrics.floor(draw, n, metric=lambda a, _: self.mmd(a), repeats=repeats)
        self.swd_floor = pdl.metrics.floor(draw, n, metric=lambda a, _: self.swd(a), repeats=repeats)

    def mmd(self, z):
        return pdl.metrics.mmd_rbf(z, self.ref)

    def swd(self, z):
        return pdl.metrics.sliced_wasserstein(z, self.reference, seed=0)

    def row(self, label, z):
        mmd, swd = self.mmd(z), self.swd(z)
        (fm, fs), (sm, ss) = self.mmd_floor, self.swd_floor
        return (f"{label:<30} {mmd:>9.2e}  {fm:>9.2e} +- {fs:.2e}  {(mmd - fm) / fs:>+7.1f}  "
                f"{pdl.metrics.verdict(mmd, fm, fs):>7}  {swd:>7.4f}  {sm:.4f} +- {ss:.4f}")


HEADER = (f"{'':<30} {'MMD^2':>9}  {'floor mean +- std':>22}  {'sd':>7}  {'verdict':>7}  "
          f"{'SWD':>7}  {'SWD floor':>16}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blur", action="store_true", help="also measure blurred data against the floor")
    parser.add_argument("--ablation", action="store_true", help="also train the checkerboard shorter and wider")
    args = parser.parse_args()
    os.environ.setdefault("PDLEARN_CHECKPOINTS", os.path.join(ROOT, "book", "checkpoints"))
    budget = pdl.budget()
    repeats = pdl.sizes("diffusion_2d")["floor_repeats"]
    print(f"budget {budget}, torch threads {torch.get_num_threads()}; floor: {repeats} fresh draws of the "
          "data against the held-out draw; sd = (MMD^2 - floor mean) / floor std; verdict: "
          "pdl.metrics.verdict (a tie within 2 floor std)")

    results, scorers = [], {}
    for name in DATA:
        cfg = pdl.sizes("checkerboard_teacher" if name == "checkerboard" else "toy_teacher")
        n = cfg["n_eval"]
        with pdl.timing.stopwatch() as trained:
            net, _ = pdl.recipes.toy_teacher(name, progress=False)
        with pdl.timing.stopwatch() as sampled:
            z = pdl.ddpm_sample(net, pdl.CosineSchedule(), n=n, steps=1000, seed=0)
        scorers[name] = Scorer(name, n, repeats)
        results.append(scorers[name].row(f"{name} DDPM-1000 (n={n})", z))
        print(f"  {name}: teacher {cfg['steps']} steps x batch {cfg['batch_size']} ready in {trained} "
              f"(a load when cached); 1,000-step DDPM of {n} samples {sampled}", flush=True)

    if args.blur:
        for name in DATA:
            n = scorers[name].reference.shape[0]
            x = pdl.data.toy(name, n=n, seed=1)
            for b in (0.05, 0.1, 0.2):
                blurred = x + b * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
                results.append(scorers[name].row(f"{name} data + N(0, {b}^2)", blurred))
            swd_mean, swd_std = scorers[name].swd_floor
            results.append(f"{name}: SWD floor spread {swd_std / swd_mean:.0%} of its mean over {repeats} draws")

    if args.ablation:
        cfg = pdl.sizes("checkerboard_teacher")
        x = pdl.data.toy("checkerboard", n=cfg["n_data"], seed=0)
        for steps, width in ((cfg["steps"] // 5, cfg["width"]), (cfg["steps"] // 5, 2 * cfg["width"]),
                             (cfg["steps"] // 2, cfg["width"])):
            torch.manual_seed(0)
            net = pdl.models.MLPDenoiser(dim=2, width=width, depth=cfg["depth"])
            with pdl.timing.stopwatch() as cost:
                net = pdl.train_diffusion(net, x, pdl.CosineSchedule(), steps=steps, batch_size=cfg["batch_size"],
                                          progress=False)
            z = pdl.ddpm_sample(net, pdl.CosineSchedule(), n=cfg["n_eval"], steps=1000, seed=0)
            results.append(scorers["checkerboard"].row(f"checkerboard {steps} it, w{width}", z))
            print(f"  ablation: {steps} iterations, width {width}: {cost}", flush=True)
        results.append("ablation rows: one training run each (seed 0)")

    print()
    print(HEADER)
    for line in results:
        print(line)


if __name__ == "__main__":
    main()
