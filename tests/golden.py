"""Golden outputs: seeded samples, losses and metric values of every recipe and of the
chapters' key calls, at the smoke budget.

A refactor that moves library code must not move a number. Before it, capture:

    python tests/golden.py --save        # writes tests/golden_smoke.json

after it, compare:

    python tests/golden.py               # exact: every value bit for bit (same machine)

``tests/test_golden.py`` runs the same comparison in the test suite, to a relative
tolerance of 1e-4 so that another CPU's rounding, which training carries on (up to 2e-5
seen between two machines), does not fail it; a changed seed, formula or default moves
these values by far more.
"""
import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path

import torch

FILE = Path(__file__).with_name("golden_smoke.json")


def _digest(x):
    """Sum, sum of squares and the first values of a tensor: enough to see any change."""
    x = x.detach().double().cpu().flatten()
    return [float(x.sum()), float(x.pow(2).sum())] + [float(v) for v in x[:4]]


def compute():
    """Every golden value, computed afresh in an empty checkpoint folder at the smoke budget."""
    import pdlearn as pdl

    saved = {k: os.environ.get(k) for k in ("PDLEARN_CHECKPOINTS", "PDLEARN_BUDGET")}
    threads = torch.get_num_threads()
    try:
        with tempfile.TemporaryDirectory() as folder:
            os.environ["PDLEARN_CHECKPOINTS"] = folder
            os.environ["PDLEARN_BUDGET"] = "smoke"
            torch.set_num_threads(1)
            return _compute(pdl)
    finally:
        torch.set_num_threads(threads)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _compute(pdl):
    out = {}
    sched = pdl.CosineSchedule()

    # noise streams and seeds
    from pdlearn.sampling import NoiseSource

    out["noise"] = _digest(NoiseSource(70, (2,), seed=3).randn())
    out["rank_seed"] = [pdl.distributed.rank_seed(5, r) for r in range(3)]

    # chapter 1-4: the 2D teachers and students
    net, x = pdl.recipes.toy_teacher("moons", progress=False)
    out["moons_teacher_loss"] = net.history["loss"][-5:]
    out["moons_ddim8"] = _digest(pdl.ddim_sample(net, sched, n=100, steps=8, seed=0))
    out["moons_ddpm16"] = _digest(pdl.ddpm_sample(net, sched, n=100, steps=16, seed=1))
    out["moons_invert"] = _digest(pdl.ddim_invert(net, sched, x[:50], steps=10))
    ref = pdl.data.toy("moons", n=500, seed=7)
    z = pdl.ddim_sample(net, sched, n=500, steps=16, seed=0)
    out["mmd"] = pdl.metrics.mmd_rbf(z, ref)
    out["sliced_wasserstein"] = pdl.metrics.sliced_wasserstein(z, ref, seed=0)
    out["mmd_floor"] = list(pdl.metrics.floor(lambda n, s: pdl.data.toy("moons", n, s), 300, repeats=3))
    student, history = pdl.progressive_distill(net, x, sched, start_steps=8, end_steps=1, iters_per_round=20,
                                               seed=0, progress=False,
                                               checkpoint=pdl.checkpoint_path("golden_distill"))
    out["pd_losses"] = [r["loss"] for r in history]
    out["pd_student"] = _digest(pdl.ddim_sample(student, sched, n=100, steps=1, seed=0))
    one, info = pdl.distill.one_step_distill(net, sched, n_pairs=64, teacher_steps=8, iters=20, seed=0,
                                             progress=False)
    out["one_step"] = _digest(pdl.ddim_sample(one, sched, n=100, steps=1, seed=0))
    checker, _ = pdl.recipes.toy_teacher("checkerboard", progress=False)
    out["checkerboard_teacher_loss"] = checker.history["loss"][-3:]

    # chapter 7, 2D: the guided teacher, both stages, the stochastic sampler, fidelity
    gnet, gx, gy = pdl.guidance.toy_guided_teacher(progress=False)
    out["guided_teacher_loss"] = gnet.history["loss"][-3:]
    labels = torch.arange(100) % 8
    out["guided_ddim"] = _digest(pdl.ddim_sample(pdl.guidance.Guided(gnet), sched, n=100, steps=8, seed=0,
                                                 model_kwargs=dict(y=labels, w=2.0)))
    s1 = pdl.guidance.distill_w(gnet, gx, gy, sched, iters=20, batch_size=64, seed=0, progress=False)
    out["stage1_loss"] = s1.history["loss"][-3:]
    s2, h2 = pdl.guidance.distill_w_progressive(s1, gx, gy, sched, start_steps=4, end_steps=1,
                                                iters_per_round=10, batch_size=64, seed=0, progress=False)
    out["stage2_losses"] = [r["loss"] for r in h2]
    out["stochastic"] = _digest(pdl.guidance.stochastic_sample(s2, sched, n=100, steps=4, seed=0,
                                                                model_kwargs=dict(y=labels, w=1.0)))
    fid = pdl.guidance.class_fidelity(pdl.ddim_sample(s2, sched, n=100, steps=1, seed=0,
                                                      model_kwargs=dict(y=labels, w=1.0)), labels, gx, gy)
    out["class_fidelity"] = [fid[k] for k in sorted(fid)]

    # chapters 5-7, images: teacher, students, guided students, metrics
    inet, ix = pdl.recipes.image_teacher(progress=False)
    out["image_teacher_loss"] = inet.history["loss"][-5:]
    samples = pdl.ddim_sample(inet, sched, n=64, steps=4, seed=0)
    out["image_ddim4"] = _digest(samples)
    out["digits_fid"] = pdl.metrics.image_fid(samples, "digits")
    out["digits_fid_floor"] = list(pdl.metrics.image_fid_floor(64, "digits", repeats=2))
    out["digits_fid_floor_balanced"] = list(pdl.metrics.image_fid_floor(60, "digits", repeats=2, balanced=True))
    mem = pdl.metrics.memorisation(samples, ix, pdl.data.digits("test"))
    out["memorisation"] = [mem["sample_median"], mem["heldout_median"], mem["threshold"], mem["copy_fraction"]]
    conf = pdl.metrics.classifier_confidence(samples)
    out["confidence"] = [conf["confident"], conf["mean_confidence"]]
    out["class_accuracy"] = pdl.metrics.class_accuracy(samples, torch.arange(64) % 10)
    students, hist = pdl.recipes.image_students(progress=False)
    out["image_pd_losses"] = [r["loss"] for r in hist]
    out["image_student1"] = _digest(pdl.ddim_sample(students[1], sched, n=16, steps=1, seed=0))
    teacher, gstudents, _, _, ghist = pdl.recipes.guided_image_students(progress=False)
    out["guided_image_teacher_loss"] = teacher.history["loss"][-3:]
    out["guided_image_losses"] = [r["loss"] for r in ghist]
    lab = torch.arange(16) % 10
    out["guided_image_student1"] = _digest(pdl.ddim_sample(gstudents[1], sched, n=16, steps=1, seed=0,
                                                           model_kwargs=dict(y=lab, w=1.0)))
    return out


def compare(found, stored, rtol=0.0):
    """The keys whose values differ (beyond ``rtol``), as sentences."""
    bad = []
    for key in sorted(set(stored) | set(found)):
        a, b = stored.get(key), found.get(key)
        if a is None or b is None:
            bad.append(f"{key}: stored {a!r}, found {b!r}")
            continue
        a, b = (a if isinstance(a, list) else [a]), (b if isinstance(b, list) else [b])
        if len(a) != len(b) or any(not (x == y or (math.isnan(x) and math.isnan(y))
                                        or abs(x - y) <= rtol * max(abs(x), abs(y), 1e-12))
                                   for x, y in zip(a, b)):
            bad.append(f"{key}: stored {a}, found {b}")
    return bad


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--save", action="store_true", help="write the values instead of comparing")
    args = parser.parse_args()
    found = compute()
    if args.save:
        FILE.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
        print(f"wrote {len(found)} golden values to {FILE.name}")
        return 0
    bad = compare(found, json.loads(FILE.read_text()))
    for line in bad:
        print(line)
    print(f"{len(found) - len(bad)} of {len(found)} golden values identical")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
