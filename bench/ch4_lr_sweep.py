"""Learning rate of short progressive-distillation rounds: a measured sweep.

Distils the chapter-1 two-moons teacher from start_steps to 1 step once per
learning rate (each round: fresh AdamW, lr decayed linearly to zero over the
round's iterations) and prints the squared MMD of the 4-step and 1-step
students against held-out data, beside the teacher's 256-step DDIM and the
data-vs-data floor.

    PDLEARN_BUDGET=cpu OMP_NUM_THREADS=1 python bench/ch4_lr_sweep.py [--lrs 1e-4 1e-3]
"""
import argparse
import copy
import time

import pdlearn as pdl

SEED_EVAL, SEED_HELD_OUT = 0, 12_345  # as in chapters 1-4: samplers seed 0, held-out draw 12,345


def main():
    cfg = pdl.sizes("progressive_2d")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="moons")
    parser.add_argument("--lrs", type=float, nargs="+", default=list(cfg["lrs"]))
    parser.add_argument("--iters", type=int, default=cfg["iters_per_round"])
    args = parser.parse_args()

    sched = pdl.CosineSchedule()
    teacher, x = pdl.recipes.toy_teacher(args.data)
    held = pdl.data.toy(args.data, n=cfg["n_eval"], seed=SEED_HELD_OUT)

    def mmd(net, steps):
        z = pdl.ddim_sample(net, sched, n=cfg["n_eval"], steps=steps, seed=SEED_EVAL).cpu()
        return pdl.metrics.mmd_rbf(z, held)

    floor, floor_std = pdl.metrics.floor(lambda n, s: pdl.data.toy(args.data, n, s), cfg["n_eval"],
                                         repeats=cfg["floor_repeats"])
    ddim = mmd(teacher, cfg["start_steps"])
    print(f"budget {pdl.budget()}, {args.data}: {cfg['start_steps']} -> 1 steps, {args.iters} iterations per round, "
          f"batch {cfg['batch_size']}")
    print(f"teacher DDIM {cfg['start_steps']} steps: MMD {ddim:.5f}; data floor {floor:.5f} +- {floor_std:.5f}")
    print(f"{'lr':>8} | {'last-round loss':>15} | {'MMD 4 steps':>11} | {'MMD 1 step':>10} | {'time (s)':>8}")
    for lr in args.lrs:
        began, row = time.perf_counter(), {}
        on_device = copy.deepcopy(teacher).to(pdl.device())  # distilled where the teacher trained
        for student, record in pdl.distill.distill_rounds(on_device, x, sched, cfg["start_steps"], 1, args.iters,
                                                          seed=0, lr=lr, batch_size=cfg["batch_size"],
                                                          progress=False):
            if record["steps"] in (4, 1):
                row[record["steps"]] = mmd(student, record["steps"])
            loss = record["loss"]
        print(f"{lr:8.0e} | {loss:15.2e} | {row[4]:11.5f} | {row[1]:10.5f} | {time.perf_counter() - began:8.0f}",
              flush=True)


if __name__ == "__main__":
    main()
