"""Progressive distillation on 2D data: quality against NFE, cost and sampling speed.

For two moons and the checkerboard: trains the chapter-1 teacher afresh (timed),
distils it from start_steps DDIM steps down to 1 (Salimans & Ho, 2022), and prints

- a table NFE | DDIM with the teacher | distilled student | data floor, in squared
  MMD (multi-bandwidth RBF, decides) with sliced Wasserstein beside it, against
  held-out data;
- the checks of chapter 4 (4-step and 1-step students against the teacher's
  start_steps-step DDIM, 4-step DDIM against the 4-step student);
- the time of teacher training plus all rounds;
- the sampling speedup of the 1-step student over the start_steps-step teacher at
  batch 1,000, beside the NFE ratio (interleaved medians: robust to a shared machine).

    PDLEARN_BUDGET=cpu OMP_NUM_THREADS=1 python bench/ch4_progressive_2d.py [--data moons] [--cached-teacher]
"""
import argparse
import copy
import os
import statistics
import tempfile
import time

import pdlearn as pdl

SEED_EVAL, SEED_HELD_OUT = 0, 12_345  # as in chapters 1-4: samplers seed 0, held-out draw 12,345


def teacher_for(name, cached):
    """The chapter-1 teacher; trained afresh in a temporary folder (so it is timed) unless cached."""
    began = time.perf_counter()
    if cached:
        net, x = pdl.recipes.toy_teacher(name)
        return net, x, None
    saved = os.environ.get("PDLEARN_CHECKPOINTS")
    with tempfile.TemporaryDirectory() as folder:
        os.environ["PDLEARN_CHECKPOINTS"] = folder
        try:
            net, x = pdl.recipes.toy_teacher(name)
        finally:
            if saved is None:
                os.environ.pop("PDLEARN_CHECKPOINTS")
            else:
                os.environ["PDLEARN_CHECKPOINTS"] = saved
    return net, x, time.perf_counter() - began


def speedup(student, teacher, sched, teacher_steps, n=1_000, repeats=7):
    """Median wall time of sampling n points with the 1-step student and the teacher_steps-step
    teacher, measured interleaved (each repeat times both), and the median of the ratios."""
    one = lambda: pdl.ddim_sample(student, sched, n=n, steps=1, seed=0)  # noqa: E731
    many = lambda: pdl.ddim_sample(teacher, sched, n=n, steps=teacher_steps, seed=0)  # noqa: E731
    one(), many()  # warm-up
    t_one, t_many, ratios = [], [], []
    for _ in range(repeats):
        began = time.perf_counter()
        many()
        t_many.append(time.perf_counter() - began)
        inner = []
        for _ in range(20):
            began = time.perf_counter()
            one()
            inner.append(time.perf_counter() - began)
        t_one.append(statistics.median(inner))
        ratios.append(t_many[-1] / t_one[-1])
    return statistics.median(t_one), statistics.median(t_many), statistics.median(ratios)


def run(name, cached):
    cfg = pdl.sizes("progressive_2d")
    sched = pdl.CosineSchedule()
    n_eval, start = cfg["n_eval"], cfg["start_steps"]
    held = pdl.data.toy(name, n=n_eval, seed=SEED_HELD_OUT)
    teacher, x, teacher_s = teacher_for(name, cached)
    teacher_iters = pdl.sizes("checkerboard_teacher" if name == "checkerboard" else "toy_teacher")["steps"]

    def quality(net, steps):
        z = pdl.ddim_sample(net, sched, n=n_eval, steps=steps, seed=SEED_EVAL).cpu()
        return pdl.metrics.mmd_rbf(z, held), pdl.metrics.sliced_wasserstein(z, held, seed=0)

    # distilled on the budget's device, as the teacher was trained; sampled for speed on the CPU, as in chapter 4
    student, history = pdl.progressive_distill(copy.deepcopy(teacher).to(pdl.device()), x, sched, start_steps=start,
                                               end_steps=1, iters_per_round=cfg["iters_per_round"], seed=0,
                                               lr=cfg["lr"], batch_size=cfg["batch_size"], eval_fn=quality)
    student = student.cpu()
    rounds_s = sum(r["wall_s"] for r in history)
    floor_mmd, floor_std = pdl.metrics.floor(lambda n, s: pdl.data.toy(name, n, s), n_eval,
                                             repeats=cfg["floor_repeats"])
    floor_sw, _ = pdl.metrics.floor(lambda n, s: pdl.data.toy(name, n, s), n_eval,
                                    metric=lambda a, b: pdl.metrics.sliced_wasserstein(a, b, seed=0), repeats=2)
    ddim = {r["steps"]: quality(teacher, r["steps"]) for r in history}
    ddim[start] = quality(teacher, start)

    print(f"\n## {name}: budget {pdl.budget()}, teacher {teacher_iters} iterations, {start} -> 1 steps, "
          f"{cfg['iters_per_round']} iterations per round (lr {cfg['lr']:g}, batch {cfg['batch_size']}), "
          f"n = {n_eval}\n")
    print("| NFE | DDIM teacher MMD | student MMD | data floor MMD | DDIM teacher SW | student SW | floor SW |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {start} | {ddim[start][0]:.5f} | (teacher) | {floor_mmd:.5f} +- {floor_std:.5f} | {ddim[start][1]:.4f} "
          f"| | {floor_sw:.4f} |")
    for r in history:
        (m_t, s_t), (m_s, s_s) = ddim[r["steps"]], r["metric"]
        print(f"| {r['steps']} | {m_t:.5f} | {m_s:.5f} | | {s_t:.4f} | {s_s:.4f} | |")

    by_steps = {r["steps"]: r["metric"][0] for r in history}
    ref = ddim[start][0]
    print(f"\n4-step student - {start}-step teacher: {by_steps[4] - ref:+.5f} (at most 0.001: "
          f"{by_steps[4] - ref <= 0.001})")
    print(f"1-step student - {start}-step teacher: {by_steps[1] - ref:+.5f} (at most 0.003: "
          f"{by_steps[1] - ref <= 0.003})")
    ratio = ddim[4][0] / max(by_steps[4], 1e-12)
    print(f"4-step DDIM / 4-step student: {ratio:.0f}x (at least 20x: {ratio >= 20})"
          + ("" if by_steps[4] > 0 else " (student MMD <= 0: below the floor)"))
    if teacher_s is None:
        print(f"time: all rounds {rounds_s:.0f} s (teacher loaded from its checkpoint, not timed)")
    else:
        total = teacher_s + rounds_s
        print(f"time: teacher {teacher_s:.0f} s + all rounds {rounds_s:.0f} s = {total:.0f} s "
              f"(under 180 s: {total < 180}); distillation iterations {cfg['iters_per_round'] * len(history)} "
              f"against {teacher_iters} teacher iterations")
    t_one, t_many, measured = speedup(student, teacher, sched, start)
    print(f"sampling 1,000 points: 1-step student {t_one * 1e3:.2f} ms, {start}-step teacher {t_many * 1e3:.0f} ms: "
          f"speedup {measured:.0f}x, NFE ratio {start}x, {measured / start:.2f} of it (at least 0.8: "
          f"{measured / start >= 0.8})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=["moons", "checkerboard"])
    parser.add_argument("--cached-teacher", action="store_true", help="load the teacher's checkpoint (no timing)")
    args = parser.parse_args()
    print("Timings are wall-clock seconds on this machine; on a shared machine they vary by 1.5x between runs.")
    for name in args.data:
        run(name, args.cached_teacher)


if __name__ == "__main__":
    main()
