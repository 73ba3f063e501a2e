"""Chapter 7, digits: guided distillation (Meng et al., 2023) of the class-conditional digits UNet.

    PDLEARN_BUDGET=cpu OMP_NUM_THREADS=1 python bench/ch7_guidance_digits.py

Trains (or loads, from book/checkpoints, shared with the book) the class-conditional
teacher of chapter 5 (``recipes.image_teacher(conditional=True)``), the stage-1
w-conditioned student and the stage-2 rounds (``recipes.guided_image_students``;
sizes ``pdl.sizes('image_guidance')``). Then, for each w, it draws n samples with
labels cycling 0..9 and prints class accuracy (the shipped digits classifier's
argmax equals the conditioning label) and digits-FID against the held-out split,
for the guided teacher with DDIM at ``teacher_steps_eval`` steps (2 NFE per step)
and the distilled student at 1, 2, 4 and 8 steps (1 NFE per step), beside the
data-vs-data FID floors at the same n: training digits drawn at random, and drawn
with balanced classes like the samples (the floor that applies to them), each over several draws. Every FID
carries the verdict of ``pdl.metrics.verdict`` (a tie within two of the balanced floor's standard deviations): the
teacher's against the balanced floor, each student's against the teacher at the same w. Last, the 4-step student
against the teacher at w = 1 and w = 3: the FID difference in floor standard deviations, and the verdict.
"""
import os

import torch

import pdlearn as pdl
from pdlearn import guidance

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED_EVAL = 1


def main():
    os.environ.setdefault("PDLEARN_CHECKPOINTS", os.path.join(ROOT, "book", "checkpoints"))
    cfg = pdl.sizes("image_guidance")
    sched = pdl.CosineSchedule()
    with pdl.timing.stopwatch() as trained:
        teacher, students, x, y, history = pdl.recipes.guided_image_students()
    for r in history:
        print(f"stage 2 round {r['round']}: {r['teacher_steps']} -> {r['steps']} steps, loss {r['loss']:.5f}, "
              f"{r['wall_s']:.0f} s{' (loaded)' if r['loaded'] else ''}")
    print(f"teacher + stage 1 + stage 2: {trained.cpu_s:.0f} CPU-s over all threads, {trained.wall_s:.0f} s wall "
          "(loads count as ~0)")

    n, big = cfg["n_eval"], cfg["teacher_steps_eval"]
    labels = torch.arange(n) % 10
    data = pdl.image_data()  # the embedded digits at smoke / cpu, MNIST at gpu; PDLEARN_IMAGES picks another
    floor, floor_std = pdl.metrics.image_fid_floor(n, data, repeats=cfg["floor_repeats"])
    floor_b, floor_b_std = pdl.metrics.image_fid_floor(n, data, repeats=cfg["floor_repeats"], balanced=True)
    guided = guidance.Guided(teacher)
    table = {}
    with pdl.timing.stopwatch() as evaluation:
        for w in cfg["ws"]:
            kw = dict(y=labels.to(pdl.device()), w=w)
            samplers = {"teacher": (guided, big)}
            samplers.update({f"student {k}": (students[k], k) for k in cfg["student_steps"]})
            for key, (net, steps) in samplers.items():
                z = pdl.ddim_sample(net, sched, n=n, steps=steps, seed=SEED_EVAL, model_kwargs=kw).cpu()
                table[w, key] = (pdl.metrics.class_accuracy(z, labels, name=data), pdl.metrics.image_fid(z, data))
    print(f"evaluation: {evaluation.cpu_s:.0f} CPU-s over all threads, {evaluation.wall_s:.0f} s wall")

    keys = ["teacher"] + [f"student {k}" for k in cfg["student_steps"]]
    heads = [f"teacher {big} ({2 * big} NFE)"] + [f"student {k} ({k} NFE)" for k in cfg["student_steps"]]
    print(f"\nbudget {pdl.budget()}: {data}, n = {n} per cell, labels i mod 10, DDIM; accuracy / FID against the "
          f"{len(pdl.data.image_set(data, 'test'))} held-out images; FID floor {floor:.2f} +- {floor_std:.2f} for a random "
          f"class mix, {floor_b:.2f} +- {floor_b_std:.2f} for balanced classes (as the samples), "
          f"{cfg['floor_repeats']} draws each; accuracy / FID and the FID's verdict: the teacher against the "
          "balanced floor, a student against the teacher at the same w")

    def verdict(w, key):
        reference = floor_b if key == "teacher" else table[w, "teacher"][1]
        return pdl.metrics.verdict(table[w, key][1], reference, floor_b_std)

    print(f"{'w':>4} | " + " | ".join(f"{h:>26}" for h in heads))
    for w in cfg["ws"]:
        cells = [f"{table[w, k][0]:6.3f} / {table[w, k][1]:7.2f} {verdict(w, k):>7}" for k in keys]
        print(f"{w:4.1f} | " + " | ".join(f"{c:>26}" for c in cells))

    print(f"\nthe 4-step student against the teacher at {big} steps: FID difference in balanced-floor sds")
    for w in (1.0, 3.0):
        if (w, "student 4") not in table:
            continue
        (acc_t, fid_t), (acc_s, fid_s) = table[w, "teacher"], table[w, "student 4"]
        print(f"w = {w:g}: accuracy {acc_s:.3f} vs {acc_t:.3f}, FID {fid_s:.2f} vs {fid_t:.2f} "
              f"({(fid_s - fid_t) / floor_b_std:+.1f} sds): {verdict(w, 'student 4')}")


if __name__ == "__main__":
    main()
