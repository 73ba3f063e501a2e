"""pdlearn: the library of the book on fast diffusion sampling and progressive distillation.

    import pdlearn as pdl
    sched = pdl.CosineSchedule()
    x = pdl.data.toy("moons", n=10_000, seed=0)
    net = pdl.train_diffusion(pdl.models.MLPDenoiser(dim=2), x, sched, steps=2_000)
    z = pdl.ddim_sample(net, sched, n=1_000, steps=8, seed=0)

The rooms, in the order a reader meets them.

Core: the methods the book teaches, each function one equation of a paper.
    schedules         alpha_t, sigma_t, log-SNR; the time grids of N-step samplers
    parameterization  eps / x / v and the one function (predict) that reads a network's output
    losses            the diffusion loss and its weightings
    models/           MLPDenoiser (2D), UNet (images), the time, class and guidance embeddings
    sampling          DDPM, DDIM (eta), DDIM inversion, Meng's stochastic sampler: generators of per-step state
    solvers           DPM-Solver++(2M), UniPC, Heun on EDM's grid: training-free few-step ODE solvers
    distill           progressive distillation, the one-step student, soft targets
    consistency       consistency distillation and consistency sampling
    guidance          classifier-free guidance and guided distillation
    train             the one training loop (EMA, clipping, NaN guard, checkpoints and resume)

Evaluation: is a sample good, and is a difference real?
    metrics/          MMD and sliced Wasserstein (lowdim), FID (images), memorisation (neighbours),
                      the judging classifier (classifier), the one comparison rule (compare.verdict)

Infrastructure: what every run stands on.
    checkpoints       one file format, safe writes, a run's identity, the folder lock
    data, images      toy 2D sets, the embedded digits, MNIST / Fashion-MNIST / CIFAR-10 readers
    budget            the run budgets (smoke, cpu, gpu): every size in one table; the device
    recipes           the cached teachers and students the chapters share
    validate          one check per kind of argument, each error naming the argument
    seeding           every seeded random stream, derived in one place
    progress          progress bars live, one summary line on a rendered page
    timing            thread-CPU and wall clocks, paired interleaved repeats
    distributed       torchrun and DistributedDataParallel
    protocol, __main__  the image protocol as a command line (python -m pdlearn)
    about             the version and the repository's address

The book: what the chapters use beyond the methods.
    speed             sampler latency, the NFE speedup table, diffusers' loop as a peer
    deploy/           small students, int8 and bf16, pruning, ONNX export (chapter 10)
    viz/, widgets     plots, image grids, animations; ipywidgets explorers (imported on first use)
    prose             the check that every number in a chapter's text was printed by a cell

The course: assignments an instructor can trust.
    course/           the checks, the student-copy generator and the grader (python -m pdlearn.assignments;
                      pdlearn.checks and pdlearn.assignments are its short names)
"""
from .about import __version__
from . import data, losses, metrics, models, parameterization, recipes, sampling, schedules
from . import consistency, distill, distributed, solvers
from . import guidance
from . import progress, seeding, speed, timing, validate
from .budget import budget, checkpoint_path, device, image_data, sizes
from .budget import describe as describe_budget
from .distill import progressive_distill
from .losses import diffusion_loss, q_sample
from .parameterization import predict
from .sampling import ddim_invert, ddim_sample, ddim_step, ddpm_sample
from .schedules import CosineSchedule, LinearBetaSchedule
from .train import fit, train_diffusion, train_loop



def __getattr__(name):
    """``pdl.viz`` and ``pdl.widgets`` are imported on first use: they load matplotlib (and
    ipywidgets), which a torchrun rank, a grader or the command line never needs."""
    if name in ("viz", "widgets"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
