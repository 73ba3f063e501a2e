"""pdlearn's DDIM and DDPM samplers against a trusted reference: diffusers' schedulers.

diffusers is a test-only dependency. The two libraries index time differently,
so the conventions are matched explicitly:

- Time. diffusers counts training timesteps tau = 0..T-1 and its
  ``alphas_cumprod[tau]`` is alpha_bar_{tau+1} of Ho et al. (whose steps run 1..T).
  pdlearn's ``LinearBetaSchedule`` puts alpha_t^2 = alpha_bar_i at t = i / T and
  alpha_0 = 1, so tau corresponds to t = (tau + 1) / T. The network the diffusers
  loop calls is therefore ``model(z, tau) = net(z, (tau + 1) / T)``.
- Grid. pdlearn's uniform N-step grid t_k = k / N is diffusers' "trailing"
  spacing: timesteps 999, 999 - T/N, ..., T/N - 1, and a last step to alpha = 1
  (DDIM: ``set_alpha_to_one=True``; DDPM: the step after tau = 0 has alpha = 1).
- Variance. pdlearn's ancestral step uses the posterior variance of
  q(z_s | z_t, x): diffusers' ``variance_type='fixed_small'``. Neither library
  clips x_hat here (``clip_sample=False``).
- Noise. pdlearn draws z_1 first and then one draw per step from one
  ``NoiseSource``; the diffusers loop is fed the same draws in the same order:
  DDIM through ``variance_noise=``, DDPM (whose ``step`` only takes a generator)
  by substituting the ``randn_tensor`` it calls. diffusers draws no noise on its
  final DDPM step (the variance is 0 there); pdlearn draws one and multiplies it
  by 0, so the sequences agree.

Both loops run in float64 (the network too, and diffusers' alphas_cumprod is
recomputed in float64 from its own definition, prod_i (1 - beta_i) with betas
linear from 1e-4 to 0.02). In float32, diffusers' 1 - alpha_bar near t = 0
(about 1e-4) carries a relative rounding error of ~1e-3; in float64 the
trajectories must agree to 1e-8, so any difference in convention shows.
"""
import pytest
import torch

import pdlearn as pdl
from factories import make_mlp
from pdlearn.sampling import NoiseSource

diffusers = pytest.importorskip("diffusers")
ddpm_module = pytest.importorskip("diffusers.schedulers.scheduling_ddpm")

T = 1000
N_SAMPLES = 70  # more than one 64-sample noise block
TOL = dict(atol=1e-8, rtol=1e-8)


def make_net(prediction, seed=0):
    """A fixed, untrained network (float64): the equivalence must hold for any network."""
    return make_mlp(seed, width=32, depth=2, prediction=prediction).double().eval()


def reference(scheduler_class, **kwargs):
    """A diffusers scheduler for Ho et al.'s linear-beta schedule, its alphas_cumprod in float64."""
    ref = scheduler_class(**SCHEDULE_KWARGS, **kwargs)
    betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
    ref.alphas_cumprod = torch.cumprod(1 - betas, 0)
    ref.final_alpha_cumprod = ref.one = torch.tensor(1.0, dtype=torch.float64)
    return ref


def noise_source(seed):
    """pdlearn's noise stream: z_1 is its first draw, the per-step noise the draws after it."""
    return NoiseSource(N_SAMPLES, (2,), seed=seed, dtype=torch.float64)


def as_diffusers_model(net):
    """model(z, tau) = net(z, t) with t = (tau + 1) / T."""
    def model(z, tau):
        t = torch.full((z.shape[0],), (int(tau) + 1) / T, dtype=z.dtype)
        return net(z, t)
    return model


DIFFUSERS_PREDICTION = {"eps": "epsilon", "v": "v_prediction"}
SCHEDULE_KWARGS = dict(num_train_timesteps=T, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                       clip_sample=False, timestep_spacing="trailing")


def test_timestep_convention_matches_alphas_cumprod():
    sched = pdl.LinearBetaSchedule()
    ref = diffusers.DDPMScheduler(**SCHEDULE_KWARGS)  # diffusers' own float32 table
    tau = torch.arange(T)
    alpha, _ = sched.alpha_sigma((tau + 1).double() / T)
    torch.testing.assert_close(alpha.pow(2).float(), ref.alphas_cumprod, rtol=1e-5, atol=1e-7)
    # the grid: pdlearn's uniform 10-step times are diffusers' trailing timesteps (plus the final t = 0)
    ref_ddim = diffusers.DDIMScheduler(**SCHEDULE_KWARGS)
    ref_ddim.set_timesteps(10)
    grid = sched.grid(10)
    assert torch.equal((grid[:-1] * T).round().long() - 1, ref_ddim.timesteps)
    assert grid[-1] == 0


def run_ddim_reference(net, steps, eta, seed, spacing="trailing", prediction="eps"):
    ref = reference(diffusers.DDIMScheduler, set_alpha_to_one=True, prediction_type=DIFFUSERS_PREDICTION[prediction])
    ref.register_to_config(timestep_spacing=spacing)
    ref.set_timesteps(steps)
    model = as_diffusers_model(net)
    noise = noise_source(seed)
    z = noise.randn()
    path = [z]
    with torch.no_grad():
        for tau in ref.timesteps:
            step_noise = noise.randn() if eta > 0 else None
            z = ref.step(model(z, tau), tau, z, eta=eta, variance_noise=step_noise).prev_sample
            path.append(z)
    return torch.stack(path)


@pytest.mark.parametrize("prediction", ["eps", "v"])
@pytest.mark.parametrize("steps,eta", [(1, 0.0), (10, 0.0), (50, 0.0), (10, 1.0), (50, 0.5)])
def test_ddim_matches_diffusers_ddim_scheduler(prediction, steps, eta):
    sched = pdl.LinearBetaSchedule(T=T)
    net = make_net(prediction)
    seed = 3
    z1 = noise_source(seed).randn()
    ours, traj = pdl.ddim_sample(net, sched, z=z1, steps=steps, eta=eta, seed=seed, return_trajectory=True)
    path = run_ddim_reference(net, steps, eta, seed, prediction=prediction)
    assert path.shape == traj["z"].shape == (steps + 1, N_SAMPLES, 2)
    torch.testing.assert_close(traj["z"], path, **TOL)
    torch.testing.assert_close(ours, path[-1], **TOL)


@pytest.mark.parametrize("prediction,steps", [("eps", 1000), ("v", 1000), ("eps", 10)])
def test_ddpm_matches_diffusers_ddpm_scheduler(prediction, steps, monkeypatch):
    sched = pdl.LinearBetaSchedule(T=T)
    net = make_net(prediction, seed=1)
    seed = 5
    z1 = noise_source(seed).randn()
    ours, traj = pdl.ddpm_sample(net, sched, z=z1, steps=steps, seed=seed, return_trajectory=True)

    ref = reference(diffusers.DDPMScheduler, variance_type="fixed_small",
                    prediction_type=DIFFUSERS_PREDICTION[prediction])
    ref.set_timesteps(steps)
    model = as_diffusers_model(net)
    noise = noise_source(seed)
    # DDPMScheduler.step draws its noise with randn_tensor(shape, generator=...): hand it ours instead
    monkeypatch.setattr(ddpm_module, "randn_tensor", lambda shape, **kwargs: noise.randn())
    z = noise.randn()
    path = [z]
    with torch.no_grad():
        for tau in ref.timesteps:
            z = ref.step(model(z, tau), tau, z).prev_sample
            path.append(z)

    path = torch.stack(path)
    assert path.shape == traj["z"].shape == (steps + 1, N_SAMPLES, 2)
    torch.testing.assert_close(traj["z"], path, **TOL)
    torch.testing.assert_close(ours, path[-1], **TOL)


def test_reference_check_can_fail():
    """The comparison is sharp: diffusers' 'leading' spacing (timesteps 900, ..., 0 instead of
    999, ..., 99) is a different sampler, and the check tells them apart."""
    sched = pdl.LinearBetaSchedule(T=T)
    net = make_net("eps")
    z1 = noise_source(0).randn()
    ours = pdl.ddim_sample(net, sched, z=z1, steps=10, seed=0)
    path = run_ddim_reference(net, 10, 0.0, 0, spacing="leading")
    assert (ours - path[-1]).abs().max() > 1e-4
