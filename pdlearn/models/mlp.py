"""MLPDenoiser: a residual SiLU MLP for 2D (or any low-dimensional) data."""
import torch
from torch import nn

from ..parameterization import check_prediction
from ..validate import count, positive_int
from .embeddings import ClassEmbedding, SinusoidalEmbedding


class ResidualBlock(nn.Module):
    """h + W2 silu(W1 norm(h) + E e): a pre-norm residual block with the embedding added."""

    def __init__(self, width):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.lin1 = nn.Linear(width, width)
        self.emb = nn.Linear(width, width)
        self.lin2 = nn.Linear(width, width)

    def forward(self, h, e):
        return h + self.lin2(torch.nn.functional.silu(self.lin1(self.norm(h)) + self.emb(e)))


def one_time(t):
    """Whether a time tensor (scalar or [n]) holds one time for the whole batch: a scalar, one
    entry, a broadcast view of one value (stride 0: what ``predict`` passes), or, on the CPU,
    equal values. On a GPU the values are not read: that would wait for the device each call."""
    if t.ndim == 0 or t.numel() == 1 or t.stride(0) == 0:
        return True
    return t.device.type == "cpu" and bool((t == t[0]).all())


class MLPDenoiser(nn.Module):
    """net(z, t) -> prediction of ``self.prediction`` ('v' by default), z: [n, dim], t: [n] in [0, 1].

    Conditioning: a sinusoidal embedding of t; with ``num_classes`` a class
    embedding (y=None is the null label); with ``w_cond=True`` a sinusoidal
    embedding of the guidance weight w (guided distillation, Meng et al., 2023).
    """

    def __init__(self, dim=2, width=128, depth=3, emb_dim=64, prediction="v", num_classes=None, w_cond=False):
        super().__init__()
        dim, width, emb_dim = (positive_int(v, k) for v, k in ((dim, "dim"), (width, "width"), (emb_dim, "emb_dim")))
        depth = count(depth, "depth")
        check_prediction(prediction)
        if num_classes is not None:
            num_classes = positive_int(num_classes, "num_classes")
        self.config = dict(dim=dim, width=width, depth=depth, emb_dim=emb_dim, prediction=prediction,
                           num_classes=num_classes, w_cond=w_cond)
        self.prediction = prediction
        self.sample_shape = (dim,)
        self.t_emb = SinusoidalEmbedding(emb_dim)
        self.emb = nn.Sequential(nn.Linear(emb_dim, width), nn.SiLU(), nn.Linear(width, width))
        self.y_emb = ClassEmbedding(num_classes, width) if num_classes else None
        self.w_emb = nn.Sequential(SinusoidalEmbedding(emb_dim, max_freq=100.0), nn.Linear(emb_dim, width)) if w_cond else None
        self.inp = nn.Linear(dim, width)
        self.blocks = nn.ModuleList(ResidualBlock(width) for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(width), nn.SiLU(), nn.Linear(width, dim))

    def forward(self, z, t, y=None, w=None):
        if z.ndim != 2 or z.shape[1] != self.sample_shape[0]:
            raise ValueError(f"MLPDenoiser(dim={self.sample_shape[0]}) expects z of shape [n, {self.sample_shape[0]}], "
                             f"got {tuple(z.shape)}")
        n = z.shape[0]
        t = torch.as_tensor(t, dtype=z.dtype, device=z.device)
        if t.ndim > 1 or (t.ndim == 1 and t.shape[0] not in (1, n)):
            raise ValueError(f"t must be a scalar or have shape [{n}] (one time per example), got {tuple(t.shape)}")
        if one_time(t):  # one t for the whole batch (as in sampling): embed it once and broadcast, [1, width]
            e = self.emb(self.t_emb(t.reshape(-1)[:1]))
        else:
            e = self.emb(self.t_emb(t))
        if self.y_emb is not None:
            e = e + self.y_emb(y, n)
        if self.w_emb is not None:
            if w is None:
                raise ValueError("this MLPDenoiser was built with w_cond=True: pass the guidance weight w=")
            w = torch.as_tensor(w, dtype=z.dtype, device=z.device)
            e = e + self.w_emb(w.expand(n) if w.ndim == 0 else w)
        h = self.inp(z)
        for block in self.blocks:
            h = block(h, e)
        return self.out(h)
