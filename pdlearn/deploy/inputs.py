"""What a student sees when it samples, and the fine-tune that makes a copy match it there.

A deployed student runs one loop: an N-step DDIM sampler from fresh noise z_1. Its network
is only ever called at the states of that loop, (z_{t_k}, t_k) for the N times t_k = k / N
of its grid. Those are the inputs that matter for a changed copy of it (quantized, pruned,
smaller): calibrate on them, fine-tune on them, measure the damage on them.
"""
import copy

import torch

from ..distill import fingerprint
from ..parameterization import predict
from ..sampling import ddim_sample
from ..train import fit
from ..validate import positive_int


@torch.no_grad()
def trajectory_inputs(net, sched, steps, n, seed=0, z=None):
    """The inputs (z, t) at which an ``steps``-step DDIM sampler calls ``net``, for ``n`` samples
    from per-sample seeded noise of ``seed`` (or from the given z_1 ``z``).

    Returns (z, t, x_hat): z [steps * n, ...] the states of the trajectory (z_1 first), t
    [steps * n] their times, and x_hat the network's prediction of x there (the target a copy
    of the network is fine-tuned to reproduce)."""
    steps = positive_int(steps, "steps")
    _, traj = ddim_sample(net, sched, n=None if z is not None else positive_int(n, "n"), z=z, steps=steps,
                          seed=seed, return_trajectory=True)
    states = traj["z"][:-1]  # the last state is the sample, where the network is not called
    t = traj["t"][:-1].to(states.dtype).repeat_interleave(states.shape[1]).to(states.device)
    return states.flatten(0, 1), t, traj["x_hat"].flatten(0, 1)


def mimic(net, reference, sched, steps, iters, lr=3e-4, batch_size=128, seed=0, ema_decay=None, checkpoint=None,
          resume=False, progress=True, desc="fine-tune"):
    """Fine-tune ``net`` (in place: a pruned, quantization-aware or otherwise changed copy of
    ``reference``) to predict what ``reference`` predicts where ``reference`` samples:

        L = E_{z_1} 1/N sum_k || x_hat_net(z_{t_k}, t_k) - x_hat_ref(z_{t_k}, t_k) ||^2,

    with (z_{t_k}, t_k) the states of reference's own ``steps``-step DDIM trajectory from noise
    z_1 drawn fresh at every batch (``trajectory_inputs``). Distillation on the outputs, as in
    Hinton et al. (2015), on the inputs the deployed sampler actually visits. Runs
    ``train.fit`` (checkpoint every 100 iterations with ``checkpoint``; ``resume``); with a
    ``checkpoint`` the file name carries a digest of the reference and the settings.
    Returns the fine-tuned network (eval mode, with ``.history``)."""
    steps, iters, batch_size = (positive_int(v, k) for v, k in ((steps, "steps"), (iters, "iters"),
                                                                (batch_size, "batch_size")))
    reference = copy.deepcopy(reference).eval().requires_grad_(False)
    device = next(reference.parameters()).device
    shape = tuple(reference.sample_shape)

    def loss_fn(model, gen):
        z1 = torch.randn((batch_size, *shape), generator=gen).to(device)
        z, t, x_ref = trajectory_inputs(reference, sched, steps, None, z=z1)
        x_hat, _ = predict(model, z, t, sched)
        return (x_hat - x_ref).pow(2).flatten(1).mean(1).mean()

    if checkpoint is not None:
        tag = fingerprint(reference, repr(sched), steps, iters, lr, batch_size, seed, ema_decay)
        checkpoint = f"{checkpoint[:-3] if checkpoint.endswith('.pt') else checkpoint}-{tag}.pt"
    config = dict(kind="mimic", steps=steps, batch_size=batch_size, schedule=repr(sched))
    return fit(net, loss_fn, iters, lr=lr, decay="cosine", ema_decay=ema_decay, seed=seed, checkpoint=checkpoint,
               checkpoint_every=100, resume=resume, progress=progress, desc=desc, config=config)
