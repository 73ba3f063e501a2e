"""Consistency distillation: the parameterization and its boundary condition, the grid schedule,
the teacher's step, the target network, exact resume after a kill, and consistency sampling.
Also the cached 2D progressive students (recipes.toy_students) the chapter compares them with."""
import math

import pytest
import torch

import pdlearn as pdl
from factories import Flaky, Killed
from pdlearn import consistency
from pdlearn.sampling import NoiseSource

SCHED = pdl.CosineSchedule()


def v_net(seed=0, width=16, depth=1):
    torch.manual_seed(seed)
    return pdl.models.MLPDenoiser(dim=2, width=width, depth=depth, prediction="v")


def test_the_boundary_condition_holds_for_any_network():
    """f(z, t_min) = z / alpha_{t_min} through c_skip = 1 / alpha and c_out = 0 there, whatever the
    network; at t_min = 0 the model is the v-network's own x_hat at every t."""
    z = torch.randn(50, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for seed in (0, 1):
        net = v_net(seed).double().eval()
        model = consistency.ConsistencyModel(net, SCHED)
        with torch.no_grad():
            torch.testing.assert_close(model(z, torch.zeros(50, dtype=torch.float64)), z, atol=1e-12, rtol=0)
            t = torch.rand(50, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
            x_hat, _ = pdl.predict(net, z, t, SCHED)
            torch.testing.assert_close(model(z, t), x_hat, atol=1e-12, rtol=1e-12)
        shifted = consistency.ConsistencyModel(net, SCHED, t_min=0.1)
        alpha, _ = SCHED.alpha_sigma(torch.tensor(0.1, dtype=torch.float64))
        with torch.no_grad():
            torch.testing.assert_close(shifted(z, 0.1), z / alpha, atol=1e-12, rtol=1e-12)
            assert (shifted(z, 0.5) - z / alpha).abs().max() > 1e-2  # the network matters elsewhere
    with pytest.raises(ValueError, match="v-prediction network"):
        consistency.ConsistencyModel(pdl.models.MLPDenoiser(dim=2, prediction="eps"), SCHED)


def test_the_grid_schedule_grows_from_s0_to_s1_plus_one():
    sizes = [consistency.grid_schedule(k, 1000, 2, 150, 0.9) for k in range(0, 1001, 50)]
    assert sizes[0] == (2, 0.9) and sizes[-1][0] == 151
    assert all(a[0] <= b[0] and a[1] <= b[1] for a, b in zip(sizes, sizes[1:]))
    assert sizes[-1][1] == pytest.approx(math.exp(2 * math.log(0.9) / 151))


def test_the_teacher_step_is_ddim_or_heun():
    net = v_net(2).double().eval()
    z = torch.randn(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([1.0, 0.8, 0.5, 0.3, 0.2, 0.1], dtype=torch.float64)
    s = torch.tensor([0.9, 0.6, 0.4, 0.0, 0.1, 0.05], dtype=torch.float64)
    ddim = consistency.teacher_step(net, z, t, s, SCHED, "ddim")
    heun = consistency.teacher_step(net, z, t, s, SCHED, "heun")
    for i in range(6):
        grid = torch.stack([t[i], s[i]])
        torch.testing.assert_close(ddim[i:i + 1], pdl.ddim_sample(net, SCHED, z=z[i:i + 1], grid=grid),
                                   atol=1e-12, rtol=1e-12)
        corrected = bool(s[i] > 0 and t[i] < 1)  # Heun's correction needs alpha_t > 0 and stops before s = 0
        steps = pdl.solvers.heun_steps(net, SCHED, z[i:i + 1], grid, corrected=[corrected])
        torch.testing.assert_close(heun[i:i + 1], pdl.sampling.run(steps, z[i:i + 1], grid), atol=1e-12, rtol=1e-12)
    assert (heun[1:3] - ddim[1:3]).abs().max() > 1e-4 and torch.equal(heun[[0, 3]], ddim[[0, 3]])


def test_the_target_is_an_ema_held_out_of_the_optimizer():
    model = consistency.ConsistencyModel(v_net(0), SCHED)
    pair = consistency._Training(model)
    assert [n for n, _ in pair.named_parameters()] == [f"model.{n}" for n, _ in model.named_parameters()]
    state = pair.state_dict()
    assert all(f"target.{n}" in state for n, _ in model.named_parameters())  # saved in every checkpoint
    before = {n: b.clone() for n, b in pair.target.named_buffers()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    pair.update_target(0.75)
    for n, p in model.named_parameters():
        torch.testing.assert_close(dict(pair.target.named_buffers())[n], 0.75 * before[n] + 0.25 * p)


class FlakyTeacher(Flaky, pdl.models.MLPDenoiser):
    """A MLPDenoiser killed on call number kill_at (factories.Flaky)."""


def flaky_teacher(kill_at=None):
    torch.manual_seed(0)
    net = FlakyTeacher(dim=2, width=16, depth=1, prediction="v")
    net.kill_at = kill_at
    return net.eval()


def student(seed):
    return consistency.ConsistencyModel(v_net(seed), SCHED)


@pytest.mark.slow
def test_consistency_distillation_resumes_exactly_after_a_kill(tmp_path):
    x, path = pdl.data.toy("moons", n=512, seed=0), str(tmp_path / "cd.pt")
    kwargs = dict(iters=30, grid_sizes=(2, 8), batch_size=64, seed=3, progress=False, checkpoint_every=10)
    full = consistency.consistency_distill(flaky_teacher(), x, SCHED, student=student(0), **kwargs)
    with pytest.raises(Killed):  # one teacher call per iteration: dies in iteration 17, after the checkpoint at 10
        consistency.consistency_distill(flaky_teacher(kill_at=17), x, SCHED, student=student(0), checkpoint=path,
                                        **kwargs)
    files = list(tmp_path.glob("cd-*.pt"))
    assert len(files) == 1 and pdl.train.load_checkpoint(str(files[0]))["step"] == 10
    resumed = consistency.consistency_distill(flaky_teacher(), x, SCHED, student=student(9), checkpoint=path,
                                              resume=True, **kwargs)
    assert resumed.history == full.history
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    # and the check can fail: a run that starts afresh from other weights ends elsewhere
    other = consistency.consistency_distill(flaky_teacher(), x, SCHED, student=student(9), **kwargs)
    assert other.history != full.history


@pytest.mark.slow
def test_consistency_distillation_improves_the_one_step_sample():
    """A short run on two moons (about 8 CPU-seconds): the one-step consistency sample moves far
    closer to the data than the one-step sample the student starts from, the teacher's one DDIM
    step (measured: squared MMD 2.8 before, 0.07 after 300 iterations)."""
    x = pdl.data.toy("moons", n=4_000, seed=0)
    teacher = pdl.train_diffusion(v_net(0, width=64, depth=2), x, SCHED, steps=800, seed=0, progress=False)
    ref = pdl.data.toy("moons", n=1_000, seed=5)
    before = pdl.metrics.mmd_rbf(pdl.ddim_sample(teacher, SCHED, n=1_000, steps=1, seed=0), ref)
    model = consistency.consistency_distill(teacher, x, SCHED, iters=300, grid_sizes=(2, 16), lr=1e-3,
                                            progress=False)
    after = pdl.metrics.mmd_rbf(consistency.consistency_sample(model, SCHED, n=1_000, steps=1, seed=0), ref)
    assert after < 0.1 * before, (before, after)


def test_consistency_sampling():
    """One step is the model's x_hat at t = 1 (a one-step DDIM sample); more steps re-noise with
    the per-sample seeded stream; an exact consistency function returns its point at any count."""
    model = student(4).double().eval()
    z1 = NoiseSource(20, (2,), seed=1, dtype=torch.float64).randn()
    one = consistency.consistency_sample(model, SCHED, z=z1, steps=1)
    torch.testing.assert_close(one, pdl.ddim_sample(model, SCHED, z=z1, steps=1), atol=1e-12, rtol=0)
    three, traj = consistency.consistency_sample(model, SCHED, z=z1, steps=3, seed=1, return_trajectory=True)
    assert traj["z"].shape == (4, 20, 2) and torch.equal(traj["z"][-1], three) and torch.equal(traj["x_hat"][-1],
                                                                                              three)
    assert not torch.allclose(three, consistency.consistency_sample(model, SCHED, z=z1, steps=3, seed=2))

    class OnePoint(torch.nn.Module):
        prediction, sample_shape = "x", (2,)

        def forward(self, z, t):
            return torch.tensor([[0.3, -0.2]], dtype=z.dtype).expand_as(z)

    for steps in (1, 2, 5):
        out = consistency.consistency_sample(OnePoint(), SCHED, n=10, steps=steps, seed=0)
        torch.testing.assert_close(out, torch.tensor([[0.3, -0.2]]).expand(10, 2))


# ---------------------------------------------------------------- the cached 2D students

@pytest.mark.slow
def test_toy_students_are_chapter_4s_rounds_and_load_when_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("PDLEARN_CHECKPOINTS", str(tmp_path))
    cfg = pdl.sizes("progressive_2d", "smoke")
    students, history = pdl.recipes.toy_students("moons", budget_name="smoke", progress=False)
    expected = [cfg["start_steps"] // 2 ** k for k in range(1, cfg["start_steps"].bit_length())]
    assert sorted(students, reverse=True) == expected and [r["steps"] for r in history] == expected
    assert not any(r["loaded"] for r in history)
    assert len(list(tmp_path.glob("moons_progressive-*-round*.pt"))) == len(expected)  # chapter 4's file names
    again, history2 = pdl.recipes.toy_students("moons", budget_name="smoke", progress=False)
    assert all(r["loaded"] for r in history2)
    for n in students:
        assert all(torch.equal(a, b) for a, b in zip(students[n].state_dict().values(),
                                                     again[n].state_dict().values()))
    assert next(students[1].parameters()).device.type == "cpu"
    # chapter 4 distils in the notebook with this call: it finds every round already there
    teacher, x = pdl.recipes.toy_teacher("moons", budget_name="smoke", progress=False)
    rounds = pdl.distill.distill_rounds(teacher, x, SCHED, cfg["start_steps"], 1, cfg["iters_per_round"], seed=0,
                                        lr=cfg["lr"], batch_size=cfg["batch_size"], progress=False, resume=True,
                                        checkpoint=pdl.checkpoint_path("moons_progressive", "smoke"))
    assert all(record["loaded"] for _, record in rounds)
