"""Image metrics: the Frechet distance on classifier features ("digits FID") or on
Inception's, with its floor, and the classifier's verdict on samples.

FID compares Gaussian fits of features; it is biased upwards at small n, so every
FID is shown beside its data-vs-data floor at the same sample size, against the
held-out digits no teacher trained on. On 1,797 images a teacher that copies its
training set scores at the floor: ``metrics.memorisation`` tells the two apart.

The other image sets (MNIST, Fashion-MNIST, CIFAR-10) are scored on Inception-v3
features by default (``inception_fid``, the literature's FID, through torchmetrics),
or on the features of a classifier of the set trained on first use (``features=
'classifier'``), which needs no download.
"""
import os
import warnings

import torch

from ..budget import device as default_device
from ..data import as_data
from ..images import data_dir, image_set
from .classifier import accuracy, image_classifier


def gaussian_fit(features):
    """Mean [d] and covariance [d, d] (unbiased) of features [n, d], in float64."""
    f = as_data(features, "features", ndim=2).double().cpu()
    if f.shape[0] < 2:
        raise ValueError("a Gaussian fit needs at least 2 feature vectors")
    return f.mean(0), torch.cov(f.T).reshape(f.shape[1], f.shape[1])


def sqrt_psd(c):
    """The symmetric square root of a positive semi-definite matrix, by eigen-decomposition."""
    vals, vecs = torch.linalg.eigh((c + c.T) / 2)
    return (vecs * vals.clamp(min=0).sqrt()) @ vecs.T


def frechet_distance(mu1, cov1, mu2, cov2):
    """The squared Frechet (2-Wasserstein) distance between N(mu1, C1) and N(mu2, C2)
    (Dowson & Landau, 1982; as FID, Heusel et al., 2017):

        d^2 = |mu1 - mu2|^2 + tr(C1) + tr(C2) - 2 tr (C1^(1/2) C2 C1^(1/2))^(1/2).

    The last trace equals tr (C1 C2)^(1/2); written with the symmetric matrix
    C1^(1/2) C2 C1^(1/2) it is a sum of square roots of real, non-negative eigenvalues.
    """
    mu1, cov1, mu2, cov2 = (torch.as_tensor(a, dtype=torch.float64) for a in (mu1, cov1, mu2, cov2))
    s1 = sqrt_psd(cov1)
    cross = torch.linalg.eigvalsh(s1 @ cov2 @ s1).clamp(min=0).sqrt().sum()
    return float((mu1 - mu2).pow(2).sum() + cov1.trace() + cov2.trace() - 2 * cross)


def fid_from_features(a, b):
    """Frechet distance between the Gaussian fits of two feature sets [n, d] and [m, d]."""
    return frechet_distance(*gaussian_fit(a), *gaussian_fit(b))


@torch.no_grad()
def classifier_features(x, name="digits", batch_size=1024):
    """The 64-wide penultimate features of the classifier of image set ``name``
    (``classifier.image_classifier``) for images x of that set (clamped to [-1, 1])."""
    x, net = _judge(x, name)
    return torch.cat([net.features(c) for c in x.split(batch_size)])


_SPLIT_FEATURES = {}  # (set, split, data folder) -> (the classifier, its features of that split)
_INCEPTION_REFERENCES = {}  # (set, data folder, device) -> an FID metric holding the test split's statistics


def _source(name):
    """Where a set's images come from: the digits ship with scikit-learn, the others live in ``data_dir()``."""
    return None if name == "digits" else os.path.abspath(data_dir())


def split_features(name, split="test"):
    """``classifier_features`` of a whole split of image set ``name``, computed once per
    classifier and data folder and then kept: every FID of a chapter compares against the
    same test split, and at the gpu sizes recomputing it costs seconds per call."""
    net = image_classifier(name)
    key = (name, split, _source(name))
    kept = _SPLIT_FEATURES.get(key)
    if kept is None or kept[0] is not net:
        kept = _SPLIT_FEATURES[key] = (net, classifier_features(image_set(name, split), name))
    return kept[1]


def forget_references():
    """Drop the kept test-split features and Inception statistics (``split_features``,
    ``image_fid``); they are recomputed on next use. Only needed if the files of a set change."""
    _SPLIT_FEATURES.clear()
    _INCEPTION_REFERENCES.clear()


def draw_indices(n, labels, generator, balanced=False):
    """n indices drawn without replacement: at random, or (``balanced``) with the class counts
    of the labels i mod C, i < n, that class-conditional samples are drawn with."""
    if not balanced:
        return torch.randperm(len(labels), generator=generator)[:n]
    classes = int(labels.max()) + 1
    counts = torch.bincount(torch.arange(n) % classes, minlength=classes)
    picked = []
    for c in range(classes):
        members = torch.nonzero(labels == c).flatten()
        if len(members) < counts[c]:
            raise ValueError(f"a balanced draw of n={n} needs {int(counts[c])} images of class {c}, "
                             f"the training split has {len(members)}; use a smaller n")
        picked.append(members[torch.randperm(len(members), generator=generator)[:counts[c]]])
    return torch.cat(picked)


def _judge(x, name):
    """(images clamped to [-1, 1] on the CPU, the classifier of set ``name``) after checking
    that x holds images of that set; name None means the digits."""
    net = image_classifier(name or "digits")
    x = as_data(x, "x", ndim=4)
    if tuple(x.shape[1:]) != net.input_shape:
        raise ValueError(f"x must be images of {name or 'digits'}, of shape [n, {', '.join(map(str, net.input_shape))}]"
                         f", got {tuple(x.shape)}; pass name= the image set the samples imitate")
    return x.detach().float().cpu().clamp(-1, 1), net


def _readable(x, name):
    """Whether a classifier reads x: any named set, or (name None) the 8 x 8 digits."""
    return name is not None or tuple(x.shape[1:]) == (1, 8, 8)


@torch.no_grad()
def classifier_confidence(x, threshold=0.9, name=None):
    """What the classifier of image set ``name`` (default: the shipped digits classifier;
    see ``classifier.image_classifier``) makes of images x: a dict with 'confident'
    (fraction whose top class probability exceeds ``threshold``), 'mean_confidence' (mean
    top probability), 'labels' (predicted class, long [n]) and 'counts' (images per class, [10])."""
    x, net = _judge(x, name)
    probs = torch.cat([net(c).softmax(1) for c in x.split(1024)])
    top, labels = probs.max(1)
    return {"confident": float((top > threshold).float().mean()), "mean_confidence": float(top.mean()),
            "labels": labels, "counts": torch.bincount(labels, minlength=10)}


@torch.no_grad()
def class_accuracy(x, labels, name=None):
    """Fidelity of class-conditional samples: the fraction of images x whose most probable
    class under the classifier of image set ``name`` is the label they were drawn for
    (long [n]). Without ``name``: the digits classifier for 8 x 8 digits, and NaN for other
    images (pass name='mnist', say, to train and use that set's classifier)."""
    if not _readable(x, name):
        return float("nan")
    x, net = _judge(x, name)
    labels = torch.as_tensor(labels).long().cpu()
    if labels.shape != (x.shape[0],):
        raise ValueError(f"labels must have one entry per image: got shape {tuple(labels.shape)} "
                         f"for {x.shape[0]} images")
    return accuracy(net, x, labels)


def _inception_metric(device, reset_real_features=True):
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance
    except ImportError as err:
        raise ImportError('inception_fid needs torchmetrics with its image extras: pip install "torchmetrics[image]" '
                          f"({err}); or use features='classifier' (image_fid, image_fid_floor), which needs "
                          "nothing more") from err
    return FrechetInceptionDistance(feature=2048, normalize=True, reset_real_features=reset_real_features).to(device)


def _feed(metric, images, real, device, batch_size=256):
    """Images [n, C, H, W] in [-1, 1] into a torchmetrics FID, as three channels in [0, 1]."""
    for chunk in as_data(images, "images", ndim=4).split(batch_size):
        chunk = ((chunk.float().clamp(-1, 1) + 1) / 2).to(device)
        metric.update(chunk.expand(-1, 3, -1, -1) if chunk.shape[1] == 1 else chunk, real=real)


def inception_fid(x, y, device=None, batch_size=256):
    """The standard FID (Heusel et al., 2017) between image sets x and y [n, C, H, W] in
    [-1, 1] (C = 1 or 3), on Inception-v3 features via torchmetrics. For MNIST /
    CIFAR-10 at the gpu budget: the Inception weights are downloaded on first use.
    Needs ``pip install "torchmetrics[image]"`` (which also brings torchvision:
    install it on Colab, not beside a CPU-only torch). Against a set's test split,
    ``image_fid`` does the same and pushes the test split through Inception only once."""
    device = torch.device(device or default_device())
    metric = _inception_metric(device)
    _feed(metric, y, True, device, batch_size)
    _feed(metric, x, False, device, batch_size)
    return float(metric.compute())


def _inception_reference(name, device=None):
    """A torchmetrics FID that holds the Inception statistics of the test split of ``name``
    (kept per set, data folder and device, with ``reset_real_features=False``) and no samples."""
    device = torch.device(device or default_device())
    key = (name, _source(name), str(device))
    if key not in _INCEPTION_REFERENCES:
        metric = _inception_metric(device, reset_real_features=False)
        _feed(metric, image_set(name, "test"), True, device)
        _INCEPTION_REFERENCES[key] = metric
    metric = _INCEPTION_REFERENCES[key]
    metric.reset()  # forgets the samples of the last call, keeps the test split's statistics
    return metric, device


def _inception_fid_against_test(x, name):
    metric, device = _inception_reference(name)
    _feed(metric, x, False, device)
    return float(metric.compute())


FID_FEATURES = ("classifier", "inception")


def fid_features(name, features=None):
    """The features an FID of set ``name`` compares: as asked, else the classifier's for the
    digits and Inception's for the downloaded sets."""
    features = features or ("classifier" if name == "digits" else "inception")
    if features not in FID_FEATURES:
        raise ValueError(f"features must be one of {', '.join(FID_FEATURES)}, got {features!r}")
    return features


def image_fid(x, name="digits", features=None):
    """FID of samples x against the test split of image set ``name``, on the features of

    - 'classifier': the set's classifier (``classifier_features``): the digits FID for
      'digits'; for MNIST, Fashion-MNIST and CIFAR-10 the same construction on a classifier
      trained on the set on first use, which needs no download and no torchmetrics;
    - 'inception': Inception-v3 (``inception_fid``), the standard FID of the literature.

    The default is 'classifier' for the digits and 'inception' for the other sets. FIDs on
    different features are on different scales: compare each with its own floor. The test
    split's features are computed on the first call and kept (``forget_references``)."""
    if fid_features(name, features) == "inception":
        return _inception_fid_against_test(x, name)
    return fid_from_features(classifier_features(x, name), split_features(name, "test"))


def image_fid_floor(n, name="digits", repeats=5, seed=0, balanced=False, features=None):
    """The data-vs-data floor of ``image_fid`` at sample size n: (mean, std) over ``repeats``
    draws of n training images (without replacement), each scored against the test split
    exactly as model samples are. A perfect model scores about this.

    ``balanced=True`` draws the same number of images of every class (as many as labels
    i mod 10 give): the floor for class-conditional samples drawn that way, which is lower,
    since a random draw adds the chance fluctuation of its class mix."""
    features = fid_features(name, features)
    train, labels = image_set(name, "train", return_labels=True)
    if not 2 <= n <= train.shape[0]:
        raise ValueError(f"n must be between 2 and {train.shape[0]} (the training images of {name}), got {n}")
    if features == "classifier":
        reference, pool = split_features(name, "test"), split_features(name, "train")

        def score(idx):
            return fid_from_features(pool[idx], reference)
    else:
        def score(idx):
            return _inception_fid_against_test(train[idx], name)
    g = torch.Generator().manual_seed(seed)
    values = torch.tensor([score(draw_indices(n, labels, g, balanced)) for _ in range(repeats)], dtype=torch.float64)
    return float(values.mean()), float(values.std()) if repeats > 1 else 0.0


def confident_fraction(x, threshold=0.9, name=None):
    """Fraction of images the classifier of image set ``name`` assigns a class with probability
    above ``threshold``. Without ``name``: the digits classifier for 8 x 8 digits, and NaN for
    other images (pass name='mnist', say, to train and use that set's classifier)."""
    if not _readable(x, name):
        return float("nan")
    return classifier_confidence(x, threshold, name)["confident"]


# ---------------------------------------------------------------- the digits names of earlier versions

def _deprecated(old, new):
    warnings.warn(f"pdl.metrics.{old} is deprecated: use pdl.metrics.{new}", DeprecationWarning, stacklevel=3)


def digits_features(x, batch_size=1024):
    """Deprecated: ``classifier_features(x, 'digits')``."""
    _deprecated("digits_features(x)", "classifier_features(x, 'digits')")
    return classifier_features(x, "digits", batch_size)


def digits_fid(x, reference=None):
    """Deprecated: ``image_fid(x, 'digits')`` (against the held-out digits), or, with a
    ``reference`` set of images, ``fid_from_features`` of their classifier features."""
    _deprecated("digits_fid(x)", "image_fid(x, 'digits')")
    if reference is None:
        return image_fid(x, "digits")
    return fid_from_features(classifier_features(x, "digits"), classifier_features(reference, "digits"))


def digits_fid_floor(n, repeats=5, seed=0, balanced=False):
    """Deprecated: ``image_fid_floor(n, 'digits', ...)``."""
    _deprecated("digits_fid_floor(n)", "image_fid_floor(n, 'digits')")
    return image_fid_floor(n, "digits", repeats, seed, balanced)
