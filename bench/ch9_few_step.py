"""Chapter 9: which few-step method? Training-free ODE solvers against distilled students at equal NFE.

    PDLEARN_BUDGET=cpu OMP_NUM_THREADS=1 python bench/ch9_few_step.py [--data moons checkerboard digits]

One teacher per data set (the book's cached ``recipes.toy_teacher`` / ``recipes.image_teacher``),
one metric, one run. For each data set it prints

1. a table, NFE 1, 2, 4, 8, 16, 32 (sizes 'few_step') against DDIM, DPM-Solver++(2M), UniPC and
   Heun on the teacher, the progressive-distillation student (``recipes.toy_students`` /
   ``recipes.image_students``: chapters 4 and 6) and the consistency-distillation student
   (``consistency.consistency_distill``, trained here and cached). 2D: squared MMD x 1e3 against
   held-out data, the mean over ``seeds`` pairs (sampling seed s, held-out draw s); digits: the
   digits-FID (classifier features) against the test split, the mean over the seeds' sampling
   noise. Every cell carries its verdict (``pdl.metrics.verdict``) against the best
   training-free method at that NFE, with the data floor's spread (drawn like the samples);
2. the issue's checks: the PD student against the best solver at NFE 4 (at least 10x lower on
   2D) and NFE 8 (3x), the crossover NFE (the first at which the best solver ties or beats PD),
   and DPM-Solver++(2M) and UniPC against DDIM at NFE 8 and 16;
3. the compute of each column in iterations and thread-CPU seconds (one torch thread,
   ``pdl.timing``): teacher, distillation rounds, consistency training; and the break-even
   sample count after which the PD student's training pays for itself against the solver
   that matches it.

Heun's NFE follows ``pdl.solvers`` (nfe calls exactly: an Euler step where a correction would
not fit). A claim resting on one training seed says so: each student is trained once.
"""
import argparse
import copy
import statistics

import torch

import pdlearn as pdl
from pdlearn import consistency, solvers

SOLVERS = {"DDIM": "ddim", "DPM-Solver++(2M)": "dpmpp_2m", "UniPC": "unipc", "Heun (EDM)": "heun"}
HELD_OUT = 12_345  # the held-out draws of chapters 1-4, one per seed: HELD_OUT + seed


def toy_setup(name, cfg):
    teacher, x = pdl.recipes.toy_teacher(name, progress=False)
    students, _ = pdl.recipes.toy_students(name, progress=False)
    refs = [pdl.metrics.MMDReference(pdl.data.toy(name, n=cfg["n_eval"], seed=HELD_OUT + s))
            for s in range(cfg["seeds"])]

    def draw(n, seed):
        return pdl.data.toy(name, n, seed)

    floor = pdl.metrics.floor(draw, cfg["n_eval"], repeats=cfg["floor_repeats"])

    def score(samples_of_seed):
        return statistics.mean(1e3 * pdl.metrics.mmd_rbf(samples_of_seed(s), refs[s]) for s in range(cfg["seeds"]))

    return teacher, x, students, (1e3 * floor[0], 1e3 * floor[1]), score, cfg["n_eval"]


def image_setup(name, cfg):
    teacher, x = pdl.recipes.image_teacher(name, progress=False)
    students, _ = pdl.recipes.image_students(name, progress=False)
    n = cfg["img_n_eval"]
    floor = pdl.metrics.image_fid_floor(n, name, repeats=cfg["img_floor_repeats"])

    def score(samples_of_seed):
        return statistics.mean(pdl.metrics.image_fid(samples_of_seed(s), name) for s in range(cfg["seeds"]))

    return teacher, x, students, floor, score, n


def consistency_student(name, teacher, x, cfg, images):
    """The consistency student of ``teacher`` (sizes 'few_step'), trained on ``pdl.device()`` once
    and cached like the book's other students; returned on the teacher's device."""
    prefix = "img_" if images else ""
    where = next(teacher.parameters()).device
    student = consistency.consistency_distill(
        copy.deepcopy(teacher).to(pdl.device()), x, pdl.CosineSchedule(), iters=cfg[prefix + "cd_iters"],
        grid_sizes=tuple(cfg[prefix + "cd_grid"]), mu0=cfg["cd_mu0"], lr=cfg[prefix + "cd_lr"],
        batch_size=cfg[prefix + "cd_batch"], resume=True, progress=False,
        checkpoint=pdl.checkpoint_path(f"{name}_consistency"))
    return student.to(where)


def quality_table(name, teacher, students, cd, score, n, nfes, sched):
    """{row label: {nfe: score}} for the solvers and the two students."""
    rows = {label: {} for label in [*SOLVERS, "PD student", "CD student"]}
    for nfe in nfes:
        for label, method in SOLVERS.items():
            rows[label][nfe] = score(lambda s, m=method: solvers.sample(teacher, sched, n=n, nfe=nfe, method=m,
                                                                        seed=s))
        if nfe in students:
            rows["PD student"][nfe] = score(lambda s: pdl.ddim_sample(students[nfe], sched, n=n, steps=nfe, seed=s))
        rows["CD student"][nfe] = score(lambda s: consistency.consistency_sample(cd, sched, n=n, steps=nfe, seed=s))
        print(f"  {name}: NFE {nfe} done", flush=True)
    return rows


def best_solver(rows, nfe):
    label = min(SOLVERS, key=lambda r: rows[r][nfe])
    return label, rows[label][nfe]


def print_table(name, rows, nfes, floor, unit):
    spread = floor[1]
    print(f"\n{name}: {unit}; floor {floor[0]:.3f} +- {floor[1]:.3f}; verdicts against the best training-free "
          f"method at each NFE, tie within 2 x {spread:.3f}")
    print(f"{'':>17} | " + " | ".join(f"{'NFE ' + str(k):>16}" for k in nfes))
    for label, row in rows.items():
        cells = []
        for k in nfes:
            if k not in row:
                cells.append(f"{'':>16}")
                continue
            best, value = best_solver(rows, k)
            mark = "best" if label == best else pdl.metrics.verdict(row[k], value, spread)
            cells.append(f"{row[k]:>9.3f} {mark:>6}")
        print(f"{label:>17} | " + " | ".join(cells))


def checks(name, rows, nfes, floor, two_d):
    spread = floor[1]
    print(f"\n{name}: checks")
    for k, factor in ((4, 10), (8, 3)):
        if k not in nfes or k not in rows["PD student"]:
            continue
        label, value = best_solver(rows, k)
        pd = rows["PD student"][k]
        ratio = value / pd if pd > 0 else float("inf")
        target = f" (target >= {factor}x: {ratio >= factor})" if two_d else ""
        print(f"  NFE {k}: best solver {label} {value:.3f} / PD {pd:.3f} = {ratio:.1f}x{target}; PD "
              f"{pdl.metrics.verdict(pd, value, spread)} than the best solver")
    crossover = next((k for k in nfes if k in rows["PD student"]
                      and pdl.metrics.verdict(best_solver(rows, k)[1], rows["PD student"][k], spread) != "worse"),
                     None)
    print(f"  crossover: the best solver ties or beats the PD student from NFE {crossover}"
          if crossover else f"  crossover: the best solver stays worse than the PD student up to NFE {max(nfes)}"
          f"{' (no PD student beyond NFE ' + str(max(rows['PD student'])) + ')' if rows['PD student'] else ''}")
    for k in (8, 16):
        if k in nfes:
            for label in ("DPM-Solver++(2M)", "UniPC"):
                print(f"  NFE {k}: {label} {rows[label][k]:.3f} vs DDIM {rows['DDIM'][k]:.3f}: "
                      f"{pdl.metrics.verdict(rows[label][k], rows['DDIM'][k], spread)}")
    for k in (1, 2):
        if k in nfes and k in rows["PD student"]:
            print(f"  NFE {k}: CD {rows['CD student'][k]:.3f} vs PD {rows['PD student'][k]:.3f}: CD "
                  f"{pdl.metrics.verdict(rows['CD student'][k], rows['PD student'][k], spread)}")
    return crossover


def per_iteration_s(fn, repeats):
    """Thread-CPU seconds of one call of fn (median of interleaved repeats, one torch thread)."""
    return pdl.timing.time_fn(fn, repeats=repeats, warmup=1, clock="thread")["median_s"]


def compute(name, teacher, x, cfg, images, rows, nfes, floor, sched):
    """Iterations and thread-CPU seconds of each column's training, and the break-even count."""
    prefix = "img_" if images else ""
    tcfg = pdl.sizes("image_teacher" if images else ("checkerboard_teacher" if name == "checkerboard"
                                                      else "toy_teacher"))
    pcfg = pdl.sizes("image_distill" if images else "progressive_2d")
    repeats, k = cfg["time_repeats"], cfg["time_iters"]  # k: iterations per timed call
    fresh = copy.deepcopy(teacher).train()
    batch = tcfg["batch_size"]
    teacher_it = per_iteration_s(lambda: pdl.train_diffusion(copy.deepcopy(fresh), x, sched, steps=k, batch_size=batch,
                                                             lr=tcfg.get("lr", 1e-3), progress=False, ema_decay=None),
                                 repeats) / k
    pd_it = per_iteration_s(lambda: pdl.distill.distill_round(teacher, copy.deepcopy(teacher), x, sched, 4, k,
                                                              batch_size=pcfg["batch_size"], progress=False),
                            repeats) / k
    cd_it = per_iteration_s(lambda: consistency.consistency_distill(teacher, x, sched, iters=k, grid_sizes=8,
                                                                    batch_size=cfg[prefix + "cd_batch"],
                                                                    progress=False), repeats) / k
    rounds = pcfg["start_steps"].bit_length() - 1
    columns = [("teacher", tcfg["steps"], teacher_it), ("PD rounds", rounds * pcfg["iters_per_round"], pd_it),
               ("CD training", cfg[prefix + "cd_iters"], cd_it)]
    print(f"\n{name}: compute (thread-CPU seconds, one torch thread; per iteration measured over {repeats} repeats)")
    for label, iters, per in columns:
        print(f"  {label:>12}: {iters:>7,} iterations x {1e3 * per:7.2f} ms = {iters * per:8.1f} s")
    n_eval = cfg[prefix + "n_eval"] if images else cfg["n_eval"]
    z = torch.randn(n_eval, *teacher.sample_shape)
    t = torch.full((n_eval,), 0.5)
    with torch.no_grad():
        per_call = per_iteration_s(lambda: teacher(z, t), repeats) / n_eval
    print(f"  one network call costs {1e6 * per_call:.2f} us of thread-CPU time per sample (batch {n_eval})")
    spread = floor[1]
    for k_pd in (1, 2, 4):
        if k_pd not in rows["PD student"]:
            continue
        pd = rows["PD student"][k_pd]
        match = next((m for m in nfes if pdl.metrics.verdict(best_solver(rows, m)[1], pd, spread) != "worse"), None)
        m = match or max(nfes)
        saving = (m - k_pd) * per_call
        cost = rounds * pcfg["iters_per_round"] * pd_it
        samples = cost / saving if saving > 0 else float("inf")
        note = "" if match else f" (no solver matches it by NFE {m}: an upper bound)"
        print(f"  PD at NFE {k_pd} vs the best solver at NFE {m}: the rounds ({cost:.0f} s) pay for themselves "
              f"after {samples:,.0f} samples{note}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", default=["moons", "checkerboard", "digits"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg, sched = pdl.sizes("few_step"), pdl.CosineSchedule()
    print(f"budget {pdl.budget()}; sizes {cfg}", flush=True)
    for name in args.data:
        images = name not in pdl.data.TOY
        if images:
            name = pdl.image_data() if name == "digits" else name
            teacher, x, students, floor, score, n = image_setup(name, cfg)
            nfes, unit = cfg["img_nfes"], f"digits-FID of n = {n} samples (mean of {cfg['seeds']} seeds)"
        else:
            teacher, x, students, floor, score, n = toy_setup(name, cfg)
            nfes, unit = cfg["nfes"], f"squared MMD x 1e3 at n = {n} (mean of {cfg['seeds']} seeds)"
        cd = consistency_student(name, teacher, x, cfg, images)
        rows = quality_table(name, teacher, students, cd, score, n, nfes, sched)
        print_table(name, rows, nfes, floor, unit)
        checks(name, rows, nfes, floor, not images)
        compute(name, teacher, x, cfg, images, rows, nfes, floor, sched)


if __name__ == "__main__":
    main()
