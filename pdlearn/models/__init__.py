"""Denoising networks. Each has ``prediction`` ('eps', 'x' or 'v'), ``sample_shape`` and ``config``."""
from .embeddings import ClassEmbedding, SinusoidalEmbedding
from .mlp import MLPDenoiser
from .unet import UNet

__all__ = ["MLPDenoiser", "UNet", "SinusoidalEmbedding", "ClassEmbedding", "count_parameters"]


def count_parameters(net):
    """Number of parameters (frozen ones included: an EMA copy has requires_grad off)."""
    return sum(p.numel() for p in net.parameters())
