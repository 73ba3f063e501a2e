"""Chapter 6: progressive distillation of the digits teacher, measured against DDIM.

    PDLEARN_BUDGET=cpu OMP_NUM_THREADS=1 python bench/ch6_progressive_digits.py [--fresh]

1. The teacher of chapter 5 (``pdl.recipes.image_teacher``) and its students
   (``pdl.recipes.image_students``: ``start_steps`` -> ``end_steps``, halving every round),
   both cached in book/checkpoints and shared with the book; the wall time of the
   teacher and of every round (as trained, also when loaded from its checkpoint).
2. A table, for every number of steps N: the FID of n_eval samples against the held-out
   split for DDIM with the teacher and for the N-step student, beside the data-vs-data
   floor at the same n; the fraction the digits classifier reads with p > 0.9; and the
   fraction of "copies" (closer to a training image than 95% of held-out images are).
3. The chapter's targets: the 4-step student within 1.3x of the teacher's DDIM at
   start_steps, 4-step DDIM at least 2x worse than the 4-step student, the 4-step student
   better than 8-step DDIM, and teacher plus all rounds under 20 minutes.

--fresh  train the teacher and every round now, in a temporary checkpoint folder, and
         print their wall-clock and CPU seconds (tens of minutes at cpu).

The same noise (seed 0) serves every row. Timings on a shared machine vary by 1.5x;
CPU seconds of a single-threaded run vary less.
"""
import argparse
import os
import tempfile
import time

import torch

import pdlearn as pdl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def scores(x, train, test, name):
    """(FID, confident fraction, copy fraction) of the images x."""
    return (pdl.metrics.image_fid(x, name), pdl.metrics.confident_fraction(x, name=name),
            pdl.metrics.memorisation(x, train, test)["copy_fraction"])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fresh", action="store_true", help="train teacher and rounds now, timing them")
    args = parser.parse_args()
    if args.fresh:
        os.environ["PDLEARN_CHECKPOINTS"] = tempfile.mkdtemp(prefix="pdlearn-ch6-")
    os.environ.setdefault("PDLEARN_CHECKPOINTS", os.path.join(ROOT, "book", "checkpoints"))
    budget, sched = pdl.budget(), pdl.CosineSchedule()
    cfg, tcfg, ev = pdl.sizes("digits_distill"), pdl.sizes("digits_teacher"), pdl.sizes("images_eval")
    name, n = pdl.image_data(), ev["n_eval"]
    train, test = pdl.data.image_set(name, "train"), pdl.data.image_set(name, "test")
    print(f"budget {budget}, data {name}, torch threads {torch.get_num_threads()}; distillation "
          f"{cfg['start_steps']} -> {cfg['end_steps']} steps, {cfg['iters_per_round']} iterations per round "
          f"at batch {cfg['batch_size']}, lr {cfg['lr']}", flush=True)

    start, cpu = time.perf_counter(), time.process_time()
    teacher, _ = pdl.recipes.image_teacher(progress=False)
    teacher_s, teacher_cpu = time.perf_counter() - start, time.process_time() - cpu
    start, cpu = time.perf_counter(), time.process_time()
    students, history = pdl.recipes.image_students(progress=False)
    rounds_cpu = time.process_time() - cpu
    rounds_s = sum(r["wall_s"] for r in history)
    print("\nround  steps  final loss   wall")
    for r in history:
        print(f"{r['round']:>5}  {r['steps']:>5}  {r['loss']:>10.5f}  {r['wall_s']:>5.0f} s"
              + ("  (loaded; time as trained)" if r["loaded"] else ""))

    floor = pdl.metrics.image_fid_floor(n, name, repeats=ev["floor_repeats"])
    rows = {}
    for steps in sorted(set(students) | {cfg["start_steps"]}, reverse=True):
        ddim = scores(pdl.ddim_sample(teacher, sched, n=n, steps=steps, seed=0), train, test, name)
        student = (scores(pdl.ddim_sample(students[steps], sched, n=n, steps=steps, seed=0), train, test, name)
                   if steps in students else None)
        rows[steps] = (ddim, student)
        print(f"  {steps} steps done", flush=True)

    print(f"\nFID of n = {n} samples against the {test.shape[0]} held-out images; floor {floor[0]:.2f} +- "
          f"{floor[1]:.2f} ({ev['floor_repeats']} draws of {n} training images); p>0.9 = confident; copies as in ch. 5")
    print(f"{'NFE':>5}  {'DDIM FID':>9} {'p>0.9':>6} {'copies':>6}   {'student FID':>11} {'p>0.9':>6} "
          f"{'copies':>6}   {'DDIM / student':>14}")
    for steps, (d, s) in rows.items():
        right = (f"{s[0]:>11.2f} {s[1]:>6.1%} {s[2]:>6.1%}   {d[0] / s[0]:>13.2f}x" if s else f"{'(teacher)':>11}")
        print(f"{steps:>5}  {d[0]:>9.2f} {d[1]:>6.1%} {d[2]:>6.1%}   {right}")

    top = cfg["start_steps"]
    if 4 in students and 8 in rows:
        s4, d4, d8, dtop = rows[4][1][0], rows[4][0][0], rows[8][0][0], rows[top][0][0]
        total = teacher_s + rounds_s if args.fresh else float("nan")
        print(f"\ntargets ({budget}):")
        print(f"  4-step student / {top}-step DDIM = {s4 / dtop:.2f} (target <= 1.3)")
        print(f"  4-step DDIM / 4-step student   = {d4 / s4:.2f} (target >= 2)")
        print(f"  4-step student {s4:.2f} vs 8-step DDIM {d8:.2f} (target: student lower)")
        print(f"  rounds {rounds_s / 60:.1f} min; teacher {teacher_s / 60:.1f} min "
              f"({'trained now' if args.fresh else 'loaded, or trained now: run with --fresh to time it'}); "
              f"total {total / 60:.1f} min wall-clock (target < 20)")
        if args.fresh:
            print(f"  CPU time: teacher {teacher_cpu / 60:.1f} min, rounds {rounds_cpu / 60:.1f} min, "
                  f"total {(teacher_cpu + rounds_cpu) / 60:.1f} min (with {torch.get_num_threads()} thread(s))")


if __name__ == "__main__":
    main()
