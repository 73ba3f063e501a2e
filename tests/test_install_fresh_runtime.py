"""A fresh runtime: a chapter that reads earlier chapters' checkpoints, run first.

On Colab every session starts with an empty checkpoint folder, and a reader may open
chapter 8 before any other. Chapter 8 reads what chapters 1, 4, 5 and 6 train (the
moons teacher, its progressive rounds, the digits teacher and its students); executed
at the smoke budget in an empty ``PDLEARN_CHECKPOINTS`` it must train them itself,
and leave their checkpoints behind for the next chapter.
"""
import re
from pathlib import Path

import nbformat
import pytest

BOOK = Path(__file__).resolve().parents[1] / "book"
pytestmark = pytest.mark.slow


def test_chapter_8_trains_what_it_needs_in_an_empty_checkpoint_folder(tmp_path, monkeypatch):
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    folder = tmp_path / "checkpoints"
    for key, value in {"PDLEARN_BUDGET": "smoke", "PDLEARN_CHECKPOINTS": str(folder), "MPLBACKEND": "agg",
                       "PDLEARN_PROGRESS": "summary"}.items():
        monkeypatch.setenv(key, value)  # the kernel inherits this process's environment
    nb = nbformat.read(BOOK / "08_real_time.ipynb", as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(BOOK)}})
    try:
        client.execute()
    except CellExecutionError as err:
        message = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
        pytest.fail(f"chapter 8 failed on a fresh runtime:\n{message[:2000]}\n...\n{message[-1500:]}")
    kept = sorted(p.name for p in folder.glob("*.pt"))
    for prefix in ("moons_teacher", "moons_progressive", "digits_teacher", "digits_distill"):
        assert any(name.startswith(prefix) for name in kept), f"no {prefix}* checkpoint among {kept}"
