"""Embeddings of scalars (time t, guidance weight w) and class labels."""
import math

import torch
from torch import nn


class SinusoidalEmbedding(nn.Module):
    """[sin(f_k s), cos(f_k s)] for frequencies f_k geometric in [1, max_freq]
    (Vaswani et al., 2017; the time embedding of Ho et al., 2020, for s = t in [0, 1])."""

    def __init__(self, dim=64, max_freq=1000.0):
        super().__init__()
        if dim % 2:
            raise ValueError(f"embedding dim must be even, got {dim}")
        freqs = torch.exp(torch.linspace(0.0, math.log(max_freq), dim // 2))
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, s):
        s = torch.as_tensor(s, dtype=self.freqs.dtype, device=self.freqs.device)
        args = s.reshape(-1, 1) * self.freqs
        return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)


def null_label(net):
    """The null label of a class-conditional network: the index ``num_classes`` (one past the
    last class), which ``ClassEmbedding`` gives a vector of its own and ``y=None`` stands for.
    Training replaces labels by it at rate p_uncond (classifier-free guidance, Ho & Salimans,
    2022); guidance evaluates the network at it for the unconditional prediction."""
    num_classes = (getattr(net, "config", None) or {}).get("num_classes")
    if not num_classes:
        raise ValueError(f"{type(net).__name__} has no class embedding; build it with num_classes= and train it "
                         "with train_diffusion(..., labels=y, p_uncond=0.1) for classifier-free guidance")
    return num_classes


class ClassEmbedding(nn.Module):
    """A learned vector per class plus one for the null label (index num_classes, ``null_label``),
    used for classifier-free guidance (Ho & Salimans, 2022). y=None means null."""

    def __init__(self, num_classes, dim):
        super().__init__()
        self.num_classes = num_classes
        self.table = nn.Embedding(num_classes + 1, dim)

    def forward(self, y, n):
        if y is None:  # the null label for all
            return self.table(torch.full((n,), self.num_classes, dtype=torch.long, device=self.table.weight.device))
        y = torch.as_tensor(y)
        if y.is_floating_point() or y.dtype == torch.bool:
            raise TypeError(f"labels y must be integer class indices (long), got dtype {y.dtype}: a float label "
                            "would be truncated silently")
        y = y.long()
        if y.ndim == 0:
            y = y.expand(n)
        if y.shape != (n,):
            raise ValueError(f"labels y must have shape [{n}], got {tuple(y.shape)}")
        if bool(((y < 0) | (y > self.num_classes)).any()):  # checked on y's device: CPU labels make no GPU wait
            raise ValueError(f"labels must be in 0..{self.num_classes - 1} (or {self.num_classes} for the null label)")
        return self.table(y.to(self.table.weight.device))
