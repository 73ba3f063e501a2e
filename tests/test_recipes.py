"""The cached teachers of pdlearn.recipes: they train, and a second call loads instead of retraining."""
import torch

import pdlearn as pdl


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
    assert x.shape[1] == 2 and len(list(tmp_path.iterdir())) == 1
    again, _ = pdl.recipes.toy_teacher("moons", budget_name="smoke", progress=False)
    assert again.history["loss"] == net.history["loss"]
