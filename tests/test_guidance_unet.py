"""Guided distillation on the digits UNet (pdlearn.guidance with pdlearn.models.UNet), the
class accuracy of digit samples, and the cached guided-image recipe; tiny sizes."""
import pytest
import torch

import pdlearn as pdl
from factories import make_unet
from pdlearn import guidance

pytestmark = pytest.mark.slow  # it trains or runs the command line: seconds a test

SCHED = pdl.CosineSchedule()


def tiny_unet(**kw):
    return make_unet(num_classes=10, **kw)


@pytest.fixture(scope="module")
def digits_teacher():
    """A tiny class-conditional UNet trained briefly on the digits, null label at rate 0.2."""
    x, y = pdl.data.digits("train", return_labels=True)
    net = pdl.train_diffusion(tiny_unet(), x, SCHED, steps=60, seed=0, batch_size=32, lr=3e-3, labels=y,
                              p_uncond=0.2, progress=False)
    return net, x, y


def test_unet_w_embedding_gives_distinct_outputs_for_distinct_w():
    net = tiny_unet(w_cond=True).eval()
    for p in net.parameters():  # the UNet zeroes its residual branches and output layer; make them act
        if not p.any():
            torch.nn.init.normal_(p, std=0.1)
    ws = torch.tensor([0.0, 0.5, 1.0, 2.0, 3.0, 4.0])
    z, t = torch.randn(1, 1, 8, 8).expand(6, -1, -1, -1), torch.full((6,), 0.5)
    with torch.no_grad():
        out = net(z, t, y=torch.full((6,), 3), w=ws).flatten(1)
    d = torch.cdist(out, out) + torch.eye(6)
    assert d.min() > 1e-4, d  # the same z, t and y: only w differs
    with pytest.raises(ValueError, match="w="):
        net(z, t, y=torch.full((6,), 3))


def test_unet_w_student_starts_as_the_conditional_teacher(digits_teacher):
    teacher, x, y = digits_teacher
    student = guidance.w_student(teacher).eval()
    assert student.config["w_cond"] and not teacher.config["w_cond"]
    z, t = torch.randn(8, 1, 8, 8), torch.rand(8)
    with torch.no_grad():
        for w in (0.0, 3.0):
            torch.testing.assert_close(student(z, t, y=y[:8], w=w), teacher(z, t, y=y[:8]))


def relative_error(net, teacher, w, n=256, seed=1):
    """||x_hat_student - x_hat^w_teacher||^2 / ||x_hat^w_teacher - x_hat_c||^2 on held-out digits at t ~ U:
    1 for a student that ignores w (the conditional teacher), 0 for a perfect one."""
    x, y = pdl.data.digits("test", return_labels=True)
    g = torch.Generator().manual_seed(seed)
    x, y = x[:n], y[:n]
    t = torch.rand(n, generator=g).clamp(0.05, 0.95)
    z = pdl.q_sample(x, t, SCHED, torch.randn(x.shape, generator=g))
    with torch.no_grad():
        x_w, _ = guidance.guided_predict(teacher, z, t, SCHED, y, w)
        x_c, _ = pdl.predict(teacher, z, t, SCHED, y=y)
        x_s, _ = pdl.predict(net, z, t, SCHED, y=y, w=w)
    return float((x_s - x_w).pow(2).sum() / (x_w - x_c).pow(2).sum())


def test_stage1_on_a_unet_moves_the_student_towards_the_guided_target(digits_teacher):
    teacher, x, y = digits_teacher
    before = guidance.w_student(teacher).eval()
    assert relative_error(before, teacher, 3.0) == pytest.approx(1.0, abs=1e-3)
    student = guidance.distill_w(teacher, x, y, SCHED, iters=80, w_range=(0.0, 4.0), lr=1e-3, batch_size=32,
                                 ema_decay=None, seed=0, progress=False)
    for w in (2.0, 3.0):  # about 0.12 and 0.24 after these 80 steps
        err = relative_error(student, teacher, w)
        assert err < 0.5, (w, err)  # more than half of what w changes is learnt
    losses = student.history["loss"]
    assert len(losses) == 80 and sum(losses[-10:]) < 0.5 * sum(losses[:10])


def test_class_accuracy_reads_the_digits_classifier():
    x, y = pdl.data.digits("test", return_labels=True)
    assert pdl.metrics.class_accuracy(x, y) > 0.97  # the shipped classifier: 99.3% on these held-out digits
    shuffled = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(0))]
    assert 0.03 < pdl.metrics.class_accuracy(x, shuffled) < 0.2  # chance: about 0.1
    assert pdl.metrics.class_accuracy(x, (y + 1) % 10) < 0.02
    with pytest.raises(ValueError, match="one entry per image"):
        pdl.metrics.class_accuracy(x, y[:10])


def test_balanced_floor_draws_equal_classes_and_is_lower():
    from pdlearn.metrics import draw_indices

    _, y = pdl.data.digits("train", return_labels=True)
    idx = draw_indices(455, y, torch.Generator().manual_seed(0), balanced=True)
    assert len(set(idx.tolist())) == 455  # without replacement
    assert torch.bincount(y[idx], minlength=10).tolist() == [46] * 5 + [45] * 5  # the counts of i mod 10, i < 455
    balanced = pdl.metrics.image_fid_floor(450, "digits", repeats=3, balanced=True)[0]
    assert balanced < 0.8 * pdl.metrics.image_fid_floor(450, "digits", repeats=3)[0]  # no chance fluctuation of the class mix
    with pytest.raises(ValueError, match="smaller n"):
        pdl.metrics.image_fid_floor(1_300, "digits", balanced=True)


def test_guided_image_recipe_at_smoke(tmp_path, monkeypatch):
    monkeypatch.setenv("PDLEARN_CHECKPOINTS", str(tmp_path))
    cfg = pdl.sizes("image_guidance", "smoke")
    teacher, students, x, y, history = pdl.recipes.guided_image_students(budget_name="smoke", progress=False)
    assert teacher.config["num_classes"] == 10 and not teacher.config["w_cond"]
    assert x.shape[1:] == (1, 8, 8) and y.shape == (x.shape[0],) and set(y.tolist()) == set(range(10))
    rounds = cfg["start_steps"].bit_length() - 1
    assert sorted(students) == [2**k for k in range(rounds + 1)] and len(history) == rounds
    assert all(net.config["w_cond"] for net in students.values())
    n = 10
    kw = dict(y=torch.arange(n), w=torch.linspace(0, cfg["w_max"], n))
    for steps in (1, 4):
        z = pdl.ddim_sample(students[steps], SCHED, n=n, steps=steps, seed=0, model_kwargs=kw)
        assert z.shape == (n, 1, 8, 8) and torch.isfinite(z).all()
    # a second call loads every stage from its checkpoint instead of training again
    _, again, _, _, history2 = pdl.recipes.guided_image_students(budget_name="smoke", progress=False)
    assert all(r["loaded"] for r in history2)
    for steps in students:
        for a, b in zip(students[steps].state_dict().values(), again[steps].state_dict().values()):
            assert torch.equal(a, b)
