"""The prose check (pdlearn.prose) on notebooks made here: it must catch what it claims to."""
import json

import pytest

from pdlearn import prose


def notebook(tmp_path, markdown, printed, allow=None, name="nb.ipynb"):
    cells = [{"cell_type": "code", "source": "print(...)", "metadata": {}, "execution_count": 1,
              "outputs": [{"output_type": "stream", "name": "stdout", "text": printed}]},
             {"cell_type": "markdown", "source": markdown, "metadata": {}}]
    meta = {"pdlearn": {"prose_numbers": allow}} if allow else {}
    path = tmp_path / name
    path.write_text(json.dumps({"cells": cells, "metadata": meta, "nbformat": 4, "nbformat_minor": 5}))
    return path


def test_numbers_that_were_printed_pass_as_printed_or_rounded(tmp_path):
    path = notebook(tmp_path, "The 4-step student scores 12.09, 0.95x the teacher, in 914 s: 2.3x faster, "
                              "and 10% of its samples copy; 5,000 samples at lr 2.8e-5.",
                    "fid 12.0912 ratio 0.9512 took 914.2 s speedup 2.33 copies 0.1 n=5000 lr=2.81e-05\n")
    assert prose.problems(path) == []


def test_a_seeded_mismatch_fails(tmp_path):
    path = notebook(tmp_path, "The 1-step student scores 16.61.", "fid 16.16\n")
    found = prose.problems(path)
    assert len(found) == 1 and "16.61" in found[0] and "cell 1" in found[0]
    assert prose.problems(notebook(tmp_path, "It took 915 s.", "took 914.2 s\n", name="b.ipynb"))
    assert prose.problems(notebook(tmp_path, "About 3x faster.", "speedup 2.33\n", name="c.ipynb"))


def test_the_allowlist_takes_numbers_that_no_run_changes(tmp_path):
    markdown = "Salimans & Ho report FID 9.12 at one step, with T = 1000 (the text's 13.36 too)."
    path = notebook(tmp_path, markdown, "nothing\n", allow={"9.12": "Salimans & Ho (2022), Table 2",
                                                             "13.36": "Song et al. (2021), quoted in Table 2",
                                                             "1000": "T = 1000, the schedule's length (a definition)"})
    assert prose.problems(path) == []


def test_references_math_code_and_years_are_not_results(tmp_path):
    markdown = ("As chapter 4 showed (eq. (8), Table 2, exercise 3; Song et al., 2021), $T = 1000$ and "
                "`lr=1e-4` and {cite}`ho2020ddpm` set nothing; a 2D set, an 8-step sampler.")
    assert prose.problems(notebook(tmp_path, markdown, "nothing\n")) == []


def test_a_comparison_word_needs_a_printed_verdict_nearby(tmp_path):
    assert prose.problems(notebook(tmp_path, "The student beats DDIM.", "fid\n"))
    assert prose.problems(notebook(tmp_path, "The student beats DDIM.", "student vs DDIM: better\n",
                                   name="ok.ipynb")) == []


@pytest.mark.parametrize("text, expected", [("0.95", ("dec", 2)), ("2.8e-5", ("sig", 2)), ("5,000", ("dec", 0))])
def test_the_rounding_of_a_number_is_read_from_how_it_is_written(text, expected):
    assert prose._decimals(text) == expected


# ---------------------------------------------------------------- the committed chapters
# Each chapter whose text was fitted to its stored cpu-budget outputs; the check then holds on
# every commit, so a re-execution that moves a number the prose quotes fails here until the
# sentence follows it.
BOOK = __import__("pathlib").Path(__file__).resolve().parents[1] / "book"
CHECKED = sorted(p.name for p in BOOK.glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("name", CHECKED)
def test_every_number_and_comparison_in_a_chapter_comes_from_its_outputs(name):
    found = prose.problems(BOOK / name)
    assert not found, "\n".join(found)
