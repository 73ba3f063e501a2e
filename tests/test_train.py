"""The training loop: seeding, EMA, data sources, the NaN guard, checkpoints and resume."""
import math
import os
import re

import pytest
import torch

import pdlearn as pdl
from factories import Flaky, Killed, make_mlp
from pdlearn.train import load_checkpoint, lr_at

SCHED = pdl.CosineSchedule()


small_net = make_mlp  # MLPDenoiser(dim=2, width=16, depth=1), seeded


def moons(n=512):
    return pdl.data.toy("moons", n=n, seed=0)


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), f"{k} differs"


def test_training_is_seeded_and_returns_the_ema_network():
    a = pdl.train_diffusion(small_net(), moons(), SCHED, steps=30, seed=1, batch_size=64, progress=False)
    b = pdl.train_diffusion(small_net(), moons(), SCHED, steps=30, seed=1, batch_size=64, progress=False)
    c = pdl.train_diffusion(small_net(), moons(), SCHED, steps=30, seed=2, batch_size=64, progress=False)
    assert_same_weights(a, b)
    assert not torch.equal(a.inp.weight, c.inp.weight)
    assert not a.training and len(a.history["loss"]) == 30
    assert all(math.isfinite(v) for v in a.history["loss"])


def test_ema_lags_the_raw_weights():
    net = small_net()
    ema = pdl.train_diffusion(net, moons(), SCHED, steps=40, batch_size=64, ema_decay=0.9, progress=False)
    assert ema is not net and not torch.equal(ema.inp.weight, net.inp.weight)
    no_ema = small_net()
    assert pdl.train_diffusion(no_ema, moons(), SCHED, steps=5, ema_decay=None, progress=False) is no_ema


@pytest.mark.slow
def test_training_lowers_the_loss():
    """On a fixed evaluation batch (fixed t and eps: the per-step loss is too noisy to compare)."""
    x = moons(4_000)
    g = torch.Generator().manual_seed(0)
    t, eps = torch.rand(4_000, generator=g), torch.randn(4_000, 2, generator=g)
    sched = pdl.LinearBetaSchedule()  # DDPM: eps-prediction and L_simple, where most of the loss is reducible
    torch.manual_seed(0)
    net = pdl.models.MLPDenoiser(dim=2, width=32, depth=1, prediction="eps")
    before = pdl.diffusion_loss(net, x, sched, t=t, eps=eps, weighting="eps").item()
    net = pdl.train_diffusion(net, x, sched, steps=300, batch_size=256, lr=3e-3, weighting="eps", progress=False)
    after = pdl.diffusion_loss(net, x, sched, t=t, eps=eps, weighting="eps").item()
    assert after < 0.6 * before


def test_minibatches_from_a_dataloader():
    x = moons()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=100, shuffle=False)
    net = pdl.train_diffusion(small_net(), loader, SCHED, steps=12, progress=False)  # 12 steps: wraps around
    assert len(net.history["loss"]) == 12
    # a loader of bare tensors, and labels from the loader go to the network as y=
    plain = torch.utils.data.DataLoader(x, batch_size=100)
    assert len(pdl.train_diffusion(small_net(), plain, SCHED, steps=3, progress=False).history["loss"]) == 3
    torch.manual_seed(0)
    cond = pdl.models.MLPDenoiser(dim=2, width=16, depth=1, num_classes=2)
    _, y = pdl.data.toy("moons", n=512, seed=0, return_labels=True)
    labelled = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=64)
    assert len(pdl.train_diffusion(cond, labelled, SCHED, steps=3, progress=False).history["loss"]) == 3


def test_learning_rate_warms_up_then_decays():
    lrs = [lr_at(s, 1000, 1e-3, 100, "cosine") for s in range(1000)]
    assert lrs[0] == pytest.approx(1e-5)
    assert lrs[99] == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * 99 / 1000)))
    assert max(lrs) <= 1e-3 and lrs[-1] < 1e-7
    assert all(b <= a for a, b in zip(lrs[100:], lrs[101:]))  # monotone after warm-up
    assert lr_at(500, 1000, 1e-3, 0, "linear") == pytest.approx(5e-4)
    assert lr_at(500, 1000, 1e-3, 0, None) == 1e-3
    with pytest.raises(ValueError, match="decay must be"):
        lr_at(0, 10, 1e-3, 0, "step")


def test_gradient_clipping_bounds_the_update():
    """With grad_clip=c the gradient the optimizer sees has norm at most c."""
    net = small_net()
    x = moons(64) * 1e3  # large data: large gradients

    def loss_fn(net, gen):
        return pdl.diffusion_loss(net, x, SCHED, generator=gen)

    norms = []
    for _ in pdl.train_loop(net, loss_fn, steps=3, grad_clip=0.5, ema_decay=None, progress=False):
        norms.append(math.sqrt(sum(p.grad.pow(2).sum().item() for p in net.parameters())))
    assert max(norms) <= 0.5 + 1e-4


# ---------------------------------------------------------------------------------------
# The NaN guard: a non-finite loss stops training with an error that names the step
# ---------------------------------------------------------------------------------------

def test_nan_guard_on_huge_data():
    huge = moons(256) * 1e38  # finite float32, but squares overflow to inf
    with pytest.raises(FloatingPointError, match=r"the loss became (inf|nan) at step 0: lower the learning rate"):
        pdl.train_diffusion(small_net(), huge, SCHED, steps=10, weighting="x", progress=False)


def test_nan_guard_saves_the_state_before_the_step_and_the_advice_can_be_followed(tmp_path):
    path = str(tmp_path / "run.pt")
    calls = []

    def loss_fn(net, gen):
        calls.append(1)
        loss = pdl.diffusion_loss(net, moons(64), SCHED, generator=gen)
        return loss * float("nan") if len(calls) == 8 else loss

    with pytest.raises(FloatingPointError, match=rf"at step 7: .*the state before step 7 is saved in "
                                                 rf"{re.escape(path)}.*may_differ=\('lr',\)") as caught:
        for _ in pdl.train_loop(small_net(), loss_fn, steps=20, checkpoint=path, checkpoint_every=5,
                                progress=False):
            pass
    state = load_checkpoint(path)
    assert state["step"] == 7 and len(state["history"]) == 7  # nothing trained is lost
    assert caught.value.ema is not None and caught.value.step == 7
    # the advice: resume with a lower learning rate, which may differ when asked for explicitly
    with pytest.raises(ValueError, match=r"other settings \(lr\)"):
        pdl.fit(small_net(), loss_fn, 20, lr=3e-4, checkpoint=path, resume=True, progress=False)
    net = pdl.fit(small_net(), loss_fn, 20, lr=3e-4, checkpoint=path, resume=True, may_differ=("lr",),
                  progress=False)
    assert len(net.history["loss"]) == 20 and all(math.isfinite(v) for v in net.history["loss"])


def test_nan_guard_keeps_the_ema_without_a_checkpoint():
    calls = []

    def loss_fn(net, gen):
        calls.append(1)
        loss = pdl.diffusion_loss(net, moons(64), SCHED, generator=gen)
        return loss * float("nan") if len(calls) == 30 else loss

    with pytest.raises(FloatingPointError) as caught:
        pdl.fit(small_net(), loss_fn, 50, progress=False)
    ema = caught.value.ema
    assert not ema.training and all(torch.isfinite(p).all() for p in ema.parameters())
    assert len(caught.value.history) == 29
    assert pdl.ddim_sample(ema, SCHED, n=8, steps=2).isfinite().all()


# ---------------------------------------------------------------------------------------
# Resume: a killed run, continued from its checkpoint, ends with the same weights
# ---------------------------------------------------------------------------------------

def loop_loss(x):
    def loss_fn(net, gen):
        batch = x[torch.randint(0, x.shape[0], (64,), generator=gen)]
        return pdl.diffusion_loss(net, batch, SCHED, generator=gen)
    return loss_fn


def test_resume_train_loop_equals_uninterrupted(tmp_path):
    x, steps, k = moons(), 25, 10
    full = small_net()
    for state in pdl.train_loop(full, loop_loss(x), steps, progress=False):
        pass
    full_ema, full_history = state["ema"], list(state["history"])

    path = str(tmp_path / "run.pt")
    first = small_net()
    for state in pdl.train_loop(first, loop_loss(x), steps, checkpoint=path, checkpoint_every=k, progress=False):
        if state["step"] == k:
            break  # the run is "killed" after step k
    assert load_checkpoint(path)["step"] == k

    again = small_net(seed=123)  # a fresh process would build the network anew, weights irrelevant
    for state in pdl.train_loop(again, loop_loss(x), steps, checkpoint=path, checkpoint_every=k, resume=True,
                                progress=False):
        pass
    assert_same_weights(again, full)
    assert_same_weights(state["ema"], full_ema)
    assert state["history"] == full_history
    assert load_checkpoint(path)["step"] == steps


class FlakyDenoiser(Flaky, pdl.models.MLPDenoiser):
    """A MLPDenoiser killed on call number kill_at (factories.Flaky)."""


def flaky(kill_at=None, seed=0):
    torch.manual_seed(seed)
    net = FlakyDenoiser(dim=2, width=16, depth=1)
    net.kill_at = kill_at
    return net


@pytest.mark.slow
def test_resume_train_diffusion_after_a_kill_equals_uninterrupted(tmp_path):
    x, path = moons(), str(tmp_path / "teacher.pt")
    kwargs = dict(steps=30, batch_size=64, seed=3, progress=False)
    full = pdl.train_diffusion(flaky(), x, SCHED, **kwargs)
    with pytest.raises(Killed):  # one forward per step: dies during step 17, after the checkpoint at 10
        pdl.train_diffusion(flaky(kill_at=17), x, SCHED, checkpoint=path, checkpoint_every=10, **kwargs)
    assert load_checkpoint(path)["step"] == 10
    resumed = pdl.train_diffusion(flaky(seed=9), x, SCHED, checkpoint=path, checkpoint_every=10, resume=True,
                                  **kwargs)
    assert_same_weights(resumed, full)
    assert resumed.history == full.history
    # resuming a finished run hands back its final state without training
    again = pdl.train_diffusion(flaky(seed=5), x, SCHED, checkpoint=path, resume=True, checkpoint_every=10, **kwargs)
    assert_same_weights(again, full)


def test_resume_loads_the_checkpoint_on_the_cpu(tmp_path, monkeypatch):
    """A checkpoint mapped to a GPU network's device would hand the CPU generator a CUDA
    state tensor, and Generator.set_state raises on it; so resume always loads on the CPU
    and lets load_state_dict copy weights and optimizer moments to the network's device."""
    x, path = moons(), str(tmp_path / "run.pt")
    for state in pdl.train_loop(small_net(), loop_loss(x), 20, checkpoint=path, checkpoint_every=10, progress=False):
        if state["step"] == 10:
            break  # killed after the checkpoint at step 10
    real_load, places = torch.load, []

    def spy(*args, **kwargs):
        places.append(kwargs.get("map_location"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    for state in pdl.train_loop(small_net(), loop_loss(x), 20, checkpoint=path, checkpoint_every=10, resume=True,
                                progress=False):
        pass
    # the literal "cpu", not the network's device (which on a GPU would be cuda)
    assert places and all(isinstance(p, str) and p == "cpu" for p in places) and state["step"] == 20
    state = real_load(path, map_location="cpu", weights_only=True)
    assert all(r.dtype == torch.uint8 and r.device.type == "cpu" for r in state["rngs"])


def test_resume_refuses_another_architecture_or_other_settings(tmp_path):
    path = str(tmp_path / "run.pt")
    pdl.train_diffusion(small_net(), moons(), SCHED, steps=5, checkpoint=path, progress=False)
    with pytest.raises(ValueError, match="different architecture.*resume=False"):
        pdl.train_diffusion(small_net(width=32), moons(), SCHED, steps=5, checkpoint=path, resume=True,
                            progress=False)
    with pytest.raises(ValueError, match="other settings \\(lr\\)"):
        pdl.train_diffusion(small_net(), moons(), SCHED, steps=5, lr=1e-2, checkpoint=path, resume=True,
                            progress=False)
    # without resume the file is simply overwritten by a fresh run
    pdl.train_diffusion(small_net(), moons(), SCHED, steps=3, checkpoint=path, progress=False)
    assert load_checkpoint(path)["step"] == 3
    assert os.path.exists(path) and not os.path.exists(path + ".tmp")


def test_checkpoints_load_with_weights_only(tmp_path):
    path = tmp_path / "bad.pt"
    torch.save({"format": "something else"}, path)
    with pytest.raises(ValueError, match="not a pdlearn checkpoint"):
        load_checkpoint(str(path))
