"""Fewer bits per number: bf16 where the CPU computes it, and int8 with calibration.

bf16 keeps fp32's 8 exponent bits and 8 bits of mantissa: half the bytes, about three
significant digits. It pays only where the hardware multiplies it natively (x86 with
AVX512-BF16 or AMX, recent ARM cores); elsewhere oneDNN emulates it and it is slower than
fp32. ``bf16_native`` reads that from the CPU at run time.

int8, post-training (Jacob et al., 2018): each weight and activation tensor x is stored
as q = clamp(round(x / s) + z0, 0, 255) (activations, per tensor) or round(x / s_c) in
[-128, 127] (weights, per output channel c), with scales s chosen from the ranges that
*calibration* observes: the network is run on its own inputs, the states of its sampler
(``inputs.trajectory_inputs``), before the scales are frozen.

Which stack. In the pinned torch (2.13) ``torch.ao.quantization`` still imports, but every
entry point warns that it is deprecated and slated for removal, and its PT2E flow has
moved out of torch: the maintained path is torchao (``torchao.quantization.pt2e``:
``prepare_pt2e`` / ``convert_pt2e``, with ``X86InductorQuantizer`` for x86 CPUs). It
quantizes an exported graph (``torch.export``), so it handles the UNet's convolutions,
linear layers and residual additions without rewriting the model. The converted graph
holds int8 weights and explicit quantize / dequantize steps; it is a reference in eager
mode, and ``export.compiled`` (TorchInductor) fuses it into oneDNN's int8 kernels.

Quantization-aware fine-tuning (``qat_int8``): the same flow with fake-quantization in
the graph (``prepare_qat_pt2e``), trained by distillation from the fp32 network on its own
sampling states (``inputs.mimic``), then converted.
"""
import copy
import os

import torch
from torch import nn

from ..models.embeddings import SinusoidalEmbedding
from .export import Deployed, export_program, quiet
from .inputs import mimic

CPU_BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}  # x86 flags; 'bf16' is ARMv8.6's in /proc/cpuinfo


def cpu_flags():
    """The feature flags of this CPU from /proc/cpuinfo (Linux), or an empty set elsewhere."""
    if not os.path.exists("/proc/cpuinfo"):
        return set()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.lower().startswith(("flags", "features")):
                return set(line.split(":", 1)[1].split())
    return set()


def bf16_native():
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16, AMX-BF16 or ARM's BF16),
    read at run time; where it is not known (no /proc/cpuinfo), False."""
    return bool(CPU_BF16_FLAGS & cpu_flags())


class Bf16Net(nn.Module):
    """A network with its weights in bf16 (half the bytes), computing under
    ``torch.autocast('cpu', torch.bfloat16)``; input and output stay in z's dtype. The time
    embedding's frequencies stay in fp32, and t is rounded to bf16 as z is, which is exact on
    the grids k / N of few-step students (N a power of two up to 256)."""

    def __init__(self, net):
        super().__init__()
        self.net = copy.deepcopy(net).eval().to(torch.bfloat16)
        for ours, theirs in zip(self.net.modules(), net.modules()):
            if isinstance(ours, SinusoidalEmbedding):
                ours.freqs = theirs.freqs.detach().clone()
        self.prediction, self.sample_shape, self.kind = net.prediction, tuple(net.sample_shape), "bf16"
        self.training = False  # in eval mode, as its copy is (``Deployed``)

    def forward(self, z, t, **model_kwargs):
        with torch.autocast(z.device.type, dtype=torch.bfloat16):
            return self.net(z.to(torch.bfloat16), t, **model_kwargs).to(z.dtype)


def to_bf16(net):
    """``net`` with bf16 weights and bf16 compute (``Bf16Net``)."""
    return Bf16Net(net)


def _import_torchao():
    """Import torchao with its import-time log lines held back: it tries to load its CUDA-only
    kernels (mxfp8, CUTLASS) and logs a warning for each on a machine without them."""
    with quiet("torchao", "torch.utils._pytree"):
        import torchao.quantization.pt2e.quantize_pt2e  # noqa: F401


def int8_available():
    """Whether torchao's PT2E quantization imports (the ``deploy`` extra); else the reason, as one line."""
    try:
        _import_torchao()
    except ImportError as err:
        return f"int8 quantization needs torchao: pip install \"pdlearn[deploy]\" ({err})"
    return True


def _quantizer(is_qat=False):
    reason = int8_available()
    if reason is not True:
        raise ImportError(reason)
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq

    quantizer = xiq.X86InductorQuantizer()
    quantizer.set_global(xiq.get_default_x86_inductor_quantization_config(is_qat=is_qat))
    return quantizer


def drop_unused(graph):
    """Delete the parameters and buffers an fx graph no longer reads: after ``convert_pt2e``
    the fp32 weights are folded into int8 constants but stay attached, and would be saved."""
    used = {node.target for node in graph.graph.nodes if node.op == "get_attr"}
    for name, _ in list(graph.named_parameters()) + list(graph.named_buffers()):
        if name not in used:
            owner, _, leaf = name.rpartition(".")
            delattr(graph.get_submodule(owner) if owner else graph, leaf)
    return graph


def _convert(prepared, like):
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    return Deployed(drop_unused(convert_pt2e(prepared)), like, "int8")


@torch.no_grad()
def int8(net, calibration, batch_size=256):
    """Post-training static int8 quantization of ``net`` (module docstring) through torchao's
    PT2E flow: export, insert observers (``X86InductorQuantizer``: convolutions and linear
    layers, int8 weights per output channel, uint8 activations per tensor), run the
    ``calibration`` inputs (z, t) through it in batches of ``batch_size``, convert.
    ``calibration`` is (z, t, ...) as ``inputs.trajectory_inputs`` returns it: the states the
    network's own sampler visits. Returns a ``Deployed`` graph (``kind`` 'int8')."""
    z, t = calibration[0], calibration[1]
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    prepared = prepare_pt2e(export_program(net).module(), _quantizer())
    for zc, tc in zip(z.split(batch_size), t.split(batch_size)):
        prepared(zc, tc)
    return _convert(prepared, net)


def qat_int8(net, sched, steps, iters, lr=1e-4, batch_size=128, seed=0, checkpoint=None, resume=False,
             progress=True):
    """Quantization-aware fine-tuning: ``net``'s exported graph with fake quantization inserted
    (``prepare_qat_pt2e``: the forward pass rounds weights and activations as int8 would, the
    backward pass passes gradients straight through the rounding, Jacob et al., 2018), trained
    by ``inputs.mimic`` to reproduce the fp32 ``net`` on its own ``steps``-step sampling
    states for ``iters`` iterations, then converted to int8 as ``int8`` does."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    with torch.no_grad():
        program = export_program(net)
    prepared = Deployed(prepare_qat_pt2e(program.module(), _quantizer(is_qat=True)), net, "int8, quantization-aware")
    prepared = mimic(prepared, net, sched, steps, iters, lr=lr, batch_size=batch_size, seed=seed,
                     checkpoint=checkpoint, resume=resume, progress=progress, desc="quantization-aware fine-tune")
    return _convert(prepared.module, net)
