"""Chapter 7: classifier-free guidance and guided distillation (Meng et al., 2023) on labelled 2D data.

    PDLEARN_BUDGET=cpu OMP_NUM_THREADS=1 python bench/ch7_guidance.py

On eight gaussians with one label per mode (sizes ``pdl.sizes('guidance_2d')``;
the teacher, the stage-1 student and the stage-2 rounds are cached in
book/checkpoints and shared with the book):

1. trains (or loads) the class-conditional teacher (null label at rate 0.1);
2. stage 1: a w-conditioned student for w ~ U[0, w_max];
3. stage 2: progressive distillation of that student from start_steps to 1 step;

then prints, for each w, the fidelity (class accuracy: nearest class mean is the
label's), the diversity (RMS distance to the class mean, the data's beside it)
and the squared MMD to the guided teacher's own samples at many steps, with the
teacher-vs-teacher floor (two seeds), for the guided teacher (2 NFE per step)
and the distilled student (1 NFE per step, deterministic and stochastic).
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
        ref = pdl.ddim_sample(guided, sched, n=n, steps=big, seed=SEED_EVAL, model_kwargs=kw)
        other = pdl.ddim_sample(guided, sched, n=n, steps=big, seed=SEED_OTHER, model_kwargs=kw)
        floor = pdl.metrics.mmd_rbf(other, ref)
        candidates = [(f"teacher DDIM {big}", 2 * big, other),
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
            rows.append((w, name, nfe, stats["accuracy"], stats["spread"], stats["data_spread"],
                         pdl.metrics.mmd_rbf(z, ref), floor))

    print(f"\nbudget {pdl.budget()}: eight gaussians, n = {n} per row; MMD against the teacher's {big}-step "
          f"samples (another seed); floor = teacher vs teacher, two seeds")
    print(f"{'w':>4} | {'sampler':<22} | {'NFE':>4} | {'accuracy':>8} | {'spread':>6} | {'data':>5} | "
          f"{'MMD to teacher':>14} | {'floor':>8}")
    for w, name, nfe, acc, spread, data_spread, mmd, floor in rows:
        print(f"{w:4.1f} | {name:<22} | {nfe:4d} | {acc:8.4f} | {spread:6.3f} | {data_spread:5.3f} | "
              f"{mmd:14.5f} | {floor:8.5f}")


if __name__ == "__main__":
    main()
