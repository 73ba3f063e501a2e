"""The CPU training path's speed changes keep their promises: the fused AdamW is the one built,
it gives the foreach optimizer's update, and checkpoints written with either resume with the other.
(The speed itself is measured by bench/cpu_speed.py, not here.)"""
import copy
from unittest import mock

import torch

import pdlearn as pdl


def tiny(seed=0):
    torch.manual_seed(seed)
    return pdl.models.MLPDenoiser(dim=2, width=32, depth=1)


def built_optimizers(run):
    """The keyword arguments of every AdamW that ``run()`` builds."""
    real, seen = torch.optim.AdamW, []

    def spy(params, **kwargs):
        seen.append(kwargs)
        return real(params, **kwargs)

    with mock.patch.object(torch.optim, "AdamW", spy):
        run()
    return seen


def test_training_builds_the_fused_adamw_on_the_cpu():
    x = pdl.data.toy("moons", n=200, seed=0)
    seen = built_optimizers(lambda: pdl.train_diffusion(tiny(), x, pdl.CosineSchedule(), steps=3, batch_size=16,
                                                        progress=False))
    assert len(seen) == 1 and seen[0]["fused"] is True and seen[0]["foreach"] is False


def test_the_fused_update_is_the_foreach_update():
    a = tiny()
    b = copy.deepcopy(a)
    opts = (torch.optim.AdamW(a.parameters(), lr=1e-2, weight_decay=0.1, foreach=True),
            torch.optim.AdamW(b.parameters(), lr=1e-2, weight_decay=0.1, fused=True))
    z, t = torch.randn(64, 2), torch.rand(64)
    for _ in range(20):
        for net, opt in zip((a, b), opts):
            opt.zero_grad()
            net(z, t).pow(2).mean().backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_a_checkpoint_of_the_foreach_optimizer_resumes_with_the_fused_one(tmp_path):
    x = pdl.data.toy("moons", n=200, seed=0)
    sched, path = pdl.CosineSchedule(), str(tmp_path / "run.pt")
    real = torch.optim.AdamW

    def foreach(params, **kwargs):  # the optimizer the library built before
        return real(params, **dict(kwargs, fused=False, foreach=True))

    def loss_fn(net, g):
        return pdl.diffusion_loss(net, x[torch.randint(0, 200, (16,), generator=g)], sched, generator=g)

    loop = pdl.train_loop(tiny(), loss_fn, 10, checkpoint=path, checkpoint_every=5, progress=False)
    with mock.patch.object(torch.optim, "AdamW", foreach):
        for state in loop:
            if state["step"] == 5:
                break  # killed after the checkpoint at step 5
    loop.close()
    resumed = pdl.train_loop(tiny(), loss_fn, 10, checkpoint=path, checkpoint_every=5, resume=True, progress=False)
    states = list(resumed)
    assert [s["step"] for s in states] == [6, 7, 8, 9, 10] and len(states[-1]["history"]) == 10
    assert all(torch.isfinite(p).all() for p in states[-1]["ema"].parameters())
