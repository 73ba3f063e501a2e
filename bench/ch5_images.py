"""Chapter 5: the image teacher: its cost, and its DDIM samples against the data floor.

    PDLEARN_BUDGET=cpu OMP_NUM_THREADS=1 python bench/ch5_images.py [--longer]

1. The UNet's cost: median milliseconds per training step (forward, backward,
   AdamW, EMA) at the budget's size and batch, and per forward pass of n_eval images.
2. The teacher (``pdl.recipes.image_teacher``, trained once per budget and cached in
   book/checkpoints, shared with the book): its training time.
3. A DDIM table: for each number of steps, the FID of n_eval samples against the
   held-out split (digits FID at smoke / cpu) beside the data-vs-data floor at the
   same n, the fraction of samples the digits classifier reads with p > 0.9, and the
   fraction closer to a training image than 95% of held-out images are (copies).
   A reference row: n training images, as a model that copies its training set would give.
4. The targets of the chapter: a cpu teacher under 10 minutes, 128-step FID within
   3x the floor, and p > 0.9 on at least 80% of the samples.

--longer  also train the same UNet 2x and 4x as long (not cached; tens of minutes at
          cpu) and print how FID and the copy fraction move as it starts to memorise.

Timings on a shared machine vary by 1.5x between identical runs; compare ratios.
"""
import argparse
import os
import statistics
import time

import torch

import pdlearn as pdl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ms_per_step(cfg, x, repeats=3, steps=20):
    """Median wall-clock milliseconds of one training step of a fresh UNet of the budget's size."""
    times = []
    for r in range(repeats):
        net = pdl.models.UNet(channels=cfg["channels"], ch_mult=cfg["ch_mult"], num_res_blocks=cfg["num_res_blocks"],
                              in_channels=x.shape[1], image_size=x.shape[-1])
        loop = pdl.train_loop(net, lambda n, g: pdl.diffusion_loss(
            n, x[torch.randint(0, x.shape[0], (cfg["batch_size"],), generator=g)], pdl.CosineSchedule(), generator=g),
            steps + 3, progress=False)
        for _ in range(3):  # warm-up
            next(loop)
        start = time.perf_counter()
        for _ in loop:
            pass
        times.append((time.perf_counter() - start) / steps * 1000)
    return statistics.median(times), net


@torch.no_grad()
def ms_per_forward(net, n, repeats=5):
    net.eval()
    z, t = torch.randn(n, *net.sample_shape), torch.full((n,), 0.5)
    net(z, t)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        net(z, t)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def row(label, fid, floor, confident, copies, seconds=None):
    return (f"{label:<26} {fid:>8.2f}  {floor[0]:>6.2f} +- {floor[1]:<5.2f} {fid / floor[0]:>6.2f}x  "
            f"{confident:>9.1%}  {copies:>7.1%}" + (f"  {seconds:>6.1f} s" if seconds is not None else ""))


HEADER = f"{'':<26} {'FID':>8}  {'floor mean +- sd':>16} {'/floor':>7}  {'p > 0.9':>9}  {'copies':>7}  sampling"


def evaluate(net, name, train, test, n, step_counts, floor):
    lines, results = [], {}
    for steps in step_counts:
        start = time.perf_counter()
        x = pdl.ddim_sample(net, pdl.CosineSchedule(), n=n, steps=steps, seed=0)
        seconds = time.perf_counter() - start
        fid = pdl.metrics.image_fid(x, name)
        conf = pdl.metrics.confident_fraction(x, name=name)
        copies = pdl.metrics.memorisation(x, train, test)["copy_fraction"]
        results[steps] = (fid, conf, copies)
        lines.append(row(f"DDIM {steps:>4} steps", fid, floor, conf, copies, seconds))
        print(f"  DDIM {steps} steps done", flush=True)
    return lines, results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--longer", action="store_true", help="also train 2x and 4x as long (memorisation)")
    args = parser.parse_args()
    os.environ.setdefault("PDLEARN_CHECKPOINTS", os.path.join(ROOT, "book", "checkpoints"))
    budget = pdl.budget()
    cfg, ev = pdl.sizes("digits_teacher"), pdl.sizes("images_eval")
    name, n = pdl.image_data(), ev["n_eval"]
    train, test = pdl.data.image_set(name, "train"), pdl.data.image_set(name, "test")
    print(f"budget {budget}, data {name} ({train.shape[0]} train / {test.shape[0]} held out), "
          f"torch threads {torch.get_num_threads()}")

    ms, net = ms_per_step(cfg, train)
    print(f"UNet channels={cfg['channels']} ch_mult={cfg['ch_mult']} num_res_blocks={cfg['num_res_blocks']}: "
          f"{pdl.models.count_parameters(net):,} parameters; {ms:.0f} ms per training step at batch "
          f"{cfg['batch_size']} (median of 3); {ms_per_forward(net, n):.0f} ms per forward pass of {n} images")

    start = time.perf_counter()
    teacher, _ = pdl.recipes.image_teacher(progress=False)
    trained = time.perf_counter() - start
    print(f"teacher: {cfg['steps']} steps x batch {cfg['batch_size']} ready in {trained:.0f} s (0 s when cached; "
          f"about {cfg['steps'] * ms / 60_000:.1f} min at the step time above)", flush=True)

    floor = pdl.metrics.image_fid_floor(n, name, repeats=ev["floor_repeats"])
    lines, results = evaluate(teacher, name, train, test, n, ev["step_counts"], floor)
    copier = train[torch.randperm(train.shape[0], generator=torch.Generator().manual_seed(0))[:n]]
    copier_copies = pdl.metrics.memorisation(copier, train, test)["copy_fraction"]
    lines.append(row("training images (copier)", pdl.metrics.image_fid(copier, name), floor,
                     pdl.metrics.confident_fraction(copier, name=name), copier_copies))

    print(f"\nn = {n} samples per row, seed 0; FID against the {test.shape[0]} held-out images; floor = "
          f"{ev['floor_repeats']} draws of {n} training images; copies = closer to a training image than 95% "
          "of held-out images are (5% for new data)")
    print(HEADER)
    for line in lines:
        print(line)

    if args.longer:
        print("\nlonger training (same UNet and batch; copies grow as the teacher memorises):")
        for factor in (2, 4):
            torch.manual_seed(0)
            net = pdl.models.UNet(channels=cfg["channels"], ch_mult=cfg["ch_mult"],
                                  num_res_blocks=cfg["num_res_blocks"], in_channels=train.shape[1],
                                  image_size=train.shape[-1])
            net = pdl.train_diffusion(net, train, pdl.CosineSchedule(), steps=factor * cfg["steps"],
                                      batch_size=cfg["batch_size"], lr=cfg["lr"], progress=False)
            steps = max(ev["step_counts"])
            x = pdl.ddim_sample(net, pdl.CosineSchedule(), n=n, steps=steps, seed=0)
            copies = pdl.metrics.memorisation(x, train, test)["copy_fraction"]
            print(row(f"{factor}x steps, DDIM {steps}", pdl.metrics.image_fid(x, name), floor,
                      pdl.metrics.confident_fraction(x, name=name), copies), flush=True)

    top = max(ev["step_counts"])
    fid, conf, _ = results[top]
    print(f"\ntargets ({budget}): teacher under 10 min: {trained / 60:.1f} min on this machine; "
          f"{top}-step FID / floor = {fid / floor[0]:.2f} (target <= 3); p > 0.9 on {conf:.0%} (target >= 80%)")


if __name__ == "__main__":
    main()
