"""The public surface of the design document, call by call, on tiny sizes.

Chapters and outside checks rely on these calls; they may gain keyword
arguments, but each call below keeps working.
"""
import importlib

import pytest
import torch

import pdlearn as pdl

N = 64  # samples: small numbers independent of PDLEARN_BUDGET


@pytest.fixture(scope="module")
def trained():
    sched = pdl.CosineSchedule()
    x = pdl.data.toy("moons", n=500, seed=0)
    net = pdl.models.MLPDenoiser(dim=2)
    net = pdl.train_diffusion(net, x, sched, steps=20, seed=0)
    return net, x, sched


def test_top_level_names():
    for name in ("CosineSchedule", "LinearBetaSchedule", "train_diffusion", "ddim_sample", "ddpm_sample",
                 "ddim_invert", "ddim_step", "predict", "q_sample", "diffusion_loss", "fit", "train_loop",
                 "budget", "sizes", "device", "checkpoint_path", "data", "models", "metrics", "sampling",
                 "schedules", "parameterization", "losses", "viz", "widgets", "speed",
                 "distributed"):
        assert hasattr(pdl, name), name


def test_schedule():
    sched = pdl.CosineSchedule()
    alpha, sigma = sched.alpha_sigma(torch.tensor([0.25, 0.5]))
    assert alpha.shape == sigma.shape == (2,)
    assert sched.logsnr(torch.tensor([0.25, 0.5])).shape == (2,)


def test_toy_data():
    x = pdl.data.toy("moons", n=10_000, seed=0)
    assert isinstance(x, torch.Tensor) and x.shape == (10_000, 2) and x.dtype == torch.float32
    assert torch.equal(x, pdl.data.toy("moons", n=10_000, seed=0))


def test_model():
    net = pdl.models.MLPDenoiser(dim=2)
    assert net.prediction == "v" and tuple(net.sample_shape) == (2,)
    z, t = torch.randn(N, 2), torch.rand(N)
    assert net(z, t).shape == (N, 2)


def test_train_diffusion(trained):
    net, _, _ = trained
    assert isinstance(net, torch.nn.Module) and net.prediction == "v"
    assert len(net.history["loss"]) == 20
    assert all(torch.isfinite(torch.tensor(net.history["loss"])))


@pytest.mark.parametrize("sampler", [pdl.ddim_sample, pdl.ddpm_sample], ids=lambda f: f.__name__)
def test_samplers(trained, sampler):
    net, _, sched = trained
    z = sampler(net, sched, n=N, steps=8, seed=0)
    assert isinstance(z, torch.Tensor) and z.shape == (N, 2) and torch.isfinite(z).all()
    torch.testing.assert_close(sampler(net, sched, n=N, steps=8, seed=0), z)  # seeded
    noise = torch.randn(N, 2, generator=torch.Generator().manual_seed(1))
    from_noise = sampler(net, sched, z=noise, steps=8)
    assert from_noise.shape == (N, 2)


def test_samples_do_not_depend_on_batch_size(trained):
    net, _, sched = trained
    torch.testing.assert_close(pdl.ddim_sample(net, sched, n=10, steps=4, seed=3),
                               pdl.ddim_sample(net, sched, n=200, steps=4, seed=3)[:10])


def test_any_module_with_forward_and_prediction_works():
    class Zero(torch.nn.Module):
        prediction = "eps"

        def forward(self, z, t):
            assert t.shape == (z.shape[0],) and 0 <= float(t.min()) <= float(t.max()) <= 1
            return torch.zeros_like(z)

    noise = torch.randn(N, 3)
    sched = pdl.LinearBetaSchedule()  # alpha_1 > 0, so an eps network can start at t = 1
    for sampler in (pdl.ddim_sample, pdl.ddpm_sample):
        assert sampler(Zero(), sched, z=noise, steps=4).shape == (N, 3)


def test_metrics(trained):
    net, x, sched = trained
    z = pdl.ddim_sample(net, sched, n=N, steps=8, seed=0)
    mmd = pdl.metrics.mmd_rbf(z, x[:N])
    sw = pdl.metrics.sliced_wasserstein(z, x[:N], seed=0)
    assert isinstance(mmd, float) and isinstance(sw, float) and sw >= 0


def test_progressive_distill(trained):
    net, x, sched = trained
    student, history = pdl.progressive_distill(net, x, sched, start_steps=4, end_steps=1, iters_per_round=5, seed=0)
    assert isinstance(student, torch.nn.Module) and student.prediction in ("eps", "x", "v")
    assert [r["steps"] for r in history] == [2, 1]
    assert pdl.ddim_sample(student, sched, n=N, steps=1, seed=0).shape == (N, 2)


def test_distill_module():
    distill = importlib.import_module("pdlearn.distill")
    assert pdl.distill is distill and pdl.progressive_distill is distill.progressive_distill


def test_image_surface():
    x = pdl.data.digits("train")  # float tensor [n, 1, 8, 8] in [-1, 1]
    assert x.shape[1:] == (1, 8, 8) and x.dtype == torch.float32
    net = pdl.models.UNet()  # net(z, t) -> v prediction, like MLPDenoiser
    assert net.prediction == "v" and tuple(net.sample_shape) == (1, 8, 8)
    z = pdl.ddim_sample(net, pdl.CosineSchedule(), n=4, steps=2, seed=0)
    assert z.shape == (4, 1, 8, 8)
    assert isinstance(pdl.metrics.image_fid(x[:N], "digits"), float)
    with pytest.warns(DeprecationWarning):  # the name of earlier versions still answers
        assert isinstance(pdl.metrics.digits_fid(x[:N]), float)
    assert isinstance(pdl.metrics.memorisation(x[:N], x, pdl.data.digits("test"))["copy_fraction"], float)
    x_labelled, y = pdl.data.digits("train", return_labels=True)
    assert isinstance(pdl.metrics.class_accuracy(x_labelled[:N], y[:N]), float)  # classifier's argmax == label
    assert callable(pdl.recipes.guided_image_students)  # (teacher, {steps: student}, x, y, history)


def test_verdict():
    assert pdl.metrics.verdict(1.0, 1.1, 0.1) == "tie" and pdl.metrics.verdict(1.0, 2.0, 0.1) == "better"
