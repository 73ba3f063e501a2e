"""Chapter 6: progressive distillation of the digits teacher, measured against DDIM.

    PDLEARN_BUDGET=cpu python bench/ch6_progressive_digits.py [--fresh]

1. The teacher of chapter 5 (``pdl.recipes.image_teacher``) and its students
   (``pdl.recipes.image_students``: ``start_steps`` -> ``end_steps``, halving every round),
   both cached in book/checkpoints and shared with the book; the wall time of every round
   (as trained, also when loaded from its checkpoint).
2. What an iteration costs: a teacher training iteration and a distillation iteration,
   timed interleaved on one thread with that thread's CPU clock (``pdl.timing``; wall time
   on a GPU), their paired ratio (median and interquartile range), and the cost of all
   rounds against the teacher's training projected from it.
3. A table, for every number of steps N: the FID of n_eval samples against the held-out
   split for DDIM with the teacher and for the N-step student, beside the data-vs-data
   floor at the same n; the fraction the classifier reads with p > 0.9; the fraction of
   "copies" (closer to a training image than 95% of held-out images are); and the
   verdicts (``pdl.metrics.verdict``, a tie within two floor sd) of the student against
   DDIM at the same N and against DDIM at start_steps.
4. The chapter's targets, as verdicts: the 4-step student ties (or beats) DDIM at
   start_steps, and beats DDIM at 4 and at 8 steps; teacher plus all rounds under 20
   minutes of wall time (with --fresh).

--fresh  train the teacher and every round now, in a temporary checkpoint folder, and
         print their wall-clock and CPU seconds (tens of minutes at cpu).

The same noise (seed 0) serves every row; everything rests on one teacher and one
distillation run (seed 0).
"""
import argparse
import copy
import os
import tempfile

import torch

import pdlearn as pdl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def scores(x, train, test, name):
    """(FID, confident fraction, copy fraction) of the images x."""
    return (pdl.metrics.image_fid(x, name), pdl.metrics.confident_fraction(x, name=name),
            pdl.metrics.memorisation(x, train, test)["copy_fraction"])


def iteration(net, loss, **kwargs):
    """One optimizer step of ``loss`` per call: the training loop, stepped by hand."""
    loop = pdl.train_loop(net, loss, 10**6, progress=False, **kwargs)
    return lambda: next(loop)


def iteration_costs(teacher, x, sched, tcfg, cfg, repeats):
    """Interleaved one-thread timings of a teacher training iteration and of an iteration of the
    first distillation round (``pdl.timing.time_fns``), and their paired ratio distil / train."""
    dev = pdl.device()

    def batch(g, size):
        return x[torch.randint(0, x.shape[0], (size,), generator=g)].to(dev)

    fresh = pdl.models.UNet(**teacher.config).to(dev)
    fns = {"train": iteration(fresh, lambda n, g: pdl.diffusion_loss(n, batch(g, tcfg["batch_size"]), sched,
                                                                      generator=g)),
           "distil": iteration(copy.deepcopy(teacher), lambda n, g: pdl.distill.distill_loss(
               n, teacher, batch(g, cfg["batch_size"]), sched, cfg["start_steps"] // 2, g), ema_decay=None)}
    with pdl.timing.num_threads(1):
        t = pdl.timing.time_fns(fns, repeats=repeats, warmup=2)
    return t, pdl.timing.paired(t["distil"], t["train"])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fresh", action="store_true", help="train teacher and rounds now, timing them")
    parser.add_argument("--repeats", type=int, default=10, help="interleaved repeats of the iteration timing")
    args = parser.parse_args()
    if args.fresh:
        os.environ["PDLEARN_CHECKPOINTS"] = tempfile.mkdtemp(prefix="pdlearn-ch6-")
    os.environ.setdefault("PDLEARN_CHECKPOINTS", os.path.join(ROOT, "book", "checkpoints"))
    budget, sched = pdl.budget(), pdl.CosineSchedule()
    cfg, tcfg, ev = pdl.sizes("image_distill"), pdl.sizes("image_teacher"), pdl.sizes("images_eval")
    name, n = pdl.image_data(), ev["n_eval"]
    train, test = pdl.data.image_set(name, "train"), pdl.data.image_set(name, "test")
    print(f"budget {budget}, data {name}, torch threads {torch.get_num_threads()}; distillation "
          f"{cfg['start_steps']} -> {cfg['end_steps']} steps, {cfg['iters_per_round']} iterations per round "
          f"at batch {cfg['batch_size']}, lr {cfg['lr']}", flush=True)

    with pdl.timing.stopwatch() as teacher_sw:
        teacher, _ = pdl.recipes.image_teacher(progress=False)
    with pdl.timing.stopwatch() as rounds_sw:
        students, history = pdl.recipes.image_students(progress=False)
    rounds_s = sum(r["wall_s"] for r in history)
    print("\nround  steps  final loss   wall")
    for r in history:
        print(f"{r['round']:>5}  {r['steps']:>5}  {r['loss']:>10.5f}  {r['wall_s']:>5.0f} s"
              + ("  (loaded; time as trained)" if r["loaded"] else ""))

    t, pair = iteration_costs(teacher, train, sched, tcfg, cfg, args.repeats)
    clock = "thread CPU" if pair["clock"] == "thread" else "wall"
    share = len(history) * cfg["iters_per_round"] / tcfg["steps"]
    print(f"\none iteration, 1 thread, {clock} time (median of {args.repeats} interleaved repeats, IQR): "
          f"training {t['train']['median_s'] * 1e3:.0f} ({t['train']['spread_s'] * 1e3:.0f}) ms at batch "
          f"{tcfg['batch_size']}, distillation {t['distil']['median_s'] * 1e3:.0f} "
          f"({t['distil']['spread_s'] * 1e3:.0f}) ms at batch {cfg['batch_size']}")
    print(f"distillation / training (median of paired ratios +- IQR): {pair['ratio']:.2f} +- {pair['spread']:.2f} "
          f"(cost model: 5 network passes against 3, 1.67); rounds / teacher in cost: {share:.2f} iterations "
          f"per teacher iteration x {pair['ratio']:.2f} = {share * pair['ratio']:.2f} +- {share * pair['spread']:.2f}")

    floor = pdl.metrics.image_fid_floor(n, name, repeats=ev["floor_repeats"])
    rows = {}
    for steps in sorted(set(students) | {cfg["start_steps"]}, reverse=True):
        ddim = scores(pdl.ddim_sample(teacher, sched, n=n, steps=steps, seed=0), train, test, name)
        student = (scores(pdl.ddim_sample(students[steps], sched, n=n, steps=steps, seed=0), train, test, name)
                   if steps in students else None)
        rows[steps] = (ddim, student)
        print(f"  {steps} steps done", flush=True)

    top = cfg["start_steps"]

    def judge(fid, reference):
        return pdl.metrics.verdict(fid, reference, floor[1])

    print(f"\nFID of n = {n} samples against the {test.shape[0]} held-out images; floor {floor[0]:.2f} +- "
          f"{floor[1]:.2f} ({ev['floor_repeats']} draws of {n} training images); p>0.9 = confident; copies as in "
          f"ch. 5; verdicts: the student against DDIM at the same N and at {top} steps (a tie within 2 floor sd)")
    print(f"{'NFE':>5}  {'DDIM FID':>9} {'p>0.9':>6} {'copies':>6}   {'student FID':>11} {'p>0.9':>6} "
          f"{'copies':>6}   {'vs DDIM':>7} {f'vs {top}':>7}")
    for steps, (d, s) in rows.items():
        right = (f"{s[0]:>11.2f} {s[1]:>6.1%} {s[2]:>6.1%}   {judge(s[0], d[0]):>7} {judge(s[0], rows[top][0][0]):>7}"
                 if s else f"{'(teacher)':>11}")
        print(f"{steps:>5}  {d[0]:>9.2f} {d[1]:>6.1%} {d[2]:>6.1%}   {right}")

    if 4 in students and 8 in rows:
        s4, d4, d8, dtop = rows[4][1][0], rows[4][0][0], rows[8][0][0], rows[top][0][0]
        print(f"\ntargets ({budget}):")
        print(f"  4-step student {s4:.2f} vs {top}-step DDIM {dtop:.2f}: {judge(s4, dtop)} (target: tie or better)")
        print(f"  4-step student {s4:.2f} vs 4-step DDIM {d4:.2f}: {judge(s4, d4)} (target: better)")
        print(f"  4-step student {s4:.2f} vs 8-step DDIM {d8:.2f}: {judge(s4, d8)} (target: better)")
        if args.fresh:
            total = teacher_sw.wall_s + rounds_sw.wall_s
            print(f"  teacher {teacher_sw.wall_s / 60:.1f} min, rounds {rounds_sw.wall_s / 60:.1f} min: total "
                  f"{total / 60:.1f} min of wall time (target < 20); CPU time {teacher_sw.cpu_s / 60:.1f} + "
                  f"{rounds_sw.cpu_s / 60:.1f} min over {torch.get_num_threads()} thread(s)")
        else:
            print(f"  rounds {rounds_s / 60:.1f} min of wall time as trained; the teacher's time: run with --fresh")


if __name__ == "__main__":
    main()
