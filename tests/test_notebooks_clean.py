"""The committed notebooks are clean: executed top to bottom, no stored error.

The book renders the outputs stored in each notebook (execution is off in
_config.yml), so a notebook saved after a failing cell would render its
traceback silently. These checks refuse it; nbval re-runs every notebook at the
smoke budget besides.
"""
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
MAX_BYTES = 5_000_000  # figures at dpi ~80-100 keep a chapter near 1-3 MB


def book_notebooks():
    skip = {"checkpoints", ".ipynb_checkpoints", "_build"}
    return sorted(p for p in BOOK.rglob("*.ipynb") if not skip & set(p.relative_to(BOOK).parts))


def problems(path, root=ROOT):
    """What is wrong with the stored notebook at ``path``, as a list of sentences (empty if clean)."""
    found = []
    nb = nbformat.read(path, as_version=4)
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as err:
        found.append(f"is not a valid notebook: {err.message}")
    code = [c for c in nb.cells if c.cell_type == "code"]
    counts = []
    for i, cell in enumerate(code):
        if cell.get("execution_count") is not None:
            counts.append(cell.execution_count)
        for out in cell.get("outputs", []):
            if out.output_type == "error":
                found.append(f"code cell {i} stores an error: {out.get('ename')}: {out.get('evalue')}")
            elif out.output_type == "stream" and out.get("name") == "stderr" and "Traceback" in out.get("text", ""):
                found.append(f"code cell {i} stores a traceback on stderr")
            text = str(out)
            if str(root) in text:
                found.append(f"code cell {i} output shows a local path ({root}); silence that warning or message")
    in_assignments = "assignments" in path.parts
    if code and not counts and not in_assignments:
        found.append("has no stored outputs: execute it at the cpu budget (python book/execute.py) before committing")
    if any(b <= a for a, b in zip(counts, counts[1:])):
        found.append(f"was not run top to bottom in one go (execution counts {counts}); re-run it with book/execute.py")
    if path.name[:1].isdigit() and not in_assignments:
        first = code[0].source if code else ""
        if "import pdlearn as pdl" not in first or "pdl.budget()" not in first:
            found.append("the first code cell must be the setup cell (import pdlearn as pdl; BUDGET = pdl.budget())")
    if path.stat().st_size > MAX_BYTES:
        found.append(f"is {path.stat().st_size / 1e6:.1f} MB; keep it under {MAX_BYTES / 1e6:.0f} MB (smaller figures, "
                     "fewer animation frames)")
    return found


@pytest.mark.parametrize("path", book_notebooks(), ids=lambda p: str(p.relative_to(BOOK)))
def test_committed_notebook_is_clean(path):
    found = problems(path)
    assert not found, f"{path.relative_to(ROOT)}:\n  " + "\n  ".join(found)


# The checker itself, on notebooks made here: it must catch what it claims to.

SETUP = "import pdlearn as pdl\nBUDGET = pdl.budget()"


def notebook(tmp_path, name, *cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source, execution_count=count, outputs=outputs)
                for source, count, outputs in cells]
    path = tmp_path / name
    nbformat.write(nb, path)
    return path


def test_checker_accepts_a_clean_notebook(tmp_path):
    out = nbformat.v4.new_output("stream", name="stdout", text="budget: cpu\n")
    path = notebook(tmp_path, "01_clean.ipynb", (SETUP, 1, [out]), ("print(1)", 2, []))
    assert problems(path, root=tmp_path / "elsewhere") == []


def test_checker_catches_an_error_output(tmp_path):
    err = nbformat.v4.new_output("error", ename="ValueError", evalue="boom", traceback=["..."])
    path = notebook(tmp_path, "01_bad.ipynb", (SETUP, 1, []), ("raise ValueError('boom')", 2, [err]))
    assert any("ValueError: boom" in p for p in problems(path, root=tmp_path / "elsewhere"))


def test_checker_catches_a_stderr_traceback(tmp_path):
    err = nbformat.v4.new_output("stream", name="stderr", text="Traceback (most recent call last):\n  ...\n")
    path = notebook(tmp_path, "x.ipynb", ("f()", 1, [err]))
    assert any("traceback" in p for p in problems(path, root=tmp_path / "elsewhere"))


def test_checker_catches_unexecuted_and_out_of_order(tmp_path):
    assert any("no stored outputs" in p
               for p in problems(notebook(tmp_path, "a.ipynb", ("1", None, [])), root=tmp_path / "x"))
    assert any("top to bottom" in p
               for p in problems(notebook(tmp_path, "b.ipynb", ("1", 3, []), ("2", 2, [])), root=tmp_path / "x"))


def test_checker_catches_a_missing_setup_cell_and_local_paths(tmp_path):
    out = nbformat.v4.new_output("stream", name="stderr", text=f"{tmp_path}/site-packages/x.py:1: UserWarning\n")
    found = problems(notebook(tmp_path, "03_chapter.ipynb", ("import torch", 1, [out])), root=tmp_path)
    assert any("setup cell" in p for p in found)
    assert any("local path" in p for p in found)
