"""pdlearn.seeding: the seeds of every stream, as first written (stored results reproduce)."""
import pytest

from pdlearn.seeding import derive_seed


def test_every_stream_keeps_its_rule():
    assert derive_seed(3, "noise", 5) == 3 * 1_000_003 + 5
    assert derive_seed(3, "rank", 2) == 3 + 2 * 1_000_003 and derive_seed(3, "rank", 0) == 3
    assert derive_seed(3, "round", 4) == 3004
    assert derive_seed(3, "pairs") == 1003
    assert derive_seed(3, "floor", 2, 1) == 10_000 + 3000 + 5


def test_blocks_and_rounds_of_different_seeds_never_meet():
    noise = {derive_seed(s, "noise", b) for s in range(50) for b in range(200)}
    assert len(noise) == 50 * 200
    rounds = {derive_seed(s, "round", k) for s in range(50) for k in range(1, 20)}
    assert len(rounds) == 50 * 19


def test_bad_streams_and_indices_are_named():
    with pytest.raises(ValueError, match="stream must be one of"):
        derive_seed(0, "nosie", 1)
    with pytest.raises(TypeError, match="takes 1 index"):
        derive_seed(0, "noise")
    with pytest.raises(TypeError, match="seed"):
        derive_seed(0.5, "pairs")
