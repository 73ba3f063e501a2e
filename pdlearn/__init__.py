"""pdlearn: the library of the book on fast diffusion sampling and progressive distillation.

    import pdlearn as pdl
    sched = pdl.CosineSchedule()
    x = pdl.data.toy("moons", n=10_000, seed=0)
    net = pdl.train_diffusion(pdl.models.MLPDenoiser(dim=2), x, sched, steps=2_000)
    z = pdl.ddim_sample(net, sched, n=1_000, steps=8, seed=0)
"""
from . import data, losses, metrics, models, parameterization, recipes, sampling, schedules
from . import consistency, distill, distributed, solvers
from . import guidance
from . import progress, seeding, speed, timing, validate
from . import viz, widgets
from .budget import budget, checkpoint_path, device, image_data, sizes
from .distill import progressive_distill
from .losses import diffusion_loss, q_sample
from .parameterization import predict
from .sampling import ddim_invert, ddim_sample, ddim_step, ddpm_sample
from .schedules import CosineSchedule, LinearBetaSchedule
from .train import fit, train_diffusion, train_loop

__version__ = "0.1.0"
