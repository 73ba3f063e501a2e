"""Chapter 7: classifier-free guidance and guided distillation (Meng et al., 2023) on labelled 2D data.

    PDLEARN_BUDGET=cpu OMP_NUM_THREADS=1 python bench/ch7_guidance.py

On eight gaussians with one label per mode (sizes ``pdl.sizes('guidance_2d')``;
the teacher, the stage-1 student and the stage-2 rounds are cached in
book/checkpoints and shared with the book):

1. trains (or loads) the class-conditional teacher (null label at rate 0.1);
2. stage 1: a w-conditioned student for w ~ U[0, w_max];
3. stage 2: progressive distillation of that student from start_steps to 1 step;

then prints, for each w, the fidelity (class accuracy: the nearest class mean is
the label's), the diversity (RMS distance of a class's samples to their mean), how
far each class moved (offset) and the squared MMD to the guided teacher's own
samples at many steps, with DDIM and with DDPM (guided, the two differ), for the
guided teacher (2 NFE per step) and the distilled student (1 NFE per step, DDIM
and the stochastic sampler of Meng et al.). Every MMD is judged against its floor:
the teacher's own samples against the same reference, drawn ``floor_repeats`` times
with other seeds and the same labels i mod 8 as every row (fixed class counts bias
the unbiased MMD below zero, so only a floor drawn the same way is a null), with
``pdl.metrics.verdict`` (a tie within two floor standard deviations).
"""
import os

import torch

import pdlearn as pdl
from pdlearn import guidance

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED_REF, SEED_ROWS = 1, 2  # the references; the rows (the floor's other draws follow: 3, 4, ...)


def main():
    os.environ.setdefault("PDLEARN_CHECKPOINTS", os.path.join(ROOT, "book", "checkpoints"))
    cfg = pdl.sizes("guidance_2d")
    repeats = pdl.sizes("image_guidance")["floor_repeats"]  # chapter 7's number of floor draws
    sched = pdl.CosineSchedule()
    w_range = (0.0, cfg["w_max"])
    with pdl.timing.stopwatch() as sw:
        teacher, x, y = pdl.recipes.toy_guided_teacher("eight_gaussians")
        stage1 = guidance.distill_w(teacher, x, y, sched, iters=cfg["stage1_iters"], w_range=w_range,
                                    batch_size=cfg["batch_size"], resume=True,
                                    checkpoint=pdl.checkpoint_path("eight_gaussians_stage1"))
        students = {cfg["start_steps"]: stage1}
        for student, record in guidance.distill_w_rounds(
                stage1, x, y, sched, start_steps=cfg["start_steps"], end_steps=1,
                iters_per_round=cfg["iters_per_round"], w_range=w_range, batch_size=cfg["batch_size"],
                resume=True, checkpoint=pdl.checkpoint_path("eight_gaussians_stage2")):
            students[record["steps"]] = student
    print(f"teacher + stage 1 + stage 2: {sw.cpu_s:.0f} CPU-s over all threads, {sw.wall_s:.0f} s wall "
          "(loads count as ~0)")

    n, big = cfg["n_eval"], cfg["teacher_steps_eval"]
    labels = torch.arange(n) % 8
    guided = guidance.Guided(teacher)
    samplers = {"DDIM": pdl.ddim_sample, "DDPM": pdl.ddpm_sample}

    def teacher_samples(kind, kw, seed, steps=big):
        return samplers[kind](guided, sched, n=n, steps=steps, seed=seed, model_kwargs=kw)

    rows, floors = [], {}
    for w in cfg["ws"]:
        kw = dict(y=labels, w=w)
        refs = {k: pdl.metrics.MMDReference(teacher_samples(k, kw, SEED_REF)) for k in samplers}
        candidates = [(f"teacher {k} {big}", 2 * big, teacher_samples(k, kw, SEED_ROWS)) for k in samplers]
        candidates.append(("teacher DDIM 4", 8, teacher_samples("DDIM", kw, SEED_ROWS, steps=4)))
        for steps in cfg["student_steps"]:
            candidates.append((f"student DDIM {steps}", steps,
                               pdl.ddim_sample(students[steps], sched, n=n, steps=steps, seed=SEED_ROWS,
                                               model_kwargs=kw)))
        for steps in [s for s in cfg["student_steps"] if s >= 2]:
            candidates.append((f"student stochastic {steps}", steps,
                               guidance.stochastic_sample(students[steps], sched, n=n, steps=steps,
                                                          seed=SEED_ROWS, model_kwargs=kw)))
        for name, nfe, z in candidates:
            stats = pdl.metrics.class_fidelity(z, labels, x, y)
            rows.append(dict(w=w, name=name, nfe=nfe, mmd={k: pdl.metrics.mmd_rbf(z, refs[k]) for k in samplers},
                             **stats))
        for k in samplers:  # the teacher's row and repeats - 1 more draws against the same reference
            first = next(r["mmd"][k] for r in rows if r["w"] == w and r["name"] == f"teacher {k} {big}")
            more = [pdl.metrics.mmd_rbf(teacher_samples(k, kw, SEED_ROWS + r), refs[k]) for r in range(1, repeats)]
            v = torch.tensor([first] + more, dtype=torch.float64)
            floors[w, k] = (float(v.mean()), float(v.std()))

    print(f"\nbudget {pdl.budget()}: eight gaussians, n = {n} per row, labels i mod 8; squared MMD against the "
          f"guided teacher's {big}-step DDIM and DDPM samples (seed {SEED_REF}); floors: the teacher against "
          f"its own reference, {repeats} draws (seeds {SEED_ROWS}..{SEED_ROWS + repeats - 1}); sd: excess over "
          f"the floor in floor standard deviations; data spread {pdl.metrics.class_fidelity(x, y, x, y)['spread']:.3f}")
    print(f"{'w':>4} | {'sampler':<22} | {'NFE':>4} | {'accuracy':>8} | {'spread':>6} | {'offset':>6} | "
          f"{'MMD to DDIM':>11} {'sd':>6} {'verdict':>7} | {'MMD to DDPM':>11} {'sd':>6} {'verdict':>7}")
    for w in cfg["ws"]:
        cells = [f"{floors[w, k][0]:11.5f} ± {floors[w, k][1]:<12.5f}" for k in samplers]
        print(f"{w:4.1f} | {'floor':<22} | {'':>4} | {'':>8} | {'':>6} | {'':>6} | " + " | ".join(cells))
        for r in (r for r in rows if r["w"] == w):
            cells = []
            for k in samplers:
                mean, std = floors[w, k]
                excess = (r["mmd"][k] - mean) / max(std, 1e-12)
                cells.append(f"{r['mmd'][k]:11.5f} {excess:6.0f} {pdl.metrics.verdict(r['mmd'][k], mean, std):>7}")
            print(f"{w:4.1f} | {r['name']:<22} | {r['nfe']:4d} | {r['accuracy']:8.4f} | {r['spread']:6.3f} | "
                  f"{r['offset']:6.3f} | " + " | ".join(cells))


if __name__ == "__main__":
    main()
