"""Image metrics: the Frechet distance against closed forms and scipy, the shipped
digits classifier, the digits FID and its floor, the memorisation check, and the
classifiers that judge the samples of the other image sets."""
import os
import sys

import numpy as np
import pytest
import scipy.linalg
import torch

import pdlearn as pdl
from pdlearn.metrics import classifier as digits_classifier
from pdlearn.metrics import images as fid


def random_cov(d, seed):
    a = torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return a @ a.T / d + 0.1 * torch.eye(d, dtype=torch.float64)


def test_frechet_distance_closed_forms():
    mu, cov = torch.randn(5, dtype=torch.float64), random_cov(5, 0)
    assert abs(fid.frechet_distance(mu, cov, mu, cov)) < 1e-9
    # equal covariances: only the means count
    shift = torch.tensor([1.0, 2.0, 0.0, 0.0, -2.0], dtype=torch.float64)
    assert fid.frechet_distance(mu, cov, mu + shift, cov) == pytest.approx(9.0)
    # one dimension: (m1 - m2)^2 + (s1 - s2)^2
    d = fid.frechet_distance(torch.tensor([1.0]), torch.tensor([[4.0]]), torch.tensor([3.0]), torch.tensor([[9.0]]))
    assert d == pytest.approx(4.0 + 1.0)


def test_frechet_distance_matches_scipy_sqrtm():
    c1, c2 = random_cov(12, 1), random_cov(12, 2)
    m1, m2 = torch.randn(12, dtype=torch.float64), torch.randn(12, dtype=torch.float64)
    covmean = scipy.linalg.sqrtm(c1.numpy() @ c2.numpy()).real
    expected = float(((m1 - m2) ** 2).sum()) + np.trace(c1.numpy() + c2.numpy() - 2 * covmean)
    assert fid.frechet_distance(m1, c1, m2, c2) == pytest.approx(expected, rel=1e-8)
    assert fid.frechet_distance(m2, c2, m1, c1) == pytest.approx(expected, rel=1e-8)  # symmetric


def test_fid_from_features_of_two_draws_is_small_and_grows_with_a_shift():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4000, 3, generator=g), torch.randn(4000, 3, generator=g)
    assert fid.fid_from_features(a, b) < 0.01
    assert fid.fid_from_features(a, b + 1.0) == pytest.approx(3.0, abs=0.15)


def test_shipped_classifier_is_small_safe_and_as_accurate_as_recorded():
    path = digits_classifier.WEIGHTS
    assert os.path.getsize(path) < 200_000
    state = torch.load(path, map_location="cpu", weights_only=True)  # plain tensors and numbers only
    net = digits_classifier.load_classifier()
    assert net.test_accuracy == state["test_accuracy"] >= 0.97
    x, y = pdl.data.digits("test", return_labels=True)
    assert digits_classifier.accuracy(net, x, y) == pytest.approx(net.test_accuracy, abs=1e-6)
    assert not any(p.requires_grad for p in net.parameters())


def test_missing_classifier_weights_name_the_training_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m pdlearn.metrics.classifier"):
        digits_classifier.load_classifier(str(tmp_path / "none.pt"))


def test_classifier_confidence_on_digits_and_on_noise():
    real = pdl.metrics.classifier_confidence(pdl.data.digits("test"))
    assert real["confident"] > 0.9 and real["counts"].sum() == 450 and (real["counts"] > 25).all()
    noise = torch.rand(450, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert pdl.metrics.classifier_confidence(noise)["mean_confidence"] < real["mean_confidence"] - 0.1


def test_digits_fid_against_its_floor():
    mean, std = pdl.metrics.image_fid_floor(450, "digits", repeats=3)
    assert 0 < mean and 0 < std < mean
    train = pdl.data.digits("train")
    assert pdl.metrics.image_fid(train[:450], "digits") < mean + 4 * std  # real digits sit at the floor
    blurred = torch.nn.functional.avg_pool2d(train[:450], 3, stride=1, padding=1, count_include_pad=False)
    assert pdl.metrics.image_fid(blurred, "digits") > 2 * mean  # a visibly worse set is far above it
    assert pdl.metrics.image_fid_floor(100, "digits", repeats=3)[0] > mean  # FID is biased up at small n
    with pytest.raises(ValueError, match="between 2 and 1347"):
        pdl.metrics.image_fid_floor(5000, "digits")


def test_classifier_features_check_their_input():
    assert pdl.metrics.classifier_features(pdl.data.digits("test")[:7], "digits").shape == (7, 64)
    with pytest.raises(ValueError, match=r"images of digits, of shape \[n, 1, 8, 8\]"):
        pdl.metrics.classifier_features(torch.zeros(3, 1, 28, 28), "digits")


def test_the_digits_names_of_earlier_versions_warn_and_agree():
    x = pdl.data.digits("test")[:50]
    with pytest.warns(DeprecationWarning, match="image_fid"):
        assert pdl.metrics.digits_fid(x) == pdl.metrics.image_fid(x, "digits")
    with pytest.warns(DeprecationWarning, match="image_fid_floor"):
        assert pdl.metrics.digits_fid_floor(60, repeats=2) == pdl.metrics.image_fid_floor(60, "digits", repeats=2)
    with pytest.warns(DeprecationWarning, match="classifier_features"):
        torch.testing.assert_close(pdl.metrics.digits_features(x), pdl.metrics.classifier_features(x, "digits"))


def test_nearest_neighbour_distances_by_brute_force():
    g = torch.Generator().manual_seed(0)
    x, ref = torch.randn(30, 1, 8, 8, generator=g), torch.randn(700, 1, 8, 8, generator=g)
    brute = torch.tensor([min(float((a - b).norm()) for b in ref) for a in x], dtype=torch.float64)
    torch.testing.assert_close(pdl.metrics.nearest_neighbour_distances(x, ref, chunk=7), brute)


def test_memorisation_tells_copies_from_new_digits():
    train, test = pdl.data.digits("train"), pdl.data.digits("test")
    copies = pdl.metrics.memorisation(train[:300], train, test)
    assert copies["copy_fraction"] == 1.0 and copies["sample_median"] == 0.0
    fresh = pdl.metrics.memorisation(test[:300], train, test)  # new digits from the same distribution
    assert fresh["copy_fraction"] < 0.1
    assert fresh["heldout_median"] == pytest.approx(fresh["sample_median"], rel=0.2)


def test_inception_fid_explains_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchmetrics", None)  # as if it were not installed
    monkeypatch.setitem(sys.modules, "torchmetrics.image", None)
    monkeypatch.setitem(sys.modules, "torchmetrics.image.fid", None)
    with pytest.raises(ImportError, match=r'pip install "torchmetrics\[image\]"'):
        pdl.metrics.inception_fid(torch.zeros(2, 1, 28, 28), torch.zeros(2, 1, 28, 28))


def test_image_metrics_read_the_data_set_name():
    x = pdl.data.digits("train")[:200]
    assert pdl.metrics.image_fid(x, "digits") == pdl.metrics.image_fid(x, "digits", features="classifier")
    with pytest.raises(ValueError, match="features must be one of classifier, inception, got 'clip'"):
        pdl.metrics.image_fid(x, "digits", features="clip")
    assert pdl.metrics.image_fid_floor(200, "digits", repeats=2) == pdl.metrics.image_fid_floor(
        200, "digits", repeats=2, features="classifier")
    assert pdl.metrics.confident_fraction(x) == pdl.metrics.classifier_confidence(x)["confident"]
    assert np.isnan(pdl.metrics.confident_fraction(torch.zeros(4, 1, 28, 28)))  # no classifier for MNIST here


# ---------------------------------------------------------------- classifiers of the other image sets

@pytest.fixture
def stand_in_mnist(tmp_path, monkeypatch):
    """The digits enlarged to 28 x 28 in MNIST's file format, and a fresh checkpoint folder."""
    from test_chapters_on_mnist import write_digits_as_mnist

    write_digits_as_mnist(tmp_path / "data" / "mnist")
    monkeypatch.setenv("PDLEARN_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("PDLEARN_CHECKPOINTS", str(tmp_path / "ckpt"))
    monkeypatch.setenv("PDLEARN_BUDGET", "smoke")
    return tmp_path


def test_the_classifier_network_is_sized_by_the_image():
    assert digits_classifier.ImageClassifier()(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    net = digits_classifier.ImageClassifier(in_channels=3, image_size=32)
    assert net.input_shape == (3, 32, 32) and net.features(torch.zeros(2, 3, 32, 32)).shape == (2, 64)
    with pytest.raises(ValueError, match="divisible by 4"):
        digits_classifier.ImageClassifier(image_size=30)


@pytest.mark.slow
def test_a_classifier_trained_on_mnist_shaped_images_learns_the_classes(stand_in_mnist):
    net, acc = digits_classifier.train_classifier(steps=200, batch_size=64, name="mnist", progress=False)
    assert net.input_shape == (1, 28, 28) and not net.training
    x, y = pdl.data.mnist("test", return_labels=True)
    assert acc == digits_classifier.accuracy(net, x, y) > 0.8  # held-out images; chance is 0.1


@pytest.mark.slow
def test_image_classifier_trains_once_then_loads(stand_in_mnist, monkeypatch):
    first = digits_classifier.image_classifier("mnist", progress=False)  # smoke sizes: a few steps
    path = pdl.checkpoint_path("mnist_classifier_30")
    assert os.path.exists(path) and first.image_set == "mnist" and 0 <= first.test_accuracy <= 1
    torch.load(path, map_location="cpu", weights_only=True)  # plain tensors and numbers only

    def no_training(*args, **kwargs):
        raise AssertionError("the classifier was trained again instead of loaded")

    monkeypatch.setattr(digits_classifier, "train_classifier", no_training)
    again = digits_classifier.image_classifier("mnist", progress=False)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))
    assert digits_classifier.image_classifier("digits") is digits_classifier.load_classifier()


def test_image_classifier_refuses_a_file_of_another_set(stand_in_mnist):
    net = digits_classifier.ImageClassifier(1, 28)
    digits_classifier.save_classifier(net, 0.5, pdl.checkpoint_path("fashion_mnist_classifier_30"), name="mnist")
    with pytest.raises(ValueError, match="holds a classifier of mnist, not of fashion_mnist; delete it"):
        digits_classifier.image_classifier("fashion_mnist")


@pytest.mark.slow
def test_confidence_and_class_accuracy_of_a_named_set(stand_in_mnist):
    x, y = pdl.data.mnist("test", return_labels=True)
    net = digits_classifier.image_classifier("mnist", progress=False)
    predicted = net(x).argmax(1)
    assert pdl.metrics.class_accuracy(x, y, name="mnist") == pytest.approx(float((predicted == y).float().mean()))
    assert pdl.metrics.class_accuracy(x, predicted, name="mnist") == 1.0
    verdict = pdl.metrics.classifier_confidence(x, name="mnist")
    assert verdict["counts"].sum() == len(x) and torch.equal(verdict["labels"], predicted)
    assert pdl.metrics.confident_fraction(x, 0.5, name="mnist") == pdl.metrics.classifier_confidence(
        x, 0.5, name="mnist")["confident"]
    with pytest.raises(ValueError, match=r"images of mnist, of shape \[n, 1, 28, 28\].*pass name="):
        pdl.metrics.confident_fraction(pdl.data.digits("test"), name="mnist")


@pytest.mark.slow
def test_a_metric_under_no_grad_can_train_the_classifier_it_needs(stand_in_mnist):
    with torch.no_grad():  # as inside a sampling loop; the first call trains the classifier
        assert 0 <= pdl.metrics.confident_fraction(pdl.data.mnist("test")[:20], name="mnist") <= 1


@pytest.mark.slow
def test_an_fid_on_the_features_of_a_classifier_of_mnist(stand_in_mnist):
    """With features='classifier' the downloaded sets get an FID built like the digits FID, offline:
    real images score at its floor, visibly worse ones far above it."""
    mean, std = pdl.metrics.image_fid_floor(200, "mnist", repeats=3, features="classifier")
    assert 0 < mean and 0 < std < mean
    train = pdl.data.mnist("train")[:200]
    real = pdl.metrics.image_fid(train, "mnist", features="classifier")
    assert real < mean + 4 * std
    noisy = (train + 0.8 * torch.randn(train.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    assert pdl.metrics.image_fid(noisy, "mnist", features="classifier") > 2 * mean
    feats = pdl.metrics.classifier_features(train[:5], "mnist")
    assert feats.shape == (5, 64)
    with pytest.raises(ValueError, match="between 2 and 1347"):
        pdl.metrics.image_fid_floor(2000, "mnist", features="classifier")


@pytest.fixture
def stand_in_torchmetrics(monkeypatch):
    """torchmetrics' FrechetInceptionDistance replaced by the chapters test's stand-in (pooled pixels)."""
    import types

    from test_chapters_on_mnist import STUB

    module = types.ModuleType("torchmetrics.image.fid")
    exec(STUB, module.__dict__)
    for name in ("torchmetrics", "torchmetrics.image"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "torchmetrics.image.fid", module)
    return module.FrechetInceptionDistance


def test_the_inception_fid_feeds_the_test_split_through_inception_once(stand_in_mnist, stand_in_torchmetrics):
    """image_fid keeps the test split's Inception statistics: later calls feed only the samples,
    and score exactly what the uncached inception_fid scores."""
    test, train = pdl.data.mnist("test"), pdl.data.mnist("train")
    first = pdl.metrics.image_fid(train[:100], "mnist")
    assert stand_in_torchmetrics.real_images_seen == len(test)
    second = pdl.metrics.image_fid(train[100:300], "mnist")
    pdl.metrics.image_fid_floor(50, "mnist", repeats=3)
    assert stand_in_torchmetrics.real_images_seen == len(test)  # no second pass over the test split
    assert first == pytest.approx(pdl.metrics.inception_fid(train[:100], test), rel=1e-12)
    assert second == pytest.approx(pdl.metrics.inception_fid(train[100:300], test), rel=1e-12)
    assert first != second  # each call scores its own samples, not the last call's as well
    pdl.metrics.forget_references()
    seen = stand_in_torchmetrics.real_images_seen
    assert pdl.metrics.image_fid(train[:100], "mnist") == first
    assert stand_in_torchmetrics.real_images_seen == seen + len(test)


@pytest.mark.slow
def test_the_classifier_fid_keeps_the_features_of_the_test_split(stand_in_mnist, monkeypatch):
    train = pdl.data.mnist("train")[:200]
    expected = pdl.metrics.fid_from_features(pdl.metrics.classifier_features(train, "mnist"),
                                             pdl.metrics.classifier_features(pdl.data.mnist("test"), "mnist"))
    assert pdl.metrics.image_fid(train, "mnist", features="classifier") == pytest.approx(expected, rel=1e-12)
    kept = pdl.metrics.split_features("mnist", "test")
    assert pdl.metrics.split_features("mnist", "test") is kept

    def no_reading(*args, **kwargs):
        raise AssertionError("the test split was read again")

    monkeypatch.setattr(fid, "image_set", no_reading)
    assert pdl.metrics.image_fid(train, "mnist", features="classifier") == pytest.approx(expected, rel=1e-12)


def test_kept_features_follow_the_data_folder(stand_in_mnist, tmp_path_factory, monkeypatch):
    """Another PDLEARN_DATA (another copy of a set) gets features of its own, not the last folder's."""
    from test_chapters_on_mnist import write_digits_as_mnist

    kept = pdl.metrics.split_features("mnist", "test")
    other = tmp_path_factory.mktemp("other_data")
    write_digits_as_mnist(other / "mnist")
    monkeypatch.setenv("PDLEARN_DATA", str(other))
    again = pdl.metrics.split_features("mnist", "test")
    assert again is not kept and torch.allclose(again, kept)
