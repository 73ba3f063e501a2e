"""Where the time of the CPU training path goes: torch.profiler tables at the cpu budget.

    PDLEARN_BUDGET=cpu python bench/profile_cpu.py [--steps 6] [--only teacher distill mlp eval]

Four workloads, each on one torch thread, run as the chapters run them:

    teacher   one step of the digits UNet teacher (sizes 'image_teacher'): ``train_loop`` with the
              diffusion loss: forward, backward, gradient clipping, AdamW, EMA
    distill   one iteration of progressive distillation (sizes 'image_distill'): two teacher
              evaluations (``distill_target``), then one student step, as ``distill_round`` runs it
    mlp       one step of the 2D teacher (sizes 'toy_teacher'), ``train_loop`` as above
    eval      one row of chapter 5's evaluation (sizes 'images_eval'): n_eval DDIM samples at 16
              steps, their FID, classifier confidence and memorisation check

For each: the thread-CPU milliseconds of a step without the profiler, then the profiler's self
time grouped by phase (forward, backward, clipping, optimizer, EMA, the loop's own host work)
and, inside the forward and backward passes, by kind of operator (convolutions, matrix
products, normalisation, ...). The profiler adds a fixed cost to every operator, which
inflates the many small ones: read the shares, and the milliseconds they give of the
unprofiled step, not the profiler's own milliseconds.

``cpu_speed.py`` prints these tables as its first part.
"""
import argparse
import contextlib
import time
from unittest import mock

import torch
from torch.profiler import ProfilerActivity, profile, record_function
from torch.utils.flop_counter import FlopCounterMode

import pdlearn as pdl
from pdlearn import distill as distill_mod
from pdlearn import train as train_mod

KINDS = {  # operator name (after "aten::") -> kind
    "convolution forward": ("mkldnn_convolution", "convolution", "_convolution", "slow_conv2d_forward"),
    "convolution backward": ("convolution_backward",),
    "matrix products": ("mm", "addmm", "bmm", "baddbmm", "matmul", "linear"),
    "attention": ("_scaled_dot_product_flash_attention_for_cpu", "scaled_dot_product_attention", "_softmax",
                  "_safe_softmax", "_softmax_backward_data", "_scaled_dot_product_flash_attention_for_cpu_backward"),
    "normalisation": ("native_group_norm", "native_group_norm_backward", "native_layer_norm",
                      "native_layer_norm_backward"),
    "activations": ("silu", "silu_backward", "relu", "threshold_backward", "gelu", "gelu_backward"),
    "exp, distances (metrics)": ("exp", "exp_", "cdist", "_cdist_forward", "_euclidean_dist", "linalg_eigh",
                                 "linalg_eigvalsh"),
}
PHASES = ("forward", "backward", "clipping", "optimizer", "EMA", "teacher evaluations", "sampling", "FID",
          "confidence", "memorisation", "loop and host work")


def kind(op):
    name = op.split("::")[-1]
    for k, names in KINDS.items():
        if name in names:
            return k
    return "elementwise and other"


@contextlib.contextmanager
def labelled_phases():
    """Give the phases the profiler cannot tell apart by itself a label: gradient clipping, the EMA
    update and the teacher evaluations of distillation (the library calls them by module name, so
    wrapping them here changes nothing else)."""
    clip, ema, target = torch.nn.utils.clip_grad_norm_, train_mod.ema_update, distill_mod.distill_target

    def wrap(fn, label):
        def wrapped(*args, **kwargs):
            with record_function(label):
                return fn(*args, **kwargs)
        return wrapped

    with mock.patch.object(torch.nn.utils, "clip_grad_norm_", wrap(clip, "clipping")), \
            mock.patch.object(train_mod, "ema_update", wrap(ema, "EMA")), \
            mock.patch.object(distill_mod, "distill_target", wrap(target, "teacher evaluations")):
        yield


def phase(event):
    """The phase of a profiled event, from the labels above it."""
    labels = []
    e = event
    while e is not None:
        labels.append(e.name)
        e = e.cpu_parent
    for label in labels:  # innermost first
        if label in ("clipping", "EMA", "teacher evaluations", "sampling", "FID", "confidence", "memorisation"):
            return label
        if label.startswith("Optimizer."):
            return "optimizer"
        if label.startswith("autograd::engine") or label.endswith("Backward0") or label.endswith("Backward1"):
            return "backward"
    return "forward" if labels[0].startswith("aten::") or len(labels) > 1 else "loop and host work"


def table(step, steps):
    """{(phase, kind): seconds of self CPU time} over ``steps`` calls of ``step`` under the profiler."""
    with labelled_phases(), profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            with record_function("step"):
                step()
    out = {}
    for event in prof.events():
        k = kind(event.name) if event.name.startswith("aten::") else "Python between operators"
        key = (phase(event), k)
        out[key] = out.get(key, 0.0) + event.self_cpu_time_total / 1e6
    return out


def thread_ms(step, steps, warmup=2):
    """Median thread-CPU milliseconds of one call of ``step`` (one torch thread, no profiler)."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        began = time.thread_time()
        step()
        times.append(time.thread_time() - began)
    return 1e3 * sorted(times)[len(times) // 2]


def step_flops(step):
    """Floating-point operations of one call of ``step`` (matrix products and convolutions,
    forward and backward), counted by torch's FlopCounterMode."""
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return counter.get_total_flops()


# ---------------------------------------------------------------- the workloads


def unet(cfg, x):
    return pdl.models.UNet(in_channels=x.shape[1], image_size=x.shape[-1], channels=cfg["channels"],
                           ch_mult=cfg["ch_mult"], num_res_blocks=cfg["num_res_blocks"])


def teacher_step(cfg=None, seed=0):
    """One ``train_loop`` step of the digits teacher at ``cfg`` (default: the budget's 'image_teacher')."""
    cfg = cfg or pdl.sizes("image_teacher")
    x, sched = pdl.data.image_set("digits", "train"), pdl.CosineSchedule()
    torch.manual_seed(seed)
    net = unet(cfg, x)

    def loss_fn(n, g):
        return pdl.diffusion_loss(n, x[torch.randint(0, len(x), (cfg["batch_size"],), generator=g)], sched,
                                  generator=g)

    loop = pdl.train_loop(net, loss_fn, 10**9, lr=cfg["lr"], progress=False)
    return lambda: next(loop)


def distill_step(cfg=None, tcfg=None):
    """One distillation iteration at the budget's 'image_distill' sizes, in its first round
    (a student of start_steps / 2 steps), as ``distill_round`` builds it."""
    cfg, tcfg = cfg or pdl.sizes("image_distill"), tcfg or pdl.sizes("image_teacher")
    x, sched = pdl.data.image_set("digits", "train"), pdl.CosineSchedule()
    torch.manual_seed(0)
    teacher = unet(tcfg, x).eval().requires_grad_(False)
    student = unet(tcfg, x)
    steps = cfg["start_steps"] // 2

    def loss_fn(net, gen):
        idx = torch.randint(0, len(x), (cfg["batch_size"],), generator=gen)
        return pdl.distill.distill_loss(net, teacher, x[idx], sched, steps, gen)

    loop = pdl.train_loop(student, loss_fn, 10**9, lr=cfg["lr"], decay="linear", warmup=0, ema_decay=None,
                          progress=False)
    return lambda: next(loop)


def mlp_step(cfg=None):
    """One ``train_loop`` step of the 2D teacher at the budget's 'toy_teacher' sizes."""
    cfg = cfg or pdl.sizes("toy_teacher")
    x, sched = pdl.data.toy("moons", n=cfg["n_data"], seed=0), pdl.CosineSchedule()
    torch.manual_seed(0)
    net = pdl.models.MLPDenoiser(dim=2, width=cfg["width"], depth=cfg["depth"])

    def loss_fn(n, g):
        return pdl.diffusion_loss(n, x[torch.randint(0, len(x), (cfg["batch_size"],), generator=g)], sched,
                                  generator=g)

    loop = pdl.train_loop(net, loss_fn, 10**9, progress=False)
    return lambda: next(loop)


def eval_step(net=None, steps=16):
    """One row of chapter 5's evaluation table: n_eval DDIM samples, FID, confidence, memorisation."""
    ev = pdl.sizes("images_eval")
    train, test = pdl.data.image_set("digits", "train"), pdl.data.image_set("digits", "test")
    if net is None:
        torch.manual_seed(0)
        net = unet(pdl.sizes("image_teacher"), train).eval()
    sched = pdl.CosineSchedule()
    pdl.metrics.image_fid(test[:10], "digits")  # the test split's features: computed once per process

    def row():
        with record_function("sampling"):
            s = pdl.ddim_sample(net, sched, n=ev["n_eval"], steps=steps, seed=0)
        with record_function("FID"):
            pdl.metrics.image_fid(s, "digits")
        with record_function("confidence"):
            pdl.metrics.confident_fraction(s, name="digits")
        with record_function("memorisation"):
            pdl.metrics.memorisation(s, train, test)

    return row


WORKLOADS = {"teacher": teacher_step, "distill": distill_step, "mlp": mlp_step, "eval": eval_step}


def report(name, step, steps, out=print):
    """Print one workload's profile: its unprofiled step time, then the shares by phase and kind."""
    ms = thread_ms(step, steps)
    t = table(step, steps)
    total = sum(t.values())
    out(f"\n{name}: {ms:.1f} ms per step (thread CPU, 1 thread, no profiler; median of {steps})")
    out(f"  {'phase':<22} {'kind':<28} {'share':>6} {'ms/step':>8}")
    by_phase = {}
    for (p, k), s in t.items():
        by_phase.setdefault(p, {})[k] = s
    for p in sorted(by_phase, key=lambda p: -sum(by_phase[p].values())):
        kinds = by_phase[p]
        share = sum(kinds.values()) / total
        out(f"  {p:<22} {'(all)':<28} {share:>6.1%} {share * ms:>8.2f}")
        if p in ("forward", "backward", "teacher evaluations", "sampling") and share > 0.05:
            for k in sorted(kinds, key=lambda k: -kinds[k])[:5]:
                if kinds[k] / total >= 0.005:
                    out(f"  {'':<22} {k:<28} {kinds[k] / total:>6.1%} {kinds[k] / total * ms:>8.2f}")
    return ms, t


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6, help="profiled steps per workload")
    parser.add_argument("--only", nargs="*", default=list(WORKLOADS), choices=list(WORKLOADS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"budget {pdl.budget()}, torch {torch.__version__}, {torch.get_num_threads()} thread")
    for name in args.only:
        report(name, WORKLOADS[name](), args.steps)


if __name__ == "__main__":
    main()
