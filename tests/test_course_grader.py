"""The grader cannot be talked round: a correct submission scores full, a stub zero, a library
short-cut zero on its task, tampering zero on the tampered task; and the static scan and the guard
each catch what they claim to."""
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch

import pdlearn as pdl
from pdlearn.course import assignments, checks, extract, grader

ROOT = Path(__file__).resolve().parents[1]
A1 = ROOT / "book" / "assignments" / "solutions" / "a1_forward_and_loss.ipynb"


def forward_ok(x, t, sched, eps):
    alpha, sigma = sched.alpha_sigma(t)
    return alpha[:, None] * x + sigma[:, None] * eps


# ---------------------------------------------------------------- the static scan

RESERVED = {"checks", "pdl", "torch", "sched"}


@pytest.mark.parametrize("source, phrase", [
    ("checks.check_forward = lambda f: None\ndef forward(x, t, s, e):\n    return x", "assignment to checks"),
    ("checks.hidden = lambda *a, **k: None", "assignment to checks"),
    ("def forward(x, t, s, e):\n    pdl.q_sample = None\n    return x", "assignment to pdl.q_sample"),
    ("def forward(x, t, s, e):\n    setattr(pdl, 'q_sample', None)\n    return x", "setattr"),
    ("def forward(x, t, s, e):\n    return x.__class__", "__class__"),
    ("import pdlearn.course.checks as c", "import of pdlearn.course"),
    ("from pdlearn import q_sample as forward", "forward"),
    ("forward = pdl.q_sample", "forward"),
    ("def forward(x, t, s, e, f=pdl.q_sample):\n    return f(x, t, s, e)", "default value"),
    ("class checks:\n    pass", "checks"),
    ("def sched():\n    pass", "sched"),
    ("import sys", "sys"),
])
def test_the_scan_finds_tampering(source, phrase):
    code, notes, tampering = extract.extract(source, RESERVED, ("forward",))
    assert tampering and phrase in tampering, tampering
    assert "lambda" not in code and "setattr" not in code and "import pdlearn.course" not in code


def test_the_scan_keeps_functions_imports_and_literals_and_drops_the_rest():
    source = ("import math\nEPS = 1e-8\nx = torch.randn(3)\nprint('hello')\n%time 1\n"
              "def forward(x, t, sched, eps):\n    out = x.clone()\n    out[:, 0] = 0\n    return out\n")
    code, notes, tampering = extract.extract(source, RESERVED, ("forward",))
    assert tampering is None
    assert "import math" in code and "EPS = 1e-08" in code and "def forward" in code
    assert "print" not in code and "randn" not in code
    assert len(notes) == 3, notes


# ---------------------------------------------------------------- the guard

def test_library_answers_raise_while_the_student_function_runs():
    with pytest.raises(checks.ImplementYourself, match="pdl.q_sample"):
        checks.check_forward(lambda x, t, sched, eps: pdl.q_sample(x, t, sched, eps))
    with pytest.raises(checks.ImplementYourself, match="itself"):
        checks.check_forward(pdl.q_sample)
    assert pdl.q_sample(torch.zeros(1, 2), torch.zeros(1), pdl.CosineSchedule(), torch.zeros(1, 2)).shape == (1, 2)


def test_changing_the_library_or_torch_fails_and_is_undone():
    original, allclose = checks.check_v_target, torch.allclose

    def switch_off(x, t, sched, eps):
        module = checks
        module.check_v_target = lambda f: None
        return forward_ok(x, t, sched, eps)

    def fake_compare(x, t, sched, eps):
        module = torch
        module.allclose = lambda *a, **k: True
        return x

    for cheat in (switch_off, fake_compare):
        with pytest.raises(checks.Tampered, match="changed"):
            checks.check_forward(cheat)
    assert checks.check_v_target is original and torch.allclose is allclose
    checks.check_forward(forward_ok)


# ---------------------------------------------------------------- the grader on a folder

def _submission(path, **bodies):
    """The student copy of A1 with some task cells' code replaced."""
    nb = assignments.student_copy(nbformat.read(A1, as_version=4))
    for cell in nb.cells:
        task = cell.metadata.get("nbgrader", {}).get("grade_id")
        if task in bodies:
            cell.source = bodies[task]
    nbformat.write(nb, path)


SOLUTION = {c.metadata["nbgrader"]["grade_id"]: c.source
            for c in nbformat.read(A1, as_version=4).cells if c.metadata.get("nbgrader", {}).get("solution")}


@pytest.mark.slow
def test_grading_a_folder(tmp_path):
    folder = tmp_path / "submissions"
    folder.mkdir()
    _submission(folder / "correct.ipynb", **SOLUTION)
    _submission(folder / "stub.ipynb")
    _submission(folder / "shortcut.ipynb", **dict(SOLUTION, forward="def forward(x, t, sched, eps):\n"
                                                  "    return pdl.q_sample(x, t, sched, eps)"))
    _submission(folder / "tampered.ipynb", **dict(SOLUTION, forward=SOLUTION["forward"] +
                                                  "\nchecks.check_forward = lambda f: None\n"
                                                  "checks.hidden = lambda *a, **k: None"))
    result = subprocess.run([sys.executable, "-m", "pdlearn.assignments", "grade", "a1", str(folder), "--out",
                             str(tmp_path / "grades")], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "grades" / "a1_forward_and_loss.json").read_text())
    scores = {s["submission"]: {t["task"]: t["score"] for t in s["tasks"]} for s in report["submissions"]}
    full = {t["task"]: t["max_score"] for t in report["submissions"][0]["tasks"]}
    assert scores["correct.ipynb"] == full
    assert set(scores["stub.ipynb"].values()) == {0}
    assert scores["shortcut.ipynb"]["forward"] == 0 and scores["shortcut.ipynb"]["v_target"] == full["v_target"]
    assert scores["tampered.ipynb"]["forward"] == 0 and scores["tampered.ipynb"]["loss_fn"] == full["loss_fn"]
    assert "implement this yourself" in result.stdout and "tampering" in result.stdout
    xml = (tmp_path / "grades" / "a1_forward_and_loss.xml").read_text()
    assert xml.count("<testsuite ") == 4 and "<failure" in xml
