"""Recipes: the teachers the chapters share, trained once per budget and cached.

Each recipe is a few calls to the public API with sizes from ``budget.SIZES``.
Its checkpoint makes the second call (from a later chapter) a load, not a retrain.
"""
import torch

from . import data as data_mod
from .budget import checkpoint_path, device, image_data, sizes
from .checkpoints import run_file
from .models import MLPDenoiser, UNet
from .schedules import CosineSchedule
from .train import train_diffusion


def cached_teacher(net, data, name, recipe, steps, budget_name=None, checkpoint_every=1000, resume=True, **kwargs):
    """Train ``net`` on ``data`` with the diffusion loss on the cosine schedule, or load it when a
    run of the same recipe finished before: the checkpoint ``checkpoint_path(name)`` carries a
    fingerprint of ``recipe`` (the sizes and settings that make the teacher) in its name, so a
    changed recipe trains afresh instead of resuming a stale file, and an interrupted one
    resumes (``resume=False``: trained afresh, over the old file). Other keyword arguments go to
    ``train_diffusion``. Returns the EMA network."""
    path = run_file(checkpoint_path(name, budget_name), recipe)
    return train_diffusion(net, data, CosineSchedule(), steps=steps, checkpoint=path, checkpoint_every=checkpoint_every,
                           resume=resume, **kwargs)


def toy_teacher(name="moons", prediction="v", seed=0, progress=True, budget_name=None):
    """A diffusion teacher for the toy set ``name`` at the current budget.

    Returns (net, data): the EMA network (eval mode, with ``.history``) and the
    training data [n_data, 2]. Uses the cosine schedule and the SNR + 1 weighting.
    It trains on ``device()`` (at the gpu budget's sizes an iteration takes about 60 ms
    on two CPU cores, so 20,000 of them would take 20 minutes there) and is returned on
    the CPU, where the 2D chapters sample and plot it.
    """
    cfg = sizes("checkerboard_teacher" if name == "checkerboard" else "toy_teacher", budget_name)
    x = data_mod.toy(name, n=cfg["n_data"], seed=seed)
    torch.manual_seed(seed)
    net = MLPDenoiser(dim=2, width=cfg["width"], depth=cfg["depth"], prediction=prediction).to(device())
    net = cached_teacher(net, x, f"{name}_teacher_{prediction}_seed{seed}", cfg, cfg["steps"], budget_name,
                         seed=seed, batch_size=cfg["batch_size"], progress=progress, desc=f"{name} teacher")
    return net.cpu(), x


def image_teacher(name=None, prediction="v", conditional=False, p_uncond=0.1, seed=0, progress=True,
                  budget_name=None, resume=True):
    """A UNet diffusion teacher for images at the current budget (sizes 'image_teacher').

    ``name`` defaults to ``image_data()``, the budget's data set unless ``PDLEARN_IMAGES``
    names another: the embedded digits at smoke / cpu (trained on the 'train' split
    only), MNIST at gpu ('mnist', 'fashion_mnist' and 'cifar10' download on first use).
    With ``conditional`` the UNet takes class labels (null label with probability
    ``p_uncond``, for classifier-free guidance).
    Returns (net, x_train): the EMA network (eval mode, on ``device()``, with
    ``.history``) and the training images [n, C, H, W] in [-1, 1].
    """
    cfg = sizes("image_teacher", budget_name)
    name = name or image_data(budget_name)
    x, y = data_mod.image_set(name, "train", return_labels=True)
    torch.manual_seed(seed)
    net = UNet(in_channels=x.shape[1], image_size=x.shape[-1], channels=cfg["channels"], ch_mult=cfg["ch_mult"],
               num_res_blocks=cfg["num_res_blocks"], dropout=cfg["dropout"], prediction=prediction,
               num_classes=10 if conditional else None).to(device())
    p_uncond = p_uncond if conditional else 0.0
    net = cached_teacher(net, x, f"{name}_{'cond_' if conditional else ''}teacher_{prediction}_seed{seed}",
                         dict(cfg, p_uncond=p_uncond), cfg["steps"], budget_name, checkpoint_every=500, seed=seed,
                         batch_size=cfg["batch_size"], lr=cfg["lr"], labels=y if conditional else None,
                         p_uncond=p_uncond, progress=progress, desc=f"{name} teacher", resume=resume)
    return net, x


def image_student_rounds(name=None, prediction="v", seed=0, progress=True, budget_name=None, start_steps=None,
                         end_steps=None, iters_per_round=None, checkpoint_every=1000, resume=True):
    """The image teacher distilled progressively, as a generator of (student, record) per round.

    Distils ``image_teacher(name, prediction, seed)`` from ``start_steps`` DDIM steps down
    to ``end_steps``, halving every round, with ``iters_per_round`` iterations each (all three
    default to the budget's 'image_distill' sizes; batch size and lr always come from them).
    Each round is checkpointed (and every ``checkpoint_every`` iterations inside it), so a
    second call loads the finished rounds and an interrupted round resumes where it stopped.
    The command line (``python -m pdlearn distill``) runs this same generator.
    """
    from .distill import distill_rounds

    cfg = sizes("image_distill", budget_name)
    teacher, x = image_teacher(name, prediction=prediction, seed=seed, progress=progress, budget_name=budget_name,
                               resume=resume)
    name = name or image_data(budget_name)
    yield from distill_rounds(teacher, x, CosineSchedule(), start_steps or cfg["start_steps"],
                              end_steps or cfg["end_steps"], iters_per_round or cfg["iters_per_round"], seed=seed,
                              lr=cfg["lr"], batch_size=cfg["batch_size"], resume=resume, progress=progress,
                              checkpoint_every=checkpoint_every,
                              checkpoint=checkpoint_path(f"{name}_distill_{prediction}", budget_name))


def image_students(name=None, prediction="v", seed=0, progress=True, budget_name=None, **overrides):
    """All rounds of ``image_student_rounds`` (sizes 'image_distill'; ``overrides``: start_steps,
    end_steps, iters_per_round, checkpoint_every). Returns (students, history): a dict
    {steps: student network} and the per-round records of ``distill_rounds`` (loss, wall
    time, whether the round was loaded)."""
    students, history = {}, []
    for student, record in image_student_rounds(name, prediction, seed, progress, budget_name, **overrides):
        students[record["steps"]] = student
        history.append(record)
    return students, history


def guided_image_students(name=None, prediction="v", seed=0, progress=True, budget_name=None):
    """Guided distillation (Meng et al., 2023) of the class-conditional image teacher
    (sizes 'image_guidance'), each stage trained once per budget and cached.

    The teacher is ``image_teacher(name, conditional=True)``. Stage 1 (``guidance.distill_w``)
    trains a w-conditioned student on the guided teacher for w ~ U[0, w_max]; stage 2
    (``guidance.distill_w_progressive``, i.e. ``distill.progressive_distill``) halves its DDIM
    steps from ``start_steps`` to 1, every example with its own label and w.
    Returns (teacher, students, x, y, history): the teacher, a dict {steps: student} whose
    entry at ``start_steps`` is the stage-1 student and whose others are the rounds' students
    (called as student(z, t, y=y, w=w)), the training images with their labels, and the
    per-round records of stage 2.
    """
    from .guidance import distill_w, distill_w_rounds

    cfg = sizes("image_guidance", budget_name)
    teacher, x = image_teacher(name, prediction=prediction, conditional=True, seed=seed, progress=progress,
                               budget_name=budget_name)
    name = name or image_data(budget_name)
    _, y = data_mod.image_set(name, "train", return_labels=True)
    sched, w_range = CosineSchedule(), (0.0, cfg["w_max"])
    stage1 = distill_w(teacher, x, y, sched, iters=cfg["stage1_iters"], w_range=w_range, lr=cfg["stage1_lr"],
                       batch_size=cfg["batch_size"], seed=seed, resume=True, progress=progress,
                       checkpoint=checkpoint_path(f"{name}_guided_stage1_{prediction}", budget_name))
    students, history = {cfg["start_steps"]: stage1}, []
    for student, record in distill_w_rounds(
            stage1, x, y, sched, start_steps=cfg["start_steps"], end_steps=1, iters_per_round=cfg["iters_per_round"],
            w_range=w_range, seed=seed, lr=cfg["lr"], batch_size=cfg["batch_size"], resume=True, progress=progress,
            checkpoint=checkpoint_path(f"{name}_guided_stage2_{prediction}", budget_name)):
        students[record["steps"]] = student
        history.append(record)
    return teacher, students, x, y, history


def toy_guided_teacher(name="eight_gaussians", p_uncond=0.1, prediction="v", seed=0, progress=True,
                       budget_name=None):
    """A class-conditional MLPDenoiser for classifier-free guidance on a labelled toy set
    (sizes 'guidance_2d'), trained once per budget and cached like ``toy_teacher``.

    Returns (net, x, y): the EMA network (eval mode) and the training data with its labels.
    """
    cfg = sizes("guidance_2d", budget_name)
    x, y = data_mod.toy(name, n=cfg["n_data"], seed=seed, return_labels=True)
    torch.manual_seed(seed)
    net = MLPDenoiser(dim=2, width=cfg["width"], depth=cfg["depth"], prediction=prediction,
                      num_classes=int(y.max()) + 1)
    recipe = {k: cfg[k] for k in ("n_data", "teacher_steps", "width", "depth", "batch_size")}
    return cached_teacher(net, x, f"{name}_cfg_teacher_{prediction}_seed{seed}", dict(recipe, p_uncond=p_uncond),
                          cfg["teacher_steps"], budget_name, seed=seed, batch_size=cfg["batch_size"], labels=y,
                          p_uncond=p_uncond, progress=progress, desc=f"{name} guided teacher"), x, y

def toy_students(name="moons", prediction="v", seed=0, lr=None, progress=True, budget_name=None):
    """The progressive students of ``toy_teacher(name)`` (chapter 4), trained once per budget and cached.

    Progressive distillation (``distill.distill_rounds``) from the 'progressive_2d' sizes'
    ``start_steps`` DDIM steps down to 1, ``iters_per_round`` iterations a round at its ``lr``
    (or ``lr``) and ``batch_size``, on ``device()``. The rounds are checkpointed under the name
    chapter 4 gives them (``<name>_progressive``), so chapters 4, 8 and 9, the benches and
    outside code share one set of files. Returns (students, history): a dict {steps: student}
    (eval mode, on the CPU, where the 2D chapters sample them) and the per-round records.
    """
    import copy

    from .distill import distill_rounds

    cfg = sizes("progressive_2d", budget_name)
    teacher, x = toy_teacher(name, prediction=prediction, seed=seed, progress=progress, budget_name=budget_name)
    students, history = {}, []
    for student, record in distill_rounds(copy.deepcopy(teacher).to(device()), x, CosineSchedule(),
                                          cfg["start_steps"], 1, cfg["iters_per_round"], seed=seed,
                                          lr=cfg["lr"] if lr is None else lr, batch_size=cfg["batch_size"],
                                          progress=progress, resume=True,
                                          checkpoint=checkpoint_path(f"{name}_progressive", budget_name)):
        students[record["steps"]] = copy.deepcopy(student).cpu()  # the next round goes on from `student`
        history.append(record)
    return students, history
