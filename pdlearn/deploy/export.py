"""A network in another form, still a sampler's network: compiled, exported, run in ONNX Runtime.

    compiled(net)           torch.compile (TorchInductor: on a CPU it writes and builds C++, so
                            it needs a C++ compiler; the first call of each batch size pays for it)
    export_program(net)     torch.export: the network as one graph of ATen operators, with a
                            dynamic batch dimension
    to_onnx(net, path)      that graph as an ONNX file (torch.onnx.export with dynamo=True)
    OnnxRuntimeNet(path)    the file run by ONNX Runtime, an inference engine of edge devices
    max_abs_diff(a, b)      the check that an exported model computes what eager PyTorch does,
                            on several batch sizes (as PyTorch's own ONNX tests do)

Every form is wrapped so that it keeps ``prediction`` and ``sample_shape``: ``ddim_sample``,
``ddpm_sample`` and every other sampler call it like the original network.
"""
import contextlib
import io
import logging
import os
import warnings

import torch
from torch import nn

from ..validate import network_device, positive_int

MAX_BATCH = 4096  # the largest batch an exported graph accepts


@contextlib.contextmanager
def quiet(*loggers):
    """Hold back the log lines below ERROR of the named loggers (and warnings, and printed
    progress) for the block: the exporters report every step they take."""
    found = [logging.getLogger(name) for name in loggers]
    levels = [logger.level for logger in found]
    for logger in found:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(found, levels):
            logger.setLevel(level)


class Deployed(nn.Module):
    """``module`` (a compiled network, an exported or quantized graph) with the ``prediction``
    and ``sample_shape`` of the network ``like`` it was made from, so that every sampler calls
    it as it calls ``like``: ``forward(z, t)`` (no labels: export the network you sample)."""

    def __init__(self, module, like, kind):
        super().__init__()
        self.module, self.kind = module, kind
        self.prediction, self.sample_shape = like.prediction, tuple(like.sample_shape)
        # Born in eval mode, as what it wraps is: the samplers then leave the mode alone. A
        # wrapper left in training mode would be switched to eval and back at every sampler
        # call, and for an exported graph each switch rewrites the graph (about 0.5 s) and
        # makes a compiled one build again.
        self.training = False

    def forward(self, z, t, **model_kwargs):
        if model_kwargs:
            raise ValueError(f"this {self.kind} network takes (z, t) only, got {sorted(model_kwargs)}; export a "
                             "network whose labels or guidance weight are fixed inside it")
        return self.module(z, t)

    def train(self, mode=True):
        """An exported graph switches its dropout and batch norms with torchao's helpers
        (``nn.Module.train`` is refused on it); any other module trains as usual."""
        self.training = mode
        inner = getattr(self.module, "_orig_mod", self.module)  # under torch.compile, the module compiled
        if isinstance(inner, torch.fx.GraphModule):
            from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train

            (move_exported_model_to_train if mode else move_exported_model_to_eval)(inner)
        else:
            inner.train(mode)
        return self


def example_inputs(net, batch_size=2, seed=0):
    """(z, t): a seeded batch of noise of ``net.sample_shape`` and times in [0, 1], on its device."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn((positive_int(batch_size, "batch_size"), *net.sample_shape), generator=g)
    return z.to(network_device(net)), torch.rand(batch_size, generator=g).to(network_device(net))


def _batch_dims():
    n = torch.export.Dim("n", min=1, max=MAX_BATCH)
    return ({0: n}, {0: n})


def export_program(net):
    """``torch.export.export`` of ``net(z, t)`` (eval mode) with the batch dimension dynamic
    (1 to ``MAX_BATCH``): an ``ExportedProgram`` whose ``.module()`` runs the graph."""
    return torch.export.export(net.eval(), example_inputs(net), dynamic_shapes=_batch_dims())


def compiled(module, like=None, dynamic=False, **options):
    """``torch.compile(module, dynamic=dynamic)`` as a sampler's network that samples like
    ``like`` (default: ``module`` itself; pass the fp32 network when compiling the graph of
    an int8 ``Deployed``, ``q.module``). Other options go to ``torch.compile``.

    Static shapes by default: each new batch size compiles once more, the first call of it
    paying for the C++ build. In torch 2.13 the dynamic-shape build of an int8 graph
    (``dynamic=True``) gave outputs 0.17 away from the eager graph's at batch 64 while
    agreeing at batches 1 and 3; check any compiled form with ``max_abs_diff`` at the batch
    sizes it will run."""
    like = module if like is None else like
    if not isinstance(module, torch.fx.GraphModule):  # an exported graph is in eval mode already
        module.eval()
    return Deployed(torch.compile(module, dynamic=dynamic, **options), like, "compiled")


def onnx_available():
    """Whether onnx, onnxscript and onnxruntime are installed (the ``deploy`` extra); else
    the reason, as one line."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as err:
        return f"ONNX export needs onnx, onnxscript and onnxruntime: pip install \"pdlearn[deploy]\" ({err})"
    return True


def _need_onnx():
    reason = onnx_available()
    if reason is not True:
        raise ImportError(reason)


def to_onnx(net, path):
    """Export ``net(z, t)`` to the ONNX file ``path`` through torch.export (``dynamo=True``),
    inputs named 'z' and 't', output 'out', the batch dimension dynamic. Returns ``path``."""
    _need_onnx()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with quiet("torch.onnx", "torch.utils._pytree", "onnxscript"):
        program = torch.onnx.export(net.eval(), example_inputs(net), dynamo=True, dynamic_shapes=_batch_dims(),
                                    input_names=["z", "t"], output_names=["out"], verbose=False)
    program.save(path)
    return path


class OnnxRuntimeNet(nn.Module):
    """An ONNX file (``to_onnx``) run by ONNX Runtime's CPU engine with ``threads`` intra-op
    threads (1: it runs in the calling thread, so thread CPU time counts all its work),
    called like the network ``like`` it was exported from."""

    def __init__(self, path, like, threads=1):
        super().__init__()
        _need_onnx()
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = positive_int(threads, "threads")
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.path, self.kind = path, "onnxruntime"
        self.training = False  # an inference engine: no training mode (``Deployed``)
        self.prediction, self.sample_shape = like.prediction, tuple(like.sample_shape)

    def forward(self, z, t, **model_kwargs):
        if model_kwargs:
            raise ValueError(f"an ONNX Runtime network takes (z, t) only, got {sorted(model_kwargs)}")
        t = torch.as_tensor(t, dtype=z.dtype).expand(z.shape[0]) if torch.as_tensor(t).ndim == 0 else t
        feeds = {"z": z.detach().cpu().float().numpy(), "t": t.detach().cpu().float().numpy()}
        return torch.from_numpy(self.session.run(None, feeds)[0]).to(z.device, z.dtype)


@torch.no_grad()
def max_abs_diff(a, b, batch_sizes=(1, 3, 64), seed=0):
    """The largest |a(z, t) - b(z, t)| over a seeded batch of noise and times in [0, 1] for each
    batch size: {batch size: max abs difference}. An export is checked against eager
    PyTorch this way, on several shapes, within a stated tolerance."""
    out = {}
    for n in batch_sizes:
        z, t = example_inputs(a, n, seed)
        out[n] = float((a(z, t).float() - b(z, t).float()).abs().max())
    return out
