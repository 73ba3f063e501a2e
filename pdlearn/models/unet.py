"""UNet: a small residual UNet for images (Ronneberger et al., 2015; the diffusion
variant of Ho et al., 2020, and Nichol & Dhariwal, 2021).

    z [n, C, H, W] -> conv -> (ResBlocks, downsample) per level -> ResBlock, attention, ResBlock
                   -> (ResBlocks on [h, skip], upsample) per level -> norm, SiLU, conv -> [n, C, H, W]

Every ResBlock adds the conditioning vector e = MLP(embed(t)) [+ class embedding]
[+ guidance-weight embedding]; self-attention runs at the lowest resolution only,
where it is cheap. Every reshape is an einops pattern.
"""
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..parameterization import check_prediction
from ..validate import positive_int, probability
from .embeddings import ClassEmbedding, SinusoidalEmbedding


def group_norm(channels):
    """GroupNorm with up to 8 groups (fewer when the channel count needs it)."""
    groups = next(g for g in (8, 4, 2, 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels)


def zero(module):
    """Zero a layer's parameters: a residual branch then starts as the identity."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """h + conv(silu(norm(conv(silu(norm(h))) + W e))), with a 1x1 conv on the skip when widths differ."""

    def __init__(self, c_in, c_out, emb_dim, dropout=0.0):
        super().__init__()
        self.norm1, self.conv1 = group_norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2, self.drop = group_norm(c_out), nn.Dropout(dropout)
        self.conv2 = zero(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, h, e):
        r = self.conv1(F.silu(self.norm1(h)))
        r = r + rearrange(self.emb(e), "n c -> n c 1 1")
        r = self.conv2(self.drop(F.silu(self.norm2(r))))
        return self.skip(h) + r


class Attention(nn.Module):
    """Multi-head self-attention over the H x W positions: h + proj(softmax(q k^T / sqrt(d)) v)."""

    def __init__(self, channels, heads=4):
        super().__init__()
        if channels % heads:
            raise ValueError(f"attention needs channels divisible by heads, got {channels} and {heads}")
        self.heads = heads
        self.norm = group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = zero(nn.Conv2d(channels, channels, 1))

    def forward(self, h):
        height = h.shape[2]
        # contiguous q, k, v: the CPU's fused attention kernel takes them, where the strided views of
        # the rearrangement fall back to the unfused one (a third slower, bench/cpu_speed.py)
        q, k, v = rearrange(self.qkv(self.norm(h)), "n (three heads d) x y -> three n heads (x y) d",
                            three=3, heads=self.heads).contiguous()
        a = F.scaled_dot_product_attention(q, k, v)
        return h + self.proj(rearrange(a, "n heads (x y) d -> n (heads d) x y", x=height))


class Downsample(nn.Module):
    """Halve the resolution with a stride-2 3x3 convolution."""

    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, h):
        return self.conv(h)


class Upsample(nn.Module):
    """Double the resolution: nearest-neighbour repeat, then a 3x3 convolution."""

    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, h):
        return self.conv(F.interpolate(h, scale_factor=2.0, mode="nearest"))


class UNet(nn.Module):
    """net(z, t, y=None, w=None) -> prediction of ``self.prediction`` ('v' by default).

    z: [n, C, H, W] with C = ``in_channels`` and H = W = ``image_size``; t: [n] in [0, 1].
    ``channels`` is the width of the first level and ``ch_mult`` the width
    multiplier of each level; the resolution halves between levels, so
    ``image_size`` must be divisible by 2 ** (len(ch_mult) - 1). Self-attention
    (``attention=True``) runs in the middle block, at the lowest resolution.

    Conditioning as in ``MLPDenoiser``: a sinusoidal embedding of t; with
    ``num_classes`` a class embedding (y=None is the null label, for
    classifier-free guidance, Ho & Salimans, 2022); with ``w_cond=True`` an
    embedding of the guidance weight w (guided distillation, Meng et al., 2023).
    ``pdl.models.count_parameters(net)`` gives the parameter count.
    """

    def __init__(self, in_channels=1, image_size=8, channels=32, ch_mult=(1, 2), num_res_blocks=1, attention=True,
                 heads=4, dropout=0.0, prediction="v", num_classes=None, w_cond=False):
        super().__init__()
        in_channels, image_size = positive_int(in_channels, "in_channels"), positive_int(image_size, "image_size")
        channels, num_res_blocks = positive_int(channels, "channels"), positive_int(num_res_blocks, "num_res_blocks")
        heads = positive_int(heads, "heads")
        ch_mult = tuple(positive_int(m, "every entry of ch_mult") for m in ch_mult)
        if not ch_mult:
            raise ValueError("ch_mult must name at least one level, e.g. (1, 2)")
        dropout = probability(dropout, "dropout")
        check_prediction(prediction)
        if num_classes is not None:
            num_classes = positive_int(num_classes, "num_classes")
        if image_size % 2 ** (len(ch_mult) - 1):
            raise ValueError(f"image_size={image_size} cannot be halved {len(ch_mult) - 1} times (ch_mult={ch_mult}); "
                             f"use fewer levels or pad the images to a multiple of {2 ** (len(ch_mult) - 1)}")
        self.config = dict(in_channels=in_channels, image_size=image_size, channels=channels, ch_mult=ch_mult,
                           num_res_blocks=num_res_blocks, attention=attention, heads=heads, dropout=dropout,
                           prediction=prediction, num_classes=num_classes, w_cond=w_cond)
        self.prediction = prediction
        self.sample_shape = (in_channels, image_size, image_size)
        emb_dim = 4 * channels
        self.t_emb = nn.Sequential(SinusoidalEmbedding(channels), nn.Linear(channels, emb_dim), nn.SiLU(),
                                   nn.Linear(emb_dim, emb_dim))
        self.y_emb = ClassEmbedding(num_classes, emb_dim) if num_classes else None
        self.w_emb = nn.Sequential(SinusoidalEmbedding(channels, max_freq=100.0), nn.Linear(channels, emb_dim),
                                   nn.SiLU(), nn.Linear(emb_dim, emb_dim)) if w_cond else None

        widths = [channels * m for m in ch_mult]
        self.inp = nn.Conv2d(in_channels, channels, 3, padding=1)
        # down path: remember the width of every activation kept for a skip connection
        self.down, skips, c = nn.ModuleList(), [channels], channels
        for level, width in enumerate(widths):
            for _ in range(num_res_blocks):
                self.down.append(ResBlock(c, width, emb_dim, dropout))
                c = width
                skips.append(c)
            if level < len(widths) - 1:
                self.down.append(Downsample(c))
                skips.append(c)
        self.mid1 = ResBlock(c, c, emb_dim, dropout)
        self.mid_attn = Attention(c, heads) if attention else nn.Identity()
        self.mid2 = ResBlock(c, c, emb_dim, dropout)
        # up path: each ResBlock takes one skip; one more block per level than on the way down
        self.up = nn.ModuleList()
        for level, width in reversed(list(enumerate(widths))):
            for _ in range(num_res_blocks + 1):
                self.up.append(ResBlock(c + skips.pop(), width, emb_dim, dropout))
                c = width
            if level > 0:
                self.up.append(Upsample(c))
        self.out = nn.Sequential(group_norm(c), nn.SiLU(), zero(nn.Conv2d(c, in_channels, 3, padding=1)))

    def embed(self, t, y, w, n, like):
        """The conditioning vector e [n, emb_dim] from t (and y, w)."""
        t = torch.as_tensor(t, dtype=like.dtype, device=like.device)
        e = self.t_emb(t.expand(n) if t.ndim == 0 else t)
        if self.y_emb is not None:
            e = e + self.y_emb(y, n)
        elif y is not None:
            raise ValueError("this UNet has no class embedding: build it with num_classes= to pass labels y")
        if self.w_emb is not None:
            if w is None:
                raise ValueError("this UNet was built with w_cond=True: pass the guidance weight w=")
            w = torch.as_tensor(w, dtype=like.dtype, device=like.device)
            e = e + self.w_emb(w.expand(n) if w.ndim == 0 else w)
        return e

    def forward(self, z, t, y=None, w=None):
        if z.ndim != 4 or tuple(z.shape[1:]) != self.sample_shape:
            raise ValueError(f"UNet(in_channels={self.sample_shape[0]}, image_size={self.sample_shape[1]}) expects z "
                             f"of shape [n, {', '.join(map(str, self.sample_shape))}], got {tuple(z.shape)}")
        e = self.embed(t, y, w, z.shape[0], z)
        h = self.inp(z)
        skips = [h]
        for layer in self.down:
            h = layer(h, e) if isinstance(layer, ResBlock) else layer(h)
            skips.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, e)), e)
        for layer in self.up:
            h = layer(torch.cat([h, skips.pop()], dim=1), e) if isinstance(layer, ResBlock) else layer(h)
        return self.out(h)
