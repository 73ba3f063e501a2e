"""Run budgets and device choice: the one place where sizes live.

Every chapter and bench script reads ``budget()`` (from ``PDLEARN_BUDGET``) and
takes its sizes from ``sizes(name)``. Budgets change sizes and iteration
counts, never code paths.

- ``smoke``: seconds per chapter; CI and nbval; proves the code runs.
- ``cpu``:   default without CUDA; minutes per chapter on a 2-core laptop, with
             genuinely good 2D and digits results.
- ``gpu``:   default with CUDA; the full protocol for one Colab GPU.

The image chapters read their data set from the budget too (``image_data()``),
unless ``PDLEARN_IMAGES`` names another one.
"""
import os
import sys
import warnings

import torch

BUDGETS = ("smoke", "cpu", "gpu")

# Sizes per experiment and budget. Iterations, never seconds: timings on shared
# machines move by 1.5x between identical runs.
SIZES = {
    # chapter 1: a 2D teacher on two moons / checkerboard
    "toy_teacher": {
        "smoke": dict(n_data=2_000, steps=300, n_eval=500, width=64, depth=2, batch_size=256),
        "cpu": dict(n_data=20_000, steps=6_000, n_eval=5_000, width=128, depth=3, batch_size=512),
        "gpu": dict(n_data=50_000, steps=20_000, n_eval=5_000, width=256, depth=4, batch_size=1024),
    },
    # the checkerboard's sharp corners need iterations, not width: 15k steps of batch 256 reach
    # the data-vs-data floor at n = 5,000 (bench/ch1_ddpm_2d.py)
    "checkerboard_teacher": {
        "smoke": dict(n_data=2_000, steps=300, n_eval=500, width=64, depth=2, batch_size=256),
        "cpu": dict(n_data=20_000, steps=15_000, n_eval=5_000, width=128, depth=3, batch_size=256),
        "gpu": dict(n_data=50_000, steps=30_000, n_eval=5_000, width=256, depth=4, batch_size=1024),
    },
    # chapter 1, besides its teachers: the from-scratch DDPM, plots, floors, the animation
    "diffusion_2d": {
        "smoke": dict(scratch_steps=200, n_show=500, floor_repeats=3, n_check=64, n_anim=300, frames=10),
        "cpu": dict(scratch_steps=1_500, n_show=2_000, floor_repeats=5, n_check=256, n_anim=1_000, frames=30),
        "gpu": dict(scratch_steps=3_000, n_show=2_000, floor_repeats=5, n_check=256, n_anim=1_000, frames=30),
    },
    # chapter 2: DDIM on the chapter-1 moons teacher (quality vs steps, trajectories, inversion)
    "ddim_2d": {
        "smoke": dict(n_eval=500, step_counts=(1, 4, 16, 64), floor_repeats=3, n_show=500, n_paths=60,
                      invert_steps=(10, 50), n_invert=200),
        "cpu": dict(n_eval=5_000, step_counts=(1, 2, 4, 8, 16, 64, 256, 1000), floor_repeats=5, n_show=2_000,
                    n_paths=200, invert_steps=(10, 30, 100, 300), n_invert=1_000),
        "gpu": dict(n_eval=5_000, step_counts=(1, 2, 4, 8, 16, 64, 256, 1000), floor_repeats=5, n_show=2_000,
                    n_paths=200, invert_steps=(10, 30, 100, 300), n_invert=1_000),
    },
    # chapter 4: progressive distillation of the chapter-1 teachers (pdlearn.distill)
    # chapter 3: classic knowledge distillation, and the one-step student of Luhman & Luhman
    "distill_2d": {
        "smoke": dict(kd_n=2_000, kd_noise=0.25, kd_labels=16, kd_iters=200, teacher_steps=16, n_pairs=(16, 256),
                      main_pairs=256, iters=200, batch_size=128, lr=1e-3, n_eval=500, n_show=500, floor_repeats=2),
        "cpu": dict(kd_n=5_000, kd_noise=0.25, kd_labels=16, kd_iters=1_500, teacher_steps=256,
                    n_pairs=(16, 64, 256, 1_000, 4_000), main_pairs=4_000, iters=4_000, batch_size=256, lr=1e-3,
                    n_eval=5_000, n_show=2_000, floor_repeats=5),
        "gpu": dict(kd_n=5_000, kd_noise=0.25, kd_labels=16, kd_iters=1_500, teacher_steps=1024,
                    n_pairs=(16, 64, 256, 1_000, 4_000, 16_000), main_pairs=16_000, iters=10_000, batch_size=1024,
                    lr=1e-3, n_eval=5_000, n_show=2_000, floor_repeats=5),
    },
    # chapter 4: progressive distillation of the chapter-1 teachers (pdlearn.distill); abl_*: the
    # parameterization ablation (eps / x / v teachers on CosineSchedule(logsnr_min=abl_logsnr_min),
    # each distilled with abl_iters_per_round iterations per round)
    "progressive_2d": {
        "smoke": dict(start_steps=16, iters_per_round=40, batch_size=128, lr=1e-3, n_eval=500, floor_repeats=2,
                      lrs=(1e-4, 1e-3), n_show=500, speed_repeats=3, abl_teacher_steps=200, abl_start_steps=4,
                      abl_iters_per_round=40, abl_logsnr_min=-10.0),
        "cpu": dict(start_steps=256, iters_per_round=500, batch_size=256, lr=1e-3, n_eval=5_000, floor_repeats=5,
                    lrs=(1e-4, 3e-4, 1e-3, 3e-3), n_show=2_000, speed_repeats=7, abl_teacher_steps=4_000,
                    abl_start_steps=64, abl_iters_per_round=300, abl_logsnr_min=-10.0),
        "gpu": dict(start_steps=1024, iters_per_round=4_000, batch_size=1024, lr=1e-3, n_eval=5_000,
                    floor_repeats=5, lrs=(1e-4, 3e-4, 1e-3, 3e-3), n_show=2_000, speed_repeats=7,
                    abl_teacher_steps=20_000, abl_start_steps=256, abl_iters_per_round=4_000,
                    abl_logsnr_min=-10.0),
    },
    # chapter 7: classifier-free guidance and guided distillation (pdlearn.guidance) on labelled 2D data.
    # cpu: teacher, stage 1, stage 2 and the evaluation take about 128 s of one thread (chapter 7's stored
    # run), against 308 s with 6,000 teacher steps, 3,000 stage-1 iterations, 600 per round from 64 steps
    # and n_eval 3,000 with the teacher at 64 steps. What that cost: the DDIM students lie 2 to 15 floor
    # sds from the teacher's floor at w = 0 and 1 (0 to 8 before), their MMD at w = 4 is 0.17 to 0.34
    # (0.15 to 0.17), and the 8-step stochastic student lies 10 and 24 floor sds from the DDPM teacher at
    # w = 3 and 4 (4 and 11)
    "guidance_2d": {
        "smoke": dict(n_data=2_000, teacher_steps=300, width=64, depth=2, batch_size=256, stage1_iters=150,
                      start_steps=8, iters_per_round=40, w_max=4.0, ws=(0.0, 1.0, 3.0), n_eval=400, n_show=300,
                      teacher_steps_eval=16, student_steps=(1, 2, 4)),
        "cpu": dict(n_data=20_000, teacher_steps=4_000, width=128, depth=3, batch_size=512, stage1_iters=2_000,
                    start_steps=32, iters_per_round=300, w_max=4.0, ws=(0.0, 1.0, 2.0, 3.0, 4.0), n_eval=2_000,
                    n_show=1_500, teacher_steps_eval=32, student_steps=(1, 2, 4, 8)),
        "gpu": dict(n_data=50_000, teacher_steps=20_000, width=256, depth=4, batch_size=1024, stage1_iters=10_000,
                    start_steps=256, iters_per_round=4_000, w_max=4.0, ws=(0.0, 0.5, 1.0, 2.0, 3.0, 4.0),
                    n_eval=5_000, n_show=2_000, teacher_steps_eval=256, student_steps=(1, 2, 4, 8)),
    },
    # chapter 5: the image teacher (recipes.image_teacher), a UNet on the 8x8 digits (MNIST at gpu).
    # cpu: 16 channels and 2,000 steps (bench/cpu_speed.py): a third of the thread-CPU time of the
    # 32-channel, 3,000-step teacher it replaces, whose 128-step digits-FID (n = 450) it ties within the
    # floor's spread (14.3 vs 12.8, floor 8.1 +- 1.5); about 40 ms per step on one core. Wider and
    # longer-trained teachers start copying training digits (32 channels: 3.8% copies at 3k steps)
    "image_teacher": {
        "smoke": dict(data="digits", steps=40, batch_size=32, lr=2e-3, channels=16, ch_mult=(1, 2),
                      num_res_blocks=1, dropout=0.0),
        "cpu": dict(data="digits", steps=2_000, batch_size=128, lr=2e-3, channels=16, ch_mult=(1, 2),
                    num_res_blocks=1, dropout=0.0),
        "gpu": dict(data="mnist", steps=30_000, batch_size=128, lr=5e-4, channels=64, ch_mult=(1, 2, 2),
                    num_res_blocks=2, dropout=0.1),
    },
    # chapter 6: progressive distillation of the image teacher (recipes.image_students), round by round
    "image_distill": {
        "smoke": dict(start_steps=8, end_steps=1, iters_per_round=10, batch_size=32, lr=1e-3,
                      time_iters=2, time_batch=4),
        "cpu": dict(start_steps=128, end_steps=1, iters_per_round=600, batch_size=128, lr=1e-3,
                    time_iters=10, time_batch=16),
        "gpu": dict(start_steps=256, end_steps=1, iters_per_round=5_000, batch_size=128, lr=5e-4,
                    time_iters=20, time_batch=128),
    },
    # chapter 7: guided distillation of the class-conditional image teacher (recipes.guided_image_students):
    # stage 1 (w-conditioned student, w ~ U[0, w_max]), stage 2 (progressive rounds from start_steps to 1),
    # and the evaluation (n_eval samples per w, labels cycling 0..9; the teacher at teacher_steps_eval steps).
    # cpu, one thread (chapter 7's stored run): stage 1 about 64 s, stage 2 about 88 s, the conditional
    # teacher 129 s more. With 160 iterations per round no student is 'worse' than the 64-NFE teacher for
    # w >= 1, as with 200 (and with 250 against the 128-NFE teacher); 400 stage-1 iterations and 150 per
    # round left the 4- and 8-step students 'worse' at w = 3, and a stage 2 from 16 steps (4 rounds of
    # 200) the 8-step one at w = 0 and 3
    "image_guidance": {
        "smoke": dict(stage1_iters=20, stage1_lr=1e-3, start_steps=16, iters_per_round=5, batch_size=32, lr=1e-3,
                      w_max=4.0, ws=(0.0, 1.0, 3.0), n_eval=100, teacher_steps_eval=8, student_steps=(1, 2, 4, 8),
                      floor_repeats=2),
        "cpu": dict(stage1_iters=600, stage1_lr=1e-3, start_steps=32, iters_per_round=160, batch_size=128, lr=1e-3,
                    w_max=4.0, ws=(0.0, 1.0, 2.0, 3.0), n_eval=450, teacher_steps_eval=32, student_steps=(1, 2, 4, 8),
                    floor_repeats=5),
        "gpu": dict(stage1_iters=10_000, stage1_lr=3e-4, start_steps=256, iters_per_round=5_000, batch_size=128,
                    lr=2e-4, w_max=4.0, ws=(0.0, 0.5, 1.0, 2.0, 3.0, 4.0), n_eval=5_000, teacher_steps_eval=64,
                    student_steps=(1, 2, 4, 8), floor_repeats=3),
    },
    # chapter 5: evaluating image samples (FID with its floor, classifier confidence, memorisation)
    "images_eval": {
        "smoke": dict(n_eval=100, step_counts=(2, 8), floor_repeats=2, n_grid=16, grid_steps=(2, 8),
                      anim_steps=8, frames=8),
        "cpu": dict(n_eval=450, step_counts=(1, 2, 4, 8, 16, 32, 64, 128), floor_repeats=5, n_grid=64,
                    grid_steps=(1, 4, 16, 128), anim_steps=64, frames=30),
        "gpu": dict(n_eval=5_000, step_counts=(1, 2, 4, 8, 16, 32, 64, 128, 256), floor_repeats=3, n_grid=64,
                    grid_steps=(1, 4, 16, 128), anim_steps=128, frames=30),
    },
    # the classifier that judges image samples (confidence, class accuracy) of the sets that ship
    # none: MNIST, Fashion-MNIST, CIFAR-10 (classifier.image_classifier); the digits' is shipped
    "image_classifier": {
        "smoke": dict(steps=30, batch_size=64, lr=2e-3),
        "cpu": dict(steps=3_000, batch_size=128, lr=2e-3),
        "gpu": dict(steps=4_000, batch_size=128, lr=2e-3),
    },
    # chapter 8: sampling speed (pdlearn.speed). step_counts start with the full-step teacher; the
    # digits UNet at cpu takes ~0.1 s per step at batch 256 on one core, so its table costs minutes
    "real_time": {
        "smoke": dict(step_counts=(8, 4, 2, 1), batch_sizes=(1, 16), big_batch=16, repeats=3, warmup=1,
                      threads=(1,), compare_steps=(1, 4), n_grid=16, n_show=500),
        "cpu": dict(step_counts=(256, 64, 16, 4, 1), batch_sizes=(1, 64, 256), big_batch=256, repeats=5, warmup=1,
                    threads=(1, 2), compare_steps=(1, 16), n_grid=64, n_show=2_000),
        "gpu": dict(step_counts=(256, 64, 16, 4, 1), batch_sizes=(1, 64, 256, 1024), big_batch=256, repeats=5,
                    warmup=2, threads=(1, 2), compare_steps=(1, 16, 64), n_grid=64, n_show=2_000),
    },
    # chapter 10: the 1-step student made small and fast (pdlearn.deploy). shrink: the small student's
    # channel divisor, and small_attention whether it keeps the attention block (half the channels is
    # 0.252x the parameters of the cpu student, without attention 0.245x); teacher_steps: the full-size student whose
    # two-step targets train the small one from scratch (progressive route); pairs_iters and
    # pairs_source_steps: the route on fresh pairs of the full-size 2-step student (at cpu, one training
    # seed, FID of 450 samples: 6,000 iterations on 2-step pairs gave 26.48, on 1-step pairs 28.69, and
    # 3,000 on 1-step pairs 33.94; the full-size 1-step student's is 21.43); calib_n: noises whose sampling
    # states calibrate int8;
    # big_batch: the throughput batch; scale_*: timing the gpu budget's MNIST- and CIFAR-sized UNets
    "deploy": {
        "smoke": dict(shrink=2, small_attention=False, teacher_steps=4, first_iters=20, iters_per_round=10, pairs_iters=20,
                      pairs_source_steps=2, batch_size=32,
                      lr=1e-3, prune_keep=0.5, prune_iters=10, qat_iters=5, calib_n=64, sparsity=0.9, n_eval=100,
                      floor_repeats=2, repeats=3, warmup=1, big_batch=64, n_grid=16, scale_repeats=2,
                      scale_steps=(1, 2)),
        "cpu": dict(shrink=2, small_attention=False, teacher_steps=4, first_iters=1_500, iters_per_round=600, pairs_iters=6_000,
                    pairs_source_steps=2, batch_size=128, lr=1e-3, prune_keep=0.5, prune_iters=400, qat_iters=300, calib_n=256,
                    sparsity=0.9, n_eval=450, floor_repeats=5, repeats=7, warmup=2, big_batch=64, n_grid=64,
                    scale_repeats=5, scale_steps=(1, 2, 4)),
        "gpu": dict(shrink=2, small_attention=False, teacher_steps=8, first_iters=5_000, iters_per_round=2_000, pairs_iters=10_000,
                    pairs_source_steps=2, batch_size=128, lr=5e-4, prune_keep=0.5, prune_iters=2_000, qat_iters=1_000, calib_n=512,
                    sparsity=0.9, n_eval=5_000, floor_repeats=3, repeats=7, warmup=2, big_batch=64, n_grid=64,
                    scale_repeats=5, scale_steps=(1, 2, 4)),
    },
    # chapter 9: which few-step method? Training-free solvers (pdlearn.solvers) against the PD students of
    # chapters 4 and 6 and consistency distillation (pdlearn.consistency) at equal NFE, on the cached teachers.
    # 2D: squared MMD of n_eval samples, the mean of `seeds` (sampling seed, held-out draw) pairs; cd_*: the
    # consistency student (iterations, (s0, s1) of the growing grid, mu0, lr, batch); img_*: the same for the
    # digits (FID of img_n_eval samples). time_*: the thread-CPU timing of one iteration of each training.
    "few_step": {
        "smoke": dict(nfes=(1, 2, 4), n_eval=500, seeds=2, floor_repeats=2, n_show=300, cd_iters=100,
                      cd_grid=(2, 8), cd_mu0=0.9, cd_lr=1e-3, cd_batch=128, img_nfes=(1, 2, 4), img_n_eval=64,
                      img_floor_repeats=2, img_cd_iters=4, img_cd_grid=(2, 4), img_cd_lr=1e-3, img_cd_batch=16,
                      n_grid=16, time_repeats=3, time_iters=2),
        "cpu": dict(nfes=(1, 2, 4, 8, 16, 32), n_eval=5_000, seeds=3, floor_repeats=5, n_show=2_000,
                    cd_iters=4_000, cd_grid=(2, 32), cd_mu0=0.9, cd_lr=3e-4, cd_batch=256,
                    img_nfes=(1, 2, 4, 8, 16, 32), img_n_eval=450, img_floor_repeats=5, img_cd_iters=1_000,
                    img_cd_grid=(2, 16), img_cd_lr=3e-4, img_cd_batch=64, n_grid=64, time_repeats=5, time_iters=5),
        "gpu": dict(nfes=(1, 2, 4, 8, 16, 32), n_eval=5_000, seeds=3, floor_repeats=5, n_show=2_000,
                    cd_iters=20_000, cd_grid=(2, 64), cd_mu0=0.9, cd_lr=3e-4, cd_batch=1024,
                    img_nfes=(1, 2, 4, 8, 16, 32), img_n_eval=5_000, img_floor_repeats=3, img_cd_iters=10_000,
                    img_cd_grid=(2, 32), img_cd_lr=2e-4, img_cd_batch=128, n_grid=64, time_repeats=5,
                    time_iters=3),
    },
    # course assignments (book/assignments): seconds at every budget, since students' submissions are
    # graded by re-running them; the same small teachers, rounds and samples everywhere
    "assignments": {
        b: dict(n_data=2_000, width=64, depth=2, teacher_steps=400, round_steps=4, round_iters=300,
                train_iters=300, stage1_iters=300, sampler_steps=50, n_sample=1_000)
        for b in ("smoke", "cpu", "gpu")
    },
}


def budget():
    """The run budget: ``PDLEARN_BUDGET`` if set, else 'gpu' with CUDA and 'cpu' without."""
    name = os.environ.get("PDLEARN_BUDGET", "").strip().lower()
    if not name:
        return "gpu" if torch.cuda.is_available() else "cpu"
    if name not in BUDGETS:
        raise ValueError(
            f"PDLEARN_BUDGET={name!r} is not a budget; use one of {', '.join(BUDGETS)} "
            "(for example: export PDLEARN_BUDGET=smoke)"
        )
    return name


def on_colab():
    """True inside a Google Colab runtime (its kernel imports ``google.colab`` and sets
    ``COLAB_RELEASE_TAG``)."""
    return "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ


def describe():
    """One line for a chapter's setup cell: the budget ``budget()`` picked, why, and the device.

    For example ``budget: cpu (no GPU found; set PDLEARN_BUDGET to choose), device: cpu``.
    On Colab without a GPU it says how to get one, since the gpu budget is the one its
    runtime is sized for.
    """
    name, where = budget(), "on Colab, " if on_colab() else ""
    if os.environ.get("PDLEARN_BUDGET", "").strip():
        why = f"{where}set by PDLEARN_BUDGET"
    elif torch.cuda.is_available():
        why = f"{where}GPU found: {torch.cuda.get_device_name()}; set PDLEARN_BUDGET to choose"
    elif on_colab():
        why = ("on Colab without a GPU: Runtime > Change runtime type > a GPU gives the gpu budget; "
               "or set PDLEARN_BUDGET")
    else:
        why = "no GPU found; set PDLEARN_BUDGET to choose"
    return f"budget: {name} ({why}), device: {device()}"


RENAMED = {"digits_teacher": "image_teacher", "digits_distill": "image_distill", "digits_guidance": "image_guidance"}


def sizes(name, budget_name=None):
    """The sizes of experiment ``name`` at the current (or given) budget, as a dict. The image rows
    were once named 'digits_*' (they name MNIST at the gpu budget); the old names still work, with
    a DeprecationWarning."""
    if name in RENAMED:
        warnings.warn(f"sizes({name!r}) is now sizes({RENAMED[name]!r}): the row names MNIST at the gpu budget, "
                      "not only the digits", DeprecationWarning, stacklevel=2)
        name = RENAMED[name]
    if name not in SIZES:
        raise KeyError(f"no sizes named {name!r}; known: {', '.join(sorted(SIZES))}")
    return dict(SIZES[name][budget_name or budget()])


def image_data(budget_name=None):
    """The image set of chapters 5 to 7 and of ``python -m pdlearn``: ``PDLEARN_IMAGES`` if set
    ('digits', 'mnist', 'fashion_mnist' or 'cifar10'), else the budget's (the 'data' of
    the 'image_teacher' sizes: the embedded digits at smoke and cpu, MNIST at gpu)."""
    from .images import IMAGE_SETS

    name = os.environ.get("PDLEARN_IMAGES", "").strip().lower()
    if not name:
        return sizes("image_teacher", budget_name)["data"]
    if name not in IMAGE_SETS:
        raise ValueError(f"PDLEARN_IMAGES={name!r} is not an image set; use one of {', '.join(IMAGE_SETS)} "
                         "(for example: export PDLEARN_IMAGES=fashion_mnist)")
    return name


def device():
    """'cuda' when a GPU is present, else 'cpu'."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def checkpoint_path(name, budget_name=None):
    """Where a chapter keeps the checkpoint ``name``: ``$PDLEARN_CHECKPOINTS`` (default
    ``./checkpoints``), one file per budget. Chapters resume from it, so a teacher
    trained by one chapter is loaded, not retrained, by the next."""
    folder = os.environ.get("PDLEARN_CHECKPOINTS", "checkpoints")
    return os.path.join(folder, f"{name}-{budget_name or budget()}.pt")
