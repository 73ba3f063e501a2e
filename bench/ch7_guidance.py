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
and the stochastic sampler of Meng et al.). The teacher rows, drawn with another
seed, give the floors.
"""
import os
import time

import torch

import pdlearn as pdl
from pdlearn import guidance

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED_EVAL, SEED_OTHER = 1, 2


def main():
    os.environ.setdefault("PDLEARN_CHECKPOINTS", os.path.join(ROOT, "book", "checkpoints"))
    cfg = pdl.sizes("guidance_2d")
    sched = pdl.CosineSchedule()
    w_range = (0.0, cfg["w_max"])
    began = time.perf_counter()
    teacher, x, y = guidance.toy_guided_teacher("eight_gaussians")
    stage1 = guidance.distill_w(teacher, x, y, sched, iters=cfg["stage1_iters"], w_range=w_range,
                                batch_size=cfg["batch_size"], checkpoint=pdl.checkpoint_path("eight_gaussians_stage1"),
                                resume=True)
    students = {}

    def keep(student, steps):
        students[steps] = student
        return None

    guidance.distill_w_progressive(stage1, x, y, sched, start_steps=cfg["start_steps"], end_steps=1,
                                   iters_per_round=cfg["iters_per_round"], w_range=w_range,
                                   batch_size=cfg["batch_size"], eval_fn=keep,
                                   checkpoint=pdl.checkpoint_path("eight_gaussians_stage2"), resume=True)
    print(f"teacher + stage 1 + stage 2: {time.perf_counter() - began:.0f} s (shared machine; loads count as ~0)")

    n, big = cfg["n_eval"], cfg["teacher_steps_eval"]
    labels = torch.arange(n) % 8
    guided = guidance.Guided(teacher)
    rows = []
    for w in cfg["ws"]:
        kw = dict(y=labels, w=w)
        ref_ode = pdl.ddim_sample(guided, sched, n=n, steps=big, seed=SEED_EVAL, model_kwargs=kw)
        ref_sde = pdl.ddpm_sample(guided, sched, n=n, steps=big, seed=SEED_EVAL, model_kwargs=kw)
        candidates = [(f"teacher DDIM {big}", 2 * big, pdl.ddim_sample(guided, sched, n=n, steps=big, seed=SEED_OTHER,
                                                                        model_kwargs=kw)),
                      (f"teacher DDPM {big}", 2 * big, pdl.ddpm_sample(guided, sched, n=n, steps=big, seed=SEED_OTHER,
                                                                        model_kwargs=kw)),
                      ("teacher DDIM 4", 8, pdl.ddim_sample(guided, sched, n=n, steps=4, seed=SEED_OTHER,
                                                             model_kwargs=kw))]
        for steps in cfg["student_steps"]:
            candidates.append((f"student DDIM {steps}", steps,
                               pdl.ddim_sample(students[steps], sched, n=n, steps=steps, seed=SEED_OTHER,
                                               model_kwargs=kw)))
        for steps in cfg["student_steps"]:
            if steps >= 2:
                candidates.append((f"student stochastic {steps}", steps,
                                   guidance.stochastic_sample(students[steps], sched, n=n, steps=steps,
                                                              seed=SEED_OTHER, model_kwargs=kw)))
        for name, nfe, z in candidates:
            stats = guidance.class_fidelity(z, labels, x, y)
            rows.append((w, name, nfe, stats["accuracy"], stats["spread"], stats["offset"],
                         pdl.metrics.mmd_rbf(z, ref_ode), pdl.metrics.mmd_rbf(z, ref_sde)))

    print(f"\nbudget {pdl.budget()}: eight gaussians, n = {n} per row, labels i mod 8; squared MMD against the "
          f"guided teacher's {big}-step DDIM and DDPM samples (seed {SEED_EVAL}); the teacher rows (seed "
          f"{SEED_OTHER}) against their own sampler are the floors; data spread "
          f"{guidance.class_fidelity(x, y, x, y)['spread']:.3f}")
    print(f"{'w':>4} | {'sampler':<22} | {'NFE':>4} | {'accuracy':>8} | {'spread':>6} | {'offset':>6} | "
          f"{'MMD to DDIM':>11} | {'MMD to DDPM':>11}")
    for w, name, nfe, acc, spread, offset, mmd_ode, mmd_sde in rows:
        print(f"{w:4.1f} | {name:<22} | {nfe:4d} | {acc:8.4f} | {spread:6.3f} | {offset:6.3f} | "
              f"{mmd_ode:11.5f} | {mmd_sde:11.5f}")


if __name__ == "__main__":
    main()
