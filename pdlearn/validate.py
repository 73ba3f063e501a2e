"""Checks of arguments at the public surface, each raising an error that names the argument
and says how to fix it. One check per kind of value, so that every function words the same
mistake the same way.

    positive_int(steps, "steps")                 # 4, np.int64(4), torch.tensor(4) -> 4
    count(warmup, "warmup")                      # an integer >= 0
    number(lr, "lr", low=0, low_open=True)       # a finite real number in a range
    probability(p_uncond, "p_uncond")            # a number in [0, 1]
    like_network(z, net, "z")                    # float noise on the network's device and dtype
    class_labels(y, n, num_classes, "labels")    # integer labels in 0..num_classes-1
"""
import math
import numbers

import numpy as np
import torch


def _integer(value, name, what):
    """A Python int from a Python, numpy or 0-d torch integer; TypeError otherwise."""
    if isinstance(value, torch.Tensor):
        if value.ndim != 0 or value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"{name} must be {what}, got a tensor of shape {tuple(value.shape)} and dtype "
                            f"{value.dtype}; pass a Python int")
        return int(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise TypeError(f"{name} must be {what}, got {value!r} ({type(value).__name__})"
                        + ("; use int(...)" if isinstance(value, numbers.Real) and float(value).is_integer() else ""))
    return int(value)


def positive_int(value, name):
    """``value`` as a Python int >= 1 (it may be a numpy or 0-d torch integer)."""
    value = _integer(value, name, "a positive integer")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value}")
    return value


def count(value, name):
    """``value`` as a Python int >= 0 (it may be a numpy or 0-d torch integer)."""
    value = _integer(value, name, "an integer >= 0")
    if value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value}")
    return value


def number(value, name, low=None, high=None, low_open=False, high_open=False, hint=""):
    """``value`` as a finite Python float in [low, high] (open at an end with ``low_open`` /
    ``high_open``; None: unbounded). ``hint`` is added to the message of a value out of range."""
    if isinstance(value, torch.Tensor) and value.ndim == 0 and value.is_floating_point():
        value = float(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and (value >= high if high_open else value > high)
    if below or above:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        span = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
        raise ValueError(f"{name} must be in {span}, got {value}" + (f"; {hint}" if hint else ""))
    return value


def probability(value, name):
    """``value`` as a float in [0, 1]."""
    return number(value, name, 0.0, 1.0)


def network_device(net):
    """The device of a network's parameters (the CPU for a network without any)."""
    param = next(net.parameters(), None) if isinstance(net, torch.nn.Module) else None
    return param.device if param is not None else torch.device("cpu")


def network_dtype(net):
    """The floating dtype of a network's parameters (float32 for a network without any)."""
    param = next(net.parameters(), None) if isinstance(net, torch.nn.Module) else None
    return param.dtype if param is not None and param.is_floating_point() else torch.float32


def like_network(z, net, name="z"):
    """Check that a tensor handed to a network (given noise z_1, data) is a float tensor with a
    batch dimension on the network's device and, between float32 and float64, in its dtype (a bf16 or
    fp16 network takes float32 states by design; a network without parameters takes any); return it unchanged."""
    if not isinstance(z, torch.Tensor):
        raise TypeError(f"{name} must be a torch tensor of shape [n, ...], got {type(z).__name__}")
    if not z.is_floating_point():
        raise TypeError(f"{name} must be a float tensor, got dtype {z.dtype}; convert it with {name}.float()")
    if z.ndim < 1 or z.shape[0] == 0:
        raise ValueError(f"{name} must have shape [n, ...] with n >= 1, got {tuple(z.shape)}")
    param = next(net.parameters(), None) if isinstance(net, torch.nn.Module) else None
    if param is None:  # a function or a parameter-free module (an exact denoiser): any device and dtype
        return z
    device, dtype = network_device(net), network_dtype(net)
    if z.device != device:
        raise ValueError(f"{name} is on {z.device} but the network is on {device}; move it with "
                         f"{name}.to('{device}')")
    full = (torch.float32, torch.float64)  # a bf16 / fp16 network is handed float32 states by design
    if z.dtype != dtype and z.dtype in full and dtype in full:
        raise TypeError(f"{name} has dtype {z.dtype} but the network computes in {dtype}; convert it with "
                        f"{name}.to({dtype})")
    return z


def class_labels(labels, n, num_classes=None, name="labels", allow_null=False):
    """Integer class labels as a long tensor [n]: never silently truncated floats, one per example,
    and (when ``num_classes`` is known) in 0..num_classes - 1 (or num_classes, the null label, with
    ``allow_null``)."""
    y = torch.as_tensor(labels)
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise TypeError(f"{name} must be integer class labels (a long tensor), got dtype {y.dtype}; "
                        f"a float label would be truncated silently: convert exactly with {name}.long() "
                        "after checking the values are whole numbers")
    y = y.long()
    if y.shape != (n,):
        raise ValueError(f"{name} must have one entry per example: shape ({n},), got {tuple(y.shape)}")
    if num_classes is not None and n:
        top = num_classes if allow_null else num_classes - 1
        low, high = int(y.min()), int(y.max())
        if low < 0 or high > top:
            raise ValueError(f"{name} must be in 0..{top}" + (f" ({num_classes} is the null label)" if allow_null
                                                                else "") + f", got values from {low} to {high}")
    return y
