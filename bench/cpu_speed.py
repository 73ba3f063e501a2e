"""The CPU training path: how close it comes to the machine, and what each chapter costs.

    PDLEARN_BUDGET=cpu python bench/cpu_speed.py [--quick] [--compile] [--quality]

Prints, on this machine (times in thread-CPU seconds of one torch thread unless they say
otherwise, so that other processes on a shared machine do not move them):

1. the machine and its measured matrix-multiply peak (fp32 and bf16, 1 and 2 threads), the best
   of MKL's GEMM and oneDNN's convolutions of compute-bound sizes;
2. the profiles of ``profile_cpu.py`` (the digits teacher's step, a distillation iteration,
   the 2D MLP's step, a row of chapter 5's evaluation): where a step's time goes;
3. the teacher's step against the peak: its FLOPs (torch's FlopCounterMode) per second of
   thread CPU, today's sizes (32 channels) and the budget's (16 channels);
4. the candidate changes, each timed paired and interleaved (``pdl.timing.time_fns``, ratio
   ``pdl.timing.paired``) with 1 thread (thread clock) and with 2 threads (wall clock):
   channels_last, bf16 autocast (where the CPU has bf16), the fused and foreach AdamW, the EMA
   with torch._foreach ops, narrower networks and other batch sizes, the MMD kernel; with
   ``--compile`` also torch.compile (its compile time against the time it saves);
5. the peer: diffusers' UNet2DModel built with the same blocks and parameter count, in the
   same ``train_loop``, step times of the two interleaved;
6. every chapter's long cells, before and after: measured unit costs (a training step, a
   distillation iteration, a network evaluation per batch size, an MMD) times the counts the
   budget's sizes give (listed in ``long_cells``; the rest of a chapter, plots and small
   checks, is not counted). "Before" is today's code path (foreach AdamW, the float64 MMD
   kernel without the exponent floor) with today's digits teacher (32 channels, 3,000 steps);
   "after" is the library as it is with the budget's sizes;
7. with ``--quality``: today's teacher and the budget's trained to the end (checkpointed in
   ``$PDLEARN_CHECKPOINTS``, resumed when run again), and the peer trained like the budget's;
   the digits-FID of 450 samples at 128 DDIM steps for each, with the verdict against today's
   teacher (``pdl.metrics.verdict``, spread of ``image_fid_floor(450)``). Tens of minutes.

``--quick`` uses fewer repeats. Timings on a shared machine vary by 1.5x between runs even on
the thread clock (other processes share the caches); compare ratios measured in one run.
"""
import argparse
import contextlib
import copy
import functools
import os
import platform
import sys
import time
import warnings
from unittest import mock

import torch
import torch.nn.functional as F
from torch import nn

import pdlearn as pdl
from pdlearn.metrics import lowdim

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import profile_cpu  # noqa: E402

TODAY_TEACHER = dict(data="digits", steps=3_000, batch_size=128, lr=2e-3, channels=32, ch_mult=(1, 2),
                     num_res_blocks=1, dropout=0.0)  # the 'image_teacher' cpu row this bench replaced
REPEATS = 5
WALL_THREADS = 2  # the wall-clock timings' thread count; 0: skip them (--no-wall)


# ---------------------------------------------------------------- timing helpers


def compare(fns, repeats=None, warmup=1):
    """Time ``fns`` interleaved: 1 thread on the thread clock, then (unless --no-wall) WALL_THREADS
    threads on the wall clock. Returns {'thread': time_fns result[, 'wall': time_fns result]}."""
    repeats = repeats or REPEATS
    with pdl.timing.num_threads(1):
        out = {"thread": pdl.timing.time_fns(fns, repeats, warmup, clock="thread")}
    if WALL_THREADS:
        with pdl.timing.num_threads(WALL_THREADS):
            out["wall"] = pdl.timing.time_fns(fns, repeats, warmup, clock="wall")
    return out


def print_comparison(title, timings, base, per=1, unit="ms"):
    """A table of each function's median (thread, 1 thread; wall, 2 threads) and its paired ratio to ``base``."""
    if title:
        print(f"\n{title}")
    clocks = [c for c in ("thread", "wall") if c in timings]
    heads = {"thread": f"thread {unit}, 1 thr", "wall": f"wall {unit}, {WALL_THREADS} thr"}
    print(f"  {'':<36}" + "".join(f" {heads[c]:>16} {'ratio':>13}" for c in clocks))
    scale = 1e3 if unit == "ms" else 1.0
    for name in timings["thread"]:
        cells = []
        for clock in clocks:
            t = timings[clock]
            r = pdl.timing.paired(t[name], t[base])
            cells.append(f" {t[name]['median_s'] * scale / per:>16.2f} {r['ratio']:>6.2f} +-{r['spread']:<4.2f}")
        print(f"  {name:<36}" + "".join(cells))


def steps_of(make_step, k):
    """A function running ``k`` steps of one step function, built and run once now (a training
    loop builds its optimizer on its first step: under ``foreach_adamw``, if that is in force)."""
    step = make_step()
    step()
    return lambda: [step() for _ in range(k)]


@contextlib.contextmanager
def foreach_adamw():
    """Today's optimizer: AdamW with foreach=True (the library now builds the fused one)."""
    real = torch.optim.AdamW

    def build(params, **kwargs):
        kwargs.update(fused=False, foreach=True)
        return real(params, **kwargs)

    with mock.patch.object(torch.optim, "AdamW", build):
        yield


def _matmul_sq_dists(a, b):
    return (a.pow(2).sum(1)[:, None] + b.pow(2).sum(1)[None, :] - 2 * a @ b.T).clamp(min=0)


@contextlib.contextmanager
def today_mmd_kernel():
    """Today's MMD kernel: float64 points, distances by one matrix product, no floor on the exponent."""
    with mock.patch.object(lowdim, "EXP_FLOOR", float("-inf")), \
            mock.patch.object(lowdim, "_sq_dists", _matmul_sq_dists):
        yield


# ---------------------------------------------------------------- 1. the machine and its peak


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return "?", set()
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "?")
    flags = next((set(line.split(":", 1)[1].split()) for line in text.splitlines() if line.startswith("flags")), set())
    return model, flags


def bf16_supported():
    """Whether this CPU runs bf16 matrix products natively (oneDNN's check: avx512_bf16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def peak(dtype, threads, seconds=0.6):
    """The best of three compute-bound kernels, in GFLOP/s of this thread's CPU (1 thread) or of the
    wall clock (2 threads): a 2048^3 matrix product (MKL for fp32, oneDNN for bf16), a 1x1 and a 3x3
    convolution (oneDNN). Returns {kernel: GFLOP/s}."""
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(2048, 2048, generator=g).to(dtype) for _ in range(2))
    x1, w1 = torch.randn(1, 1024, 64, 64, generator=g).to(dtype), torch.randn(1024, 1024, 1, 1, generator=g).to(dtype)
    x3, w3 = torch.randn(64, 256, 16, 16, generator=g).to(dtype), torch.randn(256, 256, 3, 3, generator=g).to(dtype)
    kernels = {"matmul 2048": (lambda: a @ b, 2 * 2048**3),
               "conv 1x1": (lambda: F.conv2d(x1, w1), 2 * 64 * 64 * 1024 * 1024),
               "conv 3x3": (lambda: F.conv2d(x3, w3, padding=1), 2 * 64 * 16 * 16 * 256 * 256 * 9)}
    clock = time.thread_time if threads == 1 else time.perf_counter
    out = {}
    with pdl.timing.num_threads(threads):
        for name, (fn, flops) in kernels.items():
            fn()
            best, began = 0.0, time.perf_counter()
            while time.perf_counter() - began < seconds:
                t = clock()
                fn()
                best = max(best, flops / max(clock() - t, 1e-9))
            out[name] = best / 1e9
    return out


def machine():
    model, flags = cpu_flags()
    print(f"CPU {model}; {os.cpu_count()} logical cores; torch {torch.__version__}; python {platform.python_version()}")
    print(f"  avx512f {'avx512f' in flags}, avx512_bf16 {'avx512_bf16' in flags}, amx_bf16 {'amx_bf16' in flags}; "
          f"bf16 matrix products supported (oneDNN): {bf16_supported()}")
    peaks = {}
    print("\n1. matrix-multiply peak, GFLOP/s (best single call; 1 thread: thread clock, 2 threads: wall clock)")
    print(f"  {'dtype':<9} {'threads':>7} {'matmul 2048':>12} {'conv 1x1':>9} {'conv 3x3':>9} {'peak':>7}")
    for dtype in (torch.float32, torch.bfloat16):
        for threads in (1, 2):
            p = peak(dtype, threads)
            peaks[dtype, threads] = max(p.values())
            print(f"  {str(dtype).split('.')[-1]:<9} {threads:>7} {p['matmul 2048']:>12.0f} {p['conv 1x1']:>9.0f} "
                  f"{p['conv 3x3']:>9.0f} {peaks[dtype, threads]:>7.0f}")
    print("  (MKL's fp32 GEMM runs its AVX2 code on this AMD CPU; oneDNN's convolutions use AVX-512)")
    return peaks


# ---------------------------------------------------------------- 3. FLOP/s against the peak


def flops_against_peak(peaks, steps):
    print("\n3. the teacher's training step against the peak (1 thread, fp32)")
    print(f"  {'sizes':<32} {'GFLOP/step':>10} {'ms/step':>8} {'GFLOP/s':>8} {'of peak':>8}")
    with pdl.timing.num_threads(1):
        for label, cfg in (("today (32 channels, batch 128)", TODAY_TEACHER),
                           ("budget (%d channels, batch %d)" % (pdl.sizes("image_teacher")["channels"],
                                                                pdl.sizes("image_teacher")["batch_size"]),
                            pdl.sizes("image_teacher"))):
            step = profile_cpu.teacher_step(cfg)
            flops = profile_cpu.step_flops(step)
            ms = profile_cpu.thread_ms(step, steps)
            rate = flops / ms / 1e6
            print(f"  {label:<32} {flops / 1e9:>10.2f} {ms:>8.1f} {rate:>8.0f} {rate / peaks[torch.float32, 1]:>8.0%}")


# ---------------------------------------------------------------- 4. the candidate changes


def unet_pass(cfg, memory_format=torch.contiguous_format, autocast=False, seed=0):
    """Forward and backward of the UNet at ``cfg`` on one batch: the part of a step the network sets."""
    x = pdl.data.image_set("digits", "train")[:cfg["batch_size"]].contiguous(memory_format=memory_format)
    t = torch.rand(cfg["batch_size"], generator=torch.Generator().manual_seed(seed))
    torch.manual_seed(seed)
    net = profile_cpu.unet(cfg, x).to(memory_format=memory_format)
    for p in net.parameters():  # non-zero weights everywhere (the zero-initialised layers would skip no work)
        nn.init.normal_(p, std=0.05)

    def run():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = net(x, t)
        out.float().pow(2).mean().backward()
    return run


def candidates(args):
    cfg = pdl.sizes("image_teacher")
    k = 2  # steps per timed call: a call of several steps amortises the clock's resolution
    fns = {f"fp32 ({cfg['channels']} channels)": (lambda r=unet_pass(cfg): [r() for _ in range(k)]),
           "channels_last": (lambda r=unet_pass(cfg, torch.channels_last): [r() for _ in range(k)])}
    today = unet_pass(TODAY_TEACHER)
    fns["fp32 (32 channels)"] = lambda: [today() for _ in range(k)]
    if bf16_supported():
        fns[f"bf16 autocast ({cfg['channels']} channels)"] = (lambda r=unet_pass(cfg, autocast=True):
                                                                [r() for _ in range(k)])
        fns["bf16 autocast (32 channels)"] = (lambda r=unet_pass(TODAY_TEACHER, autocast=True):
                                               [r() for _ in range(k)])
    print_comparison(f"4a. UNet forward + backward, batch {cfg['batch_size']}: memory format and bf16 autocast "
                     f"(bf16 supported here: {bf16_supported()})", compare(fns), f"fp32 ({cfg['channels']} channels)",
                     per=k)

    net = profile_cpu.unet(cfg, pdl.data.image_set("digits", "test"))
    for p in net.parameters():
        p.grad = torch.randn_like(p)
    ema = copy.deepcopy(net)
    opts = {name: torch.optim.AdamW(net.parameters(), lr=1e-6, **kw) for name, kw in
            (("AdamW for-loop", dict(foreach=False)), ("AdamW foreach (today)", dict(foreach=True)),
             ("AdamW fused", dict(fused=True)))}
    ps, es = list(net.parameters()), list(ema.parameters())

    @torch.no_grad()
    def ema_loop():
        for e, p in zip(es, ps):
            e.lerp_(p, 1e-3)

    @torch.no_grad()
    def ema_foreach():
        torch._foreach_lerp_(es, ps, 1e-3)

    k = 10
    fns = {name: (lambda o=o: [o.step() for _ in range(k)]) for name, o in opts.items()}
    fns.update({"EMA for-loop": lambda: [ema_loop() for _ in range(k)],
                "EMA torch._foreach_lerp_": lambda: [ema_foreach() for _ in range(k)]})
    print_comparison(f"4b. optimizer and EMA updates of the {cfg['channels']}-channel UNet "
                     f"({len(ps)} tensors, {pdl.models.count_parameters(net):,} parameters)", compare(fns),
                     "AdamW foreach (today)", per=k)

    k = 3
    with foreach_adamw():
        old = {"teacher step, foreach AdamW": steps_of(profile_cpu.teacher_step, k),
               "2D MLP step, foreach AdamW": steps_of(profile_cpu.mlp_step, 10)}
    fns = {"teacher step, foreach AdamW": old["teacher step, foreach AdamW"],
           "teacher step, fused AdamW": steps_of(profile_cpu.teacher_step, k)}
    print_comparison("4c. a whole training step (train_loop), foreach against fused AdamW", compare(fns),
                     "teacher step, foreach AdamW", per=k)
    fns = {"2D MLP step, foreach AdamW": old["2D MLP step, foreach AdamW"],
           "2D MLP step, fused AdamW": steps_of(profile_cpu.mlp_step, 10)}
    print_comparison("", compare(fns), "2D MLP step, foreach AdamW", per=10)

    fns = {}
    for label, c in (("32 channels, batch 128 (today)", TODAY_TEACHER),
                     ("16 channels, batch 128", dict(TODAY_TEACHER, channels=16)),
                     ("16 channels, batch 64", dict(TODAY_TEACHER, channels=16, batch_size=64)),
                     ("16 channels, batch 256", dict(TODAY_TEACHER, channels=16, batch_size=256)),
                     ("24 channels, batch 128", dict(TODAY_TEACHER, channels=24))):
        fns[label] = steps_of(functools.partial(profile_cpu.teacher_step, c), 2)
    print_comparison("4d. the teacher's step at other widths and batch sizes (per step; a training's cost is "
                     "steps x this)", compare(fns), "32 channels, batch 128 (today)", per=2)

    x = pdl.data.toy("moons", n=5_000, seed=0)
    z = pdl.data.toy("moons", n=5_000, seed=1) + 0.02
    ref = pdl.metrics.MMDReference(x)
    with today_mmd_kernel():
        old_ref = pdl.metrics.MMDReference(x, dtype=torch.float64)

    def today_full():
        with today_mmd_kernel():
            pdl.metrics.mmd_rbf(z, x, dtype=torch.float64)

    def today_ref():
        with today_mmd_kernel():
            pdl.metrics.mmd_rbf(z, old_ref)

    fns = {"today: mmd_rbf(z, x), float64": today_full, "today: against an MMDReference": today_ref,
           "float32: mmd_rbf(z, x)": lambda: pdl.metrics.mmd_rbf(z, x),
           "float32: against an MMDReference": lambda: pdl.metrics.mmd_rbf(z, ref),
           "float64 with the exponent floor": lambda: pdl.metrics.mmd_rbf(z, x, dtype=torch.float64)}
    timing = compare(fns, repeats=3)
    print_comparison("4e. squared MMD at n = 5,000 (2D), seconds", timing, "today: mmd_rbf(z, x), float64", unit="s")
    exact = pdl.metrics.mmd_rbf(z, x, dtype=torch.float64)
    print(f"  values: float64 {exact:.8f}, float32 {pdl.metrics.mmd_rbf(z, x):.8f}, against the reference "
          f"{pdl.metrics.mmd_rbf(z, ref):.8f}")

    if args.compile:
        compiled()


def compiled():
    """torch.compile of the teacher's network: the compile time, and whether the steps it saves repay it."""
    cfg = pdl.sizes("image_teacher")
    with pdl.timing.num_threads(1):
        eager = profile_cpu.teacher_step(cfg)
        x, sched = pdl.data.image_set("digits", "train"), pdl.CosineSchedule()
        torch.manual_seed(0)
        net = profile_cpu.unet(cfg, x)
        fast = torch.compile(net)
        fast.prediction, fast.sample_shape = net.prediction, net.sample_shape

        def loss_fn(n, g):
            return pdl.diffusion_loss(fast, x[torch.randint(0, len(x), (cfg["batch_size"],), generator=g)], sched,
                                      generator=g)

        loop = pdl.train_loop(net, loss_fn, 10**9, lr=cfg["lr"], progress=False)
        with pdl.timing.stopwatch() as sw:
            next(loop)
            next(loop)
        t = pdl.timing.time_fns({"eager": lambda: [eager() for _ in range(3)], "compiled": lambda: [next(loop)
                                                                                                    for _ in range(3)]},
                                REPEATS, 1, clock="thread")
    r = pdl.timing.paired(t["compiled"], t["eager"])
    saved = (t["eager"]["median_s"] - t["compiled"]["median_s"]) / 3
    pays = saved > 0 and sw.wall_s / saved < cfg["steps"]
    print(f"\n4f. torch.compile: the first two steps take {sw.wall_s:.0f} s wall ({sw.cpu_s:.0f} CPU-s in this process; "
          f"the compiler's workers come on top); then compiled / eager = {r['ratio']:.2f} +- {r['spread']:.2f} per step; "
          f"it {'pays' if pays else 'does not pay'} for itself within the teacher's {cfg['steps']:,} steps")


# ---------------------------------------------------------------- 5. the peer


class DiffusersUNet(nn.Module):
    """diffusers' UNet2DModel with pdlearn's blocks: one ResNet block per level on the way down and two on
    the way up, a stride-2 convolution down, nearest-neighbour upsampling and a convolution up, a middle
    block of ResNet, attention, ResNet, 8 GroupNorm groups, time embedding 4 x channels: the same
    parameter count as ``pdl.models.UNet``. Called as net(z, t) with t in [0, 1]."""

    prediction = "v"

    def __init__(self, channels, image_size=8, in_channels=1):
        super().__init__()
        from diffusers import UNet2DModel

        self.sample_shape = (in_channels, image_size, image_size)
        self.unet = UNet2DModel(sample_size=image_size, in_channels=in_channels, out_channels=in_channels,
                                block_out_channels=(channels, 2 * channels), layers_per_block=1, norm_num_groups=8,
                                attention_head_dim=2 * channels // 4, down_block_types=("DownBlock2D",) * 2,
                                up_block_types=("UpBlock2D",) * 2)

    def forward(self, z, t):
        return self.unet(z, t * 1000).sample


def peer_step(channels, which, batch_size=128, lr=2e-3):
    x, sched = pdl.data.image_set("digits", "train"), pdl.CosineSchedule()
    torch.manual_seed(0)
    net = DiffusersUNet(channels) if which == "diffusers" else profile_cpu.unet(dict(TODAY_TEACHER, channels=channels), x)

    def loss_fn(n, g):
        return pdl.diffusion_loss(n, x[torch.randint(0, len(x), (batch_size,), generator=g)], sched, generator=g)

    loop = pdl.train_loop(net, loss_fn, 10**9, lr=lr, progress=False)
    return net, lambda: next(loop)


def peer():
    try:
        import diffusers  # noqa: F401
    except ImportError:
        print("\n5. the peer: diffusers is not installed")
        return
    print("\n5. the peer: diffusers' UNet2DModel, same blocks, in the same train_loop (batch 128, digits)")
    for channels in sorted({pdl.sizes("image_teacher")["channels"], 32}):
        fns, counts = {}, {}
        for which in ("pdlearn", "diffusers"):
            net, step = peer_step(channels, which)
            counts[which] = pdl.models.count_parameters(net)
            fns[which] = lambda step=step: [step() for _ in range(2)]
        timing = compare(fns)
        print_comparison(f"  {channels} channels: pdlearn {counts['pdlearn']:,} parameters, diffusers "
                         f"{counts['diffusers']:,}", timing, "diffusers", per=2)


# ---------------------------------------------------------------- 6. the chapters


class Costs:
    """Measured unit costs, in thread-CPU seconds of one torch thread, memoised."""

    def __init__(self, old_code=False, repeats=3):
        self.old, self.repeats, self.memo = old_code, repeats, {}

    def _time(self, fn, per):
        with pdl.timing.num_threads(1):
            return pdl.timing.time_fn(fn, self.repeats, warmup=1, clock="thread")["median_s"] / per

    def _get(self, key, build):
        if key not in self.memo:
            self.memo[key] = build()
        return self.memo[key]

    def _optimizer(self):
        return foreach_adamw() if self.old else contextlib.nullcontext()

    def mlp_train(self, width, depth, batch):
        """One ``train_loop`` step of an MLPDenoiser on 2D data."""
        def build():
            with self._optimizer():
                return self._time(steps_of(functools.partial(profile_cpu.mlp_step, dict(
                    n_data=20_000, width=width, depth=depth, batch_size=batch)), 10), 10)
        return self._get(("mlp_train", width, depth, batch), build)

    def mlp_fwd(self, n, width=128, depth=3):
        """One network evaluation of an MLPDenoiser at batch n inside ``ddim_sample`` (a sampling step)."""
        def build():
            torch.manual_seed(0)
            net = pdl.models.MLPDenoiser(dim=2, width=width, depth=depth).eval()
            return self._time(lambda: pdl.ddim_sample(net, pdl.CosineSchedule(), n=n, steps=8, seed=0), 8)
        return self._get(("mlp_fwd", n, width, depth), build)

    def unet_train(self, cfg, batch=None):
        def build():
            c = dict(cfg, batch_size=batch or cfg["batch_size"])
            with self._optimizer():
                return self._time(steps_of(functools.partial(profile_cpu.teacher_step, c), 2), 2)
        return self._get(("unet_train", cfg["channels"], batch or cfg["batch_size"]), build)

    def unet_fwd(self, cfg, n):
        def build():
            torch.manual_seed(0)
            net = profile_cpu.unet(cfg, pdl.data.image_set("digits", "test")).eval()
            steps = 2 if n >= 256 else 8
            return self._time(lambda: pdl.ddim_sample(net, pdl.CosineSchedule(), n=n, steps=steps, seed=0), steps)
        return self._get(("unet_fwd", cfg["channels"], n), build)

    def mnist_iter(self, batch):
        """One training iteration of the gpu budget's MNIST UNet on the CPU (chapter 6 times one)."""
        def build():
            g = pdl.sizes("image_teacher", "gpu")
            net = pdl.models.UNet(in_channels=1, image_size=28, channels=g["channels"], ch_mult=g["ch_mult"],
                                  num_res_blocks=g["num_res_blocks"], dropout=g["dropout"])
            fake = torch.randn(4 * batch, 1, 28, 28)
            with self._optimizer():
                return self._time(lambda: pdl.train_diffusion(net, fake, pdl.CosineSchedule(), steps=2,
                                                              batch_size=batch, progress=False), 2)
        return self._get(("mnist", batch), build)

    def mmd(self, n):
        """One ``mmd_rbf(z, reference)`` of n points against n points (the chapters pass tensors)."""
        def build():
            x, z = pdl.data.toy("moons", n=n, seed=0), pdl.data.toy("moons", n=n, seed=1)
            if self.old:
                def run():
                    with today_mmd_kernel():
                        pdl.metrics.mmd_rbf(z, x, dtype=torch.float64)
            else:
                def run():
                    pdl.metrics.mmd_rbf(z, x)
            return self._time(run, 1)
        return self._get(("mmd", n), build)

    def image_metrics(self):
        """FID, confidence and memorisation of one row of n_eval samples (chapter 5's row)."""
        def build():
            s = pdl.data.image_set("digits", "train")[:pdl.sizes("images_eval")["n_eval"]]
            train, test = pdl.data.image_set("digits", "train"), pdl.data.image_set("digits", "test")
            pdl.metrics.image_fid(s, "digits")

            def run():
                pdl.metrics.image_fid(s, "digits")
                pdl.metrics.confident_fraction(s, name="digits")
                pdl.metrics.memorisation(s, train, test)
            return self._time(run, 1)
        return self._get(("image_metrics",), build)


def long_cells(S, c, teacher):
    """{chapter: [(long cell, thread-CPU seconds)]} at sizes ``S(name)`` with unit costs ``c`` and
    the digits teacher's sizes ``teacher``. Each entry names its cell; network evaluations of a
    guided network at batch n count as one evaluation at batch 2n (``guidance.guided_output``)."""
    d1, toy, board = S("diffusion_2d"), S("toy_teacher"), S("checkerboard_teacher")
    d2, d3, p4, g7 = S("ddim_2d"), S("distill_2d"), S("progressive_2d"), S("guidance_2d")
    dd, ev, gd, rt = S("image_distill"), S("images_eval"), S("image_guidance"), S("real_time")
    W, D = toy["width"], toy["depth"]
    mt, mf, ut, uf = c.mlp_train, c.mlp_fwd, c.unet_train, c.unet_fwd

    def mlp_distill(b, teacher_evals=2, guided=False):  # a student step and the teacher's evaluations
        return mt(W, D, b) + teacher_evals * mf(2 * b if guided else b)

    def unet_distill(b, teacher_evals=2, guided=False):
        return ut(teacher, b) + teacher_evals * uf(teacher, 2 * b if guided else b)

    n, nb = toy["n_eval"], board["n_eval"]
    ch = {}
    ch[1] = [("two-moons teacher", toy["steps"] * mt(W, D, toy["batch_size"])),
             ("DDPM from scratch: training", d1["scratch_steps"] * mt(128, 3, 256)),
             ("DDPM from scratch: both samplers", 2 * 1000 * mf(d1["n_check"])),
             ("1,000-step DDPM samples", 1000 * (mf(n) + mf(10))),
             ("checkerboard teacher", board["steps"] * mt(board["width"], board["depth"], board["batch_size"])),
             ("checkerboard DDPM samples", 1000 * mf(nb)),
             ("MMD floors and scores", (2 * d1["floor_repeats"] + 3) * c.mmd(n))]
    steps2 = sum(d2["step_counts"])
    ch[2] = [("DDPM and DDIM (eta 0, 1) at every step count", 3 * steps2 * mf(d2["n_eval"])),
             ("paths, movie, grids, log-SNR grid", 1004 * mf(d2["n_paths"]) + 100 * mf(1000) + 3 * 42 * mf(1000)
              + 28 * mf(d2["n_eval"])),
             ("inversion", (2 * sum(d2["invert_steps"]) + 200) * mf(d2["n_invert"])),
             ("MMD: floors and every score", (2 * d2["floor_repeats"] + 3 * len(d2["step_counts"]) + 7) * c.mmd(d2["n_eval"]))]
    N, it = d3["teacher_steps"], d3["iters"]
    new_pairs = [p for p in d3["n_pairs"] if p != d3["main_pairs"]]
    ch[3] = [("teacher DDIM (1, 4, N steps)", (5 + N) * mf(d3["n_eval"])),
             ("the main one-step student: pairs and training", N * mf(d3["main_pairs"]) + it * mt(W, D, d3["batch_size"])),
             ("students on fewer pairs: pairs (each built twice) and training",
              sum(2 * N * mf(p) for p in d3["n_pairs"]) + N * mf(2_000)
              + len(new_pairs) * it * mt(W, D, d3["batch_size"])),
             ("MMD: floor and scores", (d3["floor_repeats"] + 3 + len(d3["n_pairs"]) + 1) * c.mmd(d3["n_eval"]))]
    rounds4 = p4["start_steps"].bit_length() - 1
    per_run = rounds4 * p4["iters_per_round"] * mlp_distill(p4["batch_size"])
    abl_rounds = p4["abl_start_steps"].bit_length() - 1
    ch[4] = [("learning-rate sweep on two moons (the chosen lr is the main run)", len(p4["lrs"]) * per_run),
             ("checkerboard rounds", per_run),
             ("DDIM tables and sample grids", 2 * ((3 * p4["start_steps"] - 1) * mf(p4["n_eval"])
                                                   + 2 * (2 * p4["start_steps"] - 1) * mf(p4["n_show"]))),
             ("sampling-speed cell", 2 * p4["speed_repeats"] * (p4["start_steps"] + 20) * mf(1000)),
             ("ablation: three teachers and their rounds", 3 * (p4["abl_teacher_steps"] * mt(W, D, toy["batch_size"])
                                                               + abl_rounds * p4["abl_iters_per_round"] * mlp_distill(p4["batch_size"]))),
             ("one-step students: pairs (both), checkerboard training",
              2 * d3["teacher_steps"] * mf(d3["main_pairs"]) + d3["iters"] * mt(W, D, d3["batch_size"])),
             ("MMD: floors and scores", (2 * p4["floor_repeats"] + 2 * len(p4["lrs"]) + 4 * rounds4 + 3 * abl_rounds + 4)
              * c.mmd(p4["n_eval"]))]
    steps5 = sum(ev["step_counts"])
    ch[5] = [("teacher", teacher["steps"] * ut(teacher)),
             ("speed probe", 13 * ut(teacher)),
             ("sample grids and the animation", (sum(ev["grid_steps"]) + ev["anim_steps"]) * uf(teacher, ev["n_grid"])),
             ("DDIM table: samples", (steps5 + 1) * uf(teacher, ev["n_eval"])),
             ("DDIM table: FID, confidence, memorisation", (len(ev["step_counts"]) + 2) * c.image_metrics())]
    rounds6 = dd["start_steps"].bit_length() - 1
    steps6 = 2 * dd["start_steps"] - 1
    ch[6] = [("distillation rounds", rounds6 * dd["iters_per_round"] * unet_distill(dd["batch_size"])),
             ("DDIM and student tables", (steps6 + steps6 - dd["start_steps"]) * uf(teacher, ev["n_eval"])
              + (2 * rounds6 + 1) * c.image_metrics()),
             ("grids of the widget", 2 * (steps6 - dd["start_steps"]) * uf(teacher, 64)),
             ("timing cells (12 iterations each; MNIST UNet at batch time_batch)",
              12 * (ut(teacher) + unet_distill(dd["batch_size"])) + 12 * c.mnist_iter(dd["time_batch"]))]
    rounds7 = g7["start_steps"].bit_length() - 1
    ws2d = len(g7["ws"])
    big, ne = g7["teacher_steps_eval"], g7["n_eval"]
    drounds = gd["start_steps"].bit_length() - 1
    sd = sum(gd["student_steps"])
    ch[7] = [("2D: guided teacher", g7["teacher_steps"] * mt(g7["width"], g7["depth"], g7["batch_size"])),
             ("2D: stage 1", g7["stage1_iters"] * mlp_distill(g7["batch_size"], 1, guided=True)),
             ("2D: stage 2", rounds7 * g7["iters_per_round"] * mlp_distill(g7["batch_size"], 2, guided=True)),
             ("2D: samples of every table", (ws2d + 1) * big * (mf(2 * g7["n_show"]) + mf(2 * ne))
              + ws2d * (4 * big * mf(2 * ne) + 4 * mf(2 * ne) + 2 * sum(g7["student_steps"]) * mf(ne))),
             ("2D: MMD of every row", ws2d * 2 * (3 + 2 * len(g7["student_steps"]) - 1) * c.mmd(ne)),
             ("digits: class-conditional teacher", teacher["steps"] * ut(teacher)),
             ("digits: stage 1", gd["stage1_iters"] * unet_distill(gd["batch_size"], 1, guided=True)),
             ("digits: stage 2", drounds * gd["iters_per_round"] * unet_distill(gd["batch_size"], 2, guided=True)),
             ("digits: FID table", len(gd["ws"]) * (gd["teacher_steps_eval"] * uf(teacher, 2 * gd["n_eval"])
                                                    + sd * uf(teacher, gd["n_eval"]))
              + len(gd["ws"]) * (1 + len(gd["student_steps"])) * c.image_metrics())]
    reps, st8 = rt["repeats"] + rt["warmup"], sum(rt["step_counts"])
    ch[8] = [("NFE tables, 2D", reps * st8 * sum(mf(b) for b in rt["batch_sizes"])),
             ("NFE tables, digits", reps * st8 * sum(uf(teacher, b) for b in rt["batch_sizes"])),
             ("teacher grid", rt["step_counts"][0] * uf(teacher, rt["n_grid"]))]
    return ch


def chapters(args):
    print("\n6. the long cells of every chapter, thread-CPU seconds (1 thread): unit costs measured here times "
          "the counts of the sizes")
    before = Costs(old_code=True, repeats=2 if args.quick else 3)
    after = Costs(repeats=2 if args.quick else 3)
    budget = pdl.budget()

    def old_sizes(name):
        return dict(TODAY_TEACHER) if name == "image_teacher" else pdl.sizes(name, budget)

    old = long_cells(old_sizes, before, TODAY_TEACHER)
    new = long_cells(lambda name: pdl.sizes(name, budget), after, pdl.sizes("image_teacher"))
    total_old = total_new = 0.0
    print(f"  {'chapter':<8} {'long cell':<62} {'before':>8} {'after':>8}")
    for k in old:
        for (cell, t_old), (_, t_new) in zip(old[k], new[k]):
            print(f"  {k:<8} {cell:<62} {t_old:>8.0f} {t_new:>8.0f}")
        a, b = sum(t for _, t in old[k]), sum(t for _, t in new[k])
        total_old, total_new = total_old + a, total_new + b
        print(f"  {k:<8} {'chapter ' + str(k) + ', all long cells':<62} {a:>8.0f} {b:>8.0f}   "
              f"({a / 60:.1f} -> {b / 60:.1f} min)")
    print(f"  {'book':<8} {'all chapters, sequentially':<62} {total_old:>8.0f} {total_new:>8.0f}   "
          f"({total_old / 60:.1f} -> {total_new / 60:.1f} min)")
    print("  unit costs, thread ms, before -> after (same key: today's code path -> the library's):")
    for key in sorted(set(before.memo) | set(after.memo), key=str):
        b, a = before.memo.get(key), after.memo.get(key)
        print(f"    {' '.join(map(str, key)):<28} {'' if b is None else f'{1e3 * b:.2f}':>9} -> "
              f"{'' if a is None else f'{1e3 * a:.2f}':>9}")


# ---------------------------------------------------------------- 7. quality


def quality():
    """Today's teacher and the budget's, trained to the end; digits-FID at 128 DDIM steps, n = 450."""
    sched, n, steps = pdl.CosineSchedule(), 450, 128
    x, test = pdl.data.image_set("digits", "train"), pdl.data.image_set("digits", "test")
    floor = pdl.metrics.image_fid_floor(n, "digits", repeats=5)
    rows = {}

    def score(label, net, seconds):
        s = pdl.ddim_sample(net, sched, n=n, steps=steps, seed=0)
        rows[label] = (pdl.metrics.image_fid(s, "digits"), pdl.metrics.memorisation(s, x, test)["copy_fraction"],
                       pdl.metrics.image_fid(pdl.ddim_sample(net, sched, n=n, steps=4, seed=0), "digits"), seconds)

    with pdl.timing.num_threads(1):
        cfg = TODAY_TEACHER
        torch.manual_seed(0)
        net = profile_cpu.unet(cfg, x)
        with pdl.timing.stopwatch() as sw:
            net = pdl.train_diffusion(net, x, sched, steps=cfg["steps"], seed=0, batch_size=cfg["batch_size"],
                                      lr=cfg["lr"], checkpoint=pdl.checkpoint_path("cpu_speed_teacher_today"),
                                      checkpoint_every=500, resume=True, progress=False)
        score("today: 32 channels, 3,000 steps", net, sw.thread_s)
        cfg = pdl.sizes("image_teacher")
        with pdl.timing.stopwatch() as sw:  # the chapters' own teacher: loaded when a chapter trained it
            net, _ = pdl.recipes.image_teacher(progress=False)
        score(f"budget: {cfg['channels']} channels, {cfg['steps']:,} steps (recipes.image_teacher)", net, sw.thread_s)
        torch.manual_seed(0)
        net = DiffusersUNet(cfg["channels"])
        with pdl.timing.stopwatch() as sw:
            net = pdl.train_diffusion(net, x, sched, steps=cfg["steps"], seed=0, batch_size=cfg["batch_size"],
                                      lr=cfg["lr"], progress=False, checkpoint_every=500, resume=True,
                                      checkpoint=pdl.checkpoint_path(f"cpu_speed_diffusers_c{cfg['channels']}"))
        score(f"diffusers UNet2DModel, {cfg['channels']} channels, same steps", net, sw.thread_s)
    ref = rows["today: 32 channels, 3,000 steps"][0]
    print(f"\n7. digits-FID of {n} samples at {steps} DDIM steps against the held-out digits; floor {floor[0]:.2f} "
          f"+- {floor[1]:.2f} (5 draws of {n} training images); one training seed each")
    print(f"  {'teacher':<46} {'FID':>7} {'verdict':>8} {'copies':>7} {'4-step FID':>10} {'train s':>8}")
    for label, (fid, copies, fid4, seconds) in rows.items():
        v = pdl.metrics.verdict(fid, ref, floor[1])
        print(f"  {label:<46} {fid:>7.2f} {v:>8} {copies:>7.1%} {fid4:>10.2f} {seconds:>8.0f}")
    print("  (train s: thread-CPU seconds of this run's training, 0 when loaded from its checkpoint)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (minutes of compiling)")
    parser.add_argument("--quality", action="store_true", help="train the teachers and compare their FIDs")
    parser.add_argument("--no-wall", action="store_true", help="skip the wall-clock timings with 2 threads "
                        "(on a loaded 2-core machine they measure the other processes)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["profile", "candidates", "peer", "chapters"])
    args = parser.parse_args()
    global REPEATS, WALL_THREADS
    REPEATS = 3 if args.quick else 5
    WALL_THREADS = 0 if args.no_wall else 2
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    print(f"budget {pdl.budget()}; digits teacher {pdl.sizes('image_teacher')}")
    peaks = machine()
    if "profile" not in args.skip:
        print("\n2. profiles (bench/profile_cpu.py), 1 thread")
        for name, make in profile_cpu.WORKLOADS.items():
            profile_cpu.report(name, make(), 4 if args.quick else 6)
        flops_against_peak(peaks, 4 if args.quick else 6)
    if "candidates" not in args.skip:
        candidates(args)
    if "peer" not in args.skip:
        peer()
    if "chapters" not in args.skip:
        chapters(args)
    if args.quality:
        quality()


if __name__ == "__main__":
    main()
