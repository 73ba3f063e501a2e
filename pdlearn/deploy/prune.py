"""Pruning: structured (whole channels go, the dense kernels shrink) and unstructured (weights
are zeroed, the kernels stay the same size).

Structured channel pruning by filter norm (Li et al., 2017): in every residual block of the
UNet, the hidden channels between its two convolutions are ranked by the L1 norm of their
filter in the first convolution,

    score_c = sum_{i, u, v} |W1[c, i, u, v]|,

and only the top ``keep`` fraction survives: its rows of the first convolution, of the time
embedding's projection and of the second GroupNorm, and its columns of the second
convolution. Those channels are internal to the block (the residual sum and the skip
connections never see them), so the rest of the network is untouched. The GroupNorm then
averages over other channels than it was trained with, which is one reason a short
distillation fine-tune (``inputs.mimic``) follows.

Unstructured magnitude pruning (Han et al., 2015) zeroes the smallest weights instead. The
tensors keep their shapes and a dense convolution multiplies the zeros like any other
number: without sparse kernels it saves no time, which ``measure.latency`` shows.
"""
import copy

import torch
from torch import nn

from ..models.unet import ResBlock, group_norm
from ..validate import number


def _rows(layer, keep):
    """A copy of a conv / linear / norm layer that keeps output channels ``keep``."""
    if isinstance(layer, nn.Conv2d):
        new = nn.Conv2d(layer.in_channels, len(keep), layer.kernel_size, layer.stride, layer.padding)
    elif isinstance(layer, nn.Linear):
        new = nn.Linear(layer.in_features, len(keep))
    else:
        new = group_norm(len(keep))
    new.weight.data.copy_(layer.weight.data[keep])
    new.bias.data.copy_(layer.bias.data[keep])
    return new


def _columns(conv, keep):
    """A copy of a convolution that keeps input channels ``keep``."""
    new = nn.Conv2d(len(keep), conv.out_channels, conv.kernel_size, conv.stride, conv.padding)
    new.weight.data.copy_(conv.weight.data[:, keep])
    new.bias.data.copy_(conv.bias.data)
    return new


@torch.no_grad()
def prune_channels(net, keep=0.5, multiple=8):
    """A copy of a UNet whose residual blocks keep a fraction ``keep`` of their hidden channels,
    those whose first-convolution filters have the largest L1 norm (module docstring). The
    number kept is rounded up to a ``multiple`` (8: the GroupNorm keeps its 8 groups).
    The copy records ``pruned``: {block name: (channels before, after)}."""
    keep = number(keep, "keep", 0.0, 1.0, low_open=True)
    pruned = copy.deepcopy(net)
    pruned.pruned = {}
    for name, block in pruned.named_modules():
        if not isinstance(block, ResBlock):
            continue
        width = block.conv1.out_channels
        k = min(width, -(-round(keep * width) // multiple) * multiple)
        order = block.conv1.weight.abs().sum(dim=(1, 2, 3)).argsort(descending=True)
        kept = order[:k].sort().values
        block.conv1, block.emb, block.norm2 = _rows(block.conv1, kept), _rows(block.emb, kept), _rows(block.norm2, kept)
        block.conv2 = _columns(block.conv2, kept)
        pruned.pruned[name] = (width, k)
    return pruned.to(next(net.parameters()).device)


def _weights(net):
    return [m.weight for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


@torch.no_grad()
def sparsify(net, amount=0.9):
    """A copy of ``net`` with the fraction ``amount`` of smallest-magnitude weights of every
    convolution and linear layer set to zero (biases and norms kept): unstructured magnitude
    pruning, each layer on its own."""
    amount = number(amount, "amount", 0.0, 1.0, high_open=True)
    sparse = copy.deepcopy(net)
    for w in _weights(sparse):
        k = int(amount * w.numel())
        if k:
            threshold = w.abs().flatten().kthvalue(k).values
            w.masked_fill_(w.abs() <= threshold, 0.0)
    return sparse


def sparsity(net):
    """The fraction of zeros among the weights of a network's convolutions and linear layers."""
    weights = _weights(net)
    return sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
