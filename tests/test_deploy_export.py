"""pdlearn.deploy with its optional packages: ONNX export equals eager PyTorch, int8 quantization
(post-training and quantization-aware) keeps the samplers working. Without the packages the
tests skip with a one-line reason."""
import pytest
import torch

import pdlearn as pdl
from pdlearn import deploy

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


@needs_onnx
def test_onnx_runtime_net_refuses_labels(onnx_net):
    with pytest.raises(ValueError, match="takes \\(z, t\\) only"):
        onnx_net(torch.zeros(1, 1, 8, 8), torch.ones(1), y=torch.zeros(1, dtype=torch.long))


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
