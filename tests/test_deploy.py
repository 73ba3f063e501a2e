"""pdlearn.deploy without optional packages: smaller students and their resume, pruning,
sparsity, bf16, the student's own inputs, and the measurements."""
import importlib.util

import pytest
import torch

import pdlearn as pdl
from pdlearn import deploy
from pdlearn.train import load_checkpoint

from factories import Flaky, Killed, make_unet

SCHED = pdl.CosineSchedule()


def trained_like(seed=0, channels=8):
    """A tiny UNet whose zero-initialised output layers are given weights, so it predicts something."""
    net = make_unet(seed=seed, channels=channels).eval()
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for p in net.parameters():
            if not p.abs().sum():
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
    return net


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), f"{k} differs"


def samplers():
    """Every sampler of the library, as functions of (net, z): DDIM, DDPM and the solvers if present."""
    found = {"ddim": lambda net, z: pdl.ddim_sample(net, SCHED, z=z, steps=2),
             "ddpm": lambda net, z: pdl.ddpm_sample(net, SCHED, z=z, steps=2)}
    if importlib.util.find_spec("pdlearn.solvers") is not None:
        solvers = importlib.import_module("pdlearn.solvers")
        for method in solvers.METHODS:
            found[method] = lambda net, z, m=method: solvers.sample(net, SCHED, z=z, nfe=2, method=m)
    return found


def assert_samples_with_every_sampler(net):
    z = torch.randn(3, *net.sample_shape, generator=torch.Generator().manual_seed(0))
    for name, sample in samplers().items():
        x = sample(net, z)
        assert x.shape == z.shape and torch.isfinite(x).all(), name


# ---------------------------------------------------------------------------------------
# the smaller student
# ---------------------------------------------------------------------------------------

def test_half_the_channels_is_about_a_quarter_of_the_parameters():
    net = make_unet(channels=32)
    small = deploy.small_unet(net, channels=16)
    ratio = pdl.models.count_parameters(small) / pdl.models.count_parameters(net)
    assert 0.2 < ratio <= 0.3
    assert small.sample_shape == net.sample_shape and small.prediction == net.prediction
    assert small.config["channels"] == 16 and small.config["ch_mult"] == net.config["ch_mult"]
    assert_same_weights(small, deploy.small_unet(net, channels=16))  # seeded
    with pytest.raises(TypeError, match="UNet"):
        deploy.small_unet(pdl.models.MLPDenoiser(dim=2))


class FlakyUNet(Flaky, pdl.models.UNet):
    """A UNet killed on call number kill_at (factories.Flaky)."""


def flaky_source(kill_at=None):
    net = FlakyUNet(channels=8)
    net.load_state_dict(trained_like().state_dict())
    net.kill_at = kill_at
    return net.eval()


@pytest.mark.slow
def test_pairs_student_resumes_after_a_kill_to_the_uninterrupted_weights(tmp_path):
    """The source is called once per step: killed during step 8, after the checkpoint at step 5."""
    path = str(tmp_path / "small.pt")
    kwargs = dict(iters=12, batch_size=8, seed=3, checkpoint_every=5, progress=False)
    small = lambda: deploy.small_unet(trained_like(), channels=4)  # noqa: E731
    full = deploy.distil_from_pairs(flaky_source(), small(), SCHED, **kwargs)
    with pytest.raises(Killed):
        deploy.distil_from_pairs(flaky_source(kill_at=8), small(), SCHED, checkpoint=path, **kwargs)
    [saved] = list(tmp_path.glob("small-*.pt"))
    assert load_checkpoint(str(saved))["step"] == 5
    resumed = deploy.distil_from_pairs(flaky_source(), small(), SCHED, checkpoint=path, resume=True, **kwargs)
    assert_same_weights(resumed, full)
    assert resumed.history == full.history


@pytest.mark.slow
def test_progressive_small_student_resumes_and_halves_to_one_step(tmp_path):
    """Round 1 calls the teacher twice per step: killed during step 6, after the checkpoint at 4."""
    x = pdl.data.image_set("digits", "train")[:64]
    path = str(tmp_path / "prog.pt")
    kwargs = dict(teacher_steps=4, first_iters=8, iters_per_round=3, batch_size=8, seed=1, checkpoint_every=4,
                  progress=False)
    small = lambda: deploy.small_unet(trained_like(), channels=4)  # noqa: E731
    full, history = deploy.distil_progressive(flaky_source(), small(), x, SCHED, **kwargs)
    assert sorted(full) == [1, 2] and len(history[2]) == 8 and len(history[1]) == 3
    assert all(s.config["channels"] == 4 for s in full.values())
    with pytest.raises(Killed):
        deploy.distil_progressive(flaky_source(kill_at=11), small(), x, SCHED, checkpoint=path, **kwargs)
    resumed, _ = deploy.distil_progressive(flaky_source(), small(), x, SCHED, checkpoint=path, resume=True, **kwargs)
    for steps in (1, 2):
        assert_same_weights(resumed[steps], full[steps])
    with pytest.raises(ValueError, match="twice end_steps"):
        deploy.distil_progressive(flaky_source(), small(), x, SCHED, teacher_steps=1, first_iters=1,
                                  iters_per_round=1)


@pytest.mark.slow
def test_pairs_student_learns_the_source_map():
    """On fixed noise, the small student's 1-step samples move towards the source's."""
    source = trained_like()
    z = torch.randn(64, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    target = pdl.ddim_sample(source, SCHED, z=z, steps=1)
    small = deploy.small_unet(source, channels=8, seed=2)
    before = (pdl.ddim_sample(small, SCHED, z=z, steps=1) - target).pow(2).mean()
    small = deploy.distil_from_pairs(source, small, SCHED, iters=60, lr=3e-3, batch_size=32, progress=False)
    after = (pdl.ddim_sample(small, SCHED, z=z, steps=1) - target).pow(2).mean()
    assert after < 0.5 * before


# ---------------------------------------------------------------------------------------
# the student's own inputs, and the fine-tune on them
# ---------------------------------------------------------------------------------------

def test_trajectory_inputs_are_the_states_the_sampler_visits():
    net = trained_like()
    z, t, x_hat = deploy.trajectory_inputs(net, SCHED, steps=2, n=5, seed=4)
    assert z.shape == (10, 1, 8, 8) and t.tolist() == [1.0] * 5 + [0.5] * 5
    z1 = pdl.sampling.NoiseSource(5, (1, 8, 8), seed=4).randn()
    assert torch.equal(z[:5], z1)
    x0, _ = pdl.predict(net, z1, 1.0, SCHED)
    half = pdl.ddim_sample(net, SCHED, z=z1, steps=2, return_trajectory=True)[1]["z"][1]
    assert torch.allclose(z[5:], half) and torch.allclose(x_hat[:5], x0)


@pytest.mark.slow
def test_mimic_brings_a_pruned_copy_back_to_its_reference():
    net = trained_like(channels=16)
    pruned = deploy.prune_channels(net, keep=0.5)
    z, t, x_ref = deploy.trajectory_inputs(net, SCHED, steps=1, n=64, seed=7)

    def error(m):
        return (pdl.predict(m, z, t, SCHED)[0] - x_ref).pow(2).mean()

    before = error(pruned)
    tuned = deploy.mimic(pruned, net, SCHED, steps=1, iters=40, lr=3e-3, batch_size=32, progress=False)
    assert error(tuned) < 0.5 * before


# ---------------------------------------------------------------------------------------
# pruning and sparsity
# ---------------------------------------------------------------------------------------

def test_channel_pruning_keeps_the_filters_of_largest_norm():
    net = trained_like(channels=16)
    block = net.down[0]
    with torch.no_grad():  # plant: channels 3 and 11 get the largest filters, channel 5 the smallest
        block.conv1.weight[[3, 11]] *= 100.0
        block.conv1.weight[5] *= 0.0
    pruned = deploy.prune_channels(net, keep=0.5)
    kept = pruned.down[0].conv1
    assert kept.out_channels == 8 and pruned.pruned["down.0"] == (16, 8)
    rows = [int((net.down[0].conv1.weight == w).flatten(1).all(1).nonzero()) for w in kept.weight]
    assert 3 in rows and 11 in rows and 5 not in rows and rows == sorted(rows)
    assert torch.equal(pruned.down[0].conv2.weight, net.down[0].conv2.weight[:, rows])
    assert torch.equal(pruned.down[0].emb.weight, net.down[0].emb.weight[rows])
    assert pdl.models.count_parameters(pruned) < 0.75 * pdl.models.count_parameters(net)
    assert_samples_with_every_sampler(pruned)
    with pytest.raises(ValueError, match="keep"):
        deploy.prune_channels(net, keep=0.0)


def test_keeping_every_channel_changes_nothing():
    net = trained_like(channels=16)
    z, t = deploy.export.example_inputs(net, 4)
    with torch.no_grad():
        assert torch.equal(deploy.prune_channels(net, keep=1.0)(z, t), net(z, t))


def test_sparsify_zeroes_the_smallest_weights_and_keeps_the_shapes():
    net = trained_like(channels=16)
    sparse = deploy.sparsify(net, 0.9)
    assert 0.89 <= deploy.sparsity(sparse) <= 0.95 and deploy.sparsity(net) < 0.2
    assert [p.shape for p in sparse.parameters()] == [p.shape for p in net.parameters()]
    w, s = net.inp.weight, sparse.inp.weight
    assert w[s != 0].abs().min() >= w[s == 0].abs().max()  # magnitude pruning: what survives is the largest
    assert_samples_with_every_sampler(sparse)


# ---------------------------------------------------------------------------------------
# bf16 and the measurements
# ---------------------------------------------------------------------------------------

def test_bf16_halves_the_file_and_stays_close_to_fp32():
    net = trained_like(channels=16)
    half = deploy.to_bf16(net)
    assert all(v.dtype == torch.bfloat16 for v in half.state_dict().values())
    assert deploy.file_mb(half) < 0.55 * deploy.file_mb(net)
    z = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = net(z, torch.ones(8)), half(z, torch.ones(8))
    assert b.dtype == torch.float32 and (a - b).pow(2).mean().sqrt() < 0.05 * a.pow(2).mean().sqrt()
    assert isinstance(deploy.bf16_native(), bool)
    assert_samples_with_every_sampler(half)


def test_peak_memory_grows_with_the_batch_and_latency_reads_both_clocks():
    net = trained_like(channels=16)
    with torch.no_grad():
        small, _ = deploy.peak_memory_mb(lambda: net(*deploy.export.example_inputs(net, 1)))
        big, out = deploy.peak_memory_mb(lambda: net(*deploy.export.example_inputs(net, 64)))
    assert out.shape == (64, 1, 8, 8) and 0 < small and big > 20 * small
    rows = deploy.latency({"a": (net, 1), "b": (net, 2)}, SCHED, batch_size=2, repeats=3, warmup=1, min_s=0.0)
    for row in rows.values():
        assert row["thread_ms"] > 0 and row["wall_ms"] > 0 and row["timing"]["clock"] == "thread"
        assert row["ms_per_image"] == pytest.approx(row["thread_ms"] / 2)


def test_deployed_forms_are_born_in_eval_mode_and_sampling_never_switches_them(monkeypatch):
    """A deployed form left in training mode was switched to eval and back by every sampler
    call: for an exported int8 graph each switch rewrites the graph (chapter 10 timed 1 to 4 s
    per 2 ms call). Planted defect: a wrapper born in training mode is switched."""
    from pdlearn.deploy.export import Deployed

    net = trained_like()
    switches = []
    monkeypatch.setattr(Deployed, "train", lambda self, mode=True: switches.append(mode) or self)
    z = torch.randn(2, *net.sample_shape, generator=torch.Generator().manual_seed(0))
    for form in (Deployed(net, net, "plain"), deploy.to_bf16(net)):
        assert form.training is False, form
        pdl.ddim_sample(form, SCHED, z=z, steps=2)
    assert switches == []
    planted = Deployed(net, net, "plain")
    planted.training = True
    pdl.ddim_sample(planted, SCHED, z=z, steps=2)
    assert switches == [False, True]


def test_work_counts_operators_by_depth_and_flops_by_width():
    """Twice the channels is about four times the FLOPs and the same operators; a level fewer
    is fewer operators. forward_ms times the forward passes alone, on the thread clock."""
    narrow, wide = make_unet(channels=8).eval(), make_unet(channels=16).eval()
    shallow = deploy.small_unet(narrow, ch_mult=(1,)).eval()
    a, b, c = deploy.work(narrow), deploy.work(wide), deploy.work(shallow)
    assert a["operators"] == b["operators"] and c["operators"] < a["operators"]
    assert 3.0 < b["mflop"] / a["mflop"] < 4.2 and c["mflop"] < a["mflop"]
    assert deploy.work(narrow, batch_size=4)["mflop"] == pytest.approx(4 * a["mflop"])
    rows = deploy.forward_ms({"narrow": narrow, "wide": wide}, repeats=3, warmup=1, min_s=0.0)
    for row in rows.values():
        assert row["thread_ms"] > 0 and row["timing"]["clock"] == "thread"
