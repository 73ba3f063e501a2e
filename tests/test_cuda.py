"""On a CUDA GPU (skipped without one): what CPU runs cannot show.

The library keeps its random generators on the CPU and moves what they draw to the
network's device, so a GPU run must reproduce the CPU's noise exactly and its samples
to float round-off; checkpoints written on the GPU must resume there (their generator
states stay CPU tensors); a distillation round and a UNet teacher train there; and the
timers wait for the GPU before reading the clock. Run on a GPU machine with

    PDLEARN_BUDGET=smoke python -m pytest tests/test_cuda.py tests/test_chapters_on_mnist.py

(the second file then runs chapters 5 to 8 on the GPU, on MNIST-shaped data).
"""
import pytest
import torch

import pdlearn as pdl
from factories import Killed, make_mlp
from pdlearn import speed
from pdlearn.sampling import NoiseSource
from pdlearn.train import load_checkpoint

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CUDA = torch.device("cuda")
SCHED = pdl.CosineSchedule()


def small_net(seed=0):
    return make_mlp(seed, width=32, depth=2)


def test_the_gpu_draws_the_cpus_noise_and_samples_its_samples():
    on_gpu = NoiseSource(100, (2,), seed=3, device=CUDA).randn()
    assert on_gpu.device.type == "cuda" and torch.equal(on_gpu.cpu(), NoiseSource(100, (2,), seed=3).randn())
    net = small_net().eval()
    for sampler, kwargs in [(pdl.ddim_sample, {}), (pdl.ddim_sample, dict(eta=1.0)), (pdl.ddpm_sample, {})]:
        on_cpu = sampler(net, SCHED, n=200, steps=8, seed=1, **kwargs)
        on_gpu = sampler(net.to(CUDA), SCHED, n=200, steps=8, seed=1, **kwargs)
        net.cpu()
        assert on_gpu.device.type == "cuda"
        torch.testing.assert_close(on_gpu.cpu(), on_cpu, atol=1e-4, rtol=1e-4)


def flaky(kill_at=None, seed=0):
    """test_train's denoiser that raises on a chosen forward call (a session that dies), on the GPU."""
    from test_train import flaky as on_cpu

    return on_cpu(kill_at, seed).to(CUDA)


def test_a_gpu_run_resumes_from_its_checkpoint(tmp_path):
    """The crash this guards against: a checkpoint mapped to the GPU handed the CPU
    generator a CUDA state tensor, and every resumed GPU run stopped at its first line."""
    x, path = pdl.data.toy("moons", n=512, seed=0), str(tmp_path / "run.pt")
    kwargs = dict(steps=40, batch_size=64, seed=2, progress=False, checkpoint_every=20)
    full = pdl.train_diffusion(flaky(), x, SCHED, **kwargs)
    with pytest.raises(Killed):  # dies during step 27, after the checkpoint at step 20
        pdl.train_diffusion(flaky(kill_at=27), x, SCHED, checkpoint=path, **kwargs)
    assert all(r.device.type == "cpu" for r in load_checkpoint(path)["rngs"])
    resumed = pdl.train_diffusion(flaky(seed=9), x, SCHED, checkpoint=path, resume=True, **kwargs)
    assert next(resumed.parameters()).device.type == "cuda"
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)  # GPU kernels may round differently


def test_a_distillation_round_trains_and_resumes_on_the_gpu(tmp_path):
    x = pdl.data.toy("moons", n=512, seed=0)
    teacher = pdl.train_diffusion(small_net().to(CUDA), x, SCHED, steps=100, batch_size=128, progress=False)
    kw = dict(start_steps=8, end_steps=2, iters_per_round=6, batch_size=64, progress=False,
              checkpoint=str(tmp_path / "d.pt"), checkpoint_every=3)
    first, history = pdl.progressive_distill(teacher, x, SCHED, **kw)
    again, history_again = pdl.progressive_distill(teacher, x, SCHED, resume=True, **kw)
    assert [r["loaded"] for r in history_again] == [True, True]
    assert next(again.parameters()).device.type == "cuda"
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))


def test_a_unet_teacher_and_its_classifier_metrics_on_the_gpu():
    x, y = pdl.data.digits("train", return_labels=True)
    torch.manual_seed(0)
    net = pdl.models.UNet(channels=16, ch_mult=(1, 2), num_classes=10).to(CUDA)
    net = pdl.train_diffusion(net, x, SCHED, steps=20, batch_size=32, labels=y, p_uncond=0.1, progress=False)
    samples = pdl.ddim_sample(net, SCHED, n=50, steps=4, seed=0, model_kwargs=dict(y=y[:50].to(CUDA)))
    assert samples.device.type == "cuda" and samples.shape == (50, 1, 8, 8)
    assert 0 <= pdl.metrics.class_accuracy(samples, y[:50]) <= 1  # the metrics take GPU tensors
    assert pdl.metrics.image_fid(samples, "digits") > 0


def test_timers_wait_for_the_gpu():
    a = torch.randn(4096, 4096, device=CUDA)
    timing = speed.time_fn(lambda: a @ a, repeats=3, warmup=1)  # the default synchronises on CUDA
    launches = speed.time_fn(lambda: a @ a, repeats=3, warmup=1, sync=False)
    assert timing["median_s"] > launches["median_s"]


def test_nearest_neighbours_on_the_gpu_equal_the_cpus():
    g = torch.Generator().manual_seed(0)
    x, ref = torch.randn(300, 1, 8, 8, generator=g), torch.randn(2000, 1, 8, 8, generator=g)
    on_gpu = pdl.metrics.nearest_neighbour_distances(x, ref, chunk=64, device=CUDA)
    on_cpu = pdl.metrics.nearest_neighbour_distances(x, ref, chunk=64, device=torch.device("cpu"))
    assert on_gpu.device.type == "cpu"
    torch.testing.assert_close(on_gpu, on_cpu, atol=1e-9, rtol=1e-9)


def test_the_toy_teacher_trains_on_the_gpu_and_comes_back_on_the_cpu(tmp_path, monkeypatch):
    monkeypatch.setenv("PDLEARN_CHECKPOINTS", str(tmp_path))
    trained_on, train = [], pdl.recipes.train_diffusion

    def spy(net, *args, **kwargs):
        trained_on.append(next(net.parameters()).device.type)
        return train(net, *args, **kwargs)

    monkeypatch.setattr(pdl.recipes, "train_diffusion", spy)
    net, x = pdl.recipes.toy_teacher("moons", budget_name="smoke", progress=False)
    assert trained_on == ["cuda"] and next(net.parameters()).device.type == "cpu" and x.device.type == "cpu"
    assert pdl.ddim_sample(net, SCHED, n=10, steps=4).device.type == "cpu"  # the 2D chapters' cells read it there


def device_waits(fn):
    """How many times ``fn()`` makes the host wait for the GPU (torch's sync debug mode warns on each)."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def test_a_ddim_step_does_not_wait_for_the_gpu():
    """The time grid goes to the GPU once per call and the MLP tells a shared time by its stride,
    so deterministic DDIM waits for the device as often at 16 steps as at 4 (per call, not per step)."""
    net = small_net().to(CUDA).eval()
    z = torch.randn(256, 2, device=CUDA)
    pdl.ddim_sample(net, SCHED, z=z, steps=4)  # warm-up
    few = device_waits(lambda: pdl.ddim_sample(net, SCHED, z=z, steps=4))
    many = device_waits(lambda: pdl.ddim_sample(net, SCHED, z=z, steps=16))
    assert many == few, f"{many - few} more waits for 12 more steps"
