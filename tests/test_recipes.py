"""The cached teachers of pdlearn.recipes: they train, and a second call loads instead of retraining."""
import pytest
import torch

import pdlearn as pdl

pytestmark = pytest.mark.slow  # it trains or runs the command line: seconds a test


def test_image_teacher_trains_and_samples_at_smoke(tmp_path, monkeypatch):
    monkeypatch.setenv("PDLEARN_CHECKPOINTS", str(tmp_path))
    net, x = pdl.recipes.image_teacher(budget_name="smoke", progress=False)
    assert x.ndim == 4 and x.shape[1:] == (1, 8, 8) and x.min() >= -1 and x.max() <= 1
    assert tuple(net.sample_shape) == (1, 8, 8) and net.prediction == "v"
    z = pdl.ddim_sample(net, pdl.CosineSchedule(), n=5, steps=4, seed=0)
    assert z.shape == (5, 1, 8, 8) and torch.isfinite(z).all()
    again, _ = pdl.recipes.image_teacher(budget_name="smoke", progress=False)  # loaded from its checkpoint
    for a, b in zip(net.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)


def test_toy_teacher_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("PDLEARN_CHECKPOINTS", str(tmp_path))
    net, x = pdl.recipes.toy_teacher("moons", budget_name="smoke", progress=False)
    assert x.shape[1] == 2 and len(list(tmp_path.glob("*.pt"))) == 1
    again, _ = pdl.recipes.toy_teacher("moons", budget_name="smoke", progress=False)
    assert again.history["loss"] == net.history["loss"]


def test_image_students_halve_the_steps_and_load_when_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("PDLEARN_CHECKPOINTS", str(tmp_path))
    cfg = pdl.sizes("image_distill", "smoke")
    students, history = pdl.recipes.image_students(budget_name="smoke", progress=False)
    expected = [cfg["start_steps"] // 2 ** k for k in range(1, cfg["start_steps"].bit_length())]
    assert sorted(students, reverse=True) == expected and [r["steps"] for r in history] == expected
    assert not any(r["loaded"] for r in history)
    teacher, _ = pdl.recipes.image_teacher(budget_name="smoke", progress=False)
    for student in students.values():  # every student keeps the teacher's architecture, with new weights
        assert pdl.train.architecture(student) == pdl.train.architecture(teacher)
    assert not torch.equal(students[1].state_dict()["out.2.weight"], teacher.state_dict()["out.2.weight"])
    z = pdl.ddim_sample(students[1], pdl.CosineSchedule(), n=4, steps=1, seed=0)
    assert z.shape == (4, 1, 8, 8) and torch.isfinite(z).all()
    again, history2 = pdl.recipes.image_students(budget_name="smoke", progress=False)  # every round loaded
    assert all(r["loaded"] for r in history2)
    for n in students:
        for a, b in zip(students[n].state_dict().values(), again[n].state_dict().values()):
            assert torch.equal(a, b)
