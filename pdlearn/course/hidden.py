"""The built-in hidden checks: run by ``checks.hidden(name, ...)`` only when the grader runs a
submission (``PDLEARN_GRADING=1``), never in a student's notebook.

Each repeats its task's check on inputs the notebook does not show: the other schedule, another
parameterization of the network, other step counts and shapes. An answer that is right only for
the visible inputs (a hard-coded v-prediction formula where ``pdl.predict`` was asked for, a
cosine-only coefficient) fails here. They are public like the rest of the library; an instructor
who wants checks the students cannot read keeps them in a module of their own
(``PDLEARN_HIDDEN_CHECKS``, see book/assignments/instructors.md).
"""
from ..schedules import CosineSchedule, LinearBetaSchedule
from . import checks


def a1_forward(forward):
    checks.check_forward(forward, n=5, dim=3, seed=1)


def a1_v_target(v_target):
    checks.check_v_target(v_target, n=7, dim=3, seed=2)


def a1_loss(loss_fn):
    checks.check_loss(loss_fn, net=checks.tiny_net(31), sched=LinearBetaSchedule(), seed=3)


def a2_ddim_step(ddim_step):
    checks.check_ddim_step(ddim_step, net=checks.tiny_net(32, prediction="eps"), sched=LinearBetaSchedule(),
                           pairs=((0.9, 0.6), (0.2, 0.0)))


def a2_ddim_sampler(ddim_sampler):
    checks.check_ddim_sampler(ddim_sampler, net=checks.tiny_net(33, prediction="x"), sched=CosineSchedule(),
                              step_counts=(2, 7))
    checks.check_ddim_sampler(ddim_sampler, net=checks.tiny_net(34, prediction="eps"), sched=LinearBetaSchedule(),
                              step_counts=(3,))


def a2_invert(invert):
    checks.check_inversion(invert, net=checks.tiny_net(35, prediction="eps"), sched=LinearBetaSchedule(),
                           step_counts=(3, 8))


def a3_distill_target(distill_target):
    checks.check_distill_target(distill_target, teacher=checks.tiny_net(36, prediction="x"), step_counts=(4,))


def a3_distill_loss(distill_loss):
    checks.check_distill_loss(distill_loss, teacher=checks.tiny_net(37), student=checks.tiny_net(38, prediction="x"),
                              steps=2)


def a4_guided_x_hat(guided_x_hat):
    checks.check_guided_x_hat(guided_x_hat, net=checks.tiny_net(39, num_classes=4, prediction="x"),
                              weights=(1.5, "per example"))


def a4_stage1_loss(stage1_loss):
    checks.check_stage1_loss(stage1_loss, teacher=checks.tiny_net(40, num_classes=3, prediction="x"),
                             student=checks.tiny_net(41, num_classes=3, w_cond=True, prediction="x"))


def a4_stage2_loss(stage2_loss):
    checks.check_stage2_loss(stage2_loss, teacher=checks.tiny_net(42, num_classes=3, w_cond=True),
                             student=checks.tiny_net(43, num_classes=3, w_cond=True, prediction="x"), steps=2)


def a5_ddpm_step(ddpm_step):
    checks.check_ddpm_step(ddpm_step, net=checks.tiny_net(44, prediction="eps"), sched=LinearBetaSchedule(),
                           pairs=((0.8, 0.4), (0.1, 0.0)))


def a5_ddpm_sampler(ddpm_sampler):
    checks.check_ddpm_sampler(ddpm_sampler, net=checks.tiny_net(45, prediction="x"), step_counts=(5,), seed=46)


def a5_stochastic_sampler(stochastic_sampler):
    checks.check_stochastic_sampler(stochastic_sampler, net=checks.tiny_net(47, prediction="x"), step_counts=(3, 6),
                                    seed=48)
