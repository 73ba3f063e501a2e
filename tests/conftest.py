"""The `slow` marker and the fixtures for the tiny networks (tests/factories.py).

    pytest -m "not slow"    the core in well under a minute (no test that trains for long)
    pytest                  everything, as the README's test command runs it
"""
import pytest

from factories import make_mlp, make_unet


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: trains or executes notebooks for seconds or more; "
                                       "deselect with -m 'not slow'")


@pytest.fixture
def tiny_mlp():
    return make_mlp


@pytest.fixture
def tiny_unet():
    return make_unet
