"""Classifier-free guidance and guided distillation (pdlearn.guidance), on tiny sizes."""
import pytest
import torch

import pdlearn as pdl
from pdlearn import guidance

SCHED = pdl.CosineSchedule()


def conditional_net(seed=0, **kw):
    torch.manual_seed(seed)
    return pdl.models.MLPDenoiser(dim=2, width=32, depth=2, num_classes=3, **kw).eval()


@pytest.mark.parametrize("prediction", ["v", "eps", "x"])
def test_guided_prediction_is_affine_in_w(prediction):
    net = conditional_net(prediction=prediction)
    z, t, y = torch.randn(16, 2), torch.full((16,), 0.4), torch.randint(0, 3, (16,))
    x_c, eps_c = pdl.predict(net, z, t, SCHED, y=y)
    x_u, eps_u = pdl.predict(net, z, t, SCHED)  # y=None: the null label
    with torch.no_grad():
        for w in (-1.0, 0.0, 0.7, 2.0, 5.0):
            x_w, eps_w = guidance.guided_predict(net, z, t, SCHED, y, w)
            torch.testing.assert_close(x_w, (1 + w) * x_c - w * x_u, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(eps_w, (1 + w) * eps_c - w * eps_u, rtol=1e-4, atol=1e-5)
        x0, _ = guidance.guided_predict(net, z, t, SCHED, y, 0.0)
        xm1, _ = guidance.guided_predict(net, z, t, SCHED, y, -1.0)
        torch.testing.assert_close(x0, x_c, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(xm1, x_u, rtol=1e-5, atol=1e-6)
        # a per-example w gives each example its own combination
        w = torch.tensor([0.0, 3.0]).repeat(8)
        x_w, _ = guidance.guided_predict(net, z, t, SCHED, y, w)
        torch.testing.assert_close(x_w, (1 + w[:, None]) * x_c - w[:, None] * x_u, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(x_c, x_u)  # the test means something: the two predictions differ


def test_a_shared_time_reaches_the_doubled_batch_as_a_broadcast_view():
    """guided_output calls the network once on [z, z]: a shared t stays a stride-0 view, so the MLP
    embeds it once without reading its values (on a GPU that would wait for the device)."""
    net, strides = conditional_net(), []
    forward = net.forward

    def spy(z, t, y=None, w=None):
        strides.append(t.stride())
        return forward(z, t, y=y, w=w)

    net.forward = spy
    z, y = torch.randn(5, 2), torch.tensor([0, 1, 2, 0, 1])
    with torch.no_grad():
        shared = guidance.guided_output(net, z, torch.tensor(0.4), y, 2.0)
        each = guidance.guided_output(net, z, torch.full((5,), 0.4), y, 2.0)
    assert strides == [(0,), (1,)]
    torch.testing.assert_close(shared, each, rtol=1e-5, atol=1e-6)


def test_guided_wrapper_samples_and_needs_labels():
    net = conditional_net()
    teacher = guidance.Guided(net)
    assert teacher.prediction == net.prediction and teacher.sample_shape == (2,)
    z = pdl.ddim_sample(teacher, SCHED, n=10, steps=4, model_kwargs=dict(y=torch.zeros(10, dtype=torch.long), w=2.0))
    assert z.shape == (10, 2) and torch.isfinite(z).all()
    with pytest.raises(ValueError, match="num_classes"):
        guidance.Guided(pdl.models.MLPDenoiser(dim=2))


def test_w_embedding_shape_and_distinct():
    net = pdl.models.MLPDenoiser(dim=2, width=32, num_classes=3, w_cond=True)
    ws = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0])
    e = net.w_emb(ws)
    assert e.shape == (7, 32)
    d = torch.cdist(e, e) + torch.eye(7)
    assert d.min() > 1e-3  # distinct w, distinct embeddings
    z, t = torch.randn(7, 2), torch.rand(7)
    out = net(z, t, y=torch.zeros(7, dtype=torch.long), w=ws)
    assert out.shape == (7, 2)
    with pytest.raises(ValueError, match="w="):
        net(z, t, y=torch.zeros(7, dtype=torch.long))


def test_w_student_starts_as_the_conditional_teacher():
    net = conditional_net()
    student = guidance.w_student(net).eval()
    z, t, y = torch.randn(8, 2), torch.rand(8), torch.randint(0, 3, (8,))
    with torch.no_grad():
        for w in (0.0, 2.0):
            torch.testing.assert_close(student(z, t, y=y, w=w), net(z, t, y=y))


@pytest.fixture(scope="module")
def eight_gaussians_teacher():
    x, y = pdl.data.toy("eight_gaussians", n=2_000, seed=0, return_labels=True)
    torch.manual_seed(0)
    net = pdl.models.MLPDenoiser(dim=2, width=64, depth=2, num_classes=8)
    net = pdl.train_diffusion(net, x, SCHED, steps=300, seed=0, labels=y, p_uncond=0.2, progress=False)
    return net, x, y


def relative_error(net, teacher, w, n=512, seed=1):
    """||x_hat_student - x_hat^w_teacher||^2 / ||x_hat^w_teacher||^2 over z_t from the data at t ~ U."""
    g = torch.Generator().manual_seed(seed)
    x, y = pdl.data.toy("eight_gaussians", n=n, seed=seed, return_labels=True)
    t = torch.rand(n, generator=g).clamp(0.02, 0.98)
    z = pdl.q_sample(x, t, SCHED, torch.randn(x.shape, generator=g))
    with torch.no_grad():
        x_w, _ = guidance.guided_predict(teacher, z, t, SCHED, y, w)
        x_s, _ = pdl.predict(net, z, t, SCHED, y=y, w=w)
    return float((x_s - x_w).pow(2).sum() / x_w.pow(2).sum())


TOLERANCE = 0.02  # relative squared error of x_hat; the student before training (w ignored) is far above it


@pytest.mark.slow
def test_stage1_student_matches_guided_teacher_at_unseen_ws(eight_gaussians_teacher):
    """w ~ U[0, 4] as in Meng et al. (2023); checked at w values no batch contained exactly."""
    teacher, x, y = eight_gaussians_teacher
    student = guidance.distill_w(teacher, x, y, SCHED, iters=600, w_range=(0.0, 4.0), lr=2e-3, batch_size=256,
                                 seed=0, progress=False)
    before = guidance.w_student(teacher).eval()
    for w in (0.5, 1.0, 2.5, 3.7):
        err = relative_error(student, teacher, w)
        assert err < TOLERANCE, (w, err)
    assert relative_error(before, teacher, 3.7) > 3 * TOLERANCE


def test_stage2_and_stochastic_sampler_run(eight_gaussians_teacher):
    teacher, x, y = eight_gaussians_teacher
    student = guidance.distill_w(teacher, x, y, SCHED, iters=20, progress=False)
    student2, history = guidance.distill_w_progressive(student, x, y, SCHED, start_steps=4, end_steps=1,
                                                       iters_per_round=10, progress=False)
    assert [r["steps"] for r in history] == [2, 1]
    kw = dict(y=torch.arange(20) % 8, w=1.0)
    for steps in (1, 2, 4):
        z = guidance.stochastic_sample(student2, SCHED, n=20, steps=steps, seed=0, model_kwargs=kw)
        assert z.shape == (20, 2) and torch.isfinite(z).all()
    # one step: the stochastic sampler is one deterministic DDIM step
    torch.testing.assert_close(guidance.stochastic_sample(student2, SCHED, n=20, steps=1, model_kwargs=kw),
                               pdl.ddim_sample(student2, SCHED, n=20, steps=1, model_kwargs=kw))
    # per-sample seeding: the first samples do not depend on how many are drawn
    a = guidance.stochastic_sample(student2, SCHED, n=20, steps=4, seed=3, model_kwargs=kw)
    b = guidance.stochastic_sample(student2, SCHED, n=8, steps=4, seed=3, model_kwargs=dict(y=kw["y"][:8], w=1.0))
    torch.testing.assert_close(a[:8], b)


def test_stochastic_sampler_converges_on_the_exact_denoiser():
    """For data N(0, s^2 I), x_hat(z_t) = alpha s^2 z / (alpha^2 s^2 + sigma^2) is exact. The
    re-noising step keeps the marginal of z exactly; the 2/N deterministic steps do not, so the
    sample variance approaches s^2 as N grows (like DDIM's, from below)."""
    s2 = 0.25

    class Exact(torch.nn.Module):
        prediction, sample_shape = "x", (2,)

        def forward(self, z, t):
            alpha, sigma = SCHED.alpha_sigma(t)
            return (alpha * s2 / (alpha**2 * s2 + sigma**2))[:, None] * z

    gaps = [s2 - float(guidance.stochastic_sample(Exact(), SCHED, n=20_000, steps=n, seed=0).var())
            for n in (4, 16, 256)]
    assert gaps[0] > gaps[1] > gaps[2] >= -0.01 and gaps[2] < 0.015, gaps


def test_class_fidelity_reads_fidelity_diversity_and_offset():
    x, y = pdl.data.toy("eight_gaussians", n=4_000, seed=0, return_labels=True)
    same = guidance.class_fidelity(x, y, x, y)
    assert same["accuracy"] == 1.0 and same["offset"] < 1e-6
    assert abs(same["spread"] - same["data_spread"]) < 1e-6
    means = torch.stack([x[y == c].mean(0) for c in range(8)])
    shrunk = means[y] + 0.5 * (x - means[y]) + 0.3  # half the spread, every class moved by (0.3, 0.3)
    stats = guidance.class_fidelity(shrunk, y, x, y)
    assert abs(stats["spread"] - 0.5 * same["spread"]) < 1e-4
    assert abs(stats["offset"] - 0.3 * 2**0.5) < 1e-4
    wrong = guidance.class_fidelity(x, (y + 1) % 8, x, y)
    assert wrong["accuracy"] < 0.01
