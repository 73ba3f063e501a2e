"""Learning rate of short progressive-distillation rounds: a measured sweep.

Distils the chapter-1 two-moons teacher from start_steps to 1 step once per
learning rate (each round: fresh AdamW, lr decayed linearly to zero over the
round's iterations) and prints the squared MMD of the 4-step and 1-step
students against a validation draw of the data (not chapter 4's held-out set, and
other sampling noise, so that a rate is not picked on the set that reports the
result), beside the teacher's start_steps-step DDIM and the floor drawn like the
samples (n fresh points against the same validation set, several draws). Each rate
gets the verdict (``pdl.metrics.verdict``, a tie within two floor sd) of its students
against those of the reference rate (``--reference``, default the budget's lr), and
the cost of its run (``pdl.timing.stopwatch``: process CPU seconds, all threads).

    PDLEARN_BUDGET=cpu python bench/ch4_lr_sweep.py [--lrs 1e-4 1e-3]
"""
import argparse
import copy

import pdlearn as pdl

SEED_EVAL, SEED_VALIDATION = 1, 54_321  # chapter 4's sweep: sampling seed 1, validation draw 54,321


def main():
    cfg = pdl.sizes("progressive_2d")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="moons")
    parser.add_argument("--lrs", type=float, nargs="+", default=list(cfg["lrs"]))
    parser.add_argument("--iters", type=int, default=cfg["iters_per_round"])
    parser.add_argument("--reference", type=float, default=cfg["lr"], help="the rate the others are judged against")
    args = parser.parse_args()
    if args.reference not in args.lrs:
        parser.error(f"--reference {args.reference:g} must be one of --lrs")

    sched = pdl.CosineSchedule()
    teacher, x = pdl.recipes.toy_teacher(args.data)
    held = pdl.data.toy(args.data, n=cfg["n_eval"], seed=SEED_VALIDATION)
    reference = pdl.metrics.MMDReference(held)

    def mmd(net, steps):
        z = pdl.ddim_sample(net, sched, n=cfg["n_eval"], steps=steps, seed=SEED_EVAL).cpu()
        return pdl.metrics.mmd_rbf(z, reference)

    draw = lambda n, seed: pdl.data.toy(args.data, n, seed)  # noqa: E731
    floor, floor_sd = pdl.metrics.floor(draw, cfg["n_eval"], metric=lambda a, b: pdl.metrics.mmd_rbf(a, reference),
                                        repeats=cfg["floor_repeats"])
    ddim = mmd(teacher, cfg["start_steps"])
    print(f"budget {pdl.budget()}, {args.data}: {cfg['start_steps']} -> 1 steps, {args.iters} iterations per round, "
          f"batch {cfg['batch_size']}; one training seed per rate")
    print(f"teacher DDIM {cfg['start_steps']} steps: MMD {ddim:.5f}; floor ({cfg['floor_repeats']} draws against the "
          f"validation set) {floor:.5f} +- {floor_sd:.5f}")
    rows = {}
    for lr in args.lrs:
        row = {}
        on_device = copy.deepcopy(teacher).to(pdl.device())  # distilled where the teacher trained
        with pdl.timing.stopwatch() as cost:
            for student, record in pdl.distill.distill_rounds(on_device, x, sched, cfg["start_steps"], 1, args.iters,
                                                              seed=0, lr=lr, batch_size=cfg["batch_size"],
                                                              progress=False):
                if record["steps"] in (4, 1):
                    row[record["steps"]] = mmd(student, record["steps"])
                row["loss"] = record["loss"]
        row["cost"] = cost
        rows[lr] = row
    ref = rows[args.reference]
    verdict = pdl.metrics.verdict
    print(f"\nverdicts against lr {args.reference:.0e}, with the floor's sd\n")
    print("| lr | loss (last 10% of last round) | MMD 4 steps | vs ref | MMD 1 step | vs ref | vs floor "
          "| CPU-s | wall s |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for lr, row in rows.items():
        print(f"| {lr:.0e} | {row['loss']:.2e} | {row[4]:.5f} | {verdict(row[4], ref[4], floor_sd)} | {row[1]:.5f} | "
              f"{verdict(row[1], ref[1], floor_sd)} | {verdict(row[1], floor, floor_sd)} | {row['cost'].cpu_s:.0f} | "
              f"{row['cost'].wall_s:.0f} |")


if __name__ == "__main__":
    main()
