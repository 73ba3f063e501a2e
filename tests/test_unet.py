"""The image denoiser: shapes, conditioning, per-sample independence, and that it
plugs into the samplers and the training loop like MLPDenoiser does."""

import pytest
import torch

import pdlearn as pdl
from pdlearn.models import UNet, count_parameters
from pdlearn.models.unet import Attention


def randomised(net, seed=0):
    """A copy of ``net`` with every parameter drawn at random (the zero-initialised
    output layers would otherwise hide how the input and conditioning flow through)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.2 * torch.randn(p.shape, generator=g))
    return net.eval()


@pytest.mark.parametrize("kwargs, shape", [
    (dict(), (1, 8, 8)),
    (dict(ch_mult=(1, 2, 2)), (1, 8, 8)),
    (dict(image_size=28, ch_mult=(1, 2, 2), channels=16), (1, 28, 28)),
    (dict(in_channels=3, image_size=32, ch_mult=(1, 2, 2, 2), channels=16, num_res_blocks=2), (3, 32, 32)),
])
def test_output_has_the_input_shape(kwargs, shape):
    net = randomised(UNet(**kwargs))
    assert net.sample_shape == shape
    z = torch.randn(3, *shape)
    out = net(z, torch.rand(3))
    assert out.shape == z.shape and torch.isfinite(out).all()


def test_attributes_and_config_rebuild_the_same_network():
    net = UNet(channels=16, ch_mult=(1, 2), num_classes=10, w_cond=True)
    assert net.prediction == "v"
    rebuilt = UNet(**net.config)
    rebuilt.load_state_dict(net.state_dict())  # same parameter names and shapes
    assert count_parameters(rebuilt) == count_parameters(net) == sum(p.numel() for p in net.parameters())
    assert count_parameters(UNet(attention=False)) < count_parameters(UNet())


def test_a_fresh_network_predicts_zero():
    # the output convolution starts at zero, so an untrained v-network predicts v = 0
    net = UNet()
    assert torch.count_nonzero(net(torch.randn(4, 1, 8, 8), torch.rand(4))) == 0


def test_time_and_labels_change_the_output():
    net = randomised(UNet(channels=16, num_classes=10))
    z = torch.randn(4, 1, 8, 8)
    t = torch.full((4,), 0.3)
    base = net(z, t)
    assert not torch.allclose(base, net(z, t + 0.4))
    assert torch.equal(base, net(z, 0.3))  # a scalar t means the same t for every example
    y = torch.tensor([0, 1, 2, 3])
    assert not torch.allclose(base, net(z, t, y=y))  # y=None is the null label, not "ignore"
    assert torch.equal(net(z, t, y=None), net(z, t, y=torch.full((4,), 10)))


def test_guidance_weight_conditioning():
    net = randomised(UNet(channels=16, w_cond=True))
    z, t = torch.randn(2, 1, 8, 8), torch.rand(2)
    with pytest.raises(ValueError, match="w_cond=True: pass the guidance weight w="):
        net(z, t)
    assert not torch.allclose(net(z, t, w=0.0), net(z, t, w=torch.tensor([2.0, 2.0])))


def test_clear_errors():
    with pytest.raises(ValueError, match="image_size=28 cannot be halved 3 times.*pad the images"):
        UNet(image_size=28, ch_mult=(1, 2, 2, 2))
    net = UNet()
    with pytest.raises(ValueError, match=r"expects z of shape \[n, 1, 8, 8\], got \(2, 1, 16, 16\)"):
        net(torch.randn(2, 1, 16, 16), torch.rand(2))
    with pytest.raises(ValueError, match="no class embedding"):
        net(torch.randn(2, 1, 8, 8), torch.rand(2), y=torch.tensor([1, 2]))


def test_examples_do_not_see_each_other():
    # GroupNorm and attention act within one image: a batch is n independent calls
    net = randomised(UNet(channels=16))
    z, t = torch.randn(5, 1, 8, 8), torch.rand(5)
    together = net(z, t)
    alone = torch.cat([net(z[i:i + 1], t[i:i + 1]) for i in range(5)])
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)


def test_attention_matches_a_plain_implementation():
    torch.manual_seed(0)
    attn = Attention(16, heads=4)
    torch.nn.init.normal_(attn.proj.weight)
    h = torch.randn(2, 16, 4, 4)
    # by hand: heads split the channels in order; positions are flattened row by row
    q, k, v = attn.qkv(attn.norm(h)).reshape(2, 3, 4, 4, 16).unbind(1)  # [n, heads, d, positions] each
    weights = torch.softmax(q.transpose(-1, -2) @ k / 2.0, dim=-1)  # sqrt(d) = 2
    by_hand = h + attn.proj((weights @ v.transpose(-1, -2)).transpose(-1, -2).reshape(2, 16, 4, 4))
    torch.testing.assert_close(attn(h), by_hand, rtol=1e-4, atol=1e-5)


def test_attention_takes_the_fused_kernel_and_its_gradients_match_the_plain_one():
    """The speed change: q, k, v are made contiguous so that torch's fused CPU attention kernel
    runs (strided views fall back to the unfused, slower one); its gradients are those of the
    attention written out by hand."""
    torch.manual_seed(0)
    attn = Attention(16, heads=4)
    torch.nn.init.normal_(attn.proj.weight)
    h = torch.randn(2, 16, 4, 4, requires_grad=True)
    with torch.profiler.profile() as prof:
        out = attn(h)
        out.sum().backward()
    names = {e.key for e in prof.key_averages()}
    assert any("flash_attention" in name for name in names), sorted(n for n in names if "attention" in n)
    fused_grad, h.grad = h.grad, None
    q, k, v = attn.qkv(attn.norm(h)).reshape(2, 3, 4, 4, 16).unbind(1)
    weights = torch.softmax(q.transpose(-1, -2) @ k / 2.0, dim=-1)
    by_hand = h + attn.proj((weights @ v.transpose(-1, -2)).transpose(-1, -2).reshape(2, 16, 4, 4))
    by_hand.sum().backward()
    torch.testing.assert_close(fused_grad, h.grad, rtol=1e-4, atol=1e-5)


def test_works_with_the_samplers_and_per_sample_seeds():
    net = randomised(UNet(channels=16))
    sched = pdl.CosineSchedule()
    x = pdl.ddim_sample(net, sched, n=70, steps=3, seed=2)
    assert x.shape == (70, 1, 8, 8) and torch.isfinite(x).all()
    torch.testing.assert_close(pdl.ddim_sample(net, sched, n=3, steps=3, seed=2), x[:3], rtol=1e-4, atol=1e-5)
    x, traj = pdl.ddpm_sample(net, sched, n=4, steps=3, seed=0, return_trajectory=True)
    assert traj["x_hat"].shape == (3, 4, 1, 8, 8)


@pytest.mark.slow
def test_training_on_digits_lowers_the_loss():
    x = pdl.data.digits("train")
    torch.manual_seed(0)
    net = pdl.train_diffusion(UNet(channels=16), x, pdl.CosineSchedule(), steps=60, batch_size=32, lr=2e-3,
                              progress=False)
    loss = net.history["loss"]
    assert sum(loss[-15:]) / 15 < 0.8 * sum(loss[:15]) / 15


@pytest.mark.slow
def test_image_teacher_recipe_trains_once_then_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("PDLEARN_CHECKPOINTS", str(tmp_path))
    net, x = pdl.recipes.image_teacher(progress=False, budget_name="smoke")
    cfg = pdl.sizes("image_teacher", "smoke")
    assert isinstance(net, UNet) and not net.training and net.config["channels"] == cfg["channels"]
    assert torch.equal(x, pdl.data.digits("train")) and len(net.history["loss"]) == cfg["steps"]
    again, _ = pdl.recipes.image_teacher(progress=False, budget_name="smoke")  # from the checkpoint
    for a, b in zip(net.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    conditional, _ = pdl.recipes.image_teacher(conditional=True, progress=False, budget_name="smoke")
    assert conditional.config["num_classes"] == 10 and len(list(tmp_path.glob("*.pt"))) == 2
