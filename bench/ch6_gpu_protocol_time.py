"""Chapter 6 at the gpu budget: how long the image protocol takes, projected from measured steps.

    python bench/ch6_gpu_protocol_time.py [--data mnist|cifar10] [--batch B] [--repeats K]

Builds the gpu budget's UNet (sizes 'image_teacher', gpu row) for images shaped like
MNIST (1 x 28 x 28) or CIFAR-10 (3 x 32 x 32), on ``pdl.device()``, and times, on random
images of that shape (only the speed matters; no data set is read):

1. a training iteration of the teacher at the gpu batch size;
2. an iteration of a progressive-distillation round (two teacher evaluations without
   gradients, one student step) at the gpu batch size;
3. one network evaluation for a batch of the gpu budget's n_eval samples, in chunks of
   at most 1,000;

and projects the protocol of the gpu rows: the teacher's iterations, every round's
iterations, and the evaluation (DDIM with the teacher at every step count of
'images_eval', and every student at its own step count), without the FID's feature
network. The iterations are timed interleaved (``pdl.timing.time_fns``): on a GPU on the
wall clock after synchronising, on a CPU on one thread with that thread's CPU clock;
each time is a median over ``--repeats`` repeats, and the distillation / training ratio
is the median of the paired ratios, with its interquartile range. On a CPU the sizes are
far too large: ``--batch`` times a smaller batch and scales the times linearly (a CPU's
time grows with the batch; a GPU's much less).
"""
import argparse
import copy

import torch

import pdlearn as pdl

SHAPES = {"mnist": (1, 28), "fashion_mnist": (1, 28), "cifar10": (3, 32)}


def iteration(net, loss, **kwargs):
    """One optimizer step of ``loss`` per call: the training loop, stepped by hand."""
    loop = pdl.train_loop(net, loss, 10**6, progress=False, **kwargs)
    return lambda: next(loop)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=sorted(SHAPES), default="mnist", help="the image shape (default mnist)")
    parser.add_argument("--batch", type=int, help="batch to time at (default: the gpu batch on CUDA, 16 on a CPU)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats per timing (default 5)")
    args = parser.parse_args()
    dev, tcfg = pdl.device(), pdl.sizes("image_teacher", "gpu")
    dcfg, ev = pdl.sizes("image_distill", "gpu"), pdl.sizes("images_eval", "gpu")
    channels, size = SHAPES[args.data]
    batch = args.batch or (tcfg["batch_size"] if dev.type == "cuda" else 16)
    scale = tcfg["batch_size"] / batch
    sched = pdl.CosineSchedule()
    torch.manual_seed(0)
    net = pdl.models.UNet(in_channels=channels, image_size=size, channels=tcfg["channels"], ch_mult=tcfg["ch_mult"],
                          num_res_blocks=tcfg["num_res_blocks"], dropout=tcfg["dropout"]).to(dev)
    teacher = copy.deepcopy(net).eval().requires_grad_(False)
    fake = torch.randn(8 * batch, channels, size, size)
    name = torch.cuda.get_device_name() if dev.type == "cuda" else "cpu"
    print(f"{args.data}-shaped UNet, {pdl.models.count_parameters(net):,} parameters, on {name}; timed at batch "
          f"{batch}" + (f", scaled x{scale:g} to the gpu batch {tcfg['batch_size']}" if scale != 1 else ""))

    def minibatch(g):
        return fake[torch.randint(0, fake.shape[0], (batch,), generator=g)].to(dev)

    n_chunk = min(ev["n_eval"], 1_000 if dev.type == "cuda" else batch)
    z = torch.randn(n_chunk, channels, size, size, device=dev)

    @torch.no_grad()
    def evaluation():
        pdl.predict(teacher, z, 0.5, sched)

    fns = {"train": iteration(net, lambda n, g: pdl.diffusion_loss(n, minibatch(g), sched, generator=g)),
           "distil": iteration(copy.deepcopy(net), lambda n, g: pdl.distill.distill_loss(
               n, teacher, minibatch(g), sched, dcfg["start_steps"] // 2, g), ema_decay=None),
           "evaluation": evaluation}
    with pdl.timing.num_threads(1 if dev.type == "cpu" else None):
        t = pdl.timing.time_fns(fns, repeats=args.repeats, warmup=2)
    pair = pdl.timing.paired(t["distil"], t["train"])
    train_ms, distil_ms = (scale * t[k]["median_s"] * 1e3 for k in ("train", "distil"))
    nfe_ms = t["evaluation"]["median_s"] * 1e3 * ev["n_eval"] / n_chunk  # one evaluation of all n_eval samples

    rounds = dcfg["start_steps"].bit_length() - 1
    teacher_min = tcfg["steps"] * train_ms / 6e4
    rounds_min = rounds * dcfg["iters_per_round"] * distil_ms / 6e4
    eval_nfe = sum(ev["step_counts"]) + sum(dcfg["start_steps"] >> k for k in range(1, rounds + 1))
    eval_min = eval_nfe * nfe_ms / 6e4
    rows = [("teacher training", train_ms, tcfg["steps"], teacher_min),
            (f"{rounds} distillation rounds", distil_ms, rounds * dcfg["iters_per_round"], rounds_min),
            (f"DDIM for evaluation, n = {ev['n_eval']:,}", nfe_ms, eval_nfe, eval_min)]
    clock = "thread CPU time, 1 thread" if pair["clock"] == "thread" else "wall time"
    print(f"\nmedians of {args.repeats} interleaved repeats, {clock}")
    print(f"{'stage':<34} {'each':>11} {'count':>8} {'minutes':>8}  (count: iterations; network evaluations)")
    for label, ms, count, minutes in rows:
        print(f"{label:<34} {ms:8.1f} ms {count:>8,} {minutes:8.1f}")
    print(f"{'total, without the FID features':<34} {'':>11} {'':>8} {teacher_min + rounds_min + eval_min:8.1f}")
    print(f"\ndistillation / training iteration (median of paired ratios +- IQR): {pair['ratio']:.2f} +- "
          f"{pair['spread']:.2f}; rounds / teacher: {rounds_min / teacher_min:.2f}")


if __name__ == "__main__":
    main()
