"""pdlearn.deploy with its optional packages: ONNX export equals eager PyTorch, int8 quantization
(post-training and quantization-aware) keeps the samplers working. Without the packages the
tests skip with a one-line reason."""
import pytest
import torch

import pdlearn as pdl
from pdlearn import deploy

from factories import make_unet
from test_deploy import SCHED, assert_samples_with_every_sampler, trained_like

ONNX = deploy.onnx_available()
INT8 = deploy.int8_available()
needs_onnx = pytest.mark.skipif(ONNX is not True, reason=str(ONNX))
needs_int8 = pytest.mark.skipif(INT8 is not True, reason=str(INT8))
TOLERANCE = 1e-4  # fp32: the exported graph computes what eager PyTorch computes, to round-off


@pytest.fixture(scope="module")
def net():
    return trained_like(channels=16)


@pytest.fixture(scope="module")
def onnx_net(net, tmp_path_factory):
    path = deploy.to_onnx(net, str(tmp_path_factory.mktemp("onnx") / "student.onnx"))
    return deploy.OnnxRuntimeNet(path, net)


@needs_onnx
@pytest.mark.slow
def test_onnx_runtime_equals_eager_on_several_batch_sizes(net, onnx_net):
    diffs = deploy.max_abs_diff(onnx_net, net, batch_sizes=(1, 3, 64, 100))
    assert max(diffs.values()) <= TOLERANCE, diffs
    assert deploy.file_mb(onnx_net) == pytest.approx(deploy.file_mb(onnx_net.path))
    assert onnx_net.training is False
    assert_samples_with_every_sampler(onnx_net)


@needs_onnx
@pytest.mark.slow
def test_the_equality_check_catches_a_changed_weight(net, onnx_net):
    """Planted defect: the eager network one weight away from what was exported."""
    changed = trained_like(channels=16)
    with torch.no_grad():
        changed.out[-1].weight[0, 0, 1, 1] += 0.01
    assert max(deploy.max_abs_diff(onnx_net, changed).values()) > TOLERANCE


def identity_onnx(path, shape=(1, 8, 8)):
    """A hand-written ONNX graph (z, t) -> z: an engine to call without exporting a network."""
    import onnx
    from onnx import TensorProto, helper

    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, ["n", *shape])
    t = helper.make_tensor_value_info("t", TensorProto.FLOAT, ["n"])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", *shape])
    graph = helper.make_graph([helper.make_node("Identity", ["z"], ["out"])], "identity", [z, t], [out])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, str(path))  # IR version 8: what every supported ONNX Runtime reads
    return str(path)


@needs_onnx
def test_onnx_runtime_net_refuses_labels(tmp_path):
    like = make_unet(channels=8)
    engine = deploy.OnnxRuntimeNet(identity_onnx(tmp_path / "identity.onnx", like.sample_shape), like)
    z = torch.randn(2, *like.sample_shape)
    assert torch.equal(engine(z, torch.ones(2)), z) and engine.training is False
    with pytest.raises(ValueError, match="takes \\(z, t\\) only"):
        engine(z, torch.ones(2), y=torch.zeros(2, dtype=torch.long))


@needs_int8
@pytest.mark.slow
def test_int8_is_smaller_close_and_samples_with_every_sampler(net):
    calibration = deploy.trajectory_inputs(net, SCHED, steps=2, n=64, seed=0)
    q = deploy.int8(net, calibration)
    assert q.training is False  # sampling it must not rewrite the graph at every call
    assert q.kind == "int8" and deploy.file_mb(q) < 0.5 * deploy.file_mb(net)
    assert any(v.dtype == torch.int8 for v in q.state_dict().values())
    z, t, x_ref = deploy.trajectory_inputs(net, SCHED, steps=2, n=32, seed=9)
    with torch.no_grad():
        x_q = pdl.predict(q, z, t, SCHED)[0]
    assert (x_q - x_ref).pow(2).mean().sqrt() < 0.1 * x_ref.pow(2).mean().sqrt()
    assert_samples_with_every_sampler(q)
    with pytest.raises(ValueError, match="takes \\(z, t\\) only"):
        q(z, t, y=torch.zeros(len(z), dtype=torch.long))


@needs_int8
@pytest.mark.slow
def test_quantization_aware_fine_tune_trains_and_converts(net):
    q = deploy.qat_int8(net, SCHED, steps=1, iters=3, batch_size=8, progress=False)
    assert q.kind == "int8" and any(v.dtype == torch.int8 for v in q.state_dict().values())
    assert_samples_with_every_sampler(q)


@pytest.mark.slow
def test_a_compiled_student_equals_eager_and_a_changed_weight_shows(net):
    """torch.compile (inductor's C++ build on the CPU) computes what eager PyTorch computes,
    at each batch size it is built for; chapter 10 runs this check at the cpu budget and
    leaves compilation out at smoke, so this is CI's check of it."""
    fast = deploy.compiled(net)
    found = deploy.max_abs_diff(fast, net, batch_sizes=(1, 3))
    assert max(found.values()) <= TOLERANCE, found
    changed = trained_like(channels=16)
    with torch.no_grad():
        next(changed.parameters()).add_(0.1)
    assert max(deploy.max_abs_diff(fast, changed, batch_sizes=(1,)).values()) > TOLERANCE
