"""Does a model copy its training set? A nearest-neighbour check beside the FID.

On 1,797 digits a teacher trained long starts to reproduce its training images, and the
FID rewards it for that (copies have the data's statistics). ``memorisation`` compares
each sample's distance to its nearest training image with the same distance for held-out
images, which no model saw (chapter 5).
"""
import torch

from ..budget import device as default_device
from ..data import as_data


@torch.no_grad()
def nearest_neighbour_distances(x, reference, chunk=512, device=None):
    """For every image in x, the Euclidean (pixel) distance to its nearest image in ``reference``:
    [n], on the CPU. Computed in float64 on ``device`` (default ``budget.device()``: on a GPU,
    5,000 samples against MNIST's 60,000 training images take seconds, not a minute)."""
    at = device or default_device()
    x = as_data(x, "x").flatten(1)
    r = as_data(reference, "reference").flatten(1).to(at).double()  # copied in float32, widened on the device
    if x.shape[1] != r.shape[1]:
        raise ValueError(f"x and reference must have images of the same size, got {x.shape[1]} and {r.shape[1]} pixels")
    return torch.cat([torch.cdist(c.to(at).double(), r).min(1).values.cpu() for c in x.split(chunk)])


def memorisation(samples, train, heldout, quantile=0.05):
    """Does a model copy its training set? Compare each sample's distance to its nearest
    training image with the same distance for held-out images (new digits from the
    data distribution). Returns a dict: 'sample_median' and 'heldout_median' of those
    distances, 'threshold' (the ``quantile`` of the held-out distances) and
    'copy_fraction', the fraction of samples closer to a training image than that.
    A model that draws new digits has copy_fraction near ``quantile`` (0.05); one that
    reproduces its training images has it near 1.
    """
    train = as_data(train, "train").to(default_device())  # copied to the device once, for both searches
    d_samples = nearest_neighbour_distances(samples, train)
    d_heldout = nearest_neighbour_distances(heldout, train)
    threshold = float(torch.quantile(d_heldout, quantile))
    return {"sample_median": float(d_samples.median()), "heldout_median": float(d_heldout.median()),
            "threshold": threshold, "copy_fraction": float((d_samples < threshold).double().mean()),
            "sample_distances": d_samples, "heldout_distances": d_heldout}
