"""The image protocol of chapters 5 and 6, as the command line (``python -m pdlearn``) runs it.

    teacher   the UNet teacher of ``recipes.image_teacher`` (sizes 'image_teacher')
    students  progressive distillation of that teacher, round by round (``recipes.image_student_rounds``,
              sizes 'image_distill'), N -> N/2 -> ... DDIM steps, one checkpoint per round
    evaluate  FID of samples against the held-out split, beside its data-vs-data floor
              (``metrics.image_fid``, ``metrics.image_fid_floor``; sizes 'images_eval'), and the
              fraction the set's classifier reads with confidence (``metrics.confident_fraction``)

Every stage resumes: the teacher from its checkpoint (written every 500 steps), the
distillation from the last finished round and, inside a round, from its last
checkpoint. A stage trains whatever earlier stage it needs and finds missing, so a
dropped job is restarted by running the same command again. The students' files
are those of ``recipes.image_students`` for the same settings, so chapter 6 loads
what a GPU job distilled. Under torchrun every rank runs the same calls; training
goes data-parallel (see ``distributed``) and only rank 0 writes.
"""
import math

import torch

from . import distributed
from .metrics import confident_fraction, image_fid, image_fid_floor
from .images import image_set
from .recipes import image_student_rounds, image_teacher
from .sampling import ddim_sample
from .schedules import CosineSchedule


def ensure_data(name):
    """Make sure image set ``name`` is on disk: rank 0 downloads it (train and test split)
    while the other ranks wait, so that no two processes write the same file."""
    if distributed.is_main():
        image_set(name, "train"), image_set(name, "test")
    distributed.barrier()


def teacher(name, budget_name, seed=0, progress=True, resume=True):
    """The image teacher on set ``name`` at the budget: trained, resumed or loaded (``resume=False``:
    trained afresh). Returns (net, x_train) as ``recipes.image_teacher``."""
    ensure_data(name)
    return image_teacher(name, seed=seed, progress=progress, budget_name=budget_name, resume=resume)


def students(name, budget_name, start_steps, end_steps, iters_per_round, seed=0, checkpoint_every=500,
             progress=True, resume=True):
    """Progressive distillation (Salimans & Ho, 2022) of the image teacher from ``start_steps``
    to ``end_steps`` DDIM steps, ``iters_per_round`` iterations per round: a generator of
    (student, record) after each round (``recipes.image_student_rounds``, the chapter's own
    recipe); finished rounds load, an interrupted one resumes from its last checkpoint."""
    ensure_data(name)
    yield from image_student_rounds(name, seed=seed, progress=progress, budget_name=budget_name,
                                    start_steps=start_steps, end_steps=end_steps, iters_per_round=iters_per_round,
                                    checkpoint_every=checkpoint_every, resume=resume)


@torch.no_grad()
def evaluate(networks, name, n, floor_repeats=5, seed=0, features=None):
    """FID and classifier confidence of each network's DDIM samples, against the test split of ``name``.

    ``networks`` maps a row label to (network, steps); each row draws ``n`` samples with
    ``steps`` DDIM steps (noise seeded with ``seed``). The FID compares ``features`` ('classifier'
    or 'inception'; default: the classifier's for the digits, Inception's for the other sets,
    see ``metrics.image_fid``). Returns (rows, floor): rows is a list
    of dicts {'label', 'steps', 'fid', 'confident'} and floor the data-vs-data (mean, std)
    at the same n, the FID a perfect model would score. 'confident' is the fraction of
    samples the set's classifier (``metrics.classifier.image_classifier``) reads with
    probability above 0.9; the first row is that of n held-out images, for reference."""
    sched = CosineSchedule()
    rows = [{"label": "held-out images", "steps": 0, "fid": float("nan"),
             "confident": confident_fraction(image_set(name, "test")[:n], name=name)}]
    for label, (net, steps) in networks.items():
        samples = ddim_sample(net, sched, n=n, steps=steps, seed=seed, progress=False).cpu()
        rows.append({"label": label, "steps": steps, "fid": image_fid(samples, name, features),
                     "confident": confident_fraction(samples, name=name)})
    return rows, image_fid_floor(n, name, repeats=floor_repeats, seed=seed, features=features)


def format_rows(rows, floor):
    """The rows of ``evaluate`` as a printable table, with FID / floor."""
    lines = [f"{'sampler':<28} {'steps':>5} {'FID':>9} {'FID/floor':>10} {'p > 0.9':>8}"]
    for r in rows:
        fid = f"{'':>9} {'':>10}" if math.isnan(r["fid"]) else f"{r['fid']:9.2f} {r['fid'] / floor[0]:9.2f}x"
        lines.append(f"{r['label']:<28} {r['steps'] or '':>5} {fid} {r['confident']:8.1%}")
    lines.append(f"{'floor (data vs data)':<28} {'':>5} {floor[0]:9.2f}  +- {floor[1]:.2f}")
    return "\n".join(lines)
