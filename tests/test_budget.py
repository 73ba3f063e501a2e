"""Budgets: one environment variable, three names, sizes per experiment, checkpoint paths."""
import importlib
import os

import pytest
import torch

import pdlearn as pdl
budget_mod = importlib.import_module("pdlearn.budget")  # the module; pdl.budget is the function


def test_default_without_cuda_is_cpu(monkeypatch):
    monkeypatch.delenv("PDLEARN_BUDGET", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pdl.budget() == "cpu"
    assert pdl.device() == torch.device("cpu")


def test_default_with_cuda_is_gpu(monkeypatch):
    monkeypatch.delenv("PDLEARN_BUDGET", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pdl.budget() == "gpu"
    assert pdl.device() == torch.device("cuda")


@pytest.mark.parametrize("value, expected", [("smoke", "smoke"), ("cpu", "cpu"), ("gpu", "gpu"),
                                             (" Smoke ", "smoke"), ("", None)])
def test_environment_variable(monkeypatch, value, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("PDLEARN_BUDGET", value)
    assert pdl.budget() == (expected or "cpu")  # empty means unset


def test_unknown_budget_names_the_allowed_values(monkeypatch):
    monkeypatch.setenv("PDLEARN_BUDGET", "fast")
    with pytest.raises(ValueError) as info:
        pdl.budget()
    message = str(info.value)
    assert "'fast'" in message
    for name in ("smoke", "cpu", "gpu"):
        assert name in message
    assert "PDLEARN_BUDGET" in message


def test_every_experiment_has_every_budget():
    assert budget_mod.BUDGETS == ("smoke", "cpu", "gpu")
    for name, table in budget_mod.SIZES.items():
        assert set(table) == set(budget_mod.BUDGETS), name
        keys = {b: set(table[b]) for b in budget_mod.BUDGETS}
        # budgets change sizes, never code paths: the same keys at every budget
        assert keys["smoke"] == keys["cpu"] == keys["gpu"], name


def test_sizes_follow_the_budget(monkeypatch):
    name = next(iter(budget_mod.SIZES))
    monkeypatch.setenv("PDLEARN_BUDGET", "smoke")
    assert pdl.sizes(name) == budget_mod.SIZES[name]["smoke"]
    assert pdl.sizes(name, "gpu") == budget_mod.SIZES[name]["gpu"]
    sizes = pdl.sizes(name)
    sizes["steps"] = -1  # a copy: changing it leaves the table alone
    assert budget_mod.SIZES[name]["smoke"].get("steps") != -1


def test_unknown_sizes_name_lists_the_known_ones():
    with pytest.raises(KeyError, match="toy_teacher"):
        pdl.sizes("no_such_experiment")


def test_checkpoint_path(monkeypatch, tmp_path):
    monkeypatch.setenv("PDLEARN_BUDGET", "smoke")
    monkeypatch.delenv("PDLEARN_CHECKPOINTS", raising=False)
    assert pdl.checkpoint_path("teacher") == os.path.join("checkpoints", "teacher-smoke.pt")
    assert pdl.checkpoint_path("teacher", "cpu") == os.path.join("checkpoints", "teacher-cpu.pt")
    monkeypatch.setenv("PDLEARN_CHECKPOINTS", str(tmp_path))
    assert pdl.checkpoint_path("teacher") == str(tmp_path / "teacher-smoke.pt")


def test_image_data_follows_the_budget_unless_pdlearn_images_names_a_set(monkeypatch):
    monkeypatch.delenv("PDLEARN_IMAGES", raising=False)
    assert pdl.image_data("smoke") == pdl.image_data("cpu") == "digits" and pdl.image_data("gpu") == "mnist"
    monkeypatch.setenv("PDLEARN_IMAGES", " Fashion_MNIST ")
    assert pdl.image_data("cpu") == pdl.image_data("gpu") == "fashion_mnist"
    monkeypatch.setenv("PDLEARN_IMAGES", "imagenet")
    with pytest.raises(ValueError, match=r"PDLEARN_IMAGES='imagenet' is not an image set; use one of digits, mnist"):
        pdl.image_data()


def test_the_image_rows_answer_to_their_old_digits_names_with_a_warning():
    from pdlearn.budget import RENAMED

    for old, new in RENAMED.items():
        with pytest.warns(DeprecationWarning, match=new):
            assert pdl.sizes(old, "cpu") == pdl.sizes(new, "cpu")
