"""Progressive distillation (pdlearn.distill): the target of Algorithm 2, the halving
bookkeeping, resume inside a round, the clear errors, and the one-step student."""
import math

import pytest
import torch

import pdlearn as pdl
from factories import make_mlp
from pdlearn import distill


def tiny(prediction="v", width=32, depth=1, seed=0):
    return make_mlp(seed, width=width, depth=depth, emb_dim=16, prediction=prediction)


def weights(net):
    return {k: v.clone() for k, v in net.state_dict().items()}


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


SCHEDULES = {"cosine": pdl.CosineSchedule(), "cosine-clipped": pdl.CosineSchedule(logsnr_min=-10.0),
             "linear-beta": pdl.LinearBetaSchedule()}


@pytest.mark.parametrize("prediction", ["v", "x", "eps"])
@pytest.mark.parametrize("sched_name", list(SCHEDULES))
@pytest.mark.parametrize("steps", [1, 2, 8])
def test_one_student_step_with_target_equals_two_teacher_steps(prediction, sched_name, steps):
    sched = SCHEDULES[sched_name]
    alpha_1, _ = sched.alpha_sigma(torch.tensor(1.0, dtype=torch.float64))
    if prediction == "eps" and alpha_1 == 0:
        pytest.skip("eps-prediction has no x_hat at alpha_1 = 0 (tested as an error below)")
    teacher = tiny(prediction, width=48, depth=2).double()  # untrained: an arbitrary function
    torch.nn.init.normal_(teacher.out[-1].weight, std=0.5)  # a non-trivial output
    z = torch.randn(32, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 1.3
    for i in range(1, steps + 1):
        t = i / steps
        x_tilde, eps_tilde = distill.distill_target(teacher, z, t, sched, steps)
        # the student's one DDIM step of size 1/N with x_hat = x~
        a, s = sched.alpha_sigma(torch.tensor(t, dtype=torch.float64))
        a2, s2 = sched.alpha_sigma(torch.tensor(t - 1 / steps, dtype=torch.float64))
        student_z = pdl.ddim_step(x_tilde, eps_tilde, a2, s2, a, s)
        # the teacher's two DDIM steps of size 1/(2N), run by the library's sampler
        grid = torch.tensor([t, t - 0.5 / steps, t - 1 / steps], dtype=torch.float64)
        teacher_z = pdl.ddim_sample(teacher, sched, z=z, grid=grid)
        torch.testing.assert_close(student_z, teacher_z, atol=1e-12, rtol=1e-12)
        # eps~ is consistent with x~ at z_t
        torch.testing.assert_close(a * x_tilde + s * eps_tilde, z, atol=1e-12, rtol=0)


def test_target_of_a_one_step_student_is_the_teacher_two_step_sample():
    sched = pdl.CosineSchedule()
    teacher = tiny().double()
    z = torch.randn(16, 2, dtype=torch.float64)
    x_tilde, _ = distill.distill_target(teacher, z, 1.0, sched, 1)
    torch.testing.assert_close(x_tilde, pdl.ddim_sample(teacher, sched, z=z, steps=2), atol=1e-12, rtol=0)


def test_rounds_halve_steps_and_draw_t_from_the_student_grid(monkeypatch):
    sched = pdl.CosineSchedule()
    x = pdl.data.toy("moons", n=256, seed=0)
    seen = {}
    real = distill.distill_target

    def spy(teacher, z, t, sched_, steps, **kw):
        seen.setdefault(steps, []).append(t.clone())
        return real(teacher, z, t, sched_, steps, **kw)

    monkeypatch.setattr(distill, "distill_target", spy)
    _, history = pdl.progressive_distill(tiny(), x, sched, start_steps=32, end_steps=2, iters_per_round=3,
                                         batch_size=64, progress=False)
    assert [r["steps"] for r in history] == [16, 8, 4, 2]
    assert [r["teacher_steps"] for r in history] == [32, 16, 8, 4]
    for r in history:
        student, teacher = sched.grid(r["steps"]), sched.grid(r["teacher_steps"])
        assert torch.equal(teacher[::2], student)  # every student grid point is a teacher grid point
        i = torch.cat(seen[r["steps"]]) * r["steps"]
        assert torch.equal(i, i.round()) and i.min() >= 1 and i.max() <= r["steps"]  # t = i/N, i in 1..N
    assert len(torch.cat(seen[2]).unique()) == 2  # both points of the 2-step grid are drawn


@pytest.mark.slow
def test_progressive_distill_leaves_the_teacher_untouched_and_learns():
    sched = pdl.CosineSchedule()
    x = pdl.data.toy("moons", n=512, seed=0)
    teacher = tiny()
    before = weights(teacher)
    student, history = pdl.progressive_distill(teacher, x, sched, start_steps=4, end_steps=1, iters_per_round=40,
                                               batch_size=128, progress=False,
                                               eval_fn=lambda net, steps: steps * 10)
    assert same_weights(before, weights(teacher))
    assert not same_weights(before, weights(student))
    assert [r["metric"] for r in history] == [20, 10]
    assert all(math.isfinite(r["loss"]) and r["wall_s"] > 0 and len(r["losses"]) == 40 for r in history)
    # a round lowers its own loss (the first loss is the student = teacher copy)
    assert history[0]["loss"] < history[0]["losses"][0]


@pytest.mark.slow
def test_resume_mid_round_equals_uninterrupted(tmp_path, monkeypatch):
    sched = pdl.CosineSchedule()
    x = pdl.data.toy("moons", n=256, seed=0)
    kw = dict(start_steps=8, end_steps=1, iters_per_round=6, batch_size=32, lr=3e-3, seed=3, progress=False)
    reference, ref_history = pdl.progressive_distill(tiny(), x, sched, **kw)

    ckpt = str(tmp_path / "moons_distill-smoke.pt")
    real, calls = distill.distill_target, [0]

    def crash_in_round_two(*args, **kwargs):
        calls[0] += 1
        if calls[0] > 6 + 4:  # round 1 (6 iterations), then 4 iterations of round 2
            raise KeyboardInterrupt("power cut")
        return real(*args, **kwargs)

    monkeypatch.setattr(distill, "distill_target", crash_in_round_two)
    with pytest.raises(KeyboardInterrupt):
        pdl.progressive_distill(tiny(), x, sched, checkpoint=ckpt, checkpoint_every=2, **kw)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert any(f.endswith("-round1.json") for f in files)  # round 1 finished
    assert any(f.endswith("-round2.pt") for f in files) and not any(f.endswith("-round2.json") for f in files)

    monkeypatch.setattr(distill, "distill_target", real)
    resumed, history = pdl.progressive_distill(tiny(), x, sched, checkpoint=ckpt, checkpoint_every=2,
                                               resume=True, **kw)
    assert same_weights(weights(reference), weights(resumed))
    assert [r["losses"] for r in history] == [r["losses"] for r in ref_history]
    assert [r["loaded"] for r in history] == [True, False, False]

    # a rerun loads every round: no target is computed at all
    def forbidden(*args, **kwargs):
        raise AssertionError("a finished round was retrained")

    monkeypatch.setattr(distill, "distill_target", forbidden)
    again, history = pdl.progressive_distill(tiny(), x, sched, checkpoint=ckpt, resume=True, **kw)
    assert same_weights(weights(reference), weights(again))
    assert all(r["loaded"] for r in history)


def test_changed_settings_use_new_checkpoint_files(tmp_path):
    sched = pdl.CosineSchedule()
    x = pdl.data.toy("moons", n=128, seed=0)
    ckpt = str(tmp_path / "d.pt")
    kw = dict(start_steps=2, end_steps=1, iters_per_round=2, batch_size=16, progress=False, checkpoint=ckpt,
              resume=True)
    pdl.progressive_distill(tiny(), x, sched, lr=1e-3, **kw)
    _, history = pdl.progressive_distill(tiny(), x, sched, lr=2e-3, **kw)
    assert not history[0]["loaded"]
    _, history = pdl.progressive_distill(tiny(seed=1), x, sched, lr=2e-3, **kw)  # another teacher
    assert not history[0]["loaded"]
    assert len(list(tmp_path.glob("*.pt"))) == 3


@pytest.mark.parametrize("start,end", [(12, 1), (6, 4), (3, 6), (0, 1), (8, 1.0)])
def test_steps_must_halve_to_end_steps(start, end):
    with pytest.raises((ValueError, TypeError), match="power of two|positive integer"):
        pdl.progressive_distill(tiny(), pdl.data.toy("moons", n=64), pdl.CosineSchedule(), start_steps=start,
                                end_steps=end, iters_per_round=1, progress=False)


def test_student_with_another_architecture_is_refused():
    x = pdl.data.toy("moons", n=64)
    with pytest.raises(ValueError, match="architecture"):
        distill.distill_round(tiny(width=32), tiny(width=16), x, pdl.CosineSchedule(), steps=4, iters=1,
                              progress=False)


def test_eps_teacher_at_snr_zero_is_refused_with_the_fix():
    x = pdl.data.toy("moons", n=64)
    with pytest.raises(ValueError, match=r"alpha_1 = 0.*prediction='v'"):
        pdl.progressive_distill(tiny("eps"), x, pdl.CosineSchedule(), start_steps=4, end_steps=1,
                                iters_per_round=1, progress=False)
    # with alpha_1 > 0 it runs (and chapter 4 shows how badly it samples at 1-2 steps)
    student, _ = pdl.progressive_distill(tiny("eps"), x, pdl.CosineSchedule(logsnr_min=-10.0), start_steps=2,
                                         end_steps=1, iters_per_round=2, batch_size=16, progress=False)
    assert student.prediction == "eps"


def test_clipped_cosine_schedule_keeps_alpha_1_positive():
    sched = pdl.CosineSchedule(logsnr_min=-10.0)
    t = torch.linspace(0, 1, 101, dtype=torch.float64)
    alpha, sigma = sched.alpha_sigma(t)
    torch.testing.assert_close(alpha**2 + sigma**2, torch.ones_like(t), atol=1e-12, rtol=0)
    assert alpha[0] == 1 and alpha[-1] > 0
    assert abs(float(sched.logsnr(torch.tensor(1.0, dtype=torch.float64))) + 10.0) < 1e-9
    torch.testing.assert_close(sched.t_from_logsnr(sched.logsnr(t[1:-1])), t[1:-1])
    lam = sched.logsnr(t)
    assert (lam[1:] < lam[:-1]).all()
    assert repr(sched) == "CosineSchedule(logsnr_min=-10.0)" and repr(pdl.CosineSchedule()) == "CosineSchedule()"


def test_one_step_student_regresses_the_teacher_map():
    sched = pdl.CosineSchedule()
    teacher = tiny()
    student, info = distill.one_step_distill(teacher, sched, n_pairs=256, teacher_steps=8, iters=60, lr=3e-3,
                                             batch_size=64, progress=False)
    assert info["teacher_evals"] == 256 * 8
    z1, x = distill.teacher_pairs(teacher, sched, 256, 8, seed=1000)
    with torch.no_grad():
        before = (pdl.predict(teacher, z1, 1.0, sched)[0] - x).pow(2).mean()
        after = (pdl.predict(student, z1, 1.0, sched)[0] - x).pow(2).mean()
    assert after < 0.5 * before


def test_soft_target_loss():
    logits = torch.randn(8, 5)
    assert float(distill.soft_target_loss(logits, logits, temperature=3.0)) == pytest.approx(0.0, abs=1e-6)
    other = torch.randn(8, 5)
    T = 2.0
    p = torch.softmax(other / T, -1)
    expected = T * T * (p * (p.log() - torch.log_softmax(logits / T, -1))).sum(-1).mean()
    torch.testing.assert_close(distill.soft_target_loss(logits, other, temperature=T), expected)
