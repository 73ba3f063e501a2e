"""Deployment: a distilled student made small and fast, measured on the machine it runs on.

    inputs     what a student sees when it samples (the states of its own DDIM trajectory), and
               ``mimic``, the fine-tune that makes a changed copy reproduce the original there
    small      a smaller architecture and its two distillation routes: progressive distillation
               whose first student is the small network trained from scratch, and regression on
               (noise, sample) pairs drawn fresh from the fast full-size student at every batch
    quantize   bf16 (where the CPU computes it natively) and post-training int8 with calibration
               (torchao's PT2E flow), with quantization-aware fine-tuning by distillation
    prune      structured channel pruning by filter norm, and unstructured sparsity
    export     torch.compile, torch.export to ONNX run in ONNX Runtime, and the equality check
    measure    parameters, file size, peak memory, latency and throughput, as table rows, and
               the operators and FLOPs of a forward pass, which explain batch-1 latency

The optional packages (torchao for int8, onnx / onnxscript / onnxruntime for export) are the
``deploy`` extra: ``pip install "pdlearn[deploy]"``. They are imported only when used.
"""
from . import export, inputs, measure, prune, quantize, small
from .export import Deployed, OnnxRuntimeNet, compiled, max_abs_diff, onnx_available, to_onnx
from .inputs import mimic, trajectory_inputs
from .measure import file_mb, forward_ms, latency, peak_memory_mb, work
from .prune import prune_channels, sparsify, sparsity
from .quantize import bf16_native, int8, int8_available, qat_int8, to_bf16
from .small import distil_from_pairs, distil_progressive, small_unet
