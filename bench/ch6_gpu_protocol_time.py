"""Chapter 6 at the gpu budget: how long the image protocol takes, projected from measured steps.

    python bench/ch6_gpu_protocol_time.py [--data mnist|cifar10] [--batch B] [--iters K]

Builds the gpu budget's UNet (sizes 'digits_teacher', gpu row) for images shaped like
MNIST (1 x 28 x 28) or CIFAR-10 (3 x 32 x 32), on ``pdl.device()``, and times, on random
images of that shape (only the speed matters; no data set is read):

1. a training iteration of the teacher at the gpu batch size;
2. an iteration of a progressive-distillation round (two teacher evaluations without
   gradients, one student step) at the gpu batch size;
3. one DDIM step (a network evaluation) for a batch of the gpu budget's n_eval samples,
   in chunks of at most 1,000.

and projects the protocol of the gpu rows: the teacher's iterations, every round's
iterations, and the evaluation (DDIM with the teacher at every step count of
'images_eval', and every student at its own step count), without the FID's feature
network. On a CPU the sizes are far too large: ``--batch`` times a smaller batch and
scales the times linearly (a CPU's time grows with the batch; a GPU's much less). Each
time is the mean over one call of ``--iters`` iterations (its setup included), after a
2-iteration warm-up call, with the clock read after synchronising on CUDA.
"""
import argparse
import copy
import time

import torch

import pdlearn as pdl
from pdlearn import speed

SHAPES = {"mnist": (1, 28), "fashion_mnist": (1, 28), "cifar10": (3, 32)}


def ms_per_iteration(run, iters):
    """Mean milliseconds per iteration of one call ``run(iters)``, after a warm-up call ``run(2)``."""
    run(2)
    speed.synchronize()
    began = time.perf_counter()
    run(iters)
    speed.synchronize()
    return (time.perf_counter() - began) / iters * 1e3


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=sorted(SHAPES), default="mnist", help="the image shape (default mnist)")
    parser.add_argument("--batch", type=int, help="batch to time at (default: the gpu batch on CUDA, 16 on a CPU)")
    parser.add_argument("--iters", type=int, default=10, help="timed iterations per measurement (default 10)")
    args = parser.parse_args()
    dev, tcfg = pdl.device(), pdl.sizes("digits_teacher", "gpu")
    dcfg, ev = pdl.sizes("digits_distill", "gpu"), pdl.sizes("images_eval", "gpu")
    channels, size = SHAPES[args.data]
    batch = args.batch or (tcfg["batch_size"] if dev.type == "cuda" else 16)
    scale = tcfg["batch_size"] / batch
    sched = pdl.CosineSchedule()
    torch.manual_seed(0)
    net = pdl.models.UNet(in_channels=channels, image_size=size, channels=tcfg["channels"], ch_mult=tcfg["ch_mult"],
                          num_res_blocks=tcfg["num_res_blocks"], dropout=tcfg["dropout"]).to(dev)
    fake = torch.randn(8 * batch, channels, size, size)
    name = torch.cuda.get_device_name() if dev.type == "cuda" else "cpu"
    print(f"{args.data}-shaped UNet, {pdl.models.count_parameters(net):,} parameters, on {name}; timed at batch "
          f"{batch}" + (f", scaled x{scale:g} to the gpu batch {tcfg['batch_size']}" if scale != 1 else ""))

    train_ms = scale * ms_per_iteration(lambda k: pdl.train_diffusion(net, fake, sched, steps=k, batch_size=batch,
                                                                       progress=False), args.iters)
    teacher = copy.deepcopy(net).eval().requires_grad_(False)
    distil_ms = scale * ms_per_iteration(lambda k: pdl.distill.distill_round(
        teacher, copy.deepcopy(teacher), fake, sched, dcfg["start_steps"] // 2, k, batch_size=batch,
        progress=False), args.iters)
    n_chunk = min(ev["n_eval"], 1_000 if dev.type == "cuda" else batch)
    z = torch.randn(n_chunk, channels, size, size, device=dev)
    with torch.no_grad():
        step_ms = ms_per_iteration(lambda k: [pdl.predict(teacher, z, 0.5, sched) for _ in range(k)], args.iters)
    nfe_ms = step_ms * ev["n_eval"] / n_chunk  # one network evaluation of all n_eval samples

    rounds = dcfg["start_steps"].bit_length() - 1
    teacher_min = tcfg["steps"] * train_ms / 6e4
    rounds_min = rounds * dcfg["iters_per_round"] * distil_ms / 6e4
    eval_nfe = sum(ev["step_counts"]) + sum(dcfg["start_steps"] >> k for k in range(1, rounds + 1))
    eval_min = eval_nfe * nfe_ms / 6e4
    rows = [("teacher training", train_ms, tcfg["steps"], teacher_min),
            (f"{rounds} distillation rounds", distil_ms, rounds * dcfg["iters_per_round"], rounds_min),
            (f"DDIM for evaluation, n = {ev['n_eval']:,}", nfe_ms, eval_nfe, eval_min)]
    print(f"\n{'stage':<34} {'each':>11} {'count':>8} {'minutes':>8}  (count: iterations; network evaluations)")
    for label, ms, count, minutes in rows:
        print(f"{label:<34} {ms:8.1f} ms {count:>8,} {minutes:8.1f}")
    print(f"{'total, without the FID features':<34} {'':>11} {'':>8} {teacher_min + rounds_min + eval_min:8.1f}")
    print(f"\ndistillation / training iteration: {distil_ms / train_ms:.2f}x; rounds / teacher: "
          f"{rounds_min / teacher_min:.2f}x")


if __name__ == "__main__":
    main()
