"""Progressive distillation on 2D data: quality against NFE, cost and sampling speed.

For two moons and the checkerboard: trains the chapter-1 teacher afresh (timed),
distils it from start_steps DDIM steps down to 1 (Salimans & Ho, 2022), and prints

- a table NFE | DDIM with the teacher | distilled student, in squared MMD
  (multi-bandwidth RBF, decides) with sliced Wasserstein beside it, against held-out
  data, with the floor drawn like the samples (n fresh points of the data against the
  same held-out set, over several draws: mean and sd);
- verdicts (``pdl.metrics.verdict``, a tie within two floor sd): every student against
  the teacher's start_steps-step DDIM, DDIM against the student at each NFE, and each
  score's excess over the floor in floor sd;
- the cost of teacher training and of all rounds (``pdl.timing.stopwatch``: process CPU
  seconds over all threads, and wall seconds);
- the sampling speedup of the 1-step student over the start_steps-step teacher at batch
  1,000, beside the NFE ratio (``pdl.speed.nfe_speedup_table``: one thread, thread CPU
  clock, the median of paired, interleaved repeats with its spread).

    PDLEARN_BUDGET=cpu python bench/ch4_progressive_2d.py [--data moons] [--cached-teacher]
"""
import argparse
import copy
import os
import tempfile

import pdlearn as pdl

SEED_EVAL, SEED_HELD_OUT = 0, 12_345  # as in chapters 1-4: samplers seed 0, held-out draw 12,345


def teacher_for(name, cached):
    """The chapter-1 teacher and its training cost (a Stopwatch); trained afresh in a temporary
    folder, so that it is timed, unless ``cached`` (then the cost is None)."""
    if cached:
        net, x = pdl.recipes.toy_teacher(name)
        return net, x, None
    saved = os.environ.get("PDLEARN_CHECKPOINTS")
    with tempfile.TemporaryDirectory() as folder:
        os.environ["PDLEARN_CHECKPOINTS"] = folder
        try:
            with pdl.timing.stopwatch() as cost:
                net, x = pdl.recipes.toy_teacher(name)
        finally:
            if saved is None:
                os.environ.pop("PDLEARN_CHECKPOINTS")
            else:
                os.environ["PDLEARN_CHECKPOINTS"] = saved
    return net, x, cost


def run(name, cached):
    cfg = pdl.sizes("progressive_2d")
    sched = pdl.CosineSchedule()
    n_eval, start = cfg["n_eval"], cfg["start_steps"]
    held = pdl.data.toy(name, n=n_eval, seed=SEED_HELD_OUT)
    reference = pdl.metrics.MMDReference(held)
    teacher, x, teacher_cost = teacher_for(name, cached)
    teacher_iters = pdl.sizes("checkerboard_teacher" if name == "checkerboard" else "toy_teacher")["steps"]

    def scores(z):
        return pdl.metrics.mmd_rbf(z, reference), pdl.metrics.sliced_wasserstein(z, held, seed=0)

    def quality(net, steps):
        return scores(pdl.ddim_sample(net, sched, n=n_eval, steps=steps, seed=SEED_EVAL).cpu())

    # distilled on the budget's device, as the teacher was trained; sampled for speed on the CPU, as in chapter 4
    with pdl.timing.stopwatch() as rounds_cost:
        student, history = pdl.progressive_distill(copy.deepcopy(teacher).to(pdl.device()), x, sched,
                                                   start_steps=start, end_steps=1,
                                                   iters_per_round=cfg["iters_per_round"], seed=0, lr=cfg["lr"],
                                                   batch_size=cfg["batch_size"], eval_fn=quality)
    student = student.cpu()
    # the floor drawn like the samples: n_eval fresh points against the same held-out set, several draws
    draw = lambda n, seed: pdl.data.toy(name, n, seed)  # noqa: E731
    floor_mmd, floor_sd = pdl.metrics.floor(draw, n_eval, metric=lambda a, b: scores(a)[0],
                                            repeats=cfg["floor_repeats"])
    floor_sw, floor_sw_sd = pdl.metrics.floor(draw, n_eval, metric=lambda a, b: scores(a)[1],
                                              repeats=cfg["floor_repeats"])
    ddim = {r["steps"]: quality(teacher, r["steps"]) for r in history}
    ddim[start] = quality(teacher, start)
    verdict = pdl.metrics.verdict

    def sd(q):
        return (q - floor_mmd) / floor_sd

    print(f"\n## {name}: budget {pdl.budget()}, teacher {teacher_iters} iterations, {start} -> 1 steps, "
          f"{cfg['iters_per_round']} iterations per round (lr {cfg['lr']:g}, batch {cfg['batch_size']}), "
          f"n = {n_eval}\n")
    print(f"data floor ({cfg['floor_repeats']} draws of {n_eval} fresh points against the held-out set): "
          f"MMD {floor_mmd:.5f} +- {floor_sd:.5f}, SW {floor_sw:.4f} +- {floor_sw_sd:.4f}. "
          f"sd: excess over the floor in floor sd; verdicts: a tie within 2 floor sd\n")
    print("| NFE | DDIM teacher MMD | sd | student MMD | sd | DDIM teacher SW | student SW | "
          f"student vs {start}-step teacher | DDIM vs student |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    ref = ddim[start][0]
    print(f"| {start} | {ref:.5f} | {sd(ref):.1f} | (teacher) | | {ddim[start][1]:.4f} | | | |")
    for r in history:
        (m_t, s_t), (m_s, s_s) = ddim[r["steps"]], r["metric"]
        print(f"| {r['steps']} | {m_t:.5f} | {sd(m_t):.1f} | {m_s:.5f} | {sd(m_s):.1f} | {s_t:.4f} | {s_s:.4f} | "
              f"{verdict(m_s, ref, floor_sd)} | {verdict(m_t, m_s, floor_sd)} |")

    by_steps = {r["steps"]: r["metric"][0] for r in history}
    drift = by_steps[1] - by_steps[start // 2]
    print(f"\n1-step student against the {start // 2}-step student: {drift:+.5f} = {drift / floor_sd:+.1f} floor sd, "
          f"{verdict(by_steps[1], by_steps[start // 2], floor_sd)}")
    print("\nround | first 10% loss | last 10% loss | first / last | wall s")
    for r in history:
        k = max(1, len(r["losses"]) // 10)
        first = sum(r["losses"][:k]) / k
        print(f"{r['round']:>5} | {first:>14.2e} | {r['loss']:>13.2e} | {first / r['loss']:>12.1f} | "
              f"{r['wall_s']:>6.1f}")

    n_distil = cfg["iters_per_round"] * len(history)
    print(f"\ncost: all rounds ({n_distil} iterations) {rounds_cost.cpu_s:.0f} CPU-s, {rounds_cost.wall_s:.0f} s wall")
    if teacher_cost is None:
        print("cost: teacher loaded from its checkpoint, not timed")
    else:
        print(f"cost: teacher ({teacher_iters} iterations) {teacher_cost.cpu_s:.0f} CPU-s, "
              f"{teacher_cost.wall_s:.0f} s wall; rounds / teacher {rounds_cost.cpu_s / teacher_cost.cpu_s:.2f} "
              "in CPU seconds (one run each: no spread)")
    many, one = pdl.speed.nfe_speedup_table(teacher, sched, steps=(start, 1), batch_size=1_000,
                                            repeats=cfg["speed_repeats"], threads=1, progress=False)
    print(f"sampling 1,000 points, 1 thread, {one['clock']} clock, medians of {cfg['speed_repeats']} interleaved "
          f"repeats: {start}-step teacher {many['median_ms']:.0f} ms, 1-step student {one['median_ms']:.2f} ms "
          "(the teacher's network stands in: same architecture)")
    print(f"speedup {one['speedup']:.0f}x +- {one['speedup_spread']:.0f} (median of paired ratios), NFE ratio "
          f"{one['nfe_ratio']:.0f}x, efficiency {one['efficiency']:.2f} +- {one['efficiency_spread']:.2f} "
          f"(above 1 beyond its spread, so noise: {one['noise']})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=["moons", "checkerboard"])
    parser.add_argument("--cached-teacher", action="store_true", help="load the teacher's checkpoint (no timing)")
    args = parser.parse_args()
    print("Training costs are process CPU seconds (all threads) beside wall seconds, one run each; sampling is "
          "timed on one thread's CPU clock, paired and interleaved.")
    for name in args.data:
        run(name, args.cached_teacher)


if __name__ == "__main__":
    main()
