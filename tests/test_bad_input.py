"""Bad input at the public surface: every bad value gets a ValueError or TypeError that names the
argument, before any work is done. One table of (call, argument, bad values) walks the surface;
the review's cases (grad_clip=-1 training by gradient ascent, ema_decay=1.5, p_uncond=1.5, float
labels truncated, batch_size=0 or 2.5, n=0, steps=np.int64(4) refused, checkpoint_every=0,
distill_round(steps=0)) are rows of it, not the whole of it."""
import numpy as np
import pytest
import torch

import pdlearn as pdl
from factories import make_mlp, moons

SCHED = pdl.CosineSchedule()
X = moons(64)


def train(**kw):
    args = dict(net=make_mlp(), data=X, sched=SCHED, steps=2, batch_size=8, progress=False)
    args.update(kw)
    return pdl.train_diffusion(args.pop("net"), args.pop("data"), args.pop("sched"), **args)


def rounds(**kw):
    args = dict(start_steps=4, end_steps=1, iters_per_round=2, batch_size=8, progress=False)
    args.update(kw)
    return pdl.progressive_distill(make_mlp(), X, SCHED, **args)


def distill_round(**kw):
    teacher = make_mlp()
    args = dict(steps=2, iters=2, batch_size=8, progress=False)
    args.update(kw)
    return pdl.distill.distill_round(teacher, make_mlp(), X, SCHED, **args)


def one_step(**kw):
    args = dict(n_pairs=8, teacher_steps=2, iters=2, batch_size=4, progress=False)
    args.update(kw)
    return pdl.distill.one_step_distill(make_mlp(), SCHED, **args)


def stage1(**kw):
    labels = torch.arange(64) % 3
    args = dict(labels=labels, iters=2, batch_size=8, progress=False)
    args.update(kw)
    return pdl.guidance.distill_w(make_mlp(num_classes=3), X, args.pop("labels"), SCHED, **args)


# (call, argument, bad values, exception types); each bad value must raise and name the argument
TABLE = [
    (train, "steps", [0, -1, 2.5, "10", None, True], (ValueError, TypeError)),
    (train, "batch_size", [0, 2.5, -3], (ValueError, TypeError)),
    (train, "lr", [0.0, -1e-3, float("nan"), "1e-3"], (ValueError, TypeError)),
    (train, "grad_clip", [-1.0, -0.5, float("inf")], (ValueError,)),
    (train, "ema_decay", [1.5, 1.0, -0.1], (ValueError,)),
    (train, "weight_decay", [-0.1], (ValueError,)),
    (train, "warmup", [-1, 1.5], (ValueError, TypeError)),
    (train, "decay", ["cos", "exponential"], (ValueError,)),
    (train, "checkpoint_every", [0, -5], (ValueError,)),
    (train, "weighting", ["l2", "V"], (ValueError,)),
    (train, "p_uncond", [1.5, -0.1], (ValueError,)),
    (train, "seed", [0.5, "0"], (TypeError,)),
    (train, "data", [torch.ones(8, 2, dtype=torch.long), torch.full((8, 2), float("nan")), torch.ones(0, 2),
                     torch.ones(8, 3), [1.0, 2.0]], (ValueError, TypeError)),
    (rounds, "start_steps", [0, 6, 2.5], (ValueError, TypeError)),
    (rounds, "end_steps", [0, 3], (ValueError, TypeError)),
    (rounds, "iters_per_round", [0, 1.5], (ValueError, TypeError)),
    (rounds, "weighting", ["snr2"], (ValueError,)),
    (distill_round, "steps", [0, -2, 1.5], (ValueError, TypeError)),
    (distill_round, "iters", [0], (ValueError,)),
    (distill_round, "batch_size", [0], (ValueError,)),
    (distill_round, "model_kwargs", [3, "y"], (TypeError,)),
    (one_step, "n_pairs", [0], (ValueError,)),
    (one_step, "teacher_steps", [0], (ValueError,)),
    (stage1, "labels", [torch.arange(64).float() % 3, torch.arange(64) % 5, torch.arange(10)], (ValueError, TypeError)),
    (stage1, "iters", [0], (ValueError,)),
    (lambda **kw: pdl.data.toy(**dict(dict(name="moons", n=10), **kw)), "n", [0, -1, 2.5, np.float64(3)],
     (ValueError, TypeError)),
    (lambda **kw: pdl.data.toy(**dict(dict(name="moons", n=10), **kw)), "name", ["moon", 3], (ValueError,)),
    (lambda **kw: pdl.models.MLPDenoiser(**kw), "width", [0, 2.5], (ValueError, TypeError)),
    (lambda **kw: pdl.models.MLPDenoiser(**kw), "depth", [-1], (ValueError,)),
    (lambda **kw: pdl.models.MLPDenoiser(**kw), "prediction", ["score", None], (ValueError,)),
    (lambda **kw: pdl.models.MLPDenoiser(**kw), "num_classes", [0, 2.5], (ValueError, TypeError)),
    (lambda **kw: pdl.models.UNet(**kw), "channels", [0], (ValueError,)),
    (lambda **kw: pdl.models.UNet(**kw), "ch_mult", [(), (1, 0)], (ValueError,)),
    (lambda **kw: pdl.models.UNet(**kw), "dropout", [1.5, -0.1], (ValueError,)),
    (lambda **kw: pdl.models.UNet(**kw), "image_size", [7, 0], (ValueError,)),
    (lambda **kw: pdl.LinearBetaSchedule(**kw), "T", [0, 1.5], (ValueError, TypeError)),
    (lambda **kw: pdl.LinearBetaSchedule(**kw), "beta_end", [1.5, 0.0, -0.1], (ValueError,)),
    (lambda **kw: pdl.CosineSchedule(**kw), "logsnr_min", ["low", float("nan"), 50.0], (ValueError, TypeError)),
    (lambda **kw: SCHED.grid(**dict(dict(steps=4), **kw)), "steps", [0, 2.5], (ValueError, TypeError)),
    (lambda **kw: SCHED.grid(**dict(dict(steps=4), **kw)), "spacing", ["log"], (ValueError,)),
    (lambda **kw: pdl.metrics.mmd_rbf(**dict(dict(x=X, y=X), **kw)), "x", [torch.ones(1, 2), torch.ones(8, 3)],
     (ValueError,)),
    (lambda **kw: pdl.metrics.image_fid_floor(**dict(dict(n=10, name="digits", repeats=2), **kw)), "n",
     [1, 100_000], (ValueError,)),
    (lambda **kw: pdl.metrics.verdict(**dict(dict(score=1.0, reference=1.0, spread=0.1), **kw)), "spread",
     [-1.0, float("nan")], (ValueError,)),
    (lambda **kw: pdl.ddim_sample(**dict(dict(net=make_mlp(), sched=SCHED, n=4, steps=2), **kw)), "n",
     [0, -3, 2.5, "4"], (ValueError, TypeError)),
    (lambda **kw: pdl.ddim_sample(**dict(dict(net=make_mlp(), sched=SCHED, n=4, steps=2), **kw)), "steps",
     [0, 1.5], (ValueError, TypeError)),
    (lambda **kw: pdl.ddim_sample(**dict(dict(net=make_mlp(), sched=SCHED, steps=2), **kw)), "z",
     [torch.ones(4, 2, dtype=torch.long), torch.ones(4, 2, dtype=torch.float64), torch.ones(0, 2), [[0.0, 0.0]]],
     (ValueError, TypeError)),
    (lambda **kw: pdl.ddpm_sample(**dict(dict(net=make_mlp(), sched=SCHED, n=4, steps=2), **kw)), "n", [0],
     (ValueError,)),
    (lambda **kw: pdl.solvers.sample(**dict(dict(net=make_mlp(), sched=SCHED, n=4, nfe=2), **kw)), "z",
     [torch.ones(4, 2, dtype=torch.float64)], (TypeError,)),
    (lambda **kw: pdl.solvers.sample(**dict(dict(net=make_mlp(), sched=SCHED, n=4, nfe=2), **kw)), "n", [0],
     (ValueError,)),
    (lambda **kw: pdl.sizes(**dict(dict(name="toy_teacher"), **kw)), "name", ["toy"], (KeyError,)),
    (lambda **kw: pdl.speed.time_fn(**dict(dict(fn=lambda: None), **kw)), "repeats", [0, 1.5], (ValueError, TypeError)),
    (lambda **kw: pdl.speed.time_fn(**dict(dict(fn=lambda: None), **kw)), "warmup", [-1], (ValueError,)),
]


def cases():
    for call, arg, values, errors in TABLE:
        for value in values:
            yield pytest.param(call, arg, value, errors, id=f"{getattr(call, '__name__', 'call')}-{arg}={value!r}"[:80])


@pytest.mark.parametrize("call, arg, value, errors", list(cases()))
def test_a_bad_value_is_refused_with_its_name(call, arg, value, errors):
    with pytest.raises(errors) as caught:
        call(**{arg: value})
    name = {"name": "toy set", "spacing": "spacing"}.get(arg, arg)
    assert name in str(caught.value) or arg in str(caught.value), f"the message does not name {arg}: {caught.value}"


def test_numpy_and_0d_integers_are_good_counts():
    net = train(steps=np.int64(3), batch_size=np.int32(8))
    assert len(net.history["loss"]) == 3
    assert pdl.data.toy("moons", n=torch.tensor(5)).shape == (5, 2)


def test_labels_for_a_network_without_classes_are_refused():
    with pytest.raises(ValueError, match="no class embedding"):
        train(labels=torch.zeros(64, dtype=torch.long))
    with pytest.raises(ValueError, match="p_uncond"):
        train(p_uncond=0.1)


def test_float_labels_are_refused_not_truncated():
    net = make_mlp(num_classes=3)
    with pytest.raises(TypeError, match="truncated"):
        train(net=net, labels=torch.full((64,), 1.7))
    with pytest.raises(TypeError, match="truncated"):
        net(torch.randn(4, 2), torch.rand(4), y=torch.tensor([0.0, 1.0, 2.0, 1.5]))


def test_samplers_draw_in_eval_mode_and_give_the_mode_back():
    """A network left in training mode (dropout on) samples as in eval mode, and stays in training mode."""
    torch.manual_seed(0)
    net = pdl.models.UNet(channels=8, ch_mult=(1, 2), dropout=0.5)
    net.eval()
    reference = pdl.ddim_sample(net, SCHED, n=3, steps=2, seed=1)
    net.train()
    for sample in (lambda: pdl.ddim_sample(net, SCHED, n=3, steps=2, seed=1),
                   lambda: pdl.solvers.sample(net, SCHED, n=3, nfe=2, method="ddim", seed=1)):
        assert torch.equal(sample(), reference)
        assert net.training
