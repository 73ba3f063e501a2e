"""Denoising networks. Each has ``prediction`` ('eps', 'x' or 'v'), ``sample_shape`` and ``config``."""
from .embeddings import ClassEmbedding, SinusoidalEmbedding, null_label
from .mlp import MLPDenoiser
from .unet import UNet

__all__ = ["MLPDenoiser", "UNet", "SinusoidalEmbedding", "ClassEmbedding", "null_label", "count_parameters"]


def count_parameters(net):
    """Number of parameters (frozen ones included: an EMA copy has requires_grad off)."""
    return sum(p.numel() for p in net.parameters())
