"""The committed notebooks are clean: executed top to bottom, no stored error.

The book renders the outputs stored in each notebook (execution is off in
_config.yml), so a notebook saved after a failing cell would render its
traceback silently. These checks refuse it; nbval re-runs every notebook at the
smoke budget besides.
"""
import importlib.util
import shutil
import subprocess
import sys
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


# What the rendered page shows: stored outputs made for a page that runs no kernel, and
# code and printed lines that fit its column (88 characters at 1280 px). book/execute.py
# makes the outputs so (PDLEARN_PROGRESS=summary, for_the_page); the code is the authors'.

LINE = 88  # characters: the column of the rendered book at 1280 px (book/_static/pdlearn.css)


def execute_module():
    spec = importlib.util.spec_from_file_location("book_execute", BOOK / "execute.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def page_problems(path):
    """What in the stored notebook at ``path`` would look wrong on its rendered page."""
    execute = execute_module()
    found = []
    nb = nbformat.read(path, as_version=4)
    if nb.metadata.get("widgets"):
        found.append("stores widget state (the page then loads a widget runtime): run it with book/execute.py")
    code = [c for c in nb.cells if c.cell_type == "code"]
    for i, cell in enumerate(code):
        long = [n for n, line in enumerate(cell.source.splitlines(), 1) if len(line) > LINE]
        if long:
            found.append(f"code cell {i}: lines {long} are longer than {LINE} characters")
        outputs = cell.get("outputs", [])
        bars = sum(execute.is_progress_bar(out) for out in outputs)
        if bars:
            found.append(f"code cell {i} stores {bars} progress bar widget(s): run it with book/execute.py "
                         "(one summary line per loop), and loop with pdl.progress.bar, not tqdm")
        printed = "\n".join(shown_text(out) for out in outputs)
        wide = [line for line in printed.splitlines() if len(line) > LINE]
        if wide:
            found.append(f"code cell {i} prints {len(wide)} line(s) longer than {LINE} characters, "
                         f"e.g. {wide[0][:40]!r}...")
    return found


RICHER = ("image/png", "image/svg+xml", "image/jpeg", "text/html", "text/markdown", "text/latex",
          "application/vnd.jupyter.widget-view+json")


def shown_text(out):
    """The text an output shows on the page: a stream's text, or the text/plain of a result
    that has nothing richer (a figure or a Markdown table shows as itself, not as its repr)."""
    if out.output_type == "stream":
        return out.get("text", "")
    data = out.get("data", {})
    return "" if any(kind in data for kind in RICHER) else str(data.get("text/plain", ""))


# The solution notebooks are not published (_config.yml excludes them); their code reaches
# the page through the student copies, which are checked.
def published():
    return [p for p in book_notebooks() if "solutions" not in p.relative_to(BOOK).parts]


@pytest.mark.parametrize("path", published(), ids=lambda p: str(p.relative_to(BOOK)))
def test_committed_notebook_fits_the_page(path):
    found = page_problems(path)
    assert not found, f"{path.relative_to(ROOT)}:\n  " + "\n  ".join(found)


def bar_output(text="moons teacher:  40%|####      | 400/1000 [00:02<00:03, 180.2it/s]"):
    view = {"model_id": "abc", "version_major": 2, "version_minor": 0}
    return nbformat.v4.new_output("display_data", data={"application/vnd.jupyter.widget-view+json": view,
                                                        "text/plain": text})


def test_page_checker_accepts_a_clean_notebook(tmp_path):
    out = nbformat.v4.new_output("stream", name="stdout", text="moons teacher: 1000 steps in 9.1 s\n")
    assert page_problems(notebook(tmp_path, "01_clean.ipynb", (SETUP, 1, [out]))) == []


def test_page_checker_catches_bars_state_and_long_lines(tmp_path):
    long_code = "x = " + "1 + " * 30 + "1"
    printed = nbformat.v4.new_output("stream", name="stdout", text="| a " * 30 + "|\n")
    path = notebook(tmp_path, "01_bad.ipynb", (SETUP, 1, [bar_output()]), (long_code, 2, [printed]))
    nb = nbformat.read(path, as_version=4)
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {"abc": {}}}}
    nbformat.write(nb, path)
    found = "\n".join(page_problems(path))
    assert "widget state" in found and "progress bar" in found
    assert "code cell 1: lines [1]" in found and "prints 1 line" in found


def test_execute_makes_outputs_for_the_page(tmp_path):
    """book/execute.py's for_the_page removes what the checker refuses: bars and widget state go,
    an explorer becomes one line, a figure and printed text stay."""
    execute = execute_module()
    explorer = bar_output("interactive(children=(FloatSlider(value=0.1, description='t'), Output()))")
    text = nbformat.v4.new_output("stream", name="stdout", text="moons teacher: 1000 steps in 9.1 s\n")
    path = notebook(tmp_path, "01_run.ipynb", (SETUP, 1, [bar_output(), text]), ("explore()", 2, [explorer]))
    nb = nbformat.read(path, as_version=4)
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {"abc": {}}}}
    assert page_problems(path) != []
    assert execute.for_the_page(nb) == (1, 1)
    nbformat.write(nb, path)
    assert page_problems(path) == []
    cells = nbformat.read(path, as_version=4).cells
    assert cells[0].outputs == [text] and "live notebook" in cells[1].outputs[0]["data"]["text/plain"]


def missing_alt_text(path):
    """The code cells of a stored notebook that output a figure without alt text. myst-nb takes
    an image's alt text from its cell's metadata, {"mystnb": {"image": {"alt": "..."}}}; without
    it a reader of the page hears the image's file name."""
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    return [i for i, cell in enumerate(code)
            if any(k.startswith("image/") for out in cell.get("outputs", []) for k in out.get("data", {}))
            and not str(cell.metadata.get("mystnb", {}).get("image", {}).get("alt", "")).strip()]


@pytest.mark.parametrize("path", book_notebooks(), ids=lambda p: str(p.relative_to(BOOK)))
def test_every_stored_figure_has_alt_text(path):
    missing = missing_alt_text(path)
    assert not missing, (f"{path.relative_to(ROOT)}: code cells {missing} show a figure without alt text; add "
                         'one line to the cell\'s metadata: {"mystnb": {"image": {"alt": "what it shows"}}}')


def test_alt_text_check_sees_a_figure_without_one(tmp_path):
    figure = nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"})
    path = notebook(tmp_path, "01_fig.ipynb", (SETUP, 1, []), ("plot()", 2, [figure]))
    assert missing_alt_text(path) == [1]
    nb = nbformat.read(path, as_version=4)
    nb.cells[1].metadata["mystnb"] = {"image": {"alt": "Two moons, as dots."}}
    nbformat.write(nb, path)
    assert missing_alt_text(path) == []


RUFF = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")


@pytest.mark.skipif(RUFF is None, reason="ruff is not installed (pip install -r requirements.txt)")
def test_ruff_lints_notebooks_at_the_page_width(tmp_path):
    """The project's ruff settings flag a notebook line over 88 characters, and only that."""
    ruff = RUFF
    (tmp_path / "book").mkdir()
    ok = notebook(tmp_path / "book", "ok.ipynb", ("x = 1  # " + "a" * 70, 1, []))
    bad = notebook(tmp_path / "book", "bad.ipynb", ("x = 1  # " + "a" * 90, 1, []))
    config = ["--config", str(ROOT / "pyproject.toml"), "--output-format", "concise", "--no-cache"]
    assert subprocess.run([ruff, "check", *config, str(ok)], capture_output=True).returncode == 0
    done = subprocess.run([ruff, "check", *config, str(bad)], capture_output=True, text=True)
    assert done.returncode == 1 and "E501" in done.stdout


def test_a_figure_or_table_beside_printed_text_is_not_a_long_line(tmp_path):
    figure = nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo=",
                                                          "text/plain": "<Figure size 680x255 with 3 Axes>"})
    table = nbformat.v4.new_output("display_data", data={"text/markdown": "| a |", "text/plain": "<Markdown>"})
    text = nbformat.v4.new_output("stream", name="stdout", text="x" * 80 + "\n")
    path = notebook(tmp_path, "01_mixed.ipynb", (SETUP, 1, []), ("show()", 2, [figure, text, table, text]))
    assert page_problems(path) == []
    wide = nbformat.v4.new_output("stream", name="stdout", text="x" * 89 + "\n")
    assert page_problems(notebook(tmp_path, "01_wide.ipynb", (SETUP, 1, []), ("show()", 2, [figure, wide])))
