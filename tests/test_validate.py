"""pdlearn.validate: one check per kind of argument, each naming the argument."""
import numpy as np
import pytest
import torch

from pdlearn import validate
from pdlearn.models import MLPDenoiser


@pytest.mark.parametrize("value", [4, np.int64(4), np.int32(4), torch.tensor(4)])
def test_positive_int_accepts_every_kind_of_integer(value):
    assert validate.positive_int(value, "steps") == 4 and type(validate.positive_int(value, "steps")) is int


@pytest.mark.parametrize("value, error", [(0, ValueError), (-3, ValueError), (2.5, TypeError), (4.0, TypeError),
                                          (True, TypeError), ("4", TypeError), (None, TypeError),
                                          (torch.tensor([4]), TypeError), (torch.tensor(4.0), TypeError)])
def test_positive_int_names_the_argument(value, error):
    with pytest.raises(error, match="steps"):
        validate.positive_int(value, "steps")


def test_number_ranges_and_their_messages():
    assert validate.number(0.5, "p", 0, 1) == 0.5
    assert validate.number(np.float32(0.25), "p", 0, 1) == 0.25
    with pytest.raises(ValueError, match=r"ema_decay must be in \[0.0, 1.0\), got 1.5"):
        validate.number(1.5, "ema_decay", 0.0, 1.0, high_open=True)
    with pytest.raises(ValueError, match=r"lr must be in \(0, inf\]"):
        validate.number(0.0, "lr", low=0, low_open=True)
    with pytest.raises(ValueError, match="finite"):
        validate.number(float("nan"), "lr")
    with pytest.raises(TypeError, match="grad_clip"):
        validate.number("1", "grad_clip")
    with pytest.raises(ValueError, match="p_uncond"):
        validate.probability(1.5, "p_uncond")


def test_like_network_checks_dtype_and_device():
    net = MLPDenoiser(dim=2, width=8, depth=1)
    z = torch.randn(4, 2)
    assert validate.like_network(z, net) is z
    with pytest.raises(TypeError, match=r"z must be a float tensor.*z.float\(\)"):
        validate.like_network(torch.ones(4, 2, dtype=torch.long), net)
    with pytest.raises(TypeError, match=r"torch.float64.*torch.float32"):
        validate.like_network(z.double(), net)
    with pytest.raises(ValueError, match="n >= 1"):
        validate.like_network(torch.randn(0, 2), net)


def test_class_labels_refuse_floats_and_out_of_range_values():
    assert validate.class_labels(torch.tensor([0, 2, 1]), 3, num_classes=3).dtype == torch.long
    with pytest.raises(TypeError, match="truncated"):
        validate.class_labels(torch.tensor([0.0, 1.7, 1.0]), 3, num_classes=3)
    with pytest.raises(ValueError, match=r"labels must be in 0..2, got values from 0 to 3"):
        validate.class_labels(torch.tensor([0, 3, 1]), 3, num_classes=3)
    assert validate.class_labels(torch.tensor([0, 3]), 2, num_classes=3, allow_null=True).tolist() == [0, 3]
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        validate.class_labels(torch.tensor([0, 1]), 4)
