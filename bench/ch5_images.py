"""Chapter 5: the image teacher: its cost, and its DDIM samples against the data floor.

    PDLEARN_BUDGET=cpu python bench/ch5_images.py [--longer]

1. The UNet's cost on one thread, on that thread's CPU clock (``pdl.timing``; wall time
   on a GPU): median and interquartile range of a training step (forward, backward,
   AdamW, EMA) at the budget's size and batch, and of a forward pass of n_eval images.
2. The teacher (``pdl.recipes.image_teacher``, trained once per budget and cached in
   book/checkpoints, shared with the book): the wall and CPU seconds it took here (a
   load when it was cached).
3. A DDIM table: for each number of steps, the FID of n_eval samples against the
   held-out split (digits FID at smoke / cpu), its excess over the data-vs-data floor
   at the same n in floor standard deviations and its verdict against the floor
   (``pdl.metrics.verdict``: a tie within two floor sd), the fraction of samples the
   classifier reads with p > 0.9, and the fraction closer to a training image than 95%
   of held-out images are (copies; 5% expected of new digits, with its binomial z).
   A reference row: n training images, as a model that copies its training set would give.
4. The targets of the chapter: a cpu teacher under 10 minutes of wall time, the
   many-step FID's verdict against the floor, and p > 0.9 on at least 80% of the samples.

--longer  also train the same UNet 2x and 4x as long (not cached; tens of minutes at
          cpu) and print how FID and the copy fraction move as it starts to memorise,
          each FID judged against the cached teacher's by the same rule.

Wall time on a shared machine moves by 1.5x between identical runs: the step costs are
CPU time of one thread; the teacher's training time is printed on both clocks.
"""
import argparse
import os

import torch

import pdlearn as pdl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def unet(cfg, x):
    return pdl.models.UNet(channels=cfg["channels"], ch_mult=cfg["ch_mult"], num_res_blocks=cfg["num_res_blocks"],
                           in_channels=x.shape[1], image_size=x.shape[-1]).to(pdl.device())


def step_cost(cfg, x, repeats=7):
    """One training step of a fresh UNet of the budget's size on one thread: the timing dict
    of ``pdl.timing.time_fn`` (the training loop stepped by hand, after 3 warm-up steps)."""
    net, sched, dev = unet(cfg, x), pdl.CosineSchedule(), pdl.device()

    def loss(n, g):
        idx = torch.randint(0, x.shape[0], (cfg["batch_size"],), generator=g)
        return pdl.diffusion_loss(n, x[idx].to(dev), sched, generator=g)

    loop = pdl.train_loop(net, loss, 10**6, progress=False)
    with pdl.timing.num_threads(1):
        return pdl.timing.time_fn(lambda: next(loop), repeats=repeats, warmup=3), net


@torch.no_grad()
def forward_cost(net, n, repeats=5):
    """One forward pass of n images on one thread (``pdl.timing.time_fn``)."""
    net.eval()
    z = torch.randn(n, *net.sample_shape, device=pdl.device())
    t = torch.full((n,), 0.5, device=z.device)
    with pdl.timing.num_threads(1):
        return pdl.timing.time_fn(lambda: net(z, t), repeats=repeats, warmup=1)


def ms(timing):
    clock = "thread CPU" if timing["clock"] == "thread" else "wall"
    return f"{timing['median_s'] * 1e3:.0f} ms (IQR {timing['spread_s'] * 1e3:.0f} ms, {clock} time)"


def row(label, fid, floor, confident, copies, n, against=None, seconds=None):
    se = (0.05 * 0.95 / n) ** 0.5
    line = (f"{label:<24} {fid:>8.2f} {(fid - floor[0]) / floor[1]:>+7.1f} {pdl.metrics.verdict(fid, *floor):>8} "
            f"{confident:>8.1%} {copies:>7.1%} {(copies - 0.05) / se:>+5.1f}")
    if against is not None:
        line += f" {pdl.metrics.verdict(fid, against, floor[1]):>8}"
    return line + (f"  {seconds:>6.1f} s" if seconds is not None else "")


HEADER = f"{'':<24} {'FID':>8} {'excess':>7} {'vs floor':>8} {'p > 0.9':>8} {'copies':>7} {'z':>5}"


def evaluate(net, name, train, test, n, step_counts, floor):
    lines, results = [], {}
    for steps in step_counts:
        with pdl.timing.stopwatch() as sw:
            x = pdl.ddim_sample(net, pdl.CosineSchedule(), n=n, steps=steps, seed=0)
        fid = pdl.metrics.image_fid(x, name)
        conf = pdl.metrics.confident_fraction(x, name=name)
        copies = pdl.metrics.memorisation(x, train, test)["copy_fraction"]
        results[steps] = (fid, conf, copies)
        lines.append(row(f"DDIM {steps:>4} steps", fid, floor, conf, copies, n, seconds=sw.wall_s))
        print(f"  DDIM {steps} steps done", flush=True)
    return lines, results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--longer", action="store_true", help="also train 2x and 4x as long (memorisation)")
    args = parser.parse_args()
    os.environ.setdefault("PDLEARN_CHECKPOINTS", os.path.join(ROOT, "book", "checkpoints"))
    budget = pdl.budget()
    cfg, ev = pdl.sizes("image_teacher"), pdl.sizes("images_eval")
    name, n = pdl.image_data(), ev["n_eval"]
    train, test = pdl.data.image_set(name, "train"), pdl.data.image_set(name, "test")
    print(f"budget {budget}, data {name} ({train.shape[0]} train / {test.shape[0]} held out), "
          f"torch threads {torch.get_num_threads()}")

    step, net = step_cost(cfg, train)
    print(f"UNet channels={cfg['channels']} ch_mult={cfg['ch_mult']} num_res_blocks={cfg['num_res_blocks']}: "
          f"{pdl.models.count_parameters(net):,} parameters")
    print(f"  one training step at batch {cfg['batch_size']}, 1 thread: {ms(step)}; "
          f"{cfg['steps']} steps at that rate: {cfg['steps'] * step['median_s']:.0f} s")
    print(f"  one forward pass of {n} images, 1 thread: {ms(forward_cost(net, n))}")

    with pdl.timing.stopwatch() as sw:
        teacher, _ = pdl.recipes.image_teacher(progress=False)
    print(f"teacher: {cfg['steps']} steps x batch {cfg['batch_size']} ready in {sw.wall_s:.0f} s wall, "
          f"{sw.cpu_s:.0f} CPU-s on {torch.get_num_threads()} threads (about a second when cached)", flush=True)

    floor = pdl.metrics.image_fid_floor(n, name, repeats=ev["floor_repeats"])
    lines, results = evaluate(teacher, name, train, test, n, ev["step_counts"], floor)
    copier = train[torch.randperm(train.shape[0], generator=torch.Generator().manual_seed(0))[:n]]
    lines.append(row("training images (copier)", pdl.metrics.image_fid(copier, name), floor,
                     pdl.metrics.confident_fraction(copier, name=name),
                     pdl.metrics.memorisation(copier, train, test)["copy_fraction"], n))

    print(f"\nn = {n} samples per row, one teacher, sampling seed 0; FID against the {test.shape[0]} held-out "
          f"images; floor {floor[0]:.2f} +- {floor[1]:.2f} ({ev['floor_repeats']} draws of {n} training images)")
    print("excess = (FID - floor) / floor sd; vs floor: the verdict (a tie within 2 floor sd); copies = closer "
          "to a training image than 95% of held-out images are, z = (copies - 5%) / binomial SE; "
          "sampling: wall seconds")
    print(HEADER + f"  {'sampling':>8}")
    for line in lines:
        print(line)

    top = max(ev["step_counts"])
    if args.longer:
        print(f"\nlonger training (same UNet and batch; copies grow as the teacher memorises); DDIM {top} steps, "
              f"last column: the FID's verdict against the cached teacher's {results[top][0]:.2f}")
        print(HEADER + f" {'vs 1x':>8}")
        for factor in (2, 4):
            torch.manual_seed(0)
            net = pdl.train_diffusion(unet(cfg, train), train, pdl.CosineSchedule(), steps=factor * cfg["steps"],
                                      batch_size=cfg["batch_size"], lr=cfg["lr"], progress=False)
            x = pdl.ddim_sample(net, pdl.CosineSchedule(), n=n, steps=top, seed=0)
            copies = pdl.metrics.memorisation(x, train, test)["copy_fraction"]
            print(row(f"{factor}x steps", pdl.metrics.image_fid(x, name), floor,
                      pdl.metrics.confident_fraction(x, name=name), copies, n, against=results[top][0]), flush=True)

    fid, conf, _ = results[top]
    print(f"\ntargets ({budget}): teacher under 10 min: {sw.wall_s / 60:.1f} min of wall time here; "
          f"{top}-step FID vs floor: {pdl.metrics.verdict(fid, *floor)} "
          f"({(fid - floor[0]) / floor[1]:+.1f} floor sd); p > 0.9 on {conf:.0%} (target >= 80%)")


if __name__ == "__main__":
    main()
