"""Refactors keep every number: the golden outputs of tests/golden.py, recomputed at the smoke budget."""
import json

import golden
import pytest

pytestmark = pytest.mark.slow  # it trains or runs the command line: seconds a test


def test_golden_outputs_are_unchanged():
    stored = json.loads(golden.FILE.read_text())
    bad = golden.compare(golden.compute(), stored, rtol=1e-5)
    assert not bad, "golden outputs moved (python tests/golden.py shows them):\n  " + "\n  ".join(bad)


def test_the_comparison_catches_a_moved_value():
    stored = {"a": [1.0, 2.0], "b": 3.0}
    assert golden.compare({"a": [1.0, 2.0], "b": 3.0}, stored) == []
    assert golden.compare({"a": [1.0, 2.0 + 1e-3], "b": 3.0}, stored, rtol=1e-5)
    assert golden.compare({"a": [1.0, 2.0]}, stored)
